"""rubric test / diff / gate with scripted judges: known behaviour in, known numbers out."""
from __future__ import annotations

import json
import math
import random
import re

import pytest

from rlaif.backends.fake import FakeBackend
from rlaif.errors import InputError, RlaifError
from rlaif.gate import GateError, check_gate
from rlaif.gold import load_result, rubric_diff, rubric_test
from rlaif.records import Completion
from rlaif.rubrics import load_rubric

_RESP = re.compile(r"<response_([ab])>\n(.*?)\n</response_\1>", re.S)
_Q = re.compile(r"\[q=([0-9.]+)\]")


def _shown(messages):
    """The two responses in the order the judge sees them (first, second)."""
    found = dict(_RESP.findall(messages[-1]["content"]))
    return found["a"], found["b"]


def biased_judge(bias=0.3, sharpness=3.0):
    """A judge whose P(first shown is better) = bias + (1-bias) * sigmoid(sharpness * quality gap):
    in `bias` of its probability mass it picks the first slot whatever the content."""
    def respond(messages, params):
        first, second = _shown(messages)
        q1, q2 = float(_Q.search(first).group(1)), float(_Q.search(second).group(1))
        p_content = 1 / (1 + math.exp(-sharpness * (q1 - q2)))
        p_a = bias + (1 - bias) * p_content
        return Completion(text="A" if p_a > 0.5 else "B", option_logprobs={"A": math.log(p_a), "B": math.log(1 - p_a)})
    return FakeBackend("biased", responder=respond)


def _pair_gold(path, n=200, seed=0, ties=0):
    """Exactly half the items have the better response in slot a, so a position-free judge picks
    a 50% of the time. Human = the better response."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        good, bad = rng.uniform(0.5, 1.0), rng.uniform(0.0, 0.5)
        long_, short = "x" * rng.randint(50, 80), "y" * rng.randint(5, 30)
        g, b = f"[q={good:.3f}] good {long_}", f"[q={bad:.3f}] bad {short}"
        a_is_good = i % 2 == 0
        rows.append({"id": f"p{i}", "prompt": f"question {i}", "response_a": g if a_is_good else b,
                     "response_b": b if a_is_good else g, "human": "a" if a_is_good else "b",
                     "model_a": "secret-model"})
    for i in range(ties):
        rows.append({"id": f"t{i}", "prompt": f"tie {i}", "response_a": "[q=0.5] same", "response_b": "[q=0.5] same!",
                     "human": "tie"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_position_bias_is_reported_and_swap_averaging_cancels_it(tmp_path):
    gold = _pair_gold(tmp_path / "pairs.jsonl")
    one = rubric_test("helpfulness", gold, judge=biased_judge(), both_orders=False, n_boot=300)
    m = one["metrics"]
    # single order: the first slot wins far more than half the time, and the result says so
    assert m["first_position_rate"]["value"] > 0.55 and m["first_position_rate"]["ci"][0] > 0.5
    assert m["mean_p_first"]["value"] == pytest.approx(0.65, abs=0.02)      # 0.3 + 0.7 * 0.5
    assert m["judge_a_rate"]["value"] > 0.55
    assert any(f.startswith("position bias") for f in one["flags"])

    both = rubric_test("helpfulness", gold, judge=biased_judge(), n_boot=300)   # the default: both orders
    m2 = both["metrics"]
    assert any(f.startswith("position bias") for f in both["flags"])           # the raw verdicts are still biased
    assert abs(m2["judge_a_rate"]["value"] - 0.5) <= 0.02                        # ... the final ones are not
    assert m2["position_consistency"]["value"] < 1.0
    assert m2["accuracy_no_ties"]["value"] == 1.0                               # content signal survives
    assert m2["accuracy_no_ties"]["value"] > m["accuracy_no_ties"]["value"]


def test_pairwise_result_fields_baselines_and_judge_never_sees_labels(tmp_path):
    gold = _pair_gold(tmp_path / "pairs.jsonl", n=40, ties=10)
    fb = biased_judge(bias=0.0)
    res = rubric_test("helpfulness", gold, judge=fb, output=tmp_path / "r.json", n_boot=200,
                      tie_margin=0.0)      # this fake judge's preferences are weak (|p_a-0.5| < 0.05)
    assert load_result(tmp_path / "r.json")["metrics"] == json.loads(json.dumps(res["metrics"]))
    assert res["n"] == 50 and res["scored"] == 50 and res["coverage"] == 1.0
    for msgs, _ in fb.calls:
        text = json.dumps(msgs)
        assert "secret-model" not in text and '"human"' not in text
    m = res["metrics"]
    assert m["kappa"]["value"] == pytest.approx(1.0)      # tie items get p_a = 0.5 in both orders -> tie
    assert res["confusion"]["labels"] == ["a", "tie", "b"]
    assert sum(map(sum, res["confusion"]["matrix"])) == 50
    assert set(res["baselines"]) == {"always_longer", "always_a"}
    # the good responses are the long ones here, so always-longer is perfect on the non-tie items
    assert res["baselines"]["always_longer"]["accuracy_no_ties"] == 1.0
    assert res["baselines"]["always_a"]["accuracy_no_ties"] == 0.5
    assert res["metrics"]["human_prefers_longer"]["value"] == 1.0
    assert res["calibration"]["bins"] and res["histograms"]["p_a"]["counts"]
    assert m["kappa"]["ci"] is not None


def _refusal_gold(path, n=60):
    rows = []
    labels = ["full_refusal", "partial_refusal", "full_compliance"]
    for i in range(n):
        lab = labels[i % 3]
        rows.append({"id": f"r{i}", "prompt": f"how do I kill a python process {i}",
                     "response": f"<<{lab}>> text {i}", "human": lab})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def label_judge(noise_every=0):
    """Absolute judge: puts 80% of its probability on the point the response's tag names."""
    pts = {"full_refusal": "1", "partial_refusal": "2", "full_compliance": "3"}
    count = {"n": 0}

    def respond(messages, params):
        count["n"] += 1
        lab = re.search(r"<<(\w+)>>", messages[-1]["content"].split("<response>")[-1]).group(1)
        target = pts[lab]
        if noise_every and count["n"] % noise_every == 0:
            return Completion(text="?", option_logprobs={})          # no logprobs -> unscored, with a reason
        probs = {o: (0.8 if o == target else 0.1) for o in params.options}
        return Completion(text=target, option_logprobs={o: math.log(p) for o, p in probs.items()})
    return FakeBackend("labels", responder=respond)


def test_labelled_absolute_gold_maps_labels_through_the_rubric(tmp_path):
    gold = _refusal_gold(tmp_path / "ref.jsonl")
    res = rubric_test("over_refusal", gold, judge=label_judge(), n_boot=200)
    assert res["gold"]["mode"] == "absolute" and res["headline"] == "kappa_quadratic"
    m = res["metrics"]
    # expected scores: 1.3, 2.0, 2.7 -> round to 1, 2, 3: perfect agreement
    assert m["accuracy"]["value"] == 1.0 and m["kappa_quadratic"]["value"] == pytest.approx(1.0)
    assert m["spearman"]["value"] == pytest.approx(1.0)
    assert res["items"][0]["human_label"] == "full_refusal" and res["items"][0]["human"] == 1
    (name, base), = res["baselines"].items()
    assert name.startswith("majority_class") and base["kappa"] in (0.0, None)
    assert res["confusion"]["labels"] == [1, 2, 3]


def test_unscored_items_are_counted_by_reason_not_guessed(tmp_path):
    gold = _refusal_gold(tmp_path / "ref.jsonl", n=30)
    res = rubric_test("over_refusal", gold, judge=label_judge(noise_every=5), n_boot=0, concurrency=1)
    assert res["unscored"] == {"no_logprobs": 6}
    assert res["scored"] == 24 and res["coverage"] == pytest.approx(0.8)
    assert all(it["error"] == "no_logprobs" and "judge" not in it for it in res["items"] if it["error"])
    assert any("only 80%" in f for f in res["flags"])
    assert not any("same label" in f for f in res["flags"])


def test_a_constant_judge_is_flagged(tmp_path):
    gold = _refusal_gold(tmp_path / "ref.jsonl", n=12)
    const = FakeBackend("const", responder=lambda m, p: Completion("1", option_logprobs={"1": -0.1, "2": -3.0, "3": -3.0}))
    res = rubric_test("over_refusal", gold, judge=const, n_boot=0)
    assert res["metrics"]["kappa"]["value"] == 0.0
    assert any("same label (1)" in f for f in res["flags"])


def test_bad_gold_rows_name_file_line_and_field(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"prompt": "p", "response": "r", "human": "full_refusal"}) + "\n"
                 + json.dumps({"prompt": "p", "response": "r", "human": "maybe"}) + "\n")
    with pytest.raises(InputError) as e:
        rubric_test("over_refusal", p, judge=label_judge())
    assert "bad.jsonl" in str(e.value) and ":2" in str(e.value) and "human" in str(e.value) and "full_refusal" in str(e.value)
    p.write_text(json.dumps({"prompt": "p", "response": "r", "human": 7}) + "\n")
    with pytest.raises(InputError, match="scale 1..3"):
        rubric_test("over_refusal", p, judge=label_judge())
    p.write_text(json.dumps({"prompt": "p", "response_a": "r", "response_b": "s", "human": "A>B"}) + "\n")
    with pytest.raises(InputError, match="a, b, tie"):
        rubric_test("helpfulness", p, judge=biased_judge())
    p.write_text(json.dumps({"id": 1, "prompt": "p", "response": "r", "human": 2}) + "\n"
                 + json.dumps({"id": 1, "prompt": "q", "response": "r", "human": 3}) + "\n")
    with pytest.raises(InputError, match="duplicate id 1 .first on line 1"):
        rubric_test("over_refusal", p, judge=label_judge())
    p.write_text(json.dumps({"prompt": "p", "response": "r", "human": "full_refusal"}) + "\n")
    with pytest.raises(InputError, match="no labels"):
        rubric_test("helpfulness", p, judge=label_judge())


def test_limit_takes_a_seeded_subset(tmp_path):
    gold = _pair_gold(tmp_path / "pairs.jsonl", n=30)
    a = rubric_test("helpfulness", gold, judge=biased_judge(), limit=7, n_boot=0, seed=3)
    b = rubric_test("helpfulness", gold, judge=biased_judge(), limit=7, n_boot=0, seed=3)
    assert a["n"] == 7 and [i["id"] for i in a["items"]] == [i["id"] for i in b["items"]]
    assert [i["id"] for i in a["items"]] != [f"p{i}" for i in range(7)]


def _edited_rubric(tmp_path, name="helpfulness2"):
    r = load_rubric("helpfulness")
    text = open(r.source).read().replace("name: helpfulness", f"name: {name}").replace("version: 1", "version: 2")
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return p


def test_diff_reports_changes_with_paired_ci_and_disagreements(tmp_path):
    gold = _pair_gold(tmp_path / "pairs.jsonl", n=80)
    old = rubric_test("helpfulness", gold, judge=biased_judge(bias=0.3), both_orders=False, n_boot=0,
                      output=tmp_path / "old.json")
    new = rubric_test(_edited_rubric(tmp_path), gold, judge=biased_judge(bias=0.0), both_orders=False, n_boot=0,
                      output=tmp_path / "new.json")
    d = rubric_diff(tmp_path / "old.json", tmp_path / "new.json", n_boot=300, output=tmp_path / "d.json")
    c = d["changes"]["accuracy_no_ties"]
    assert c["old"] == old["metrics"]["accuracy_no_ties"]["value"] and c["new"] == new["metrics"]["accuracy_no_ties"]["value"]
    assert c["delta"] > 0 and c["significant"]
    assert d["disagreements"] and all(x["old"] != x["new"] for x in d["disagreements"])
    assert d["disagreement_summary"].get("new", 0) > d["disagreement_summary"].get("old", 0)
    # running rubrics directly gives the same numbers
    d2 = rubric_diff("helpfulness", "helpfulness", gold, judge=biased_judge(), n_boot=50)
    assert d2["changes"]["kappa"]["delta"] == 0 and not d2["disagreements"]
    other = _pair_gold(tmp_path / "other.jsonl", n=10, seed=5)
    rubric_test("helpfulness", other, judge=biased_judge(), n_boot=0, output=tmp_path / "o.json")
    with pytest.raises(RlaifError, match="different gold"):
        rubric_diff(tmp_path / "old.json", tmp_path / "o.json")


def test_gate(tmp_path):
    gold = _pair_gold(tmp_path / "pairs.jsonl", n=40)
    res = rubric_test("helpfulness", gold, judge=biased_judge(bias=0.0), n_boot=100, output=tmp_path / "r.json")
    k = res["metrics"]["kappa"]["value"]
    ok = check_gate(tmp_path / "r.json", k - 0.01, "helpfulness")
    assert ok["kappa"] == k and ok["rubric"] == res["rubric"]["id"]
    assert check_gate(tmp_path / "r.json", 0.0, res["rubric"]["id"])["metric"] == "kappa"     # name@hash form
    with pytest.raises(GateError, match="below the floor"):
        check_gate(tmp_path / "r.json", k + 0.01, "helpfulness")
    with pytest.raises(GateError, match="changed since it was tested"):
        check_gate(tmp_path / "r.json", 0.0, _edited_rubric(tmp_path))
    with pytest.raises(GateError, match="changed since"):
        check_gate(tmp_path / "r.json", 0.0, "helpfulness@0000000000")
    with pytest.raises(GateError, match="measured judge"):
        check_gate(tmp_path / "r.json", 0.0, "helpfulness", judge="openai/gpt-4o")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(GateError, match="rubric-test result"):
        check_gate(tmp_path / "x.json", 0.0, "helpfulness")
    with pytest.raises(GateError, match="file not found"):
        check_gate(tmp_path / "missing.json", 0.0, "helpfulness")
    with pytest.raises(GateError, match="needs --rubric-test"):
        check_gate(None, 0.0, "helpfulness")


def test_gate_on_judged_rows(tmp_path):
    from rlaif.gate import check_gate_rows
    from rlaif.judge import judge

    gold = _pair_gold(tmp_path / "pairs.jsonl", n=30)
    rubric_test("helpfulness", gold, judge=biased_judge(bias=0.0), n_boot=0, output=tmp_path / "r.json")
    rows, _ = judge(gold, "helpfulness", judge=biased_judge(bias=0.0))
    assert check_gate_rows(tmp_path / "r.json", 0.5, rows)["kappa"] > 0.5
    with pytest.raises(GateError, match="below the floor"):
        check_gate_rows(tmp_path / "r.json", 1.5, rows)
    with pytest.raises(GateError, match="measured judge"):
        check_gate_rows(tmp_path / "r.json", 0.0, [dict(r, judge="openai/x") for r in rows])
    with pytest.raises(GateError, match="2 rubrics"):
        check_gate_rows(tmp_path / "r.json", 0.0, rows + [dict(rows[0], rubric="other@1")])
    with pytest.raises(GateError, match="no `rubric`"):
        check_gate_rows(tmp_path / "r.json", 0.0, [{"p_a": 0.5}])


def test_cli_min_kappa_exit_codes(tmp_path, monkeypatch, capsys):
    import sys

    from rlaif import cli

    gold = _pair_gold(tmp_path / "pairs.jsonl", n=30)
    # rlaif.judge the module is shadowed by rlaif.judge the function; patch the module's lookup
    monkeypatch.setattr(sys.modules["rlaif.judge"], "get_backend", lambda name=None, **kw: biased_judge(bias=0.0))
    out = tmp_path / "r.json"
    assert cli.main(["rubric", "test", "helpfulness", "--gold", str(gold), "-o", str(out), "--bootstrap", "50",
                     "-q", "--min-kappa", "0.5"]) == 0
    # a judge that mostly picks the first slot falls below the floor (a floor above 1 is refused: exit 2)
    monkeypatch.setattr(sys.modules["rlaif.judge"], "get_backend", lambda name=None, **kw: biased_judge(bias=0.9))
    assert cli.main(["rubric", "test", "helpfulness", "--gold", str(gold), "--bootstrap", "0", "-q",
                     "--min-kappa", "0.5"]) == 1
    text = capsys.readouterr()
    assert "always_longer" in text.out and "kappa" in text.out and "FAIL" in text.err
    assert cli.main(["rubric", "diff", str(out), str(out), "--bootstrap", "20"]) == 0
    assert cli.main(["rubric", "test", "helpfulness", "--gold", str(tmp_path / "nope.jsonl")]) == 2


@pytest.mark.slow
def test_embedded_judge_on_both_shipped_gold_sets(local_judge, tmp_path):
    """The real path, offline: the embedded SmolLM2 judges a few items of each shipped gold set and
    every metric and baseline is computed from real verdicts."""
    pairs = rubric_test("helpfulness", "examples/gold/human_pairs_dev.jsonl", judge=local_judge, limit=3, n_boot=20)
    assert pairs["n"] == 3 and pairs["method"] == "logprobs" and pairs["gold"]["rows_in_file"] == 551
    assert all(0.0 <= it["p_a"] <= 1.0 and len(it["orders"]) == 2 for it in pairs["items"] if not it["error"])
    assert set(pairs["baselines"]) == {"always_longer", "always_a"}
    ref = rubric_test("over_refusal", "examples/gold/refusal_labels_dev.jsonl", judge=local_judge, limit=4, n_boot=20)
    assert ref["n"] == 4 and ref["gold"]["rows_in_file"] == 1315
    assert all(1.0 <= it["score"] <= 3.0 and it["judge"] in (1, 2, 3) for it in ref["items"] if not it["error"])
    assert any(k.startswith("majority_class") for k in ref["baselines"])
