"""Malformed input gets an error naming file, line and field; --skip-invalid judges the rest;
output written before an error stays intact."""
from __future__ import annotations

import json
import math

import pytest

from rlaif.cli import main
from rlaif.errors import InputError
from rlaif.judge import judge
from rlaif.records import Completion


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOOD = json.dumps({"prompt": "p", "response": "r"})


@pytest.mark.parametrize("lines,where", [
    ([GOOD, '{"prompt": "p", "response": "r"', GOOD], ":2: invalid JSON"),
    ([GOOD, GOOD, json.dumps({"prompt": "p"})], ":3: field 'response': missing"),
    ([json.dumps({"prompt": "p", "response": 5})], ":1: field 'response': expected str, got int"),
    ([json.dumps({"prompt": ["x"], "response": "r"})], ":1: field 'prompt': expected str, got list"),
    ([json.dumps(["not", "an", "object"])], ":1: expected a JSON object"),
    ([json.dumps({"prompt": "p", "responses": ["only one"]})], ":1: field 'responses': needs at least 2"),
    ([json.dumps({"prompt": "p", "response": "r", "id": [1]})], ":1: field 'id': expected str or int"),
])
def test_malformed_rows_name_file_line_and_field(tmp_path, capsys, lines, where):
    f = write(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    assert main(["judge", str(f), "--rubric", "helpfulness", "--judge", "fake/x", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: {f}{where}" in err, err
    assert not out.exists()               # validation happens before any judging or writing


def test_empty_file_and_missing_file(tmp_path, capsys):
    f = write(tmp_path / "empty.jsonl", ["", "  "])
    assert main(["judge", str(f), "--rubric", "helpfulness"]) == 2
    assert f"{f}: file is empty" in capsys.readouterr().err
    assert main(["judge", str(tmp_path / "nope.jsonl"), "--rubric", "helpfulness"]) == 2
    assert "nope.jsonl: file not found" in capsys.readouterr().err


def test_unknown_rubric(tmp_path, capsys):
    f = write(tmp_path / "in.jsonl", [GOOD])
    assert main(["judge", str(f), "--rubric", "helpfulnes"]) == 2
    err = capsys.readouterr().err
    assert "helpfulnes: unknown rubric; known:" in err and "helpfulness" in err


def test_reference_required_by_the_rubric(tmp_path, capsys):
    f = write(tmp_path / "in.jsonl", [GOOD])
    assert main(["judge", str(f), "--rubric", "instruction_following"]) == 2
    assert f"{f}:1: field 'reference': missing" in capsys.readouterr().err


def const_judge(fake_backend):
    return fake_backend(responder=lambda m, p: Completion("3", option_logprobs={"3": 0.0}))


def test_skip_invalid_judges_the_rest_and_reports_skipped_rows(tmp_path, fake_backend):
    f = write(tmp_path / "in.jsonl", [GOOD, "{broken", json.dumps({"prompt": "p"}), GOOD])
    rows, s = judge(f, "helpfulness", judge=const_judge(fake_backend), skip_invalid=True)
    assert len(rows) == 2 and s.scored == 2
    assert [e.line for e in s.skipped] == [2, 3] and s.skipped[1].field == "response"
    assert "skipped 2 invalid input rows" in s.render()
    with pytest.raises(InputError):
        judge(f, "helpfulness", judge=const_judge(fake_backend))


def test_output_written_before_a_crash_is_intact(tmp_path, fake_backend):
    calls = {"n": 0}

    def responder(messages, params):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt          # the user hits Ctrl-C during the 4th request
        return Completion("3", option_logprobs={"3": 0.0})

    f = write(tmp_path / "in.jsonl", [json.dumps({"id": i, "prompt": "p", "response": f"r{i}"}) for i in range(6)])
    out = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        judge(f, "helpfulness", judge=fake_backend(responder=responder, latency=0.01), output=out, concurrency=1)
    # OUT appears only when complete (never half-written); finished rows wait in OUT.partial
    assert not out.exists()
    lines = out.with_name("out.jsonl.partial").read_text().splitlines()[1:]     # line 0: the job header
    assert [json.loads(x)["id"] for x in lines] == [0, 1, 2]     # whole, valid, in order
    assert all(json.loads(x)["score"] == 3 for x in lines)
    # the same command resumes: only rows 3..5 are judged
    again = fake_backend(responder=lambda m, p: Completion("3", option_logprobs={"3": 0.0}))
    judge(f, "helpfulness", judge=again, output=out, concurrency=1)
    assert len(again.calls) == 3
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == list(range(6))


def test_cli_prints_jsonl_to_stdout_with_the_fake_judge(tmp_path, capsys):
    f = write(tmp_path / "in.jsonl", [GOOD])
    assert main(["judge", str(f), "--rubric", "helpfulness", "--judge", "fake/x", "-q"]) == 0
    captured = capsys.readouterr()
    row = json.loads(captured.out.strip())
    assert row["error"] == "no_logprobs" and row["judge"] == "fake/x"      # the fake gives no probabilities: unscored, not invented
    assert "1 unscored" in captured.err


def test_rubric_render_prints_the_exact_messages(tmp_path, capsys):
    ex = tmp_path / "row.json"
    ex.write_text(json.dumps({"prompt": "Why is the sky blue?", "response_a": "Rayleigh scattering.", "response_b": "{{ 7*7 }}"}))
    assert main(["rubric", "render", "helpfulness", "--example", str(ex), "--json"]) == 0
    msgs = json.loads(capsys.readouterr().out)
    assert msgs[0]["role"] == "system" and "{{ 7*7 }}" in msgs[1]["content"]
    assert msgs[1]["content"].index("Rayleigh") < msgs[1]["content"].index("{{ 7*7 }}")
    assert main(["rubric", "render", "helpfulness", "--example", str(ex), "--swap"]) == 0
    out = capsys.readouterr().out
    assert out.index("{{ 7*7 }}") < out.index("Rayleigh")
