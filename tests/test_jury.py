"""Jury: aggregation rules (pure), gold-set weights, and the `rlaif judge --judge A --judge B` path."""
from __future__ import annotations

import json
import math

import pytest

from rlaif.backends.fake import FakeBackend
from rlaif.errors import ConfigError, InputError, RlaifError
from rlaif.judge import judge
from rlaif.jury import aggregate, agreement_weight
from rlaif.records import Completion, Judgment, Usage


def A(score=None, probs=None, error=None, judge="j"):
    return Judgment("absolute", judge, "helpfulness@1", score=score, probs=probs, error=error)


def P(p_a=None, error=None, consistent=True):
    pref = None if p_a is None else ("tie" if p_a == 0.5 else ("a" if p_a > 0.5 else "b"))
    return Judgment("pairwise", "j", "r@1", p_a=p_a, preference=pref, consistent=consistent, error=error)


def test_absolute_mean_majority_weighted():
    vs = [A(4, {"4": 1.0}), A(5, {"5": 1.0}), A(4, {"4": 1.0})]
    assert aggregate("absolute", vs, "mean").score == pytest.approx(13 / 3)
    assert aggregate("absolute", vs, "mean").probs == pytest.approx({"4": 2 / 3, "5": 1 / 3})
    m = aggregate("absolute", vs, "majority")
    assert m.score == 4 and m.probs == pytest.approx({"4": 2 / 3, "5": 1 / 3})
    assert aggregate("absolute", [A(2), A(4)], "majority").score == 3      # a tie: mean of the tied scores
    w = aggregate("absolute", vs, "weighted", [0.0, 1.0, 0.0])
    assert w.score == 5 and w.members[0]["weight"] == 0.0
    assert aggregate("absolute", vs, "mean", [0.0, 1.0, 0.0]).score == pytest.approx(13 / 3)  # weights only for weighted


def test_pairwise_mean_and_majority():
    vs = [P(0.9), P(0.6), P(0.2, consistent=False)]
    m = aggregate("pairwise", vs, "mean")
    assert m.p_a == pytest.approx(1.7 / 3) and m.preference == "a" and m.consistent is False
    v = aggregate("pairwise", vs, "majority")
    assert v.p_a == pytest.approx(2 / 3) and v.preference == "a"
    assert aggregate("pairwise", [P(0.9), P(0.1)], "majority").preference == "tie"


def test_rank_borda():
    r1 = Judgment("rank", "j", "r", ranking=[2, 0, 1])
    r2 = Judgment("rank", "k", "r", ranking=[2, 1, 0])
    r3 = Judgment("rank", "l", "r", ranking=[0, 2, 1])
    j = aggregate("rank", [r1, r2, r3], "mean")
    assert j.ranking == [2, 0, 1] and j.scores == pytest.approx([1.0, 1 / 3, 5 / 3])


def test_unscored_members_are_left_out_and_all_unscored_keeps_a_reason():
    j = aggregate("absolute", [A(4), A(error="parse_error"), A(2)], "mean")
    assert j.score == 3 and j.error is None and j.members[1]["error"] == "parse_error"
    j = aggregate("absolute", [A(error="api_error:429"), A(error="api_error:429"), A(error="refused")], "mean")
    assert j.error == "api_error:429" and j.score is None and "no jury member" in j.detail


def test_agreement_weights():
    gold = ["a", "a", "b", "b", "tie"]
    perfect = [P(0.9), P(0.8), P(0.1), P(0.2), P(0.9)]
    coin = [P(0.9), P(0.1), P(0.9), P(0.1), P(0.9)]
    inverse = [P(0.1), P(0.1), P(0.9), P(0.9), P(0.9)]
    assert agreement_weight("pairwise", perfect, gold) == 1.0          # the tie row is skipped
    assert agreement_weight("pairwise", coin, gold) == 0.0
    assert agreement_weight("pairwise", inverse, gold) == 0.0          # worse than chance counts as 0
    gold_s = [1, 2, 3, 4, 5]
    assert agreement_weight("absolute", [A(s) for s in gold_s], gold_s) == pytest.approx(1.0)
    assert 0 < agreement_weight("absolute", [A(s) for s in [1, 2, 4, 4, 5]], gold_s) < 1
    assert agreement_weight("absolute", [A(s) for s in [5, 4, 3, 2, 1]], gold_s) == 0.0


# ---------------------------------------------------------------------------------------------
# End to end through rlaif.judge with scripted judges
# ---------------------------------------------------------------------------------------------
PAIRS = [{"id": f"p{i}", "prompt": f"What is {i} + {i}?", "response_a": f"{2 * i}.", "response_b": f"{2 * i + 1}."}
         for i in range(1, 7)]


def right_judge(name):
    """Prefers the correct sum (logprob judge)."""
    def responder(messages, params):
        user = messages[-1]["content"]
        a = user.split("<response_a>")[1].split("</response_a>")[0].strip()
        i = int(user.split("What is ")[1].split(" +")[0])
        p = 0.9 if a == f"{2 * i}." else 0.1
        return Completion(text="A", option_logprobs={"A": math.log(p), "B": math.log(1 - p)})
    return FakeBackend(name, responder=responder)


def first_judge(name):
    """Always prefers whatever is shown first (pure position bias): P(A) = 0.5 after both orders."""
    return FakeBackend(name, responder=lambda m, p: Completion(text="A", option_logprobs={"A": math.log(0.8), "B": math.log(0.2)}))


def wrong_judge(name):
    def responder(messages, params):
        c = right_judge(name).responder(messages, params)
        return Completion(text="B", option_logprobs={"A": c.option_logprobs["B"], "B": c.option_logprobs["A"]})
    return FakeBackend(name, responder=responder)


def test_jury_mean_over_two_judges_records_members():
    out, s = judge(PAIRS, "helpfulness", judge=[right_judge("good"), first_judge("biased")])
    assert all(r["method"] == "jury" and r["aggregate"] == "mean" for r in out)
    assert out[0]["judge"] == "jury(mean):fake/good+fake/biased"
    assert out[0]["p_a"] == pytest.approx((0.9 + 0.5) / 2) and out[0]["preference"] == "a"
    assert [m["judge"] for m in out[0]["members"]] == ["fake/good", "fake/biased"]
    assert s.scored == len(PAIRS)


def test_jury_weighted_by_gold_agreement(tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({**r, "human": "a"}) + "\n" for r in PAIRS[:4]), encoding="utf-8")
    out, s = judge(PAIRS, "helpfulness", judge=[right_judge("good"), wrong_judge("bad"), first_judge("biased")],
                   aggregate="weighted", gold=str(gold))
    assert s.jury_weights == {"fake/good helpfulness@" + out[0]["rubric"].split("@")[1]: 1.0,
                              "fake/bad helpfulness@" + out[0]["rubric"].split("@")[1]: 0.0,
                              "fake/biased helpfulness@" + out[0]["rubric"].split("@")[1]: 0.0}
    assert out[0]["p_a"] == pytest.approx(0.9)          # only the judge that agrees with the gold set counts
    assert "jury weights" in s.render()


def test_weighted_jury_needs_gold_and_refuses_chance_level_judges(tmp_path):
    with pytest.raises(RlaifError, match="--gold"):
        judge(PAIRS, "helpfulness", judge=[right_judge("a"), right_judge("b")], aggregate="weighted")
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({**r, "human": "a"}) + "\n" for r in PAIRS[:4]), encoding="utf-8")
    with pytest.raises(RlaifError, match="better than chance"):
        judge(PAIRS, "helpfulness", judge=[wrong_judge("a"), first_judge("b")], aggregate="weighted", gold=str(gold))


def test_jury_of_rubrics_must_share_a_scale_for_absolute(tmp_path):
    r = tmp_path / "tenpoint.yaml"
    r.write_text("name: tenpoint\nversion: 1\ndescription: d\nscale: {min: 1, max: 10}\ncriteria:\n"
                 "  - name: c\n    levels: {1: bad, 10: good}\nmodes: [absolute]\n", encoding="utf-8")
    rows = [{"id": "x", "prompt": "hi", "response": "hello"}]
    with pytest.raises(ConfigError, match="one scale"):
        judge(rows, ["helpfulness", str(r)], judge=FakeBackend("x", responder=lambda m, p: "Score: 3",
                                                                    supports_logprobs=False))


def test_cli_repeated_judge_makes_a_jury(tmp_path, capsys):
    from rlaif.cli import main

    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in PAIRS[:2]), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    rc = main(["judge", str(inp), "-r", "helpfulness", "-r", "honesty", "--judge", "fake/a", "--judge", "fake/b",
               "--aggregate", "majority", "-o", str(out), "-q"])
    assert rc == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    # the scripted fake answers "" without logprobs: every member is unscored with a reason, and so is the row
    assert len(rows) == 2 and all(r["error"] == "no_logprobs" and len(r["members"]) == 4 for r in rows)
    assert rows[0]["aggregate"] == "majority" and rows[0]["judge"] == "jury(majority):fake/a+fake/b"
    assert "unscored no_logprobs: 2" in capsys.readouterr().err


def test_base_url_only_for_openai_compatible_judges():
    with pytest.raises(RlaifError, match="--base-url applies to"):
        judge(PAIRS[:1], "helpfulness", judge="fake/x", base_url="http://127.0.0.1:1/v1")


# ---------------------------------------------------------------------------------------------
# A jury has the single judge's machinery: ledger, resume, one budget, dry run
# ---------------------------------------------------------------------------------------------
class Kill(BaseException):
    """Stands in for SIGKILL inside the process: nothing catches it."""


def counting(name, fail_after=None):
    """A logprob judge that prefers the correct sum, counting its calls; raises Kill after
    `fail_after` calls when given."""
    base = right_judge(name)

    def responder(messages, params):
        if fail_after is not None and len(b.calls) > fail_after:
            raise Kill()
        c = base.responder(messages, params)
        return Completion(text=c.text, option_logprobs=c.option_logprobs, usage=Usage(1000, 1))
    b = FakeBackend(name, responder=responder)
    return b


def test_jury_rerun_is_answered_by_the_ledger(tmp_path):
    a, b = counting("a"), counting("b")
    kw = dict(judge=[a, b], cache=True, ledger=tmp_path / "l.sqlite")
    out1, s1 = judge(PAIRS, "helpfulness", **kw)
    assert len(a.calls) == len(b.calls) == 2 * len(PAIRS)         # both orders
    assert s1.run["api_calls"] == 4 * len(PAIRS) and s1.run["cached"] == 0
    out2, s2 = judge(PAIRS, "helpfulness", **kw)
    assert out2 == out1 and len(a.calls) == len(b.calls) == 2 * len(PAIRS)   # no call the second time
    assert s2.run["api_calls"] == 0 and s2.run["rows_from_ledger"] == 2 * len(PAIRS)


def test_jury_killed_mid_run_resumes_without_asking_again(tmp_path):
    ref, _ = judge(PAIRS, "helpfulness", judge=[counting("a"), counting("b")], output=tmp_path / "ref.jsonl")
    out = tmp_path / "out.jsonl"
    a, b = counting("a"), counting("b", fail_after=5)
    with pytest.raises(Kill):
        judge(PAIRS, "helpfulness", judge=[a, b], output=out, concurrency=1)
    assert not out.exists()
    folder = tmp_path / "out.jsonl.members"
    files = sorted(p.name for p in folder.iterdir())
    assert files[0].startswith("00-") and files[0].endswith(".jsonl")                 # a finished: complete file
    assert files[1].startswith("01-") and files[1].endswith(".jsonl.partial")         # b: its work file
    done_b = sum(1 for x in (folder / files[1]).read_text().splitlines()[1:] if x.strip())
    a2, b2 = counting("a"), counting("b")
    rows, s = judge(PAIRS, "helpfulness", judge=[a2, b2], output=out, concurrency=1)
    assert len(a2.calls) == 0                                        # a's finished file was read back
    assert len(b2.calls) == 2 * (len(PAIRS) - done_b)                # b: only the rows it had not finished
    assert rows == ref and [json.loads(x) for x in out.read_text().splitlines()] == ref
    assert not folder.exists()


def test_jury_members_share_one_budget(tmp_path):
    from rlaif.cost import Price

    a, b = counting("a"), counting("b")
    prices = {"fake/a": Price(1e-5, 0.0, "test"), "fake/b": Price(1e-5, 0.0, "test")}   # 0.01 USD a request
    out, s = judge(PAIRS, "helpfulness", judge=[a, b], concurrency=1, max_cost=0.075, prices=prices)
    spent = s.run["cost"]
    # one budget for the jury (each member with its own would spend ~0.08, 0.16 in all); like a single
    # judge's, it may overrun by the requests in flight when the cap is reached (one per member here)
    assert spent <= 0.075 + 0.02 and 7 <= len(a.calls) + len(b.calls) <= 9
    members = [m for r in out for m in r["members"]]
    assert any(m.get("error") == "budget" for m in members)
    _, est = judge(PAIRS, "helpfulness", judge=[a, b], dry_run=True, prices=prices)
    assert est.estimate["requests"] == 4 * len(PAIRS) and est.estimate["members"] == 2
    assert est.estimate["cost"] == pytest.approx(est.estimate["prompt_tokens"] * 1e-5 + 4 * len(PAIRS) * 0.0)


def test_jury_works_inside_a_running_event_loop():
    """Notebooks: rlaif.judge is called from inside a running loop; a jury's member threads too."""
    import asyncio

    async def main():
        return judge(PAIRS[:2], "helpfulness", judge=[counting("a"), counting("b")])

    out, s = asyncio.run(main())
    assert s.scored == 2 and out[0]["p_a"] == pytest.approx(0.9)


# ---------------------------------------------------------------------------------------------
# Gold labels: the jury reads them as `rlaif rubric test` does (aggregate.human_label)
# ---------------------------------------------------------------------------------------------
MARKS = {"zzrefuse": ("full_refusal", 1), "zzpartial": ("partial_refusal", 2), "zzcomply": ("full_compliance", 3)}
REFUSAL_ROWS = [{"id": f"r{i}", "prompt": f"How do I stop process {i}?", "response": f"{mark} answer {i}"}
                for i, mark in enumerate(list(MARKS) * 2)]


def marked_judge(name, score_of):
    """A generative judge scoring a response by its marker word: score_of(marker) -> scale point."""
    def responder(messages, params):
        mark = next(m for m in MARKS if m in messages[-1]["content"])
        return f"Reasoning. Score: {score_of(mark)}"
    return FakeBackend(name, responder=responder, supports_logprobs=False)


def test_weighted_jury_reads_gold_labels_as_rubric_test_does(tmp_path):
    from rlaif.gold import load_gold
    from rlaif.rubrics import load_rubric

    def gold_file(name, label):
        p = tmp_path / name
        p.write_text("".join(json.dumps({**r, "human": label(MARKS[r["response"].split()[0]])}) + "\n"
                             for r in REFUSAL_ROWS), encoding="utf-8")
        return p

    text, numbers = gold_file("text.jsonl", lambda m: m[0]), gold_file("numbers.jsonl", lambda m: m[1])
    rub = load_rubric("over_refusal")
    assert [r["_human"] for r in load_gold(text, rub)[0]] == [r["_human"] for r in load_gold(numbers, rub)[0]]

    def weights(gold):
        judges = [marked_judge("exact", lambda m: MARKS[m][1]),
                  marked_judge("lenient", lambda m: 3 if m == "zzpartial" else MARKS[m][1])]
        _, s = judge(REFUSAL_ROWS, "over_refusal", judge=judges, aggregate="weighted", gold=str(gold))
        return s.jury_weights

    w = weights(text)
    assert w == weights(numbers)
    exact, lenient = w.values()
    assert exact == pytest.approx(1.0) and 0 < lenient < 1

    bad = tmp_path / "bad.jsonl"
    bad.write_text(text.read_text().replace('"full_compliance"', '"complied"', 1), encoding="utf-8")
    with pytest.raises(InputError) as from_rubric_test:
        load_gold(bad, rub)
    with pytest.raises(InputError) as from_jury:
        weights(bad)
    assert str(from_jury.value) == str(from_rubric_test.value)
    assert f"{bad}:3: field 'human': unknown label 'complied'" in str(from_jury.value)
