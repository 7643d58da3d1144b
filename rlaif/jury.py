"""A jury: several judges and/or rubrics per item, one aggregated verdict.

Why: single LLM judges have idiosyncratic biases; a panel of diverse judges agrees better with
humans than one large judge (Verga et al. 2024, "Replacing Judges with Juries"). A jury member is
one (judge, rubric) pair; `rlaif judge --judge A --judge B --rubric r1 --rubric r2` makes four.

Every member judges every row exactly as `rlaif judge` would (same Judge, same engine per backend,
so each provider keeps its own concurrency limit). Then, per row:

- mean      absolute: mean score (and mean distribution); pairwise: mean P(A); rank: mean Borda points.
- majority  absolute: the most common integer score (a tie: the mean of the tied scores);
            pairwise: a vote on the preferred response, P(A) = share of votes for A, "tie" when split;
            rank: Borda count (positional voting; a rank majority is not defined for n > 2).
- weighted  like mean, with each member weighted by its agreement with a gold set above chance:
            pairwise 2*accuracy-1 over gold rows labelled a/b (0 = coin flip); absolute the quadratic
            weighted kappa (scikit-learn). Negative agreement counts as 0; if every weight is 0 the
            jury refuses to run rather than average judges no better than chance.

Members that could not score a row are left out of that row's aggregate (each row lists every
member's verdict in `members`); a row is unscored only when no member scored it, with the most
common member reason as its `error`. Gold rows are ordinary input rows plus a label in `gold`,
`human` or `label` (the first present): "a"/"b" for pairwise ("tie" rows are skipped), a number
for absolute.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from rlaif.errors import ConfigError, RlaifError
from rlaif.records import Judgment

AGGREGATES = ("mean", "majority", "weighted")
GOLD_FIELDS = ("gold", "human", "label")


# ---------------------------------------------------------------------------------------------
# Pure aggregation
# ---------------------------------------------------------------------------------------------
def _member_row(v: Judgment, weight: float) -> dict:
    d = {"judge": v.judge, "rubric": v.rubric, "weight": weight}
    for k in ("score", "p_a", "preference", "ranking", "error"):
        if getattr(v, k) is not None:
            d[k] = getattr(v, k)
    return d


def aggregate(mode: str, verdicts: list[Judgment], how: str = "mean", weights: list[float] | None = None,
              name: str = "jury") -> Judgment:
    """One Judgment from the members' verdicts on one row (see the module docstring for the rules)."""
    if how not in AGGREGATES:
        raise RlaifError(f"unknown aggregate '{how}'; choose one of {', '.join(AGGREGATES)}")
    weights = list(weights) if weights is not None else [1.0] * len(verdicts)
    if how != "weighted":
        weights = [1.0] * len(verdicts)
    rubric = "+".join(dict.fromkeys(v.rubric for v in verdicts))
    members = [_member_row(v, w) for v, w in zip(verdicts, weights)]
    ok = [(v, w) for v, w in zip(verdicts, weights) if v.error is None and w > 0]
    if not ok:
        errs = Counter(v.error for v in verdicts if v.error)
        code = errs.most_common(1)[0][0] if errs else "no_weight"
        detail = "; ".join(f"{v.judge} {v.rubric}: {v.error}" for v in verdicts if v.error) or "every member has weight 0"
        return Judgment(mode, name, rubric, error=code, detail=f"no jury member scored this row ({detail})",
                        members=members)
    total = sum(w for _, w in ok)
    j = Judgment(mode, name, rubric, members=members)
    if mode == "absolute":
        if how == "majority":
            votes = Counter(round(v.score) for v, _ in ok)
            top = max(votes.values())
            tied = [s for s, c in votes.items() if c == top]
            j.score = sum(tied) / len(tied)
            j.probs = {str(s): c / len(ok) for s, c in sorted(votes.items())}
        else:
            j.score = sum(w * v.score for v, w in ok) / total
            keys = sorted({k for v, _ in ok for k in (v.probs or {})}, key=lambda k: float(k))
            if keys and all(v.probs for v, _ in ok):
                j.probs = {k: sum(w * v.probs.get(k, 0.0) for v, w in ok) / total for k in keys}
    elif mode == "pairwise":
        if how == "majority":
            votes = Counter(v.preference for v, _ in ok if v.preference in ("a", "b"))
            n = votes["a"] + votes["b"]
            j.p_a = votes["a"] / n if n else 0.5
        else:
            j.p_a = sum(w * v.p_a for v, w in ok) / total
        j.preference = "tie" if abs(j.p_a - 0.5) < 1e-9 else ("a" if j.p_a > 0.5 else "b")
        checked = [v.consistent for v, _ in ok if v.consistent is not None]
        j.consistent = all(checked) if checked else None
    else:
        n = len(ok[0][0].ranking)
        points = [0.0] * n
        for v, w in ok:
            for pos, idx in enumerate(v.ranking):
                points[idx] += w * (n - 1 - pos) / total
        j.scores = points
        j.ranking = sorted(range(n), key=lambda i: -points[i])
    return j


def gold_label(row: dict):
    for f in GOLD_FIELDS:
        if row.get(f) is not None:
            return row[f]
    return None


def agreement_weight(mode: str, verdicts: list[Judgment], labels: list) -> float:
    """How much better than chance one member agrees with the gold labels (0 = chance or worse)."""
    if mode == "pairwise":
        pairs = [(v.preference, str(g).lower()) for v, g in zip(verdicts, labels)
                 if v.error is None and str(g).lower() in ("a", "b")]
        if not pairs:
            return 0.0
        acc = sum(p == g for p, g in pairs) / len(pairs)
        return max(0.0, 2 * acc - 1)
    if mode == "absolute":
        from sklearn.metrics import cohen_kappa_score

        pairs = [(round(v.score), round(float(g))) for v, g in zip(verdicts, labels) if v.error is None and g is not None]
        if len(pairs) < 2:
            return 0.0
        pred, gold = zip(*pairs)
        if len(set(pred) | set(gold)) < 2:            # kappa undefined: both constant and equal
            return 1.0 if pred == gold else 0.0
        k = cohen_kappa_score(gold, pred, weights="quadratic")
        return max(0.0, float(k)) if k == k else 0.0
    raise RlaifError("weighted juries need gold labels, which rlaif supports for absolute and pairwise modes only")


# ---------------------------------------------------------------------------------------------
# Running a jury
# ---------------------------------------------------------------------------------------------
async def _judge_all(members, rows, mode) -> list[list[Judgment]]:
    """verdicts[m][i]: member m's verdict on row i, all members and rows concurrently."""
    async def one(member):
        return await asyncio.gather(*(member.judge_row(r, mode) for r in rows))
    return list(await asyncio.gather(*(one(m) for m in members)))


def jury(input, rubrics: list, *, judges: list, aggregate_by: str = "mean", gold=None, mode: str | None = None,
         output=None, concurrency: int = 16, judge_options: dict | None = None, skip_invalid: bool = False,
         prompts_dirs: list | None = None, rubrics_dirs: list | None = None, progress: bool = False,
         **config) -> tuple[list[dict], object]:
    """Judge `input` with every (judge, rubric) member and aggregate per row. `config` holds the
    JudgeConfig fields (generative, both_orders, rank_method, samples, ...). Returns
    (output rows, JudgeSummary) like `rlaif.judge`, which calls this for several judges/rubrics."""
    from rlaif.backends import DEFAULT_MODEL, get_backend
    from rlaif.engine import Engine, run_sync
    from rlaif.io import JsonlWriter, check_row, infer_mode, read_rows
    from rlaif.judge import URL_PROVIDERS, Judge, JudgeConfig, JudgeSummary
    from rlaif.rubrics import Rubric, load_rubric

    if aggregate_by not in AGGREGATES:
        raise RlaifError(f"unknown aggregate '{aggregate_by}'; choose one of {', '.join(AGGREGATES)}")
    if aggregate_by == "weighted" and gold is None:
        raise RlaifError("--aggregate weighted needs --gold FILE: rows with a gold label to weigh each judge by")
    rubs = [r if isinstance(r, Rubric) else load_rubric(r, rubrics_dirs=rubrics_dirs, prompts_dirs=prompts_dirs)
            for r in rubrics]
    needs_ref = any(r.reference == "required" for r in rubs)
    summary = JudgeSummary()
    if isinstance(input, (str, Path)):
        read, mode = read_rows(input, mode, needs_reference=needs_ref, skip_invalid=skip_invalid)
        rows, summary.skipped = read.rows, read.skipped
    else:
        rows = list(input)
        mode = mode or (infer_mode(rows[0]) if rows else "absolute")
        for n, row in enumerate(rows, 1):
            check_row(row, "<rows>", n, mode, needs_ref)
    problems = [f"rubric '{r.name}' does not support mode '{mode}'" for r in rubs if mode not in r.modes]
    if mode == "absolute" and len({(r.scale.min, r.scale.max) for r in rubs}) > 1:
        problems.append("absolute juries need rubrics on one scale: "
                        + ", ".join(f"{r.name} {r.scale.min}..{r.scale.max}" for r in rubs))
    if problems:
        raise ConfigError(problems, source="jury")

    backends: dict[str, object] = {}
    engines: dict[str, Engine] = {}
    for name in judges:
        key = (name or DEFAULT_MODEL) if isinstance(name, str) or name is None else name.name
        if key not in backends:
            opts = dict(judge_options or {})
            if isinstance(name, str) and name.split("/", 1)[0] not in URL_PROVIDERS:
                opts.pop("base_url", None)        # a jury's --base-url is for its openai/ and litellm/ members
            b = name if (name is not None and not isinstance(name, str)) else get_backend(name or DEFAULT_MODEL, **opts)
            backends[key], engines[key] = b, Engine(b, concurrency=concurrency)
    members = []
    for key in backends:
        for r in rubs:
            cfg = JudgeConfig(prompts_dirs=prompts_dirs, **config)
            members.append(Judge(r, backends[key], engines[key], cfg))
    name = f"jury({aggregate_by}):" + "+".join(backends)

    weights = [1.0] * len(members)
    if aggregate_by == "weighted":
        gread, _ = read_rows(gold, mode, needs_reference=needs_ref) if isinstance(gold, (str, Path)) else (None, None)
        grows = gread.rows if gread is not None else list(gold)
        labels = [gold_label(r) for r in grows]
        if not any(lab is not None for lab in labels):
            raise RlaifError(f"gold set {gold}: no row has a label in any of the fields {', '.join(GOLD_FIELDS)}")
        gverdicts = run_sync(_judge_all(members, grows, mode))
        weights = [agreement_weight(mode, vs, labels) for vs in gverdicts]
        if not any(w > 0 for w in weights):
            raise RlaifError("no jury member agrees with the gold set better than chance; weights: "
                             + ", ".join(f"{m.backend.name} {m.rubric.id}: 0" for m in members))
        summary.jury_weights = {f"{m.backend.name} {m.rubric.id}": w for m, w in zip(members, weights)}

    verdicts = run_sync(_judge_all(members, rows, mode))
    out_rows: list[dict] = []
    writer = JsonlWriter(output) if output else None
    try:
        for i, row in enumerate(rows):
            j = aggregate(mode, [vs[i] for vs in verdicts], aggregate_by, weights, name)
            out = {**row, **j.to_row(), "method": "jury", "aggregate": aggregate_by}
            out_rows.append(out)
            summary.add(j)
            if writer:
                writer.write(out)
    finally:
        if writer:
            writer.close()
    return out_rows, summary


__all__ = ["aggregate", "agreement_weight", "gold_label", "jury", "AGGREGATES"]
