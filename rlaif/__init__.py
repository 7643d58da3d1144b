"""rlaif: AI judges grade model outputs against rubrics; the verdicts become preference datasets
that train a model with LoRA DPO or GRPO.

The public API mirrors the CLI: `rlaif.judge(...)` is `rlaif judge`, and so on. `import rlaif` never
pulls torch or a vendor SDK: those load when a function needs them (the training entry points
are resolved on first use, PEP 562).
"""
from __future__ import annotations

import importlib

# Light modules are imported now: their functions share names with their modules
# (rlaif.judge, rlaif.evaluate, rlaif.report), and binding them here keeps `rlaif.judge` the function
# even after `import rlaif.judge` elsewhere. None of them imports torch or a vendor SDK at import time.
from rlaif.backends import get_backend
from rlaif.errors import (
    BackendError,
    ConfigError,
    InputError,
    MissingDependencyError,
    RlaifError,
    RubricError,
    TemplateError,
)
from rlaif.evaluate import evaluate
from rlaif.gate import check_gate
from rlaif.gold import rubric_diff, rubric_test
from rlaif.judge import judge
from rlaif.pairs import build_pairs
from rlaif.pipeline import run
from rlaif.records import Completion, GenParams, Judgment
from rlaif.report import report
from rlaif.rubrics import lint as lint_rubric
from rlaif.rubrics import list_rubrics, load_rubric
from rlaif.sampling import sample
from rlaif.shards import merge
from rlaif.version import __version__

_EAGER = ["judge", "merge", "sample", "build_pairs", "run", "load_rubric", "lint_rubric", "list_rubrics",
          "get_backend", "evaluate", "rubric_test", "rubric_diff", "check_gate", "report", "Completion", "GenParams",
          "Judgment", "RlaifError", "ConfigError",
          "RubricError", "TemplateError", "InputError", "BackendError", "MissingDependencyError"]

# Heavy ones (they import torch/peft at module level) load on first use: public name -> "module:attribute".
_API = {
    "train_dpo": "rlaif.train.dpo:train_dpo",
    "train_grpo": "rlaif.train.grpo:train_grpo",
    "train_sft": "rlaif.train.sft:train_sft",
    "train_rm": "rlaif.train.rm:train_rm",
    "export": "rlaif.train.export:export",
}

__all__ = ["__version__", *_EAGER, *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'rlaif' has no attribute '{name}'")
    module, attr = _API[name].split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value          # cache: later lookups skip __getattr__
    return value


def __dir__():
    return sorted(__all__)
