"""Issue 14 item 4: `judge` and `rubric test` label pairwise ties by one rule (rlaif/ties.py), and
both outputs record it; the κ of `rubric test` is measured on the labels `judge` writes."""
import json

from rlaif.cli import main
from rlaif.ties import TIE_MARGIN, describe, pair_label, preference


def test_one_rule():
    assert TIE_MARGIN == 0.05
    assert preference(0.53) == "tie" and preference(0.56) == "a" and preference(0.44) == "b"
    assert pair_label(0.9, False) == "tie" and pair_label(0.9, True) == "a" and pair_label(0.5, None, 0.0) == "tie"


def test_judge_and_rubric_test_share_the_default_and_record_it(tmp_path, capsys):
    rows = [{"id": f"r{i}", "prompt": f"Question {i}?", "response_a": f"Answer {i} is here.",
             "response_b": f"Another answer {i}.", "human": "a" if i % 2 else "b"} for i in range(6)]
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "judged.jsonl"
    assert main(["judge", str(gold), "--rubric", "helpfulness", "--judge", "fake/hash", "--mode", "pairwise",
                 "-o", str(out)]) == 0
    judged = [json.loads(x) for x in out.read_text().splitlines()]
    assert {r["tie_rule"] for r in judged} == {describe(TIE_MARGIN, True)}
    res_path = tmp_path / "res.json"
    assert main(["rubric", "test", "helpfulness", "--gold", str(gold), "--judge", "fake/hash",
                 "-o", str(res_path)]) == 0, capsys.readouterr().err
    res = json.loads(res_path.read_text())
    assert res["settings"]["tie_margin"] == TIE_MARGIN
    assert res["settings"]["tie_rule"] == describe(TIE_MARGIN, True)
    # the labels rubric test scores are the judge's own preferences (plus order flips as ties)
    by_id = {r["id"]: r for r in judged}
    for it in res["items"]:
        j = by_id[it["id"]]
        assert it["judge"] == ("tie" if j["consistent"] is False else j["preference"])
