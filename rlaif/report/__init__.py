"""`rlaif report`: one self-contained HTML file (and optionally a PNG) for a result.

The package: svg.py (the charts), pages.py (a renderer per result kind), training.py (the
training report), png.py (the Chromium screenshot); this file reads the input, picks the page
and writes it atomically.

Why hand-built inline SVG: the report must open anywhere, offline, years later: no network, no
JavaScript, no plotting library to install (matplotlib is not a dependency). A handful of small
chart functions below (bars, histogram, heatmap, calibration, interval plot) is all it needs.
The PNG is a screenshot of a compact summary page taken by headless Chromium (the one
rasteriser we can count on for HTML+SVG; Debian: `apt-get install chromium`).

Inputs it understands:
- a rubric-test result (`rlaif rubric test -o RESULT.json`): the full report;
- a rubric diff (`rlaif rubric diff -o DIFF.json`): changes with CIs and disagreeing items;
- a judged JSONL (`rlaif judge -o judged.jsonl`): score / preference histograms, position
  consistency, first-position and length preferences, unscored reasons, examples;
- an eval report (`rlaif eval -o EVAL.json`, schema rlaif.eval/1): win rate and the alignment
  tax (capability and refusal changes) with their CIs, base vs adapter bars, and the items where
  the adapter lost, changed its refusal, or changed its capability answer;
- a training run (`rlaif train -o OUT`: the folder, its metrics.jsonl or train_summary.json):
  loss, reward margins and accuracy, log-probs, GRPO reward and KL, learning rate and gradient
  norm curves, with the run's settings (training.py);
- anything else is an error naming the kinds above (a page of guesses would look like a result).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rlaif.errors import InputError
from rlaif.report.pages import eval_html, judged_html, rubric_diff_html, rubric_test_html, summary_html
from rlaif.report.png import chromium_binary, run_chromium, screenshot
from rlaif.report.svg import bar_chart, calibration_plot, heatmap, histogram, interval_plot, line_chart

__all__ = ["report", "render", "chromium_binary", "run_chromium", "screenshot", "bar_chart", "calibration_plot",
           "heatmap", "histogram", "interval_plot", "line_chart"]


KNOWN = ("a rubric-test RESULT.json, a rubric diff JSON, an eval report JSON (rlaif.eval/1), a judged JSONL, "
         "or a training output folder / its metrics.jsonl / train_summary.json")
TRAIN_KINDS = ("dpo", "grpo", "sft")


def _unknown(p: Path, what: str) -> InputError:
    return InputError(str(p), None, None, f"not a result rlaif can report on ({what}); `rlaif report` reads {KNOWN}")


# the top-level fields each result kind's page reads (checked first, all reported at once)
REQUIRED = {
    "rubric-test result": ("rubric", "judge", "gold", "settings", "metrics", "headline", "baselines", "n", "scored",
                           "coverage", "unscored", "confusion", "calibration", "histograms", "items"),
    "rubric diff": ("old", "new", "changes", "items_compared", "disagreements", "disagreement_summary"),
    "eval report": ("settings", "judge", "rubric", "win_rate", "capability", "refusal", "items"),
}


def _guarded(p: Path, kind: str, fn, *args) -> str:
    """Run a page renderer; a result with a missing or malformed field is one clear error naming it."""
    obj = args[0]
    missing = [f for f in REQUIRED.get(kind, ()) if isinstance(obj, dict) and f not in obj]
    if missing:
        raise InputError(str(p), None, missing[0], f"missing from this {kind}" + (
            f" (also missing: {', '.join(missing[1:])})" if missing[1:] else "")
            + "; the file is incomplete or from another tool")
    try:
        return fn(*args)
    except KeyError as e:
        raise InputError(str(p), None, str(e.args[0]) if e.args else None,
                         f"missing from this {kind} (the file is incomplete or from another tool)") from None
    except (TypeError, IndexError, AttributeError, ValueError) as e:
        raise InputError(str(p), None, None, f"a malformed {kind}: {e}") from None


def render(input: str | Path) -> tuple[str, dict | None]:
    """(html, parsed result or None) for any supported input file or training folder."""
    from rlaif.report.training import is_metrics_rows, load_run, training_html

    p = Path(input)
    if not p.exists():
        raise InputError(str(p), None, None, "file not found")
    if p.is_dir():
        if not (p / "metrics.jsonl").exists():
            raise _unknown(p, "a folder without metrics.jsonl")
        return _guarded(p, "training run", training_html, load_run(p), str(p)), None
    if p.suffix == ".jsonl":
        from rlaif.io import iter_objects

        rows = [v for _, v in iter_objects(p)]
        if not rows:
            raise InputError(str(p), None, None, "file is empty")
        if is_metrics_rows(rows):
            return _guarded(p, "training run", training_html, load_run(p), str(p)), None
        if not any("judge" in r or "rubric" in r for r in rows):
            raise _unknown(p, "JSONL rows without a judge or rubric field, so not judged rows")
        return _guarded(p, "judged file", judged_html, rows, str(p)), None
    from rlaif.io import read_json

    obj = read_json(p)          # the one reader: UTF-8, BOM, folders, NaN, surrogates
    if not isinstance(obj, dict):
        raise InputError(str(p), None, None, "expected a JSON object")
    if obj.get("kind") == "rubric_test":
        from rlaif.gold import check_result

        check_result(obj, str(p))        # names the missing field (issue 15.16)
        return _guarded(p, "rubric-test result", rubric_test_html, obj), obj
    if obj.get("kind") == "rubric_diff":
        return _guarded(p, "rubric diff", rubric_diff_html, obj), obj
    if str(obj.get("schema", "")).startswith("rlaif.eval/"):
        return _guarded(p, "eval report", eval_html, obj, str(p)), obj
    if obj.get("kind") in TRAIN_KINDS and "steps" in obj and (p.parent / "metrics.jsonl").exists():
        return _guarded(p, "training run", training_html, load_run(p.parent), str(p)), None
    kind = obj.get("kind") or obj.get("schema")
    raise _unknown(p, f"kind '{kind}'" if kind else "a JSON object with no kind or schema field")


def report(input: str | Path, output: str | Path, *, png: str | Path | None = None) -> dict:
    """Write a self-contained HTML report of `input` to `output` (atomically); with `png`, also a
    summary image rendered by headless Chromium. Returns {"html": path, "png": path or None}."""
    from rlaif.journal import check_output

    check_output(output, inputs=[input])      # a folder or the input as -o: refused before any work
    text, obj = render(input)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    result = {"html": str(out), "png": None}
    if png:
        summary = summary_html(obj) if obj else None
        with tempfile.TemporaryDirectory() as d:
            src = Path(d) / "summary.html"
            src.write_text(summary or text, encoding="utf-8")
            screenshot(src, png, width=1300, height=1000 if summary else 1400)
        result["png"] = str(png)
    return result
