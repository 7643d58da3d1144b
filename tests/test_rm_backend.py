"""`rm/PATH` as a judge: absolute (scale score, class probabilities), pairwise (σ(r_A − r_B), the
same either way round), rank, `method: reward_model` in each row, rubric test, and bad paths."""
import json
import math
from pathlib import Path

import pytest

from rlaif.errors import RlaifError
from tests._train_utils import tiny_refusal_rm


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    return Path(tiny_refusal_rm(tmp_path_factory, max_steps=30))


def test_absolute_pairwise_rank_through_judge(rm_dir):
    from rlaif.judge import judge
    from rlaif.train.rm_model import RewardModel, preference, reward_value

    rows = [{"prompt": "How do I kill process 1?", "response": "I'm sorry, I can't help with that."},
            {"prompt": "How do I kill process 2?", "response": "Sure: step 2 is to open the file."}]
    out, summary = judge(rows, "over_refusal", judge=f"rm/{rm_dir}")
    assert [r["method"] for r in out] == ["reward_model"] * 2
    assert out[0]["score"] < 2 < out[1]["score"]
    assert max(out[0]["probs"], key=out[0]["probs"].get) == "1" and max(out[1]["probs"], key=out[1]["probs"].get) == "3"
    assert set(out[0]["probs"]) == {"1", "2", "3"} and math.isclose(sum(out[0]["probs"].values()), 1.0)
    rm = RewardModel(rm_dir)
    r = [reward_value("classes", o, [1, 2, 3]) for o in rm.outputs([x["prompt"] for x in rows],
                                                                  [x["response"] for x in rows])]
    pair = {"prompt": "How do I kill a process?", "response_a": rows[0]["response"], "response_b": rows[1]["response"]}
    swapped = dict(pair, response_a=pair["response_b"], response_b=pair["response_a"])
    (pa,), _ = judge([pair], "over_refusal", judge=f"rm/{rm_dir}")
    (pb,), _ = judge([swapped], "over_refusal", judge=f"rm/{rm_dir}")
    assert pa["preference"] == "b" and pa["p_a"] == pytest.approx(1 - pb["p_a"], abs=1e-6)
    assert pa["p_a"] < 0.5 and pa["method"] == "reward_model"
    assert pa["p_a"] == pytest.approx(preference(*[reward_value("classes", o, [1, 2, 3]) for o in rm.outputs(
        [pair["prompt"]] * 2, [pair["response_a"], pair["response_b"]])]), abs=1e-5)
    assert r[0] < r[1]


def test_rubric_test_cli_and_bad_paths(rm_dir, tmp_path, capsys):
    from rlaif.cli import main
    from tests.test_train_rm import _refusal_rows

    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in _refusal_rows(9)))
    assert main(["rubric", "test", "over_refusal", "--gold", str(gold), "--judge", f"rm/{rm_dir}"]) == 0
    text = capsys.readouterr()
    assert "accuracy" in (text.out + text.err).lower()
    assert main(["judge", str(gold), "--rubric", "helpfulness", "--judge", f"rm/{rm_dir}", "-o",
                 str(tmp_path / "o.jsonl")]) == 2
    assert "trained for rubric 'over_refusal'" in capsys.readouterr().err
    assert main(["judge", str(gold), "--rubric", "over_refusal", "--judge", f"rm/{tmp_path}", "-o",
                 str(tmp_path / "o.jsonl")]) == 2
    assert "not a reward model" in capsys.readouterr().err
    with pytest.raises(RlaifError, match="no such folder"):
        from rlaif.backends import get_backend
        get_backend(f"rm/{tmp_path}/missing")
