"""`rlaif pairs` hardening (issue 15): cross-rubric pairs refused (4), duplicate ids refused (5),
stale temp folders of a killed run removed (28)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rlaif.errors import InputError
from rlaif.pairs import build_pairs, read_judged, remove_stale_temps, write_dataset


def cand(pid, k, score, *, rubric="helpfulness@abc", judge="fake/judge", text=None, id_=None):
    return {"id": id_ or f"{pid}-{k}", "prompt_id": pid, "prompt": f"question {pid}",
            "response": text or f"answer {pid} number {k}", "mode": "absolute", "judge": judge, "rubric": rubric,
            "error": None, "score": score, "probs": {str(round(score)): 1.0}}


def _file(tmp_path, rows):
    p = tmp_path / "judged.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_rows_judged_with_different_rubrics_are_refused(tmp_path):
    rows = [cand("p", 0, 4.8), cand("p", 1, 1.2, rubric="conciseness@def"), cand("q", 0, 3.0), cand("q", 1, 2.0)]
    with pytest.raises(InputError) as e:
        build_pairs(_file(tmp_path, rows))
    assert e.value.line == 2 and e.value.field == "rubric" and "conciseness@def" in str(e.value)
    # an edited rubric (same name, other hash) is another rubric too
    rows[1]["rubric"] = "helpfulness@zzz"
    with pytest.raises(InputError, match="not comparable"):
        read_judged(_file(tmp_path, rows))


def test_a_jury_in_one_file_is_fine():
    rows = []
    for k, s in enumerate((4.0, 2.0)):
        rows.append(cand("p", k, s, judge="fake/a"))
        rows.append(cand("p", k, s + 0.5, judge="fake/b", rubric="conciseness@def"))
    res = build_pairs(rows)
    assert len(res.pairs) == 1 and res.pairs[0]["score_chosen"] == 4.25


def test_duplicate_id_with_different_text_is_refused(tmp_path):
    rows = [cand("p", 0, 4.0, id_="x"), cand("p", 1, 2.0, id_="x")]
    with pytest.raises(InputError) as e:
        build_pairs(_file(tmp_path, rows))
    assert e.value.line == 2 and e.value.field == "id" and "line 1" in str(e.value)


def test_same_row_twice_is_refused(tmp_path):
    rows = [cand("p", 0, 4.0), cand("p", 1, 2.0), cand("p", 0, 4.0)]
    with pytest.raises(InputError, match="already judged .* on line 1"):
        build_pairs(_file(tmp_path, rows))


def test_stale_temp_folders_of_a_killed_run_are_removed(tmp_path):
    out = tmp_path / "ds"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = [tmp_path / f".ds.tmp-{dead_pid}", tmp_path / f".ds.old-{dead_pid}"]
    live = tmp_path / f".ds.tmp-{os.getppid()}"        # a running process's folder is left alone
    other = tmp_path / f".other.tmp-{dead_pid}"
    for d in stale + [live, other]:
        d.mkdir()
        (d / "x").write_text("partial")
    assert sorted(remove_stale_temps(out)) == sorted(stale)
    assert live.exists() and other.exists() and not any(d.exists() for d in stale)
    # and write_dataset does it on its own
    stale[0].mkdir()
    rows = [cand("p", 0, 4.0), cand("p", 1, 2.0)]
    built = build_pairs(rows)
    write_dataset(built.pairs, built.stats, out, meta={})
    assert not stale[0].exists() and (out / "README.md").exists()
