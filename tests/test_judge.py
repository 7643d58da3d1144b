"""Judging logic with scripted judges: parsing, probabilities, both orders, rank, criteria weights."""
from __future__ import annotations

import math

import pytest

from rlaif.errors import BackendError
from rlaif.judge import (bradley_terry, distribution, expected_score, judge, parse_preference, parse_ranking,
                         parse_score)
from rlaif.records import Completion


# -- pure functions ------------------------------------------------------------------------------
def test_distribution_renormalises_over_the_options_and_ignores_others():
    lp = {"1": math.log(0.1), "2": math.log(0.3), "x": math.log(0.5)}
    d = distribution(lp, ["1", "2", "3"])
    assert d == pytest.approx({"1": 0.25, "2": 0.75, "3": 0.0})
    assert sum(d.values()) == pytest.approx(1.0)
    assert expected_score(d) == pytest.approx(1.75)
    assert distribution({"x": 0.0}, ["1", "2"]) is None
    assert distribution({}, ["1"]) is None


@pytest.mark.parametrize("text,expected", [
    ("4", 4), ("Score: 5", 5), ("The answer is fine.\nScore: 3", 3), ("**Score:** 2", 2), ("score = 1", 1),
    ("Score: 4. On reflection, Score: 2", 2),
])
def test_parse_score_accepts(text, expected):
    assert parse_score(text, 1, 5).value == expected


@pytest.mark.parametrize("text,code", [
    ("", "parse_error"), ("Pretty good overall.", "parse_error"), ("Score: 7", "parse_error"), ("Score: 2.5", "parse_error"),
    ("I'm sorry, I cannot evaluate this.", "refused"), ("The response says 4 things.", "parse_error"),
])
def test_parse_score_refuses_to_guess(text, code):
    p = parse_score(text, 1, 5)
    assert p.value is None and p.error == code and p.detail


@pytest.mark.parametrize("text,expected", [("A", "A"), (" b.", "B"), ("Better: B", "B"), ("Both ok.\nBetter: A", "A"),
                                           ("Response B", "B")])
def test_parse_preference(text, expected):
    assert parse_preference(text).value == expected


@pytest.mark.parametrize("text", ["", "Both are good.", "AB", "I'm sorry"])
def test_parse_preference_unparsable(text):
    assert parse_preference(text).value is None and parse_preference(text).error in ("parse_error", "refused")


def test_parse_ranking():
    assert parse_ranking("Ranking: 2 > 1 > 3", 3).value == [1, 0, 2]
    assert parse_ranking("Ranking: 2 > 2 > 3", 3).error == "parse_error"
    assert parse_ranking("no idea", 3).error == "parse_error"


def test_bradley_terry_orders_by_strength_and_is_centred():
    wins = [[0, 9, 9], [1, 0, 6], [1, 4, 0]]
    s = bradley_terry(wins)
    assert s[0] > s[1] > s[2]
    assert sum(s) == pytest.approx(0.0, abs=1e-9)
    assert all(math.isfinite(x) for x in bradley_terry([[0, 1], [0, 0]]))


# -- judging with a scripted backend ------------------------------------------------------------
def logprob_judge(fake_backend, decide):
    """A judge with logprobs whose answer `decide(user_text, options)` -> {option: prob}."""
    def responder(messages, params):
        probs = decide(messages[-1]["content"], params.options)
        return Completion(text=max(probs, key=probs.get), option_logprobs={k: math.log(v) for k, v in probs.items() if v > 0})
    return fake_backend(responder=responder)


def test_absolute_expected_score_and_distribution(fake_backend):
    b = logprob_judge(fake_backend, lambda text, opts: {"1": 0.1, "4": 0.2, "5": 0.7})
    rows, s = judge([{"prompt": "p", "response": "r", "id": 7}], "helpfulness", judge=b)
    r = rows[0]
    assert r["score"] == pytest.approx(0.1 * 1 + 0.2 * 4 + 0.7 * 5)
    assert sum(r["probs"].values()) == pytest.approx(1.0)
    assert r["id"] == 7 and r["judge"] == "fake/test" and r["rubric"].startswith("helpfulness@")
    assert r["method"] == "logprobs" and r["error"] is None


def test_weighted_criteria_combine_by_weight(fake_backend):
    # honesty: truthfulness (weight 2) -> always 5, calibration (weight 1) -> always 2
    def decide(text, opts):
        return {"5": 1.0} if "Criterion: truthfulness" in text else {"2": 1.0}
    rows, _ = judge([{"prompt": "p", "response": "r"}], "honesty", judge=logprob_judge(fake_backend, decide))
    assert rows[0]["score"] == pytest.approx((2 * 5 + 1 * 2) / 3)
    assert sum(rows[0]["probs"].values()) == pytest.approx(1.0)
    assert [o["criterion"] for o in rows[0]["orders"]] == ["truthfulness", "calibration"]


def test_pairwise_judges_both_orders_and_averages(fake_backend):
    # prefers whichever response contains GOOD, with 0.8; plus a first-position bonus
    def decide(text, opts):
        first_good = text.index("<response_a>") < text.index("GOOD") < text.index("<response_b>")
        return {"A": 0.8, "B": 0.2} if first_good else {"A": 0.4, "B": 0.6}
    b = logprob_judge(fake_backend, decide)
    rows, s = judge([{"prompt": "p", "response_a": "GOOD", "response_b": "bad"},
                     {"prompt": "p", "response_a": "bad", "response_b": "GOOD"}], "helpfulness", judge=b)
    assert len(b.calls) == 4
    r1, r2 = rows
    assert r1["orders"][0]["p_a"] == pytest.approx(0.8) and r1["orders"][1]["p_a"] == pytest.approx(0.6)
    assert r1["p_a"] == pytest.approx(0.7) and r1["preference"] == "a" and r1["consistent"] is True
    assert r2["p_a"] == pytest.approx(0.3) and r2["preference"] == "b"
    assert s.consistency == 1.0


def test_pure_position_bias_cancels_and_is_flagged_inconsistent(fake_backend):
    b = logprob_judge(fake_backend, lambda text, opts: {"A": 0.9, "B": 0.1})
    rows, s = judge([{"prompt": "p", "response_a": "x", "response_b": "y"}], "helpfulness", judge=b)
    assert rows[0]["p_a"] == pytest.approx(0.5) and rows[0]["consistent"] is False and rows[0]["preference"] == "tie"
    rows, _ = judge([{"prompt": "p", "response_a": "x", "response_b": "y"}], "helpfulness", judge=b, both_orders=False)
    assert rows[0]["p_a"] == pytest.approx(0.9) and "consistent" not in rows[0] and len(rows[0]["orders"]) == 1


def test_unparsable_generative_verdict_is_unscored_with_a_reason(fake_backend):
    b = fake_backend(script=["I think it is quite good overall."], supports_logprobs=False)
    rows, s = judge([{"prompt": "p", "response": "r"}], "helpfulness", judge=b)
    assert rows[0]["method"] == "generative"
    assert "score" not in rows[0] and rows[0]["error"] == "parse_error" and "no score" in rows[0]["detail"]
    assert s.unscored == {"parse_error": 1} and s.scored == 0


def test_generative_verdict_keeps_the_rationale(fake_backend):
    b = fake_backend(script=["Accurate and direct.\nScore: 4"])
    rows, _ = judge([{"prompt": "p", "response": "r"}], "helpfulness", judge=b, generative=True)
    assert rows[0]["score"] == 4 and rows[0]["rationale"] == "Accurate and direct." and rows[0]["probs"]["4"] == 1.0 and sum(rows[0]["probs"].values()) == 1.0


def test_no_logprobs_from_a_logprob_judge_is_unscored(fake_backend):
    b = fake_backend(script=[Completion(text="4", option_logprobs=None)])
    rows, _ = judge([{"prompt": "p", "response": "r"}], "helpfulness", judge=b)
    assert rows[0]["error"] == "no_logprobs" and "score" not in rows[0]


def test_backend_failure_is_unscored_with_status(fake_backend):
    def boom(messages, params):
        raise BackendError("too large", code="bad_request", status=413)      # never retried
    rows, s = judge([{"prompt": "p", "response": "r"}], "helpfulness", judge=fake_backend(responder=boom))
    assert rows[0]["error"] == "api_error:413" and s.unscored == {"api_error:413": 1}


def test_auth_failure_stops_the_job(fake_backend):
    from rlaif.errors import JobStopped

    calls = []

    def boom(messages, params):
        calls.append(1)
        raise BackendError("bad key", code="auth", status=401)      # never retried, and nothing sent after it
    with pytest.raises(JobStopped):
        judge([{"prompt": "p", "response": f"r{i}"} for i in range(10)], "helpfulness",
              judge=fake_backend(responder=boom), concurrency=1)
    assert len(calls) == 1


def test_one_failed_order_makes_the_pair_unscored(fake_backend):
    answers = iter([Completion("A", option_logprobs={"A": 0.0}), "garbage"])
    b = fake_backend(responder=lambda m, p: next(answers))
    rows, _ = judge([{"prompt": "p", "response_a": "x", "response_b": "y"}], "helpfulness", judge=b)
    assert rows[0]["error"] == "no_logprobs" and "p_a" not in rows[0]


def test_rank_tournament_orders_by_quality(fake_backend):
    quality = {"best": 3, "mid": 2, "worst": 1}

    def decide(text, opts):
        a = text.split("<response_a>\n")[1].split("\n</response_a>")[0]
        b = text.split("<response_b>\n")[1].split("\n</response_b>")[0]
        pa = 0.85 if quality[a] > quality[b] else 0.15
        return {"A": pa, "B": 1 - pa}
    b = logprob_judge(fake_backend, decide)
    rows, _ = judge([{"prompt": "p", "responses": ["mid", "worst", "best"]}], "helpfulness", judge=b)
    assert rows[0]["ranking"] == [2, 0, 1] and rows[0]["consistent"] is True
    assert len(b.calls) == 6          # 3 pairs x 2 orders


def test_rank_listwise_aggregates_permutations(fake_backend):
    def responder(messages, params):
        text = messages[-1]["content"]
        order = [text.split(f"<response_{i}>\n")[1].split("\n")[0] for i in (1, 2, 3)]
        best = order.index("best") + 1
        rest = [i + 1 for i in range(3) if i + 1 != best]
        return f"Ranking: {best} > {rest[0]} > {rest[1]}"
    b = fake_backend(responder=responder, supports_logprobs=False)
    rows, _ = judge([{"prompt": "p", "responses": ["x", "best", "y"]}], "helpfulness", judge=b, rank_method="listwise")
    assert rows[0]["ranking"][0] == 1 and len(b.calls) == 2


def test_mode_not_supported_by_rubric_is_an_error(fake_backend):
    from rlaif.errors import RlaifError
    with pytest.raises(RlaifError, match="does not support mode 'rank'"):
        judge([{"prompt": "p", "responses": ["a", "b"]}], "honesty", judge=fake_backend(script=["1"]))


def test_judge_works_inside_a_running_event_loop(fake_backend):
    import asyncio

    async def main():
        rows, _ = judge([{"prompt": "p", "response": "r"}], "helpfulness",
                        judge=logprob_judge(fake_backend, lambda t, o: {"3": 1.0}))
        return rows[0]["score"]

    assert asyncio.run(main()) == 3
