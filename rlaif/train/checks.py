"""Bounds on training options, steps from epochs, and warnings about degenerate data.

Why a module of its own: `--batch-size 0` or `--lora-r 0` used to surface as a traceback from
inside torch or peft after the model was loaded. Every trainer config (TrainConfig and its DPO,
GRPO, SFT subclasses, and LoraSettings) is checked here when it is built, every problem reported
at once (one ConfigError), before a model is loaded or a file is written. The bounds are a table
keyed by field name, so a subclass's fields (beta, num_generations, ...) are covered by the same
check and the pipeline's `train:` section gets the same errors as the CLI.

Why the data warnings: a dataset of one pair trains without complaint, repeating that pair for
every step; the user should hear that before trusting the adapter.
"""
from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from pathlib import Path

from rlaif.errors import ConfigError, Problem

# field -> (lowest allowed, inclusive?, highest allowed or None, what it means)
BOUNDS: dict[str, tuple[float, bool, float | None, str]] = {
    "max_steps": (1, True, None, "optimiser steps"),
    "batch_size": (1, True, None, "rows per micro-batch"),
    "grad_accum": (1, True, None, "micro-batches per step"),
    "learning_rate": (0, False, None, "learning rate"),
    "warmup_steps": (0, True, None, "warm-up steps"),
    "weight_decay": (0, True, None, "weight decay"),
    "max_grad_norm": (0, True, None, "gradient clipping norm (0: off)"),
    "max_length": (2, True, None, "tokens per prompt+completion"),
    "save_steps": (0, True, None, "checkpoint interval (0: only at the end)"),
    "log_every": (1, True, None, "log interval"),
    "save_total_limit": (1, True, None, "checkpoints kept (None: all)"),
    "epochs": (0, False, None, "passes over the data"),
    # DPO
    "beta": (0, True, None, "KL / preference strength"),
    "label_smoothing": (0, True, 0.5, "assumed share of flipped labels"),
    # GRPO
    "num_generations": (2, True, None, "completions per prompt (a group needs two to compare)"),
    "max_completion_length": (1, True, None, "generated tokens"),
    "temperature": (0, False, None, "sampling temperature"),
    "top_p": (0, False, 1, "nucleus sampling mass"),
    "epsilon": (0, False, None, "clip range"),
    "epsilon_high": (0, False, None, "upper clip range"),
    "num_iterations": (1, True, None, "optimiser steps per generated batch"),
    # LoRA
    "r": (1, True, None, "LoRA rank"),
    "alpha": (0, False, None, "LoRA alpha"),
    "dropout": (0, True, 1, "LoRA dropout"),
}
FEW_EPOCHS = 3           # more passes than this over a preference set mostly memorises it
TINY_DATASET = 16        # rows; below this a run mostly repeats the same examples


def config_problems(cfg, prefix: str = "") -> list[Problem]:
    """Every out-of-bounds field of a trainer config dataclass (nested ones too, e.g. `lora.r`)."""
    out: list[Problem] = []
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        where = f"{prefix}{f.name}"
        if is_dataclass(v) and not isinstance(v, type):
            out += config_problems(v, prefix=f"{where}.")
            continue
        if f.name not in BOUNDS or v is None or isinstance(v, bool):
            continue
        lo, inclusive, hi, what = BOUNDS[f.name]
        if not isinstance(v, (int, float)):
            out.append(Problem(where, f"expected a number ({what}), got {v!r}"))
        elif not math.isfinite(v) or (v < lo if inclusive else v <= lo) or (hi is not None and v > hi):
            rng = f"{'≥' if inclusive else '>'} {lo:g}" + (f" and ≤ {hi:g}" if hi is not None else "")
            out.append(Problem(where, f"{v!r} is out of range: {what} must be {rng}"))
    return out


def check_config(cfg) -> None:
    """Raise one ConfigError listing every out-of-bounds option of `cfg`."""
    problems = config_problems(cfg)
    out = getattr(cfg, "output_dir", None)
    if out is not None and Path(out).exists() and not Path(out).is_dir():     # e.g. -o the data file (15.6)
        problems.append(Problem("output_dir", f"{out} is a file; give a folder to write the adapter in"))
    if problems:
        raise ConfigError(problems, source="training options")


def steps_for_epochs(n_rows: int, epochs: float, rows_per_step: int) -> int:
    """Optimiser steps that cover `epochs` passes over `n_rows` rows (at least one step)."""
    return max(1, math.ceil(epochs * n_rows / max(1, rows_per_step)))


def data_warnings(n_rows: int, max_steps: int, rows_per_step: int, what: str = "rows") -> list[str]:
    """Warnings for a run that mostly repeats its data: a tiny dataset, or many passes over it."""
    out = []
    if n_rows < TINY_DATASET:
        out.append(f"only {n_rows} {what} to train on: the run repeats them and mostly memorises; "
                   f"build more (more prompts, or a lower `pairs --min-margin`)")
    epochs = max_steps * rows_per_step / max(1, n_rows)
    if epochs > FEW_EPOCHS:
        out.append(f"{max_steps} steps × {rows_per_step} {what} per step = {epochs:.3g} passes over {n_rows} {what} "
                   f"(more than {FEW_EPOCHS}); pass --epochs or fewer --max-steps")
    return out


def significant(x, digits: int = 4):
    """A float rounded to `digits` significant digits (5e-05 stays 5e-05, 3.6e-07 is not 0.0);
    other values unchanged, nested dicts and lists rounded throughout."""
    if isinstance(x, dict):
        return {k: significant(v, digits) for k, v in x.items()}
    if isinstance(x, list):
        return [significant(v, digits) for v in x]
    if isinstance(x, float) and math.isfinite(x) and x != 0:
        return float(f"{x:.{digits}g}")
    return x


def format_summary(summary: dict) -> str:
    """The two console lines `rlaif train` prints at the end (numbers to 4 significant digits)."""
    import json

    if not summary:
        return ""
    final = significant(summary.get("final") or {})
    return (f"trained {summary.get('steps')} steps in {summary.get('seconds')}s -> {summary.get('adapter')}\n"
            f"final: {json.dumps(final)}")
