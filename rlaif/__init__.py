"""rlaif: AI judges grade model outputs against rubrics; the verdicts become preference datasets
that train a model with LoRA DPO or GRPO.

The public API mirrors the CLI: `rlaif.judge(...)` is `rlaif judge`, and so on. Heavy packages
(torch, transformers, vendor SDKs) are imported only when a function needs them.
"""
from __future__ import annotations

__version__ = "0.1.0"

from rlaif.backends import get_backend
from rlaif.errors import (BackendError, ConfigError, InputError, MissingDependencyError, RlaifError, RubricError,
                          TemplateError)
from rlaif.judge import judge
from rlaif.records import Completion, GenParams, Judgment
from rlaif.rubrics import lint as lint_rubric
from rlaif.rubrics import list_rubrics, load_rubric
from rlaif.shards import merge

__all__ = [
    "__version__", "judge", "merge", "load_rubric", "lint_rubric", "list_rubrics", "get_backend",
    "Completion", "GenParams", "Judgment",
    "RlaifError", "ConfigError", "RubricError", "TemplateError", "InputError", "BackendError", "MissingDependencyError",
]
