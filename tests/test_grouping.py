"""Issue 14 item 3: `rlaif judge candidates.jsonl --mode pairwise|rank` on `rlaif sample` output
groups the candidates per prompt (all pairs or a policy for pairwise; the group for rank)."""
import json

import pytest

from rlaif.cli import main
from rlaif.grouping import group_candidates, group_if_candidates, is_candidate_rows


def cands(prompts=2, n=3, dup=False):
    rows = []
    for p in range(prompts):
        for k in range(n):
            text = f"answer {p}.{k}" if not (dup and k == n - 1) else f"answer {p}.0"
            rows.append({"id": f"p{p}-{k}", "prompt_id": f"p{p}", "candidate": k, "prompt": f"Question {p}?",
                         "messages": [{"role": "user", "content": f"Question {p}?"}], "response": text,
                         "model": "fake/hash"})
    return rows


def test_all_pairs_vs_first_and_random():
    g = group_candidates(cands(2, 4), "pairwise")
    assert len(g.rows) == 2 * 6 and g.prompts == 2 and g.candidates == 8
    assert {r["prompt_id"] for r in g.rows} == {"p0", "p1"}
    first = g.rows[0]
    assert (first["id"], first["response_a"], first["response_b"]) == ("p0-0~p0-1", "answer 0.0", "answer 0.1")
    assert len(group_candidates(cands(2, 4), "pairwise", "vs_first").rows) == 2 * 3
    r1 = group_candidates(cands(2, 4), "pairwise", "random", seed=1).rows
    assert len(r1) == 2 and r1 == group_candidates(cands(2, 4), "pairwise", "random", seed=1).rows


def test_rank_groups_and_identical_texts():
    g = group_candidates(cands(2, 3, dup=True), "rank")
    assert [r["responses"] for r in g.rows] == [["answer 0.0", "answer 0.1"], ["answer 1.0", "answer 1.1"]]
    assert g.rows[0]["candidate_ids"] == ["p0-0", "p0-1"] and g.skipped["identical_pair"] == 2
    single = group_candidates(cands(1, 1), "pairwise")
    assert single.rows == [] and single.skipped["single_candidate"] == 1
    with pytest.raises(ValueError, match="unknown pair policy"):
        group_candidates(cands(), "pairwise", "best")


def test_hook_leaves_other_rows_alone():
    pw = [{"prompt": "q", "response_a": "a", "response_b": "b"}]
    assert group_if_candidates(pw, "pairwise") is pw
    assert group_if_candidates(cands(), "absolute") == cands()
    assert is_candidate_rows(cands()) and not is_candidate_rows(pw)


@pytest.mark.parametrize("mode,n_rows,field", [("pairwise", 6, "p_a"), ("rank", 2, "ranking")])
def test_cli_judges_sample_output_pairwise_and_rank(tmp_path, capsys, mode, n_rows, field):
    src = tmp_path / "candidates.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in cands(2, 3)))
    out = tmp_path / f"{mode}.jsonl"
    assert main(["judge", str(src), "--rubric", "helpfulness", "--judge", "fake/hash", "--mode", mode,
                 "-o", str(out)]) == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == n_rows and all(field in r for r in rows)
    assert {r["prompt_id"] for r in rows} == {"p0", "p1"}
