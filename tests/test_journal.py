"""The one crash-safe output (rlaif/journal.py) and the typed options (rlaif/options.py): the
defects of issue 15 they fix at the root, each checked through the public entry points."""
import json
import os
import subprocess
import sys

import pytest

from rlaif.backends.fake import FakeBackend
from rlaif.errors import ConfigError, RlaifError
from rlaif.journal import Journal, check_output, content_hash, write_json_atomic, write_jsonl_atomic
from rlaif.judge import judge
from rlaif.options import JudgeOptions, split_options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scoring(messages, params):
    from rlaif.records import Completion

    return Completion("4", option_logprobs={"4": -0.1, "3": -2.5})


def rows_file(path, n=6, **extra):
    path.write_text("".join(json.dumps({"id": i, "prompt": f"q{i}", "response": f"r{i}", **extra}) + "\n"
                            for i in range(n)))
    return path


# ---------------------------------------------------------------------------------------------
# 15.1: bookkeeping never shares a namespace with the user's fields
# ---------------------------------------------------------------------------------------------
def test_a_row_with_its_own_rlaif_index_resumes_without_loss_or_duplicates(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": i, "prompt": "q", "response": f"r{i}", "_rlaif_index": 0}) + "\n"
                           for i in range(6)))
    out = tmp_path / "out.jsonl"
    ref, _ = judge(inp, "helpfulness", judge=FakeBackend("t", responder=scoring), output=out)
    ref_bytes = out.read_bytes()
    # a killed run: the work file holds 3 finished rows, written as a fresh run writes them
    partial = out.with_name(out.name + ".partial")
    out.unlink()
    with pytest.raises(KeyboardInterrupt):
        calls = {"n": 0}

        def dies(messages, params):
            calls["n"] += 1
            if calls["n"] == 4:
                raise KeyboardInterrupt
            return scoring(messages, params)

        judge(inp, "helpfulness", judge=FakeBackend("t", responder=dies, latency=0.001), output=out, concurrency=1)
    assert partial.exists() and not out.exists()
    b = FakeBackend("t", responder=scoring)
    rows, _ = judge(inp, "helpfulness", judge=b, output=out)
    assert [r["id"] for r in rows] == list(range(6))            # none lost, none duplicated
    assert all(r["_rlaif_index"] == 0 for r in rows)            # the user's field is kept as it was
    assert out.read_bytes() == ref_bytes and len(b.calls) == 3


def test_the_index_field_is_chosen_free_of_every_row_field(tmp_path):
    rows = [{"_rlaif_index": 1}, {"_rlaif_index_1": 2}]
    with Journal(tmp_path / "o.jsonl", "job", rows=rows) as jn:
        assert jn.index_field == "_rlaif_index_2"
        jn.append(0, rows[0])
    with Journal(tmp_path / "o.jsonl", "job", rows=rows) as jn:
        assert jn.done == {0: {"_rlaif_index": 1}}


# ---------------------------------------------------------------------------------------------
# 15.6, 15.13, 15.24: a bad -o is refused before any request, and leaves nothing behind
# ---------------------------------------------------------------------------------------------
def test_output_equal_to_the_input_is_refused_before_any_request(tmp_path):
    inp = rows_file(tmp_path / "in.jsonl")
    before = inp.read_bytes()
    b = FakeBackend("t", responder=scoring)
    with pytest.raises(RlaifError, match="is the input file"):
        judge(inp, "helpfulness", judge=b, output=inp)
    assert b.calls == [] and inp.read_bytes() == before
    assert not (tmp_path / "in.jsonl.partial").exists()


def test_output_that_is_a_directory_is_refused_before_any_request(tmp_path):
    inp = rows_file(tmp_path / "in.jsonl")
    b = FakeBackend("t", responder=scoring)
    with pytest.raises(RlaifError, match="is a directory"):
        judge(inp, "helpfulness", judge=b, output=tmp_path)
    assert b.calls == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_output_in_an_unwritable_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(RlaifError, match="cannot write"):
            check_output(ro / "out.jsonl")
    finally:
        ro.chmod(0o700)


def test_cli_rejects_a_directory_output_with_exit_2_and_no_traceback(tmp_path):
    inp = rows_file(tmp_path / "in.jsonl")
    p = subprocess.run([sys.executable, "-m", "rlaif", "judge", str(inp), "--rubric", "helpfulness",
                        "--judge", "fake/hash", "-o", str(tmp_path)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT})
    assert p.returncode == 2 and "is a directory" in p.stderr and "Traceback" not in p.stderr


def test_a_refused_option_leaves_no_partial_file(tmp_path):
    inp = rows_file(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    b = FakeBackend("t", responder=scoring)
    with pytest.raises(ConfigError):
        judge(inp, "helpfulness", judge=b, output=out, rank_method="foo")
    assert b.calls == [] and not out.exists() and not out.with_name("out.jsonl.partial").exists()


# ---------------------------------------------------------------------------------------------
# 15.17: a corrupt OUT.partial is one clear error, never a traceback
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"\xff\xfe garbage\n", b"[1, 2]\n", b"not json at all\n{}\n"])
def test_a_corrupt_partial_is_one_clear_error(tmp_path, content):
    inp = rows_file(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    out.with_name("out.jsonl.partial").write_bytes(content)
    with pytest.raises(RlaifError, match="not an rlaif work file.*--fresh"):
        judge(inp, "helpfulness", judge=FakeBackend("t", responder=scoring), output=out)
    rows, _ = judge(inp, "helpfulness", judge=FakeBackend("t", responder=scoring), output=out, fresh=True)
    assert len(rows) == 6 and out.exists()


def test_a_corrupt_middle_line_is_redone_not_a_traceback(tmp_path, capsys):
    inp = rows_file(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    ref, _ = judge(inp, "helpfulness", judge=FakeBackend("t", responder=scoring), output=out)
    partial = out.with_name("out.jsonl.partial")
    with Journal(out, "x", rows=ref) as jn:
        pass
    head = partial.read_text().splitlines()[0]
    header = json.loads(head)
    lines = [json.dumps({**ref[k], header["index_field"]: k}) for k in range(3)]
    lines[1] = "\x00\x01 broken"
    from rlaif.io import read_rows
    from rlaif.judging.job import job_fingerprint
    from rlaif.rubrics import load_rubric

    read, mode = read_rows(inp)
    b = FakeBackend("t", responder=scoring)
    fp = job_fingerprint(read.rows, load_rubric("helpfulness"), b, mode, JudgeOptions())
    partial.write_text(json.dumps({"_rlaif_job": fp, "index_field": header["index_field"]}) + "\n"
                       + "\n".join(lines) + "\n")
    out.unlink()
    rows, _ = judge(inp, "helpfulness", judge=b, output=out)
    assert rows == ref and len(b.calls) == 5        # row 0 kept; rows 1..5 judged again
    assert "unreadable line" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# 15.22: two processes on one -o: the second fails at once, saying so
# ---------------------------------------------------------------------------------------------
def test_a_second_job_on_the_same_output_fails_at_once(tmp_path):
    out = tmp_path / "out.jsonl"
    with Journal(out, "job") as first:
        first.append(0, {"a": 1})
        code = ("import sys; from rlaif.journal import Journal\n"
                "try:\n    Journal(sys.argv[1], 'job').open()\n"
                "except Exception as e:\n    print(e); sys.exit(3)\n")
        p = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": ROOT})
        assert p.returncode == 3 and "another rlaif process is writing" in p.stdout
    with Journal(out, "job") as again:              # released when the first closed
        assert again.done == {0: {"a": 1}}


# ---------------------------------------------------------------------------------------------
# Typed options: every problem at once, before any request (issue 10, 15.14, 15.24)
# ---------------------------------------------------------------------------------------------
def test_invalid_options_fail_before_any_request_with_every_problem_listed(tmp_path):
    inp = rows_file(tmp_path / "in.jsonl")
    b = FakeBackend("t", responder=scoring)
    with pytest.raises(ConfigError) as e:
        judge(inp, "helpfulness", judge=b, rank_method="foo", concurrency=-1, tie_margin=0.7, aggregate="median",
              rpm=-5, max_retries=-1, timeout=0, max_cost=-1, samples=-2, max_tokens=0, colour="red")
    msg = str(e.value)
    assert b.calls == []
    for needle in ("rank_method", "'tournament' or 'listwise'", "concurrency", "tie_margin", "0.5", "aggregate",
                   "'mean', 'majority' or 'weighted'", "rpm", "max_retries", "timeout", "max_cost", "samples",
                   "max_tokens", "colour: unknown option"):
        assert needle in msg, needle
    assert msg.startswith("11 problem(s)")


@pytest.mark.parametrize("args", [["--rpm", "-5"], ["--max-retries", "-1"], ["--timeout", "0"], ["--timeout", "-1"],
                                  ["--max-cost", "-1"], ["--tie-margin", "-3"], ["--samples", "-2"],
                                  ["--max-tokens", "0"], ["--concurrency", "0"]])
def test_cli_bad_option_exits_2_with_one_message(tmp_path, capsys, args):
    from rlaif.cli import main

    inp = rows_file(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    assert main(["judge", str(inp), "--rubric", "helpfulness", "--judge", "fake/hash", "-o", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {args[0]}: ") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and not out.with_name("out.jsonl.partial").exists()


def test_options_are_not_mutated_by_the_judge():
    from rlaif.judging.judge import Judge, resolve_method
    from rlaif.rubrics import load_rubric

    opts = JudgeOptions()
    b = FakeBackend("x", supports_logprobs=False)
    j = Judge(load_rubric("helpfulness"), b, config=opts)
    assert j.method == "generative" == resolve_method(opts, b) and opts.generative is False


def test_split_options_routes_each_keyword_to_its_set():
    o, e, j = split_options({"generative": True, "rpm": 30, "shard": "0/2"})
    assert o.generative and e.rpm == 30 and j.shard == "0/2"


# ---------------------------------------------------------------------------------------------
# Writers and the hash
# ---------------------------------------------------------------------------------------------
def test_atomic_writers_and_content_hash(tmp_path):
    write_jsonl_atomic(tmp_path / "a" / "x.jsonl", [{"a": "é"}])
    assert (tmp_path / "a" / "x.jsonl").read_text(encoding="utf-8") == '{"a": "é"}\n'
    write_json_atomic(tmp_path / "a" / "y.json", {"k": 1})
    assert json.loads((tmp_path / "a" / "y.json").read_text()) == {"k": 1}
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.endswith(".tmp")]
    h = content_hash(tmp_path / "a")
    (tmp_path / "a" / "y.json").write_text("{}")
    assert content_hash(tmp_path / "a") != h and len(h) == 64


# (`rubric test --min-kappa 1.01` stays accepted: tests/test_gold.py pins it as the always-failing floor.)
@pytest.mark.parametrize("cmd", [["pairs", "j.jsonl", "-o", "d"]])
def test_min_kappa_outside_minus_one_to_one_is_refused_before_any_work(cmd, capsys):
    from rlaif.cli import main

    with pytest.raises(SystemExit) as e:
        main([*cmd, "--min-kappa", "5"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--min-kappa" in err and "[-1, 1]" in err and "Traceback" not in err
