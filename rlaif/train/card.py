"""The adapter's model card (OUT/adapter/README.md): what a trained adapter is, filled in.

Why: peft writes an unfilled template ("[More Information Needed]" everywhere), so an adapter
handed to someone else says nothing about how it was made. rlaif knows all of it at the end of
a run: the base (the local folder the adapter loads offline, and the Hub id to name when
sharing), the data (path and content sha256), the judge and rubric@hash that labelled it (from
the dataset's rows or its rlaif_stats.json), the loss curve (first, last, best), the settings
and the command. The front matter uses the Hub's keys (base_model, library_name, tags), so a
pushed adapter links to its base model.
"""
from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from rlaif.journal import content_hash

DATASET_STATS = "rlaif_stats.json"   # written by `rlaif pairs` next to its dataset


def data_provenance(data: str | None) -> dict:
    """{path, sha256, judges, rubrics} of the training data; fields unknown are None/empty."""
    out: dict = {"path": data, "sha256": None, "judges": [], "rubrics": []}
    if not data or data == "<rows>":
        return out
    p = Path(data)
    if not p.exists():
        return out
    out["sha256"] = content_hash(p)
    stats = p / DATASET_STATS
    if stats.is_file():
        try:
            meta = json.loads(stats.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        prov = meta.get("provenance") or {}
        out["judges"] = sorted(str(j) for j in prov.get("judges") or [] if j)
        out["rubrics"] = sorted(str(r) for r in prov.get("rubrics") or [] if r)
    if not out["judges"] and p.is_file():
        from rlaif.io import iter_jsonl

        judges: set[str] = set()
        rubrics: set[str] = set()
        for _n, row in iter_jsonl(p):
            if isinstance(row, dict):
                judges.update(x for x in str(row.get("judge") or "").split(",") if x)
                rubrics.update(x for x in str(row.get("rubric") or "").split(",") if x)
        out["judges"], out["rubrics"] = sorted(judges), sorted(rubrics)
    return out


def loss_curve(metrics_path: Path) -> dict:
    """First, last and lowest loss (with its step) and the number of logged steps."""
    rows = []
    if metrics_path.exists():
        for line in metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                m = json.loads(line)
            except ValueError:
                continue
            if isinstance(m.get("loss"), (int, float)) and math.isfinite(m["loss"]):
                rows.append(m)
    if not rows:
        return {"steps": 0}
    best = min(rows, key=lambda m: m["loss"])
    return {"steps": len(rows), "first": rows[0]["loss"], "last": rows[-1]["loss"],
            "min": best["loss"], "min_step": best["step"]}


def render_card(*, base_path: str, upstream: str | None, kind: str, data: dict, curve: dict, settings: dict,
                final: dict, command: str) -> str:
    """The README.md text (pure: every input given)."""
    from rlaif.train.checks import significant

    fm = ["---", "library_name: peft", "pipeline_tag: text-generation",
          "tags: [rlaif, lora, " + kind + "]"]
    if upstream:
        fm.append(f"base_model: {upstream}")
    fm.append("---")
    lines = [*fm, "", f"# LoRA adapter ({kind.upper()}) trained with rlaif", "",
             "## Base model", "",
             f"- loads from: `{base_path}` (recorded as `base_model_name_or_path`; resolves offline on this machine)",
             f"- Hub id (to share): `{upstream}`" if upstream else "- Hub id: none (a local model)",
             "", "## Data", "",
             f"- path: `{data.get('path')}`", f"- sha256: `{data.get('sha256')}`",
             f"- judge: {', '.join(data.get('judges') or []) or 'unknown'}",
             f"- rubric@hash: {', '.join(data.get('rubrics') or []) or 'unknown'}",
             "", "## Training", ""]
    if curve.get("steps"):
        c = significant(curve)
        lines.append(f"- loss: {c['first']} at the first step → {c['last']} at the last "
                     f"({c['steps']} steps logged; lowest {c['min']} at step {c['min_step']})")
    else:
        lines.append("- loss: no steps logged")
    if final:
        lines.append("- final metrics: " + ", ".join(f"{k} {v}" for k, v in significant(final).items()
                                                       if k not in ("step", "elapsed_s")))
    lines += ["", "Settings:", "", "```json", json.dumps(significant(settings), indent=2, default=str), "```",
              "", "Command:", "", "```", command, "```", "",
              "## Use", "", "```python", "from peft import AutoPeftModelForCausalLM",
              "model = AutoPeftModelForCausalLM.from_pretrained('PATH/TO/THIS/FOLDER')", "```",
              "Before sharing, point `base_model_name_or_path` in adapter_config.json at the Hub id above "
              "(`rlaif export --base HUB_ID`).", ""]
    return "\n".join(lines)


def write_adapter_card(adapter_dir: Path, cfg, kind: str, metrics_path: Path, summary: dict) -> None:
    """Fill OUT/adapter/README.md at the end of a run (replacing peft's template)."""
    from rlaif.models import upstream_id

    adapter_dir = Path(adapter_dir)
    try:
        base_path = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))[
            "base_model_name_or_path"]
    except (OSError, ValueError, KeyError):
        base_path = cfg.model
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("output_dir", "progress", "rewards")}
    text = render_card(base_path=base_path, upstream=upstream_id(cfg.model), kind=kind,
                       data=data_provenance(summary.get("data")), curve=loss_curve(Path(metrics_path)),
                       settings=settings, final=summary.get("final") or {},
                       command=" ".join(shlex.quote(a) for a in ["rlaif", *sys.argv[1:]])
                       if Path(sys.argv[0]).name in ("rlaif", "__main__.py") else shlex.join(sys.argv))
    (adapter_dir / "README.md").write_text(text, encoding="utf-8")
