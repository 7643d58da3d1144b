"""Agreement between a judge and people: small pure functions, checked against scikit-learn/scipy.

Why a module of its own: "does this rubric agree with humans, and is it biased?" must be answered
by the same numbers everywhere (rubric test, rubric diff, the export gate, the report), and each
number should be checkable against a library on fixed inputs (tests/test_agreement.py does that).

Conventions used throughout:
- pairwise labels are "a" | "b" | "tie"; absolute labels are integer points of the rubric's scale.
- every function takes plain lists (or numpy arrays) and returns plain floats / dicts, so results
  serialise to JSON as they are. A metric that is undefined on its input (no items, one class)
  returns None rather than a made-up number.
- confidence intervals are percentile bootstraps over items (`bootstrap_ci`), and differences
  between two rubric versions use a *paired* bootstrap (the same resampled items for both).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

PAIR_LABELS = ["a", "tie", "b"]     # ordered: a-better < tie < b-better, for a weighted κ on pairs


# ---------------------------------------------------------------------------------------------
# Mapping a judge's continuous output to a label
# ---------------------------------------------------------------------------------------------
def pair_label(p_a: float, consistent: bool | None = None, *, tie_margin: float = 0.0,
               tie_if_inconsistent: bool = True) -> str:
    """The judge's a/b/tie label from P(A better), order-averaged.

    Default rule (MT-Bench's convention, Zheng et al. 2023): a verdict that flips when the two
    responses swap places is a tie. `tie_margin` additionally calls a tie when
    |p_a - 0.5| <= tie_margin (useful for single-order judging, where consistency is unknown).
    An exact 0.5 is always a tie: there is no preference to report."""
    if tie_if_inconsistent and consistent is False:
        return "tie"
    if abs(p_a - 0.5) <= tie_margin or p_a == 0.5:
        return "tie"
    return "a" if p_a > 0.5 else "b"


def score_label(score: float, lo: int, hi: int) -> int:
    """An expected score on the scale mapped to the nearest scale point (half rounds up, so
    2.5 -> 3; Python's round() would give 2), clipped to lo..hi."""
    return int(min(hi, max(lo, math.floor(score + 0.5))))


def argmax_label(probs: dict[str, float]) -> int:
    """The most probable scale point (ties go to the lower point, deterministically)."""
    best = max(probs.values())
    return min(int(k) for k, v in probs.items() if v == best)


# ---------------------------------------------------------------------------------------------
# Agreement
# ---------------------------------------------------------------------------------------------
def accuracy(human: Sequence, judge: Sequence) -> float | None:
    """Share of items where the labels are equal (ties included as a class of their own)."""
    if len(human) == 0:
        return None
    return float(np.mean([h == j for h, j in zip(human, judge)]))


def accuracy_no_ties(human: Sequence[str], p_a: Sequence[float]) -> float | None:
    """Pairwise accuracy on the items people did not call a tie, with the judge forced to choose:
    a if p_a > 0.5, b if p_a < 0.5; an exact 0.5 counts half (a coin flip), never as a win."""
    pts = [(1.0 if (p > 0.5) == (h == "a") else 0.0) if p != 0.5 else 0.5
           for h, p in zip(human, p_a) if h != "tie"]
    return float(np.mean(pts)) if pts else None


def agreement_both_decided(human: Sequence[str], judge: Sequence[str]) -> float | None:
    """MT-Bench paper's "w/o tie" agreement: only the items where neither side said tie."""
    pts = [h == j for h, j in zip(human, judge) if h != "tie" and j != "tie"]
    return float(np.mean(pts)) if pts else None


def _confusion(human: Sequence, judge: Sequence, labels: Sequence) -> np.ndarray:
    """Confusion counts (rows human, columns judge); pairs with a label outside `labels` are
    ignored, as scikit-learn's confusion_matrix does."""
    idx = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    h = np.fromiter((idx.get(x, -1) for x in human), dtype=np.int64, count=len(human))
    j = np.fromiter((idx.get(x, -1) for x in judge), dtype=np.int64, count=len(judge))
    ok = (h >= 0) & (j >= 0)
    return np.bincount(h[ok] * k + j[ok], minlength=k * k).reshape(k, k)


def cohen_kappa(human: Sequence, judge: Sequence, *, weights: str | None = None,
                labels: Sequence | None = None) -> float | None:
    """Cohen's κ (weights=None), or weighted κ for ordinal labels (weights="linear"|"quadratic").
    `labels` fixes the categories and their order, which matters for the weighted forms: pass the
    whole scale (1..5), else a point nobody used silently shrinks the distances; pairs: a < tie < b.
    None where κ is undefined (no items, or no disagreement is possible by chance).

    This is scikit-learn's cohen_kappa_score formula on a numpy confusion matrix (tests check the
    two are equal): sklearn's input validation costs ~1-100 ms a call, which a 1000-resample
    bootstrap of several κs cannot afford."""
    if len(human) == 0:
        return None
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    labels = list(labels) if labels is not None else sorted(set(human) | set(judge))
    cm = _confusion(human, judge, labels).astype(float)
    total = cm.sum()
    if total == 0:
        return None
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / total
    grid = np.arange(len(labels))
    dist = np.abs(grid[:, None] - grid[None, :])
    w = (dist > 0).astype(float) if weights is None else (dist if weights == "linear" else dist ** 2).astype(float)
    denom = float((w * expected).sum())
    if denom == 0:
        return None
    return float(1 - (w * cm).sum() / denom)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (scipy); None if either side is constant or too short."""
    from scipy.stats import spearmanr

    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


def confusion(human: Sequence, judge: Sequence, labels: Sequence) -> list[list[int]]:
    """Confusion matrix, rows = human label, columns = judge label, in `labels` order
    (equal to scikit-learn's confusion_matrix; tested)."""
    return _confusion(list(human), list(judge), list(labels)).tolist()


# ---------------------------------------------------------------------------------------------
# Biases
# ---------------------------------------------------------------------------------------------
def position_consistency(consistent: Sequence[bool | None]) -> float | None:
    """Share of items whose verdict survives swapping A and B (items judged in both orders)."""
    xs = [bool(c) for c in consistent if c is not None]
    return float(np.mean(xs)) if xs else None


def first_position_rate(orders: Sequence[list[dict] | None]) -> float | None:
    """Single-order verdicts: share that pick whichever response was shown first (p_first > 0.5;
    an exact 0.5 counts half). 0.5 is unbiased; a judge with a position bias drifts from it."""
    pts = [1.0 if o["p_first"] > 0.5 else (0.5 if o["p_first"] == 0.5 else 0.0)
           for os_ in orders if os_ for o in os_ if o.get("p_first") is not None]
    return float(np.mean(pts)) if pts else None


def mean_first_probability(orders: Sequence[list[dict] | None]) -> float | None:
    """Mean P(first shown response is better) over all single-order verdicts (the soft version)."""
    pts = [o["p_first"] for os_ in orders if os_ for o in os_ if o.get("p_first") is not None]
    return float(np.mean(pts)) if pts else None


def a_rate(labels: Sequence[str]) -> float | None:
    """Share of decided (non-tie) verdicts that prefer response_a, the response in the first slot
    of the given order. On a gold set whose a/b order was randomised, a debiased judge sits near
    the humans' own rate (and near 0.5)."""
    xs = [x == "a" for x in labels if x != "tie"]
    return float(np.mean(xs)) if xs else None


def prefers_longer_rate(labels: Sequence[str], len_a: Sequence[int], len_b: Sequence[int]) -> float | None:
    """P(prefers the longer response) over decided verdicts on pairs of different lengths.
    Compute it for the judge and for the humans on the same items: the gap is the length bias."""
    xs = [(lab == "a") == (la > lb) for lab, la, lb in zip(labels, len_a, len_b) if lab != "tie" and la != lb]
    return float(np.mean(xs)) if xs else None


# ---------------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------------
def calibration_curve(outcome: Sequence[bool], prob: Sequence[float], n_bins: int = 10) -> dict:
    """Reliability diagram: bin the predicted probabilities into equal-width bins and compare the
    mean prediction with the observed frequency in each. Also the expected calibration error
    (ECE: the count-weighted mean gap). Empty bins are left out, not filled with zeros."""
    y = np.asarray(outcome, dtype=float)
    p = np.asarray(prob, dtype=float)
    bins = []
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=True), 0, n_bins - 1) if len(p) else np.array([], dtype=int)
    ece = 0.0
    for b in range(n_bins):
        m = idx == b
        n = int(m.sum())
        if n == 0:
            continue
        mp, ob = float(p[m].mean()), float(y[m].mean())
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "mean_pred": mp, "observed": ob, "n": n})
        ece += n * abs(mp - ob)
    return {"bins": bins, "ece": (ece / len(p)) if len(p) else None, "n": int(len(p))}


# ---------------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------------
def _indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _percentiles(values: Sequence[float | None], alpha: float) -> list[float] | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    if len(vals) < 10:              # too few defined resamples to say anything
        return None
    lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return [float(lo), float(hi)]


def bootstrap_ci(metric: Callable[[list], float | None], items: Sequence, *, n_boot: int = 1000,
                 seed: int = 0, alpha: float = 0.05) -> list[float] | None:
    """Percentile bootstrap (1-alpha) CI of `metric(items)` resampling items with replacement.
    Seeded, so the same input gives the same interval. None if the metric is rarely defined."""
    items = list(items)
    if len(items) < 2:
        return None
    return _percentiles([metric([items[i] for i in row]) for row in _indices(len(items), n_boot, seed)], alpha)


def paired_bootstrap_diff(metric: Callable[[list], float | None], old: Sequence, new: Sequence, *,
                          n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """metric(new) - metric(old) on the same items, with a paired bootstrap CI: each resample
    draws the same item indices for both versions, so per-item difficulty cancels out."""
    old, new = list(old), list(new)
    if len(old) != len(new):
        raise ValueError(f"paired bootstrap needs aligned items ({len(old)} old vs {len(new)} new)")
    a, b = metric(old), metric(new)
    delta = None if a is None or b is None else b - a
    ci = None
    if len(old) >= 2 and delta is not None:
        diffs = []
        for row in _indices(len(old), n_boot, seed):
            x, y = metric([old[i] for i in row]), metric([new[i] for i in row])
            diffs.append(None if x is None or y is None else y - x)
        ci = _percentiles(diffs, alpha)
    return {"old": a, "new": b, "delta": delta, "ci": ci,
            "significant": bool(ci is not None and (ci[0] > 0 or ci[1] < 0))}
