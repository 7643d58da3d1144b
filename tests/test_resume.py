"""Resume: `rlaif judge -o OUT` SIGKILLed at several points and restarted ends with an OUT equal,
byte for byte, to an uninterrupted run; no half-written OUT ever exists."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.openai_server import server_stats, start_server

HERE = Path(__file__).parent
N = 240


@pytest.fixture(scope="module")
def server():
    proc, url = start_server(latency=0.02)
    yield url
    proc.kill()
    proc.wait()


def write_input(path: Path, n: int = N) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"r{i}", "prompt": f"Explain item {i}.", "response_a": f"Answer {i} one way.",
                                "response_b": f"Answer {i}, another way, at more length."}) + "\n")
    return path


def cmd(inp, out, *extra):
    return [sys.executable, "-m", "rlaif", "judge", str(inp), "-r", "helpfulness", "-j", "openai/m",
            "-o", str(out), "-q", "--concurrency", "8", *extra]


def env_for(url, cache):
    env = {**os.environ, "OPENAI_BASE_URL": url, "RLAIF_CACHE_DIR": str(cache), "OPENAI_API_KEY": "sk-resume-SECRET-42"}
    env.pop("RLAIF_LEDGER", None)           # each run's ledger lives in its own cache dir
    return env


def partial_lines(out: Path) -> int:
    p = out.with_name(out.name + ".partial")
    try:
        return p.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow      # ~6 interpreter starts: about a minute on a 2-core machine
@pytest.mark.ci        # an acceptance test: the default run and CI include it
def test_sigkill_at_several_points_then_resume_equals_uninterrupted(tmp_path, server):
    inp = write_input(tmp_path / "in.jsonl")
    ref = tmp_path / "ref.jsonl"
    r = subprocess.run(cmd(inp, ref), env=env_for(server, tmp_path / "cache_ref"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ref_bytes = ref.read_bytes()
    assert ref_bytes.count(b"\n") == N

    out = tmp_path / "out.jsonl"
    env = env_for(server, tmp_path / "cache")
    kills = 0
    for target in (0, 30, 110, 200):          # lines in OUT.partial when the kill lands (0: during start-up)
        p = subprocess.Popen(cmd(inp, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while p.poll() is None and partial_lines(out) <= target and time.monotonic() < deadline:
            time.sleep(0.005)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
        assert not out.exists() or out.read_bytes() == ref_bytes, "OUT must be complete or absent, never partial"
    assert kills >= 3
    r = subprocess.run(cmd(inp, out), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == ref_bytes
    assert not out.with_name(out.name + ".partial").exists()
    for f in [out, *(tmp_path / "cache").iterdir()]:
        assert b"sk-resume-SECRET-42" not in f.read_bytes()
    assert "sk-resume-SECRET-42" not in r.stderr + r.stdout


def scoring(messages, params):
    from rlaif.records import Completion, Usage

    h = sum(map(ord, messages[-1]["content"])) % 5
    return Completion(text="", option_logprobs={"A": -0.1 * h, "B": -0.3}, usage=Usage(30, 1))


def test_torn_partial_is_cut_and_only_the_rest_is_judged(tmp_path):
    """In-process: a partial with 5 finished rows and half a sixth resumes with exactly the
    missing rows judged, and a partial of another job is refused (not merged)."""
    from rlaif import RlaifError, judge
    from rlaif.backends.fake import FakeBackend
    from rlaif.judge import INDEX_FIELD

    inp = write_input(tmp_path / "in.jsonl", 12)
    out = tmp_path / "out.jsonl"
    b = FakeBackend("t", responder=scoring)
    judge(inp, "helpfulness", judge=b, output=out)
    ref = out.read_bytes()
    assert len(b.calls) == 24                       # both orders

    rows = [json.loads(x) for x in ref.decode().splitlines()]
    partial = out.with_name(out.name + ".partial")
    # the job's own header, as a fresh run writes it
    from rlaif.io import read_rows
    from rlaif.judge import JudgeConfig
    from rlaif.judging.job import job_fingerprint as _job_fingerprint
    from rlaif.rubrics import load_rubric

    read, mode = read_rows(inp)
    header = json.dumps({"_rlaif_job": _job_fingerprint(read.rows, load_rubric("helpfulness"), b, mode,
                                                        JudgeConfig())}) + "\n"
    out.unlink()
    body = "".join(json.dumps({INDEX_FIELD: k, **rows[k]}) + "\n" for k in range(5))
    torn = json.dumps({INDEX_FIELD: 5, **rows[5]})[:40]
    partial.write_text(header + body + torn)

    b2 = FakeBackend("t", responder=scoring)
    judge(inp, "helpfulness", judge=b2, output=out)
    assert out.read_bytes() == ref and not partial.exists()
    assert len(b2.calls) == 2 * 7                   # rows 5..11 only

    partial.write_text(json.dumps({"_rlaif_job": "another-job"}) + "\n" + body)
    with pytest.raises(RlaifError, match="different job"):
        judge(inp, "helpfulness", judge=b2, output=out)
    judge(inp, "helpfulness", judge=b2, output=out, fresh=True)
    assert out.read_bytes() == ref
