"""The crash-cost guarantee (issue 15, defect 23; stated in docs/engine.md): every answer the engine
has handed on is already committed to the request ledger, so a SIGKILL at any moment makes the next
run pay again only for requests that were in flight (at most `concurrency` of them); and defect 3:
a non-finite verdict is never stored, and one bad ledger entry is a miss, not a crash."""
from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import textwrap

from rlaif.ledger import Ledger
from rlaif.records import Completion, Judgment

KILLER = textwrap.dedent("""
    import asyncio, os, signal, sys, json
    from rlaif.backends.fake import FakeBackend
    from rlaif.engine import Engine
    from rlaif.ledger import Ledger
    from rlaif.records import GenParams

    ledger_path, rows_path, kill_after, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    async def main():
        eng = Engine(FakeBackend("x"), concurrency=concurrency, ledger=Ledger(ledger_path))
        eng.backend.complete = lambda m, p: _answer(m, p)
        out = open(rows_path, "a")
        written = 0

        async def one(i):
            nonlocal written
            msgs = [{"role": "user", "content": f"row {i}"}]
            c = await eng.complete(msgs, GenParams(max_tokens=4))
            out.write(json.dumps({"i": i}) + "\\n"); out.flush()      # the row reaches the output
            written += 1
            if written == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        await asyncio.gather(*(one(i) for i in range(400)))

    calls = open(sys.argv[5], "a")

    async def _answer(m, p):                 # the provider: records every request it is paid for
        from rlaif.records import Completion
        calls.write(m[0]["content"] + "\\n"); calls.flush()
        await asyncio.sleep(0.001)
        return Completion(text="4")

    asyncio.run(main())
""")


def test_sigkill_costs_only_requests_in_flight(tmp_path):
    """Measured: after a SIGKILL, the requests paid for but not in the ledger (so paid again by the
    re-run) are at most the concurrency (8 here), and none of them had its row written."""
    from rlaif.ledger import request_key
    from rlaif.records import GenParams

    led, rows, calls = tmp_path / "l.sqlite", tmp_path / "rows.jsonl", tmp_path / "calls.txt"
    concurrency = 8
    for kill_after in (7, 45, 130):
        for f in (led, rows, calls):
            f.unlink(missing_ok=True)
        p = subprocess.run([sys.executable, "-c", KILLER, str(led), str(rows), str(kill_after), str(concurrency),
                            str(calls)], capture_output=True, text=True, timeout=120)
        assert p.returncode == -9, p.stderr
        written = [json.loads(x)["i"] for x in rows.read_text().splitlines()]
        assert len(written) == kill_after
        paid = set(calls.read_text().splitlines())
        key = {f"row {i}": request_key("fake/x", [{"role": "user", "content": f"row {i}"}], GenParams(max_tokens=4))
               for i in range(400)}
        with Ledger(led) as L:
            paid_again = {c for c in paid if key[c] not in L}
            # every answer whose row was written is in the ledger (a buffered ledger lost up to 31)
            assert all(key[f"row {i}"] in L for i in written)
        assert not paid_again & {f"row {i}" for i in written}
        assert len(paid_again) <= concurrency, (kill_after, len(paid_again))


def test_non_finite_verdict_is_never_stored():
    j = Judgment("absolute", "fake/x", "r@1", score=float("nan"), probs={"1": float("nan")})
    row = j.to_row()
    assert row["error"] == "non_finite" and "score" not in row and "probs" not in row
    json.dumps(row, allow_nan=False)
    ok = Judgment("absolute", "fake/x", "r@1", score=4.0, probs={"4": 1.0}).to_row()
    assert ok["score"] == 4.0 and ok["error"] is None


def test_ledger_reader_survives_one_bad_entry(tmp_path):
    path = tmp_path / "l.sqlite"
    with Ledger(path) as L:
        L.put("good", "m", Completion(text="4", option_logprobs={"4": -0.1, "1": -math.inf}))
        L.put("bad", "m", Completion(text="4"))
        L.put_verdicts([("v1", {"score": 4.0}), ("vnan", {"score": float("nan")})])
    db = sqlite3.connect(str(path))
    db.execute("UPDATE responses SET option_logprobs='{broken' WHERE key='bad'")
    db.execute("INSERT INTO verdicts VALUES ('v2', '{\"score\": NaN}', 0)")      # written by an older version
    db.execute("INSERT INTO verdicts VALUES ('v3', 'not json', 0)")
    db.commit()
    db.close()
    with Ledger(path) as L:
        assert L.get("good").option_logprobs["1"] == -math.inf
        assert L.get("bad") is None and "bad" not in L.get_many(["good", "bad"])
        assert L.get_verdicts(["v1", "v2", "v3", "vnan"]) == {"v1": {"score": 4.0}}
