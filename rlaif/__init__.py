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



# Training (torch, transformers, peft): thin wrappers so `import rlaif` stays light.
def train_dpo(data, cfg=None, **kwargs):
    """LoRA DPO on preference pairs (`rlaif train dpo`); see rlaif.train.dpo.train_dpo."""
    from rlaif.train.dpo import train_dpo as _f
    return _f(data, cfg, **kwargs)


def train_grpo(prompts, cfg=None, **kwargs):
    """LoRA GRPO with judge / Python rewards (`rlaif train grpo`); see rlaif.train.grpo.train_grpo."""
    from rlaif.train.grpo import train_grpo as _f
    return _f(prompts, cfg, **kwargs)


def train_sft(data, cfg=None, **kwargs):
    """LoRA SFT on the best-judged response per prompt (`rlaif train sft`); see rlaif.train.sft.train_sft."""
    from rlaif.train.sft import train_sft as _f
    return _f(data, cfg, **kwargs)


def export(adapter, output, **kwargs):
    """Export an adapter, merged or alone (`rlaif export`); see rlaif.train.export.export."""
    from rlaif.train.export import export as _f
    return _f(adapter, output, **kwargs)


__all__ = [
    "__version__", "judge", "train_dpo", "train_grpo", "train_sft", "export", "load_rubric", "lint_rubric", "list_rubrics", "get_backend",
    "Completion", "GenParams", "Judgment",
    "RlaifError", "ConfigError", "RubricError", "TemplateError", "InputError", "BackendError", "MissingDependencyError",
]
