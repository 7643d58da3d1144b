"""Judging throughput: rlaif judge vs a raw AsyncOpenAI loop vs distilabel's UltraFeedback task,
all against the same local OpenAI-compatible server (tests/openai_server.py, its own process),
at 0 ms and 50 ms server latency, 64 requests in flight; plus a fully cached re-run of 10,000.

    python bench/judge_throughput.py [--n 2000] [--cached-n 10000] [--distilabel-python PATH]

Printed figures (targets from issue 3):
- rlaif ÷ raw AsyncOpenAI            (>= 0.9)  same requests; the raw loop gets them pre-rendered,
                                               rlaif renders, parses, writes the ledger and output
- rlaif ÷ distilabel UltraFeedback   (>= 2)    distilabel 1.5.3 in its own venv (--distilabel-python)
- fraction of ideal at 50 ms          rate ÷ (64 / 0.05 s)
- fully cached re-run of 10,000       (< 2 s)  judge() on a JSONL file whose rows are all answered

rlaif talks to the server through its own openai/ backend (rlaif/backends/openai.py), as
`rlaif judge -j openai/... --base-url URL` does; `--backend thin` swaps in tests/openai_server.py's
ThinOpenAIBackend (a bare AsyncOpenAI call) to separate the backend's cost from the rest of rlaif.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from openai_server import ThinOpenAIBackend, start_server  # noqa: E402

CONCURRENCY = 64
RUBRIC = "helpfulness"


def make_rows(n: int, tag: str) -> list[dict]:
    return [{"id": i, "prompt": f"[{tag}] Question number {i}: explain item {i}.", "response": f"Answer number {i}."}
            for i in range(n)]


def make_backend(kind: str, url: str):
    if kind == "thin":
        return ThinOpenAIBackend("test-model", base_url=url, api_key="sk-bench")
    from rlaif.backends import get_backend

    return get_backend("openai/test-model", base_url=url, api_key="sk-bench")


def raw_openai(url: str, rows: list[dict], tuned: bool = False) -> float:
    """judgments/s of a plain asyncio + AsyncOpenAI loop sending the same requests as rlaif.
    tuned: the same loop with what rlaif's openai/ backend does for speed (the SDK's aiohttp
    transport, client.post with the JSON body instead of chat.completions.create): rlaif ÷ this
    is the cost of everything rlaif adds (rendering, parsing, ledger, output file)."""
    import openai

    from rlaif.judge import TOP_LOGPROBS, build_messages
    from rlaif.rubrics import load_rubric

    rub = load_rubric(RUBRIC)
    msgs = [build_messages(rub, "absolute", r) for r in rows]      # pre-rendered: not timed

    async def main():
        client = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0, timeout=600,
                                    http_client=openai.DefaultAioHttpClient(timeout=600) if tuned else None)
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(m):
            kw = dict(model="test-model", messages=m, max_tokens=1, temperature=0.0, logprobs=True,
                      top_logprobs=TOP_LOGPROBS)
            async with sem:
                if tuned:
                    r = await client.post("/chat/completions", body=kw, cast_to=object)
                    return r["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
                r = await client.chat.completions.create(**kw)
                return r.choices[0].logprobs.content[0].top_logprobs

        t0, c0 = time.perf_counter(), time.process_time()
        out = await asyncio.gather(*(one(m) for m in msgs))
        el, cpu = time.perf_counter() - t0, time.process_time() - c0
        await client.close()
        assert len(out) == len(rows)
        return len(rows) / el, len(rows) / cpu

    return asyncio.run(main())


def rlaif_judge(url: str, rows: list[dict], kind: str, workdir: Path) -> tuple[float, dict]:
    """judgments/s of rlaif.judge (ledger on, output file written), as `rlaif judge -o` runs."""
    from rlaif import judge

    inp = workdir / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t0, c0 = time.perf_counter(), time.process_time()
    out, s = judge(str(inp), RUBRIC, judge=make_backend(kind, url), concurrency=CONCURRENCY, cache=True,
                   ledger=workdir / "ledger.sqlite", output=workdir / "out.jsonl")
    el, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert s.scored == len(rows), s.render()
    return len(rows) / el, len(rows) / cpu, s.run


def distilabel(url: str, n: int, python: str | None, pipeline: bool = False) -> tuple[float | None, float | None, str]:
    if not python or not Path(python).exists():
        return None, None, f"distilabel venv python not found ({python}); create it with: python -m venv " \
                     "--system-site-packages /work/venvs/distilabel && /work/venvs/distilabel/bin/pip install distilabel==1.5.3"
    r = subprocess.run([python, str(ROOT / "bench" / "_distilabel_ultrafeedback.py"), "--base-url", url, "--n", str(n),
                        "--concurrency", str(CONCURRENCY)] + (["--pipeline"] if pipeline else []),
                       capture_output=True, text=True)
    lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
    if r.returncode != 0 or not lines:
        return None, None, f"distilabel run failed: {r.stderr[-500:]}"
    d = json.loads(lines[-1])
    return d["per_s"], d["per_cpu_s"], "ok"


def cached_rerun(url: str, n: int, kind: str, workdir: Path) -> tuple[float, float, float]:
    """(first run s, fully cached re-run s, re-run with answers cached but verdicts re-derived s)."""
    import sqlite3

    from rlaif import judge

    rows = make_rows(n, "cached")
    inp = workdir / "in10k.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    led = workdir / "ledger10k.sqlite"
    kw = dict(judge=make_backend(kind, url), concurrency=CONCURRENCY, cache=True, ledger=led)
    t0 = time.perf_counter()
    judge(str(inp), RUBRIC, output=workdir / "o1.jsonl", **kw)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, s = judge(str(inp), RUBRIC, output=workdir / "o2.jsonl", **kw)
    cached = time.perf_counter() - t0
    assert s.run["api_calls"] == 0 and s.run["rows_from_ledger"] == n
    assert (workdir / "o1.jsonl").read_bytes() == (workdir / "o2.jsonl").read_bytes()
    db = sqlite3.connect(led)
    db.execute("DELETE FROM verdicts")
    db.commit()
    db.close()
    t0 = time.perf_counter()
    _, s = judge(str(inp), RUBRIC, output=workdir / "o3.jsonl", **kw)
    rederive = time.perf_counter() - t0
    assert s.run["api_calls"] == 0 and s.run["cached"] == n
    return first, cached, rederive


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="judgments per throughput run")
    ap.add_argument("--cached-n", type=int, default=10_000)
    ap.add_argument("--distilabel-n", type=int, default=640)
    ap.add_argument("--distilabel-python", default="/work/venvs/distilabel/bin/python")
    ap.add_argument("--backend", choices=["openai", "thin"], default="openai")
    ap.add_argument("--skip-cached", action="store_true", help="skip the 10,000-row cached re-run")
    ap.add_argument("--repeats", type=int, default=4, help="take the best of this many runs of each (a busy machine is noisy)")
    a = ap.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    print(f"# judge_throughput: {a.n} absolute judgments per run, {CONCURRENCY}-way, rubric {RUBRIC}, "
          f"backend {a.backend}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for latency in (0.0, 0.05):
            proc, url = start_server(latency=latency)
            try:
                raw = ours = raw_cpu = ours_cpu = tuned = 0.0
                runinfo = None
                for rep in range(a.repeats):
                    # alternate which goes first: a busy machine drifts, and neither should always get the quiet slot
                    for which in (("raw", "rlaif", "tuned") if rep % 2 == 0 else ("tuned", "rlaif", "raw")):
                        if which == "tuned":
                            tuned = max(tuned, raw_openai(url, make_rows(a.n, f"tuned-lat{latency}-rep{rep}"), tuned=True)[0])
                        elif which == "raw":
                            w, c = raw_openai(url, make_rows(a.n, f"lat{latency}-rep{rep}"))
                            raw, raw_cpu = max(raw, w), max(raw_cpu, c)
                        else:
                            wd = tmp / f"run-{latency}-{rep}"
                            wd.mkdir()
                            w, c, runinfo = rlaif_judge(url, make_rows(a.n, f"rlaif-lat{latency}-rep{rep}"), a.backend, wd)
                            ours, ours_cpu = max(ours, w), max(ours_cpu, c)
                dl, dl_cpu, why = distilabel(url, a.distilabel_n, a.distilabel_python)
                dlp, _, whyp = distilabel(url, a.distilabel_n, a.distilabel_python, pipeline=True)
                ms = int(latency * 1000)
                print(f"\n[{ms} ms latency]                wall-clock judgments/s   judgments per client CPU-second")
                print(f"  raw AsyncOpenAI loop      {raw:10.1f}               {raw_cpu:10.1f}")
                print(f"  rlaif judge               {ours:10.1f}               {ours_cpu:10.1f}"
                      f"   (api_calls={runinfo['api_calls']}, retries={runinfo['retries']})")
                if dl:
                    print(f"  distilabel UltraFeedback  {dl:10.1f}               {dl_cpu:10.1f}")
                else:
                    print(f"  distilabel UltraFeedback  n/a: {why}")
                print(f"  rlaif / raw               {ours / raw:10.2f}               {ours_cpu / raw_cpu:10.2f}   (target >= 0.9)")
                print(f"  raw loop, tuned           {tuned:10.1f}   (aiohttp transport + client.post, as rlaif's backend sends)")
                print(f"  rlaif / tuned raw         {ours / tuned:10.2f}   (what rendering, parsing, ledger and output cost)")
                print("  distilabel in a Pipeline  " + (f"{dlp:10.1f}   (as its docs run it; start-up included)" if dlp else f"n/a: {whyp}"))
                if dl:
                    print(f"  rlaif / distilabel        {ours / dl:10.2f}               {ours_cpu / dl_cpu:10.2f}   (target >= 2; task driven directly)")
                if dlp:
                    print(f"  rlaif / distilabel Pipeline {ours / dlp:8.2f}")
                if latency:
                    ideal = CONCURRENCY / latency
                    print(f"  fraction of ideal         {ours / ideal:10.2f}   (ideal {ideal:.0f}/s = {CONCURRENCY} in flight / {ms} ms;"
                          f" the raw loop reaches {raw / ideal:.2f})")
                results[ms] = {"raw": raw, "raw_tuned": tuned, "rlaif": ours, "distilabel": dl, "distilabel_pipeline": dlp, "raw_per_cpu_s": raw_cpu,
                               "rlaif_per_cpu_s": ours_cpu, "distilabel_per_cpu_s": dl_cpu}
            finally:
                proc.kill()
                proc.wait()
        if a.skip_cached:
            print("\nJSON " + json.dumps({"throughput": results}))
            return
        proc, url = start_server(latency=0.0)
        try:
            first, cached, rederive = cached_rerun(url, a.cached_n, a.backend, tmp)
        finally:
            proc.kill()
            proc.wait()
        print(f"\n[cached re-run of {a.cached_n:,} judgments]")
        print(f"  first run (all API calls)             {first:6.2f} s")
        print(f"  fully cached re-run                   {cached:6.2f} s   (target < 2 s; 0 API calls)")
        print(f"  re-run re-deriving verdicts from the cached answers (no verdict table) {rederive:6.2f} s")
    print("\nJSON " + json.dumps({"throughput": results, "cached_rerun_s": cached, "first_run_s": first,
                                 "rederive_s": rederive}))


if __name__ == "__main__":
    main()
