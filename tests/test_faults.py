"""Fault test: 1,000 judgments through a real OpenAI-compatible HTTP server on loopback that fails
30% of calls (429 with Retry-After, 500, 503, 30-second stalls, truncated JSON bodies). Every row
ends scored or unscored with a reason, nothing crashes, and no well-formed answer is requested twice."""
from __future__ import annotations

import json

import pytest

from tests.openai_server import server_stats, start_server


@pytest.mark.slow       # ~20-60 s on a busy 2-core machine
@pytest.mark.ci         # an acceptance test: the default run and CI include it
def test_1000_judgments_through_30_percent_faults(tmp_path):
    from rlaif import judge
    from rlaif.backends import get_backend
    from rlaif.engine import Engine
    from rlaif.ledger import Ledger

    proc, url = start_server(latency=0.005, fault_rate=0.30, stall=30.0, seed=7)
    try:
        rows = [{"id": i, "prompt": f"Question {i}: what is {i} squared?", "response": f"{i * i}"} for i in range(1000)]
        backend = get_backend("openai/m", base_url=url, api_key="sk-fault-SECRET")     # the real openai/ backend
        led = Ledger(tmp_path / "ledger.sqlite")
        # Short timeout so the 30 s stalls cost 5 s each (long enough that a healthy answer on a busy
    # 2-core machine is never cut off, which would make it asked twice); small backoff base so the test is quick
        # (the 429s still make every request wait the server's retry-after-ms).
        eng = Engine(backend, concurrency=64, timeout=5.0, max_retries=8, backoff_base=0.05, backoff_cap=1.0, ledger=led)
        out, summary = judge(rows, "helpfulness", judge=backend, engine=eng, output=tmp_path / "out.jsonl")
        led.close()
        st = server_stats(url)
    finally:
        proc.kill()
        proc.wait()

    assert len(out) == 1000
    assert [r["id"] for r in out] == list(range(1000))
    for r in out:
        assert (r.get("score") is not None and r["error"] is None) or (r["score"] if "score" in r else None) is None and r["error"]
        if r["error"]:
            assert r["error"] and r.get("detail"), r
    faults = st["stats"]
    for kind in ("429", "500", "503", "stall", "truncated"):
        assert faults.get(kind, 0) > 10, (kind, faults)
    assert sum(faults.get(k, 0) for k in ("429", "500", "503", "stall", "truncated")) / faults["requests"] > 0.2
    assert st["answered_twice"] == 0, st
    scored = sum(r.get("score") is not None for r in out)
    assert scored >= 990, summary.render()
    assert st["well_formed"] == scored == summary.run["requests"]
    written = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert written == out
