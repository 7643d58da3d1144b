"""Turning many readings into one verdict: pure math, no I/O.

- `bradley_terry`: strengths from a (soft) pairwise win matrix (a rank tournament).
- `borda`: mean Borda points of several rankings (listwise rank, a rank jury).
- `aggregate`: one jury verdict per row from its members' Judgments (mean, majority, weighted),
  and `agreement_weight`: how far a member agrees with gold labels above chance.
- `human_label`: the one normalisation of a gold row's human label (rubric test and jury weights).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any

from rlaif.errors import InputError, RlaifError
from rlaif.records import Judgment

if TYPE_CHECKING:
    from rlaif.rubrics import Rubric

AGGREGATES = ("mean", "majority", "weighted")
GOLD_FIELDS = ("gold", "human", "label")


def bradley_terry(wins: list[list[float]], iters: int = 200, tol: float = 1e-9) -> list[float]:
    """Bradley-Terry strengths from a (soft) win matrix, wins[i][j] = how often i beat j.
    Minorise-maximise updates (Hunter 2004); returns log-strengths centred on 0. A small prior
    (0.1 pseudo-wins each way) keeps strengths finite when one response wins every comparison."""
    n = len(wins)
    w = [[wins[i][j] + (0.1 if i != j else 0.0) for j in range(n)] for i in range(n)]
    s = [1.0] * n
    for _ in range(iters):
        new = []
        for i in range(n):
            num = sum(w[i][j] for j in range(n) if j != i)
            den = sum((w[i][j] + w[j][i]) / (s[i] + s[j]) for j in range(n) if j != i)
            new.append(num / den if den > 0 else s[i])
        g = math.exp(sum(math.log(x) for x in new) / n)
        new = [x / g for x in new]
        done = max(abs(a - b) for a, b in zip(new, s)) < tol
        s = new
        if done:
            break
    return [math.log(x) for x in s]


def borda(rankings: list[list[int]], n: int, weights: list[float] | None = None) -> list[float]:
    """Borda points per item: in each ranking (best first) position p earns n-1-p, weighted; the
    weights should sum to 1 (mean points)."""
    weights = weights if weights is not None else [1.0 / len(rankings)] * len(rankings)
    points = [0.0] * n
    for ranking, w in zip(rankings, weights):
        for pos, idx in enumerate(ranking):
            points[idx] += w * (n - 1 - pos)
    return points


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
    # members that scored the row: their verdict fields for `mode` are set (Any: no None checks below)
    ok: list[tuple[Any, float]] = [(v, w) for v, w in zip(verdicts, weights) if v.error is None and w > 0]
    if not ok:
        errs = Counter(v.error for v in verdicts if v.error)
        code = errs.most_common(1)[0][0] if errs else "no_weight"
        detail = ("; ".join(f"{v.judge} {v.rubric}: {v.error}" for v in verdicts if v.error)
                  or "every member has weight 0")
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
            prefs = Counter(v.preference for v, _ in ok if v.preference in ("a", "b"))
            n = prefs["a"] + prefs["b"]
            j.p_a = prefs["a"] / n if n else 0.5
        else:
            j.p_a = sum(w * v.p_a for v, w in ok) / total
        j.preference = "tie" if abs(j.p_a - 0.5) < 1e-9 else ("a" if j.p_a > 0.5 else "b")
        checked = [v.consistent for v, _ in ok if v.consistent is not None]
        j.consistent = all(checked) if checked else None
    else:
        n = len(ok[0][0].ranking)
        points = borda([v.ranking for v, _ in ok], n, [w / total for _, w in ok])
        j.scores = points
        j.ranking = sorted(range(n), key=lambda i: -points[i])
    return j


def gold_field(row: dict) -> str | None:
    """Which field holds a gold row's human label: the first of GOLD_FIELDS present (not null).
    The one reading of gold labels, shared by jury weights and `rlaif rubric test` (gold.py)."""
    return next((f for f in GOLD_FIELDS if row.get(f) is not None), None)


def gold_label(row: dict):
    """A gold row's label as written (None if it has none); `human_label` is the normalised one."""
    f = gold_field(row)
    return None if f is None else row[f]


def human_label(row: dict, mode: str, rubric: Rubric, path: str, line: int | None) -> str | int | None:
    """A gold row's human label as agreement compares it, None when the row has none. The one reading
    shared by `rlaif rubric test` (gold.load_gold) and the weighted jury, so a gold file means the same to
    both: pairwise a | b | tie (any case) -> lower case; absolute an integer score on the rubric's scale, or
    a label name the rubric's `labels:` map sends to a scale point. Anything else is an InputError naming
    path, line and field."""
    field = gold_field(row)
    if field is None:
        return None
    h = row[field]
    if mode == "pairwise":
        if not isinstance(h, str) or h.lower() not in ("a", "b", "tie"):
            raise InputError(path, line, field, f"expected one of a, b, tie, got {h!r}")
        return h.lower()
    if isinstance(h, bool) or not isinstance(h, (int, float, str)):
        raise InputError(path, line, field, f"expected a score or a label name, got {type(h).__name__}")
    if isinstance(h, str):
        labels = rubric.labels or {}
        if h not in labels:
            hint = (f"known labels: {', '.join(labels)}" if labels else
                    f"rubric '{rubric.name}' has no labels: map; add one (label: scale point) or give scores")
            raise InputError(path, line, field, f"unknown label {h!r}; {hint}")
        return labels[h]
    lo, hi = rubric.scale.min, rubric.scale.max
    if not math.isfinite(h) or h != int(h) or not lo <= h <= hi:
        raise InputError(path, line, field, f"score {h} is not an integer on the rubric's scale {lo}..{hi}")
    return int(h)


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

        scored = [(round(v.score or 0.0), round(float(g))) for v, g in zip(verdicts, labels)
                  if v.error is None and g is not None]
        if len(scored) < 2:
            return 0.0
        pred, gold = zip(*scored)
        if len(set(pred) | set(gold)) < 2:            # kappa undefined: both constant and equal
            return 1.0 if pred == gold else 0.0
        k = cohen_kappa_score(gold, pred, weights="quadratic")
        return max(0.0, float(k)) if k == k else 0.0
    raise RlaifError("weighted juries need gold labels, which rlaif supports for absolute and pairwise modes only")
