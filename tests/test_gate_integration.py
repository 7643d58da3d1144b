"""The export gate wired into `rlaif pairs` and `rlaif run`: a dataset is refused from a rubric whose
tested agreement with people is under the floor, and the card records a gate that passed."""
from __future__ import annotations

import json

import pytest

from rlaif.cli import main
from rlaif.gate import GateError
from rlaif.pairs import build_pairs
from rlaif.rubrics import load_rubric


def judged_rows(rubric_id):
    rows = []
    for p in range(3):
        for k, score in enumerate([4.5, 1.5, 3.0]):
            rows.append({"prompt_id": f"p{p}", "prompt": f"question {p}", "candidate_index": k,
                         "response": f"answer {p}-{k}" + " x" * k, "mode": "absolute", "judge": "fake/test",
                         "rubric": rubric_id, "score": score, "probs": {str(round(score)): 1.0}, "error": None})
    return rows


def result_file(tmp_path, agree: bool):
    """A real `rubric test` result: a scripted judge that agrees with the human labels (κ = 1) or
    says the opposite every time (κ < 0), on a small pairwise gold set."""
    import math

    from rlaif.backends.fake import FakeBackend
    from rlaif.gold import rubric_test
    from rlaif.records import Completion

    gold = tmp_path / "gold.jsonl"
    items = [{"id": f"g{i}", "prompt": f"q{i}", "response_a": f"GOOD {i}" if i % 2 else f"bad {i}",
              "response_b": f"bad {i}" if i % 2 else f"GOOD {i}", "human": "a" if i % 2 else "b"} for i in range(12)]
    gold.write_text("".join(json.dumps(x) + "\n" for x in items))

    def responder(messages, params):
        text = messages[-1]["content"]
        first_good = text.index("<response_a>") < text.index("GOOD") < text.index("<response_b>")
        p = 0.9 if first_good == agree else 0.1
        return Completion("A" if p > 0.5 else "B", option_logprobs={"A": math.log(p), "B": math.log(1 - p)})

    path = tmp_path / f"result-{agree}.json"
    rubric_test("helpfulness", gold, judge=FakeBackend("test", responder=responder), output=path, n_boot=50)
    return path


@pytest.fixture
def rubric_id():
    return load_rubric("helpfulness").id


def test_pairs_refuses_under_the_floor_and_writes_nothing(tmp_path, rubric_id):
    judged = tmp_path / "judged.jsonl"
    judged.write_text("".join(json.dumps(r) + "\n" for r in judged_rows(rubric_id)))
    res = result_file(tmp_path, agree=False)
    with pytest.raises(GateError, match="below the floor"):
        build_pairs(judged, tmp_path / "ds", min_kappa=0.4, rubric_test_result=res)
    assert not (tmp_path / "ds").exists()
    assert main(["pairs", str(judged), "-o", str(tmp_path / "ds"), "--min-kappa", "0.4", "--rubric-test", str(res)]) == 2


def test_pairs_passes_the_gate_and_records_it_in_the_card(tmp_path, rubric_id):
    judged = tmp_path / "judged.jsonl"
    judged.write_text("".join(json.dumps(r) + "\n" for r in judged_rows(rubric_id)))
    res = result_file(tmp_path, agree=True)
    out = build_pairs(judged, tmp_path / "ds", min_kappa=0.4, rubric_test_result=res)
    assert len(out.pairs) == 3
    assert "export gate" in (tmp_path / "ds" / "README.md").read_text()


def test_gate_refuses_a_result_for_another_rubric_version(tmp_path, rubric_id):
    judged = tmp_path / "judged.jsonl"
    judged.write_text("".join(json.dumps(r) + "\n" for r in judged_rows(rubric_id)))
    res = result_file(tmp_path, agree=True)
    data = json.loads(res.read_text())
    data["rubric"]["hash"] = "0000000000"          # measured with an earlier version of the rubric
    res.write_text(json.dumps(data))
    with pytest.raises(GateError, match="changed since it was tested"):
        build_pairs(judged, tmp_path / "ds", min_kappa=0.4, rubric_test_result=res)


def test_pipeline_config_min_kappa_needs_a_result(tmp_path):
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": "hi"}) + "\n")
    cfg = tmp_path / "p.yaml"
    cfg.write_text("prompts: prompts.jsonl\npairs: {min_kappa: 0.4}\n")
    assert main(["run", str(cfg), "--check"]) == 2
