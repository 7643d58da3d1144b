"""Testing a rubric against human labels: `rlaif rubric test` and `rlaif rubric diff`.

A rubric is only as good as its agreement with people. `rubric_test` runs a judge with a rubric
over a gold set, turns each verdict into a label the way documented below, and reports agreement
(accuracy, Cohen's κ, weighted κ, Spearman), biases (position, length), a confusion matrix,
calibration and bootstrap CIs, next to the trivial baselines a reader needs to judge the numbers.
`rubric_diff` does that for two versions of a rubric on the same items and reports each change
with a paired bootstrap CI, plus the items on which the two versions disagree.

Gold sets (JSONL, one item a line; other fields are kept for the report but never shown to the judge):
The human label is read from `gold`, `human` or `label` (the first present) and normalised by
rlaif.judging.aggregate.human_label, the reading `--aggregate weighted` jury weights share.
- pairwise: `prompt`, `response_a`, `response_b`, `human` in a | b | tie.
- absolute: `prompt`, `response`, `human` = a score on the rubric's scale, or a label name that the
  rubric's `labels:` map sends to a scale point (over_refusal: full_refusal -> 1 ... full_compliance -> 3).

How verdicts become labels (rlaif.agreement):
- pairwise: p_a is P(A better) averaged over both presentation orders. A verdict that flips when A
  and B swap is a tie (MT-Bench's convention); with `tie_margin` > 0, |p_a - 0.5| <= tie_margin
  is a tie too. "Accuracy without ties" instead forces a choice (p_a > 0.5 -> a) on the items
  people did not call a tie.
- absolute: the expected score rounded to the nearest scale point (half up), or with
  `score_to_label="argmax"` the most probable point. Spearman uses the unrounded expected score.
Unscored verdicts (a parse error, an API error...) are left out of every metric, counted by
reason, and `coverage` (scored / items) is reported so a rubric cannot look good by failing.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from rlaif import agreement as ag
from rlaif.errors import ConfigError, InputError, Problem, RlaifError
from rlaif.journal import check_output, content_hash, write_json_atomic
from rlaif.judging.aggregate import GOLD_FIELDS, human_label
from rlaif.rubrics import Rubric, load_rubric
from rlaif.ties import TIE_MARGIN, check_tie_margin, pair_label
from rlaif.ties import describe as describe_tie_rule

RESULT_KIND = "rubric_test"
EXCERPT = 400          # characters of each text kept per item in the result, for the report's examples


# ---------------------------------------------------------------------------------------------
# Gold sets
# ---------------------------------------------------------------------------------------------
def load_gold(path: str | Path, rubric: Rubric) -> tuple[list[dict], str]:
    """Read and validate a gold set. Returns (rows, mode); each row gains `_human`, the human label
    as the metrics use it (a/b/tie, or an int scale point). InputError names file, line and field."""
    from rlaif.io import check_row, infer_mode, iter_objects

    path = str(path)
    rows, mode = [], None
    seen: dict[str, int] = {}               # id -> line: `rubric diff` pairs items by id
    for n, value in iter_objects(path):
        m = infer_mode(value)
        if m == "rank":
            raise InputError(path, n, "responses",
                             "rank rows are not supported in gold sets; use pairwise or absolute rows")
        mode = mode or m
        if m != mode:
            raise InputError(path, n, None, f"a {m} row in a {mode} gold set (the first row decides the mode)")
        check_row(value, path, n, mode, rubric.reference == "required")
        if "id" in value:
            if str(value["id"]) in seen:
                raise InputError(path, n, "id",
                                 f"duplicate id {value['id']!r} (first on line {seen[str(value['id'])]})")
            seen[str(value["id"])] = n
        h = human_label(value, mode, rubric, path, n)
        if h is None:
            raise InputError(path, n, "human", "missing (the human label of this item; "
                                               f"read from the first of {', '.join(GOLD_FIELDS)} present)")
        value["_human"] = h
        rows.append(value)
    if not rows:
        raise InputError(path, None, None, "file is empty: expected one gold item per line")
    if mode not in rubric.modes:
        raise RlaifError(f"{path} is a {mode} gold set but rubric '{rubric.name}' supports only "
                         f"{', '.join(rubric.modes)}")
    return rows, mode


def _subset(rows: list[dict], limit: int | None, seed: int) -> list[dict]:
    """A seeded random subset of `limit` rows, kept in file order (the first N rows of a file are
    often one category; a spread sample is more representative)."""
    if not limit or limit >= len(rows):
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in keep]


def _sha256(path) -> str:
    return content_hash(path)


def _cut(s: str | None) -> str | None:
    return s if s is None or len(s) <= EXCERPT else s[:EXCERPT] + "…"


# ---------------------------------------------------------------------------------------------
# Metrics over items (pure: `items` are the per-item dicts stored in a result)
# ---------------------------------------------------------------------------------------------
def _pairwise_metrics() -> dict[str, Callable[[list[dict]], float | None]]:
    h = lambda it: [x["human"] for x in it]          # noqa: E731
    j = lambda it: [x["judge"] for x in it]          # noqa: E731
    return {
        "kappa": lambda it: ag.cohen_kappa(h(it), j(it), labels=ag.PAIR_LABELS),
        "accuracy": lambda it: ag.accuracy(h(it), j(it)),
        "accuracy_no_ties": lambda it: ag.accuracy_no_ties(h(it), [x["p_a"] for x in it]),
        "agreement_both_decided": lambda it: ag.agreement_both_decided(h(it), j(it)),
        "kappa_linear": lambda it: ag.cohen_kappa(h(it), j(it), weights="linear", labels=ag.PAIR_LABELS),
        "position_consistency": lambda it: ag.position_consistency([x.get("consistent") for x in it]),
        "first_position_rate": lambda it: ag.first_position_rate([x.get("orders") for x in it]),
        "mean_p_first": lambda it: ag.mean_first_probability([x.get("orders") for x in it]),
        "judge_a_rate": lambda it: ag.a_rate(j(it)),
        "human_a_rate": lambda it: ag.a_rate(h(it)),
        "judge_prefers_longer": lambda it: ag.prefers_longer_rate(j(it), [x["len_a"] for x in it],
                                                                  [x["len_b"] for x in it]),
        "human_prefers_longer": lambda it: ag.prefers_longer_rate(h(it), [x["len_a"] for x in it],
                                                                  [x["len_b"] for x in it]),
        "length_bias": lambda it: _gap(
            ag.prefers_longer_rate(j(it), [x["len_a"] for x in it], [x["len_b"] for x in it]),
            ag.prefers_longer_rate(h(it), [x["len_a"] for x in it], [x["len_b"] for x in it])),
    }


def _gap(judge_rate, human_rate):
    return None if judge_rate is None or human_rate is None else judge_rate - human_rate


def _absolute_metrics(points: list[int]) -> dict[str, Callable[[list[dict]], float | None]]:
    h = lambda it: [x["human"] for x in it]          # noqa: E731
    j = lambda it: [x["judge"] for x in it]          # noqa: E731
    return {   # κ over the whole scale, so an unused point still counts in the weighted distances
        "kappa_quadratic": lambda it: ag.cohen_kappa(h(it), j(it), weights="quadratic", labels=points),
        "kappa": lambda it: ag.cohen_kappa(h(it), j(it), labels=points),
        "kappa_linear": lambda it: ag.cohen_kappa(h(it), j(it), weights="linear", labels=points),
        "accuracy": lambda it: ag.accuracy(h(it), j(it)),
        "spearman": lambda it: ag.spearman(h(it),
                                           [x["score"] for x in it]) if "score" in (it[0] if it else {}) else None,
        "mae": lambda it: ((sum(abs(x["score"] - x["human"]) for x in it) / len(it))
                           if it and "score" in it[0] else None),
        "judge_mean": lambda it: (sum(x["score"] for x in it) / len(it)) if it and "score" in it[0] else None,
        "human_mean": lambda it: (sum(x["human"] for x in it) / len(it)) if it else None,
    }


METRIC_DOCS = {
    "kappa": "Cohen's κ (chance-corrected agreement; 0 = chance, 1 = perfect)",
    "kappa_linear": "weighted κ, linear weights (ordinal: near misses cost less)",
    "kappa_quadratic": "weighted κ, quadratic weights (the usual ordinal agreement statistic)",
    "accuracy": "exact agreement with the human label (ties are a label of their own)",
    "accuracy_no_ties": "accuracy on items people did not call a tie, judge forced to choose",
    "agreement_both_decided": "agreement where neither side said tie (MT-Bench's 'w/o tie')",
    "spearman": "Spearman ρ between human score and the judge's expected score",
    "mae": "mean absolute error of the expected score, in scale points",
    "position_consistency": "share of items whose verdict survives swapping A and B",
    "first_position_rate": "single-order verdicts picking whichever was shown first (0.5 = unbiased)",
    "mean_p_first": "mean P(first shown is better) over single-order verdicts",
    "judge_a_rate": "final verdicts preferring response_a (compare with human_a_rate)",
    "human_a_rate": "human labels preferring response_a",
    "judge_prefers_longer": "P(judge prefers the longer response)",
    "human_prefers_longer": "P(humans prefer the longer response)",
    "length_bias": "judge_prefers_longer - human_prefers_longer (0 = no more length bias than people)",
    "judge_mean": "mean expected score of the judge",
    "human_mean": "mean human score",
}

HEADLINE = {"pairwise": "kappa", "absolute": "kappa_quadratic"}
BIAS_MIN_EFFECT = 0.05     # a bias is flagged when its CI excludes "none" *and* it is at least this big:
                           # on thousands of items a 1-point drift is "significant" but harmless


def flags(metrics: dict, coverage: float | None, judge_labels: list | None = None) -> list[str]:
    """Plain-language warnings a reader should see first."""
    out = []
    used = sorted({str(x) for x in judge_labels or []})
    if len(judge_labels or []) >= 10 and len(used) == 1:
        out.append(f"the judge gave every scored item the same label ({used[0]}): it does not tell the items apart, "
                   "so its κ is 0 by construction")

    def off(name, centre):
        m = metrics.get(name) or {}
        v, ci = m.get("value"), m.get("ci")
        return v is not None and ci is not None and not ci[0] <= centre <= ci[1] and abs(v - centre) >= BIAS_MIN_EFFECT

    if off("first_position_rate", 0.5) or off("mean_p_first", 0.5):
        v, p = metrics["first_position_rate"]["value"], metrics["mean_p_first"]["value"]
        out.append(f"position bias: single-order verdicts pick the first-shown response {v:.0%} of the time, "
                   f"mean P(first is better) {p:.0%} (unbiased: 50%); judging both orders (the default) cancels "
                   f"it in the final verdict")
    if off("length_bias", 0.0):
        v = metrics["length_bias"]["value"]
        out.append(f"length bias: the judge prefers the longer response {abs(v):.0%} "
                   f"{'more' if v > 0 else 'less'} often than people do")
    if coverage is not None and coverage < 0.95:
        out.append(f"only {coverage:.0%} of the items were scored; see 'unscored' for the reasons")
    return out


def metric_fns(mode: str, labels: list) -> dict[str, Callable]:
    """name -> metric(items) for `mode`; `labels` are the label categories (the scale's points)."""
    return _pairwise_metrics() if mode == "pairwise" else _absolute_metrics(list(labels))


def compute_metrics(items: list[dict], mode: str, labels: list, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Every metric of `mode` on the scored items, each with a bootstrap 95% CI."""
    out = {}
    for name, fn in metric_fns(mode, labels).items():
        value = fn(items)
        ci = ag.bootstrap_ci(fn, items, n_boot=n_boot, seed=seed) if value is not None and n_boot else None
        out[name] = {"value": value, "ci": ci, "n": len(items)}
    return out


def baselines(items: list[dict], mode: str, labels: list) -> dict:
    """Trivial judges on the same items. Pairs: always the longer response (tie on equal length),
    always A. Absolute: always the majority human label (it knows the gold distribution, so it
    is the strongest constant answer)."""
    out = {}
    if mode == "pairwise":
        def longer(x):
            return "a" if x["len_a"] > x["len_b"] else ("b" if x["len_a"] < x["len_b"] else "tie")
        variants = {"always_longer": lambda x: ({"a": 1.0, "b": 0.0, "tie": 0.5}[longer(x)], longer(x)),
                    "always_a": lambda x: (1.0, "a")}
        for name, f in variants.items():
            fake = [dict(x, p_a=f(x)[0], judge=f(x)[1]) for x in items]
            out[name] = {k: metric_fns(mode, labels)[k](fake) for k in ("kappa", "accuracy", "accuracy_no_ties",
                                                                 "agreement_both_decided")}
    else:
        if not items:
            return {}
        maj = Counter(x["human"] for x in items).most_common(1)[0][0]
        fake = [dict(x, judge=maj, score=float(maj)) for x in items]
        out[f"majority_class ({maj})"] = {k: metric_fns(mode, labels)[k](fake) for k in ("kappa_quadratic", "kappa",
                                                                                         "accuracy", "mae")}
    return out


def calibration(items: list[dict], mode: str) -> dict:
    """Pairwise: P(A better) against how often people preferred A (items they did not call a tie).
    Absolute: the judge's probability for its most likely point against how often that point is
    the human label (the reliability of its top choice)."""
    if mode == "pairwise":
        xs = [x for x in items if x["human"] != "tie"]
        c = ag.calibration_curve([x["human"] == "a" for x in xs], [x["p_a"] for x in xs])
        c["x_label"], c["y_label"] = "judge P(A better)", "humans chose A"
        return c
    xs = [x for x in items if x.get("probs")]
    c = ag.calibration_curve([ag.argmax_label(x["probs"]) == x["human"] for x in xs],
                             [max(x["probs"].values()) for x in xs])
    c["x_label"], c["y_label"] = "judge P(top score)", "top score = human label"
    return c


def summarize(items_all: list[dict], mode: str, labels: list, *, n_boot: int, seed: int) -> dict:
    """Metrics, baselines, confusion, calibration and histograms from the per-item records."""
    scored = [x for x in items_all if x.get("error") is None]
    metrics = compute_metrics(scored, mode, labels, n_boot=n_boot, seed=seed)
    coverage = len(scored) / len(items_all) if items_all else None
    return {
        "n": len(items_all),
        "scored": len(scored),
        "coverage": coverage,
        "unscored": dict(Counter(x["error"] for x in items_all if x.get("error") is not None)),
        "headline": HEADLINE[mode],
        "metrics": metrics,
        "flags": flags(metrics, coverage, [x["judge"] for x in scored]),
        "baselines": baselines(scored, mode, labels),
        "confusion": {"labels": labels, "rows": "human", "columns": "judge",
                      "matrix": ag.confusion([x["human"] for x in scored], [x["judge"] for x in scored], labels)},
        "calibration": calibration(scored, mode),
        "histograms": _histograms(scored, mode, labels),
    }


def _histograms(items: list[dict], mode: str, labels: list) -> dict:
    hist = {"human": {str(k): sum(x["human"] == k for x in items) for k in labels},
            "judge": {str(k): sum(x["judge"] == k for x in items) for k in labels}}
    if mode == "pairwise":
        edges = [i / 10 for i in range(11)]
        hist["p_a"] = {"edges": edges, "counts": [sum(1 for x in items if (edges[i] <= x["p_a"] < edges[i + 1])
                                                       or (i == 9 and x["p_a"] == 1.0)) for i in range(10)]}
    else:
        lo, hi = min(labels), max(labels)
        n_bins = 2 * (hi - lo) + 1          # bins centred on the points and the half points
        edges = [lo - 0.25 + 0.5 * i for i in range(n_bins + 1)]
        hist["score"] = {"edges": edges, "counts": [sum(1 for x in items if edges[i] <= x["score"] < edges[i + 1]
                                                         or (i == n_bins - 1 and x["score"] == edges[-1]))
                                                    for i in range(n_bins)]}
    return hist


# ---------------------------------------------------------------------------------------------
# Running a judge on a gold set
# ---------------------------------------------------------------------------------------------
def _judge_input(row: dict, mode: str) -> dict:
    """Only what the judge may see: never the human label, votes or the models' names."""
    keep = ("prompt", "response_a", "response_b") if mode == "pairwise" else ("prompt", "response")
    out = {k: row[k] for k in keep}
    if row.get("reference") is not None:
        out["reference"] = row["reference"]
    return out


def _item(i: int, row: dict, verdict: dict, mode: str, rubric: Rubric, *, tie_margin: float,
          score_to_label: str) -> dict:
    it = {"id": row.get("id", i), "human": row["_human"], "error": verdict.get("error"),
          "prompt": _cut(row["prompt"])}
    if isinstance(row["human"], str) and mode == "absolute":
        it["human_label"] = row["human"]
    if verdict.get("error"):
        it["detail"] = verdict.get("detail")
    if mode == "pairwise":
        it.update(len_a=len(row["response_a"]), len_b=len(row["response_b"]),
                  response_a=_cut(row["response_a"]), response_b=_cut(row["response_b"]))
        if not verdict.get("error"):
            it.update(p_a=verdict["p_a"], consistent=verdict.get("consistent"), orders=verdict.get("orders"),
                      judge=pair_label(verdict["p_a"], verdict.get("consistent"), tie_margin))
    else:
        it.update(response=_cut(row["response"]))
        if not verdict.get("error"):
            lo, hi = rubric.scale.min, rubric.scale.max
            probs = verdict.get("probs")
            label = (ag.argmax_label(probs) if score_to_label == "argmax" and probs
                     else ag.score_label(verdict["score"], lo, hi))
            it.update(score=verdict["score"], probs=probs, judge=label)
    if verdict.get("rationale"):
        it["rationale"] = _cut(verdict["rationale"])
    return it


def check_settings(*, score_to_label: str = "round", tie_margin: float = TIE_MARGIN, limit: int | None = None,
                   n_boot: int = 0) -> None:
    """A rubric test's own settings, all at once, before any rubric, gold row or request (issue 15.24)."""
    problems = []
    if score_to_label not in ("round", "argmax"):
        problems.append(Problem("score_to_label", f"must be 'round' or 'argmax' (got {score_to_label!r})"))
    try:
        check_tie_margin(tie_margin)         # the one tie rule (rlaif.ties)
    except RlaifError as e:
        problems.append(Problem("tie_margin", str(e)))
    if limit is not None and limit < 1:
        problems.append(Problem("limit", f"must be at least 1 (got {limit})"))
    if n_boot < 0:
        problems.append(Problem("n_boot", f"must be 0 (no CIs) or more (got {n_boot})"))
    if problems:
        raise ConfigError(problems, source="options")


def rubric_test(rubric: str | Rubric, gold: str | Path, *, judge=None, limit: int | None = None,
                output: str | Path | None = None, generative: bool = False, both_orders: bool = True,
                tie_margin: float = TIE_MARGIN, score_to_label: str = "round", n_boot: int = 1000, seed: int = 0,
                concurrency: int = 16, rubrics_dirs: list | None = None, prompts_dirs: list | None = None,
                progress: bool = False) -> dict:
    """Judge a gold set with `rubric` and measure agreement with the human labels.

    Returns the result dict (also written atomically to `output` as JSON): settings, every metric
    with a bootstrap 95% CI, baselines, confusion matrix, calibration, histograms, unscored counts
    by reason and the per-item records (for `rubric diff` and `rlaif report`)."""
    from rlaif.judge import judge as run_judge

    check_settings(score_to_label=score_to_label, tie_margin=tie_margin, limit=limit, n_boot=n_boot)
    if output:
        check_output(output, inputs=[gold])
    rub = rubric if isinstance(rubric, Rubric) else load_rubric(rubric, rubrics_dirs=rubrics_dirs,
                                                                prompts_dirs=prompts_dirs)
    rows, mode = load_gold(gold, rub)
    rows = _subset(rows, limit, seed)
    # Judge in order of length and map back: a batching backend (local) then pads each batch to a
    # similar length instead of to the longest of a random mix (about a third less compute here).
    inputs = [_judge_input(r, mode) for r in rows]
    order = sorted(range(len(inputs)), key=lambda i: sum(len(v) for v in inputs[i].values()))
    in_order, _summary = run_judge([inputs[i] for i in order], rub, judge=judge, mode=mode,
                                   generative=generative, both_orders=both_orders, concurrency=concurrency,
                                   prompts_dirs=prompts_dirs, progress=progress)
    verdicts: list[dict] = [None] * len(rows)  # type: ignore[list-item]
    for k, i in enumerate(order):
        verdicts[i] = in_order[k]
    items = [_item(i, r, v, mode, rub, tie_margin=tie_margin, score_to_label=score_to_label)
             for i, (r, v) in enumerate(zip(rows, verdicts))]
    labels = ag.PAIR_LABELS if mode == "pairwise" else rub.scale.points
    result = {
        "kind": RESULT_KIND,
        "format": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rubric": {"name": rub.name, "version": rub.version, "hash": rub.hash, "id": rub.id, "source": rub.source,
                   "scale": [rub.scale.min, rub.scale.max], "labels": rub.labels},
        "judge": verdicts[0]["judge"] if verdicts else str(judge),
        "method": verdicts[0].get("method") if verdicts else None,
        "gold": {"path": str(gold), "sha256": _sha256(gold), "mode": mode, "rows_in_file": None,
                 "rows_used": len(rows)},
        "settings": {"limit": limit, "seed": seed, "both_orders": both_orders, "generative": generative,
                     "tie_rule": describe_tie_rule(tie_margin, both_orders),
                     "tie_margin": tie_margin, "score_to_label": score_to_label, "n_boot": n_boot},
        **summarize(items, mode, labels, n_boot=n_boot, seed=seed),
        "items": items,
    }
    result["gold"]["rows_in_file"] = sum(1 for _ in open(gold, encoding="utf-8") if _.strip())
    if output:
        write_json(output, result)
    return result


def write_json(path: str | Path, obj: dict) -> None:
    """Write JSON atomically (temp file + rename), so a crash never leaves half a result."""
    write_json_atomic(path, obj, indent=1)


def load_result(path: str | Path) -> dict:
    """A saved rubric-test result; RlaifError naming the file if it is not one."""
    from rlaif.io import read_json

    obj = read_json(path)        # the one reader: missing, folder, not UTF-8, BOM, NaN, surrogates
    if not isinstance(obj, dict) or obj.get("kind") != RESULT_KIND:
        raise InputError(str(path), None, "kind", f"not a rubric-test result (expected kind: {RESULT_KIND}; "
                                                  "make one with `rlaif rubric test ... -o RESULT.json`)")
    check_result(obj, str(path))
    return obj


# What `rlaif report` and `rlaif rubric diff` read from a result (rubric_test writes all of them).
RESULT_FIELDS = ("rubric", "judge", "gold", "settings", "n", "scored", "coverage", "unscored", "headline",
                 "metrics", "baselines", "confusion", "calibration", "histograms", "items")
RESULT_GOLD_FIELDS = ("path", "sha256", "mode")


def check_result(obj: dict, path: str) -> None:
    """InputError naming the first missing field of a rubric-test result (issue 15.16: a result with
    missing fields crashed `rlaif report` with a KeyError)."""
    hint = " from this rubric-test result (make one with `rlaif rubric test ... -o RESULT.json`)"
    for name in RESULT_FIELDS:
        if name not in obj:
            raise InputError(path, None, name, "missing" + hint)
    if not isinstance(obj["gold"], dict):
        raise InputError(path, None, "gold", f"expected an object, got {type(obj['gold']).__name__}")
    for name in RESULT_GOLD_FIELDS:
        if name not in obj["gold"]:
            raise InputError(path, None, f"gold.{name}", "missing" + hint)
    if not isinstance(obj["items"], list):
        raise InputError(path, None, "items", f"expected a list, got {type(obj['items']).__name__}")


# ---------------------------------------------------------------------------------------------
# Two versions
# ---------------------------------------------------------------------------------------------
def rubric_diff(old: str | Rubric, new: str | Rubric, gold: str | Path | None = None, *,
                output: str | Path | None = None, n_boot: int = 1000, seed: int = 0, **test_kw) -> dict:
    """Compare two rubric versions on the same gold items. OLD/NEW are rubrics (run now, with the
    same judge, subset and seed) or saved rubric-test results (`*.json`, reused as they are).
    Each metric's change comes with a paired bootstrap 95% CI over the items both scored."""
    check_settings(n_boot=n_boot, **{k: test_kw[k] for k in ("score_to_label", "tie_margin", "limit") if k in test_kw})
    if output:
        check_output(output, inputs=[gold, old, new])

    def get(x):
        if isinstance(x, (str, Path)) and str(x).endswith(".json"):
            return load_result(x)
        if gold is None:
            raise RlaifError("--gold is required unless OLD and NEW are saved rubric-test results (.json)")
        return rubric_test(x, gold, n_boot=0, seed=seed, **test_kw)

    a, b = get(old), get(new)
    if a["gold"]["sha256"] != b["gold"]["sha256"]:
        raise RlaifError(f"the two results were measured on different gold files ({a['gold']['path']} vs "
                         f"{b['gold']['path']}); a diff needs the same items")
    if a["gold"]["mode"] != b["gold"]["mode"]:
        raise RlaifError("the two results are of different modes")
    mode = a["gold"]["mode"]
    by_id = {str(x["id"]): x for x in b["items"]}
    pairs = [(x, by_id[str(x["id"])]) for x in a["items"] if str(x["id"]) in by_id]
    both = [(x, y) for x, y in pairs if x.get("error") is None and y.get("error") is None]
    if not both:
        raise RlaifError("the two results share no item that both versions scored")
    olds, news = [x for x, _ in both], [y for _, y in both]
    changes = {name: paired_bootstrap(fn, olds, news, n_boot=n_boot, seed=seed)
               for name, fn in metric_fns(mode, a["confusion"]["labels"]).items()}
    disagree = []
    for x, y in both:
        if x["judge"] != y["judge"]:
            d = {"id": x["id"], "human": x["human"], "old": x["judge"], "new": y["judge"],
                 "prompt": x.get("prompt"), "better": ("new" if y["judge"] == x["human"] else
                                                       "old" if x["judge"] == x["human"] else "neither")}
            for k in ("p_a", "score"):
                if k in x:
                    d[f"old_{k}"], d[f"new_{k}"] = x[k], y[k]
            disagree.append(d)
    result = {
        "kind": "rubric_diff", "format": 1,
        "old": {k: a[k] for k in ("rubric", "judge", "settings", "headline")},
        "new": {k: b[k] for k in ("rubric", "judge", "settings", "headline")},
        "gold": a["gold"], "mode": mode, "headline": a["headline"],
        "items_compared": len(both), "items_only_one_scored": len(pairs) - len(both),
        "changes": changes, "disagreements": disagree,
        "disagreement_summary": dict(Counter(d["better"] for d in disagree)),
    }
    if output:
        write_json(output, result)
    return result


def paired_bootstrap(fn, olds, news, *, n_boot, seed):
    return ag.paired_bootstrap_diff(fn, olds, news, n_boot=n_boot, seed=seed)


# ---------------------------------------------------------------------------------------------
# Printing (rich)
# ---------------------------------------------------------------------------------------------
def _fmt(v, ci=None) -> str:
    if v is None:
        return "n/a"
    s = f"{v:.3f}"
    return s + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def print_result(res: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    con = console or Console()
    mode = res["gold"]["mode"]
    con.print(f"[bold]{res['rubric']['id']}[/] judged by [bold]{res['judge']}[/] ({res['method']}) on "
              f"{res['gold']['path']} ({mode}, {res['n']} of {res['gold']['rows_in_file']} items, "
              f"{res['scored']} scored, coverage {res['coverage']:.1%})")
    for f in res.get("flags", []):
        con.print(f"[bold red]warning[/]: {f}")
    if res["unscored"]:
        con.print("unscored: " + ", ".join(f"{k}: {v}" for k, v in sorted(res["unscored"].items())))
    t = Table(title="agreement with humans (95% bootstrap CI)")
    t.add_column("metric", no_wrap=True)
    t.add_column("judge", no_wrap=True)
    names = list(res["baselines"])
    for n in names:
        t.add_column(n)
    wide = con.width >= 150          # the meanings are also in the report and docs/rubrics.md
    if wide:
        t.add_column("meaning", style="dim")
    for name, m in res["metrics"].items():
        style = "bold" if name == res["headline"] else None
        base_cells = [_fmt(res["baselines"][b].get(name)) if name in res["baselines"][b] else "" for b in names]
        t.add_row(name, _fmt(m["value"], m["ci"]), *base_cells, *([METRIC_DOCS.get(name, "")] if wide else []),
                  style=style)
    con.print(t)
    conf = res["confusion"]
    ct = Table(title="confusion (rows: human, columns: judge)")
    ct.add_column("human \\ judge")
    for lab in conf["labels"]:
        ct.add_column(str(lab), justify="right")
    for lab, row in zip(conf["labels"], conf["matrix"]):
        ct.add_row(str(lab), *[str(v) for v in row])
    con.print(ct)
    cal = res["calibration"]
    if cal.get("ece") is not None:
        con.print(f"calibration: ECE {cal['ece']:.3f} over {cal['n']} items ({cal['x_label']} vs {cal['y_label']})")


def print_diff(res: dict, console=None, show: int = 10) -> None:
    from rich.console import Console
    from rich.table import Table

    con = console or Console()
    con.print(f"[bold]{res['old']['rubric']['id']}[/] -> [bold]{res['new']['rubric']['id']}[/] on "
              f"{res['gold']['path']}: {res['items_compared']} items scored by both")
    t = Table(title="change per metric (new - old, paired bootstrap 95% CI)")
    for c in ("metric", "old", "new", "delta", "95% CI", ""):
        t.add_column(c)
    for name, c in res["changes"].items():
        t.add_row(name, _fmt(c["old"]), _fmt(c["new"]), _fmt(c["delta"]),
                  f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]" if c["ci"] else "n/a",
                  "significant" if c["significant"] else "", style="bold" if name == res["headline"] else None)
    con.print(t)
    d = res["disagreements"]
    con.print(f"{len(d)} items where the versions disagree; closer to the human label: "
              + ", ".join(f"{k} {v}" for k, v in sorted(res["disagreement_summary"].items())))
    for x in d[:show]:
        con.print(f"  [{x['id']}] human={x['human']} old={x['old']} new={x['new']}  {str(x.get('prompt'))[:70]!r}")
