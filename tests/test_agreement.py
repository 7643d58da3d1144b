"""Agreement metrics equal the libraries' on fixed inputs, and the label mappings behave as documented."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from rlaif import agreement as ag

H = [1, 2, 3, 3, 2, 1, 3, 2, 2, 1, 3, 3, 1, 2]
J = [1, 3, 3, 2, 2, 1, 3, 1, 2, 2, 3, 3, 1, 1]
HP = ["a", "b", "tie", "a", "a", "b", "tie", "b", "a", "b"]
JP = ["a", "b", "a", "tie", "a", "a", "tie", "b", "b", "b"]


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_kappa_equals_sklearn(weights):
    assert ag.cohen_kappa(H, J, weights=weights) == pytest.approx(cohen_kappa_score(H, J, weights=weights), abs=1e-12)
    assert ag.cohen_kappa(HP, JP, weights=weights, labels=ag.PAIR_LABELS) == pytest.approx(
        cohen_kappa_score(HP, JP, weights=weights, labels=ag.PAIR_LABELS), abs=1e-12)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_kappa_equals_sklearn_with_unused_scale_points(weights):
    pts = [1, 2, 3, 4, 5]
    assert ag.cohen_kappa(H, J, weights=weights, labels=pts) == pytest.approx(
        cohen_kappa_score(H, J, weights=weights, labels=pts), abs=1e-12)
    # an unused point in the middle changes weighted κ: distances are on the scale, not on the labels used
    m = {1: 1, 2: 2, 3: 5}                                         # points 1, 2, 5 used; 3, 4 not
    h, j = [m[x] for x in H], [m[x] for x in J]
    if weights:
        assert ag.cohen_kappa(h, j, weights=weights, labels=pts) != pytest.approx(ag.cohen_kappa(h, j, weights=weights))
        assert ag.cohen_kappa(h, j, weights=weights, labels=pts) == pytest.approx(
            cohen_kappa_score(h, j, weights=weights, labels=pts), abs=1e-12)


def test_kappa_equals_sklearn_on_random_inputs():
    rng = np.random.default_rng(7)
    for _ in range(20):
        h, j = rng.integers(1, 6, 50).tolist(), rng.integers(1, 6, 50).tolist()
        for w in (None, "linear", "quadratic"):
            assert ag.cohen_kappa(h, j, weights=w, labels=[1, 2, 3, 4, 5]) == pytest.approx(
                cohen_kappa_score(h, j, weights=w, labels=[1, 2, 3, 4, 5]), abs=1e-12)


def test_kappa_known_values_and_undefined():
    assert ag.cohen_kappa(["a", "b", "a", "b"], ["a", "b", "a", "b"]) == 1.0
    assert ag.cohen_kappa(["a", "b", "a", "b"], ["b", "a", "b", "a"]) == -1.0
    assert ag.cohen_kappa(["a", "a"], ["a", "a"]) is None        # one label on both sides: undefined
    assert ag.cohen_kappa([], []) is None
    assert ag.cohen_kappa(["a", "b", "a", "b"], ["a", "a", "a", "a"]) == 0.0   # a constant judge is chance


def test_spearman_equals_scipy():
    x = [0.3, 2.5, 1.1, 4.0, 2.2, 3.9, 0.1, 2.5]
    y = [1, 3, 1, 5, 2, 4, 1, 2]
    assert ag.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert ag.spearman([1, 1, 1], [1, 2, 3]) is None


def test_confusion_equals_sklearn():
    assert ag.confusion(HP, JP, ag.PAIR_LABELS) == confusion_matrix(HP, JP, labels=ag.PAIR_LABELS).tolist()
    assert ag.confusion([], [], [1, 2]) == [[0, 0], [0, 0]]


def test_accuracies():
    assert ag.accuracy(HP, JP) == pytest.approx(6 / 10)
    # no ties: human non-tie items only, judge forced by p_a; 0.5 counts half
    assert ag.accuracy_no_ties(["a", "b", "tie", "a"], [0.9, 0.6, 0.5, 0.5]) == pytest.approx((1 + 0 + 0.5) / 3)
    assert ag.agreement_both_decided(["a", "b", "tie", "a"], ["a", "a", "a", "tie"]) == pytest.approx(1 / 2)
    assert ag.accuracy([], []) is None


def test_pair_label_rules():
    assert ag.pair_label(0.8, True) == "a"
    assert ag.pair_label(0.2, True) == "b"
    assert ag.pair_label(0.8, False) == "tie"                    # flips under the swap -> tie
    assert ag.pair_label(0.8, False, tie_if_inconsistent=False) == "a"
    assert ag.pair_label(0.5, None) == "tie"
    assert ag.pair_label(0.55, None, tie_margin=0.1) == "tie"
    assert ag.pair_label(0.65, None, tie_margin=0.1) == "a"


def test_score_label_rounds_half_up_and_clips():
    assert ag.score_label(2.5, 1, 3) == 3                      # round() would give 2
    assert ag.score_label(1.49, 1, 3) == 1
    assert ag.score_label(0.2, 1, 5) == 1 and ag.score_label(9, 1, 5) == 5
    assert ag.argmax_label({"1": 0.2, "2": 0.4, "3": 0.4}) == 2


def test_biases():
    orders = [[{"p_first": 0.9}, {"p_first": 0.7}], [{"p_first": 0.4}, {"p_first": 0.5}], None]
    assert ag.first_position_rate(orders) == pytest.approx((1 + 1 + 0 + 0.5) / 4)
    assert ag.mean_first_probability(orders) == pytest.approx(0.625)
    assert ag.position_consistency([True, False, None, True]) == pytest.approx(2 / 3)
    # longer: a longer in items 0,1; b longer in 2; equal in 3 (skipped); tie label skipped
    assert ag.prefers_longer_rate(["a", "b", "b", "a", "tie"], [10, 10, 1, 5, 9], [1, 1, 10, 5, 1]) == pytest.approx(2 / 3)
    assert ag.a_rate(["a", "b", "tie", "a"]) == pytest.approx(2 / 3)


def test_calibration_curve():
    c = ag.calibration_curve([1, 0, 1, 1], [0.95, 0.05, 0.91, 0.15])
    bins = {b["lo"]: b for b in c["bins"]}
    assert bins[0.9]["n"] == 2 and bins[0.9]["observed"] == 1.0
    assert bins[0.0]["observed"] == 0.0 and bins[0.1]["observed"] == 1.0
    assert c["ece"] == pytest.approx((2 * 0.07 + 0.05 + 0.85) / 4)
    assert ag.calibration_curve([], [])["ece"] is None


def test_bootstrap_ci_brackets_value_and_is_seeded():
    rng = np.random.default_rng(1)
    xs = list(rng.normal(3.0, 1.0, 400))
    mean = lambda v: float(np.mean(v))  # noqa: E731
    lo, hi = ag.bootstrap_ci(mean, xs, n_boot=500)
    assert lo < np.mean(xs) < hi and hi - lo < 0.4 and hi - lo > 0.05
    assert ag.bootstrap_ci(mean, xs, n_boot=500) == [lo, hi]
    assert ag.bootstrap_ci(mean, [1.0]) is None


def test_paired_bootstrap_detects_a_real_change_and_not_a_null_one():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 2, 300)
    old = [(t, t if rng.random() < 0.6 else 1 - t) for t in truth]
    new = [(t, t if rng.random() < 0.9 else 1 - t) for t, _ in old]
    acc = lambda it: float(np.mean([a == b for a, b in it]))  # noqa: E731
    d = ag.paired_bootstrap_diff(acc, old, new, n_boot=400)
    assert d["delta"] > 0.2 and d["significant"] and d["ci"][0] > 0
    same = ag.paired_bootstrap_diff(acc, old, old, n_boot=100)
    assert same["delta"] == 0 and not same["significant"]
    with pytest.raises(ValueError):
        ag.paired_bootstrap_diff(acc, old, new[:-1])
