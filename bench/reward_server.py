"""Reward server overhead: rewards/s through `rlaif serve reward` over HTTP vs the same reward in process.

    python bench/reward_server.py [--n 1000] [--latency 0.02] [--inflight 64]

The reward is a rubric judge (`rubric:helpfulness@openai/m`) against tests/openai_server.py (its own process,
`--latency` per call), with the ledger off so every completion costs one judge call in both arms. Measured in
the same run:
- in process:  RewardService.score(...) for one completion at a time, `--inflight` at once (one event loop)
- HTTP, OpenRLHF style: `rlaif serve reward` in its own process, one POST /get_reward per completion,
  `--inflight` at once (what OpenRLHF's rollout workers do)
- HTTP, batched: POST /score with 32 completions per request (what a verl reward loop would send)
Target (issue 12): HTTP overhead <= 15%, i.e. HTTP rate / in-process rate >= 0.85.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from openai_server import start_server  # noqa: E402

SPEC = "rubric:helpfulness@openai/m"


def items(n: int, tag: str) -> list[tuple[str, str]]:
    return [(f"[{tag}] Question {i}: explain item {i}.", f"Answer number {i}, with a reason.") for i in range(n)]


async def in_process(judge_url: str, n: int, inflight: int) -> float:
    from rlaif.serve import RewardServerConfig, RewardService

    cfg = RewardServerConfig(rewards=[SPEC], base_url=judge_url, cache=False, concurrency=inflight)
    svc = RewardService(cfg)
    sem = asyncio.Semaphore(inflight)

    async def one(p, c):
        async with sem:
            values, _, _ = await svc.score([p], [c])
            return values[0]

    t = time.perf_counter()
    out = await asyncio.gather(*(one(p, c) for p, c in items(n, "inproc")))
    dt = time.perf_counter() - t
    for s in svc.scorers:               # close the judge's HTTP session on this loop (no "unclosed" noise)
        close = getattr(getattr(s, "engine", None) and s.engine.backend, "aclose", None)
        if close is not None:
            await close()
    assert sum(v is not None for v in out) == n, "unscored rewards in the in-process arm"
    return n / dt


async def over_http(url: str, n: int, inflight: int, batch: int) -> float:
    """aiohttp, as OpenRLHF's client uses (httpx's pool was measured at ~90 requests/s here: the client, not
    the server, would be the bottleneck)."""
    import aiohttp

    sem = asyncio.Semaphore(inflight)
    data = items(n, f"http{batch}")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180),
                                     connector=aiohttp.TCPConnector(limit=inflight)) as session:
        async def one(chunk):
            async with sem:
                if batch == 1:
                    p, c = chunk[0]
                    path, body = "/get_reward", {"query": [p + c], "prompts": [p], "labels": [None]}
                else:
                    path, body = "/score", {"prompts": [p for p, _ in chunk], "completions": [c for _, c in chunk]}
                async with session.post(url + path, json=body) as r:
                    r.raise_for_status()
                    return (await r.json())["rewards"]

        t = time.perf_counter()
        outs = await asyncio.gather(*(one(data[i:i + batch]) for i in range(0, n, batch)))
        dt = time.perf_counter() - t
    assert sum(v is not None for o in outs for v in o) == n, "unscored rewards in the HTTP arm"
    return n / dt


def start_reward_server(judge_url: str, inflight: int):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-bench", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rlaif", "serve", "reward", "--reward", SPEC, "--port", "0",
                             "--base-url", judge_url, "--no-cache", "--concurrency", str(inflight)],
                            stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stderr.readline()
    if "reward server on" not in line:
        proc.kill()
        raise RuntimeError(f"reward server did not start: {line!r}")
    return proc, line.split("on ", 1)[1].split()[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--inflight", type=int, default=64)
    a = ap.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    judge, judge_url = start_server(latency=a.latency)
    server = None
    try:
        server, url = start_reward_server(judge_url, a.inflight)
        asyncio.run(over_http(url, min(a.n, 128), a.inflight, 1))         # warm both servers up
        base = asyncio.run(in_process(judge_url, a.n, a.inflight))
        http1 = asyncio.run(over_http(url, a.n, a.inflight, 1))
        http32 = asyncio.run(over_http(url, a.n, max(1, a.inflight // 32), 32))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        judge.kill()
        judge.wait()
    print(f"judge latency {a.latency * 1000:.0f} ms, {a.n} completions, {a.inflight} in flight")
    print(f"in process                     {base:8.1f} rewards/s")
    print(f"HTTP /get_reward, 1 per call   {http1:8.1f} rewards/s   ratio {http1 / base:.2f}  (target >= 0.85)")
    print(f"HTTP /score, 32 per call       {http32:8.1f} rewards/s   ratio {http32 / base:.2f}")


if __name__ == "__main__":
    main()
