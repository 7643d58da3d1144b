"""Issue 14 item 8: `pairs` says in one console line why rows were dropped, and counts pairwise
rows by their prompts (24 rows over 4 prompts are 4 prompts)."""
import json

from rlaif.cli import main
from rlaif.pairs import build_pairs_from_rows, render_dropped


def _pw(i, prompt, p_a):
    return {"id": f"r{i}", "prompt": prompt, "response_a": f"a{i}", "response_b": f"b{i}", "mode": "pairwise",
            "p_a": p_a, "preference": "tie" if p_a == 0.5 else ("a" if p_a > 0.5 else "b"), "consistent": True,
            "judge": "fake/j", "rubric": "h@1", "error": None}


def test_pairwise_rows_are_counted_by_prompt():
    rows = [_pw(6 * q + k, f"question {q}", 0.9 if k % 2 else 0.5) for q in range(4) for k in range(6)]
    b = build_pairs_from_rows(rows, "pairwise")
    assert b.stats["counts"]["input_rows"] == 24
    assert b.stats["counts"]["prompts"] == 4
    assert b.stats["counts"]["prompts_with_pairs"] == 4


def test_pairs_prints_why_rows_were_dropped_in_one_line(tmp_path, capsys):
    rows = [{"id": f"c{q}-{k}", "prompt_id": f"p{q}", "prompt": f"q{q}", "response": f"resp {q} {k}", "mode": "absolute",
             "score": 3.0 if q else 3.0 + k, "judge": "fake/j", "rubric": "h@1", "error": None}
            for q in range(4) for k in range(2)]
    rows.append({**rows[0], "id": "bad", "response": "an unreadable one", "score": None, "error": "parse_error"})
    src = tmp_path / "judged.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["pairs", str(src), "-o", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("dropped: "))
    assert "1 unscored rows (parse_error 1)" in line and "3 prompts without a pair (all_tied 3)" in line
    assert line == render_dropped(json.loads((tmp_path / "ds" / "rlaif_stats.json").read_text()))
