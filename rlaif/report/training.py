"""The training report: curves from a run's metrics.jsonl, with the run's settings and summary.

Why: training is where users most want pictures. `rlaif report OUT/` (a `rlaif train` output
folder) or `rlaif report OUT/metrics.jsonl` draws every logged curve that is there: loss, DPO's
reward margins and accuracy, chosen/rejected log-probs, GRPO's reward and KL, learning rate,
gradient norm. Settings come from the newest checkpoint's state.json (the flat config the run
used) and train_summary.json; both are optional (a killed run has metrics but no summary).
"""
from __future__ import annotations

import math
from pathlib import Path

from rlaif.errors import InputError
from rlaif.io import read_json
from rlaif.report.pages import cards, page, table
from rlaif.report.svg import esc, line_chart

# (title, metric keys drawn together, reference line)
CURVES = [
    ("loss", ("loss",), None),
    ("reward margin (chosen − rejected)", ("rewards/margins",), 0.0),
    ("preference accuracy", ("rewards/accuracies",), 0.5),
    ("implicit rewards", ("rewards/chosen", "rewards/rejected"), 0.0),
    ("log-probs", ("logps/chosen", "logps/rejected"), None),
    ("reward", ("reward",), None),
    ("reward spread in a group", ("reward_std",), None),
    ("KL to the reference", ("kl",), 0.0),
    ("share of groups with zero spread", ("frac_zero_std",), None),
    ("completion length", ("completion_length",), None),
    ("learning rate", ("lr",), None),
    ("gradient norm", ("grad_norm",), None),
]
SETTINGS = ("model", "max_steps", "epochs", "batch_size", "grad_accum", "learning_rate", "lr_scheduler",
            "warmup_steps", "beta", "loss_type", "label_smoothing", "num_generations", "temperature", "epsilon",
            "max_length", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "seed", "adapter")


def is_metrics_rows(rows: list) -> bool:
    """True for the rows of a metrics.jsonl written by `rlaif train` (a step and numbers)."""
    return bool(rows) and all(isinstance(r, dict) and isinstance(r.get("step"), int) for r in rows) and any(
        "loss" in r for r in rows)


def read_metrics(path: Path) -> list[dict]:
    from rlaif.io import iter_jsonl

    rows = []
    for n, v in iter_jsonl(path):
        if isinstance(v, InputError):
            raise v
        if not isinstance(v, dict) or not isinstance(v.get("step"), int):
            raise InputError(str(path), n, "step", "not a metrics row of `rlaif train` (needs an integer step)")
        rows.append(v)
    if not rows:
        raise InputError(str(path), None, None, "no metrics logged (the run stopped before its first step)")
    return rows


def run_folder_of(path: Path) -> Path:
    """The training output folder for a folder or a metrics.jsonl inside one."""
    return path if path.is_dir() else path.parent


def load_run(path: Path) -> dict:
    """{metrics, summary, config, folder} of a training run (summary/config None when missing)."""
    folder = run_folder_of(path)
    metrics_path = folder / "metrics.jsonl" if path.is_dir() else path
    if not metrics_path.exists():
        raise InputError(str(path), None, None, "no metrics.jsonl here: pass a `rlaif train` output folder")
    summary = config = None
    if (folder / "train_summary.json").is_file():       # the one reader: a bad file is an error naming it
        summary = read_json(folder / "train_summary.json")
    cks = sorted(folder.glob("checkpoint-*/state.json"), key=lambda p: int(p.parent.name.split("-")[1])
                 if p.parent.name.split("-")[1].isdigit() else -1)
    if cks:
        state = read_json(cks[-1])
        config = state.get("config") if isinstance(state, dict) else None
    return {"metrics": read_metrics(metrics_path), "summary": summary, "config": config, "folder": str(folder)}


def _series(rows: list[dict], key: str) -> list[tuple[float, float]]:
    return [(r["step"], float(r[key])) for r in rows
            if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]


def training_charts(rows: list[dict]) -> dict[str, str]:
    out = {}
    for title, keys, ref in CURVES:
        series = {k.split("/")[-1] if len(keys) > 1 else k: _series(rows, k) for k in keys}
        if any(series.values()):
            out[title] = line_chart(series, title, ref=ref, fmt=lambda v: f"{v:.3g}")
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def training_html(run: dict, source: str) -> str:
    rows, summary, config = run["metrics"], run["summary"] or {}, run["config"] or {}
    first, last = rows[0], rows[-1]
    b = [f"<h1>Training report: {esc(Path(run['folder']).name)}</h1>",
         f'<div class="meta">{esc(summary.get("kind", "training"))} · {len(rows)} steps logged · '
         f'model {esc(summary.get("model") or config.get("model") or "?")} · source {esc(source)}</div>']
    head = [(_fmt(last.get("loss")), "final loss", f"first {_fmt(first.get('loss'))}")]
    for key, label in (("rewards/accuracies", "preference accuracy"), ("rewards/margins", "reward margin"),
                       ("reward", "reward"), ("kl", "KL")):
        if key in last:
            head.append((_fmt(last[key]), label, f"first {_fmt(first.get(key))}"))
    if summary.get("seconds") is not None:
        head.append((f"{summary['seconds']}s", "time", f"{summary.get('tokens', '?')} tokens"))
    b.append(cards(head))
    if not summary:
        b.append('<div class="flag">⚠ no train_summary.json: the run did not finish (or this is a bare '
                 'metrics.jsonl); curves show what was logged</div>')
    charts = training_charts(rows)
    b.append('<h2>Curves</h2><div class="grid">' + "".join(charts.values()) + "</div>")
    settings = [[k, config[k]] for k in SETTINGS if k in config and config[k] not in (None, "")]
    if settings:
        b.append("<h2>Settings</h2>" + table(["setting", "value"], [[k, _fmt(v)] for k, v in settings]))
    if summary:
        flat = [[k, _fmt(v)] for k, v in summary.items() if not isinstance(v, (dict, list))]
        b.append("<h2>Summary</h2>" + table(["field", "value"], flat))
    return page(f"training {Path(run['folder']).name}", "".join(b))
