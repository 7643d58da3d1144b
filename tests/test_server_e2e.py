"""End to end: a real OpenAI-compatible server on loopback serving the embedded SmolLM2, judged
through the `openai/` and `litellm/` backends.

- `transformers serve` (needs `pip install 'transformers[serving]'`, i.e. fastapi + uvicorn).
  It ignores `logprobs`, `top_logprobs` and `response_format` (transformers 5.x lists them as
  unsupported fields), so judging through it is generative: prose verdicts, the one re-ask,
  tolerant patterns; and logprob judging through it must come back as `no_logprobs` rows.
- `python -m llama_cpp.server` (pip install 'llama-cpp-python[server]') returns real top_logprobs,
  so logprob-weighted scores and soft pairwise labels are checked there. Skipped when not installed.

The servers are slow on a busy CPU (one request at a time), so the items are few and verdicts short.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.server]

READY_TIMEOUT = 240          # seconds to wait for a server to answer /health (model load on a busy CPU)
REQUEST_TIMEOUT = 600        # per request: a 2-core CI box generating with several jobs running

ROWS = [
    {"id": "good", "prompt": "What is the capital of France?", "response": "The capital of France is Paris."},
    {"id": "bad", "prompt": "What is the capital of France?", "response": "Bananas are yellow."},
]
PAIR = [{"id": "pair", "prompt": "What is the capital of France?", "response_a": "Bananas are yellow.",
         "response_b": "The capital of France is Paris."}]
REASONS = {"parse_error", "refused", "timeout", "no_logprobs"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd: list[str], port: int, health: str, log: Path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="2")
    fh = open(log, "w")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fh.close()
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{health}", timeout=2).status_code == 200:
                return proc, fh
        except httpx.HTTPError:
            pass
        time.sleep(1)
    _stop(proc, fh)
    pytest.fail(f"server not ready after {READY_TIMEOUT}s:\n{log.read_text()[-3000:]}")


def _stop(proc, fh):
    if proc.poll() is None:
        proc.terminate()             # uvicorn waits for in-flight requests on SIGTERM; don't wait forever
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    fh.close()


@pytest.fixture(scope="module")
def transformers_server(tmp_path_factory):
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.skip("transformers serve needs: pip install 'transformers[serving]' (fastapi, uvicorn)")
    exe = shutil.which("transformers")
    if exe is None:
        pytest.skip("the `transformers` CLI is not on PATH")
    from rlaif.models import embedded_model_dir

    model = str(embedded_model_dir())
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "transformers_serve.log"
    proc, fh = _start([exe, "serve", model, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
                      port, "/health", log)
    try:
        yield f"http://127.0.0.1:{port}/v1", model
    finally:
        _stop(proc, fh)


def _check(rows, summary, n):
    assert len(rows) == n and summary.total == n
    for r in rows:
        if r.get("error"):
            assert r["error"] in REASONS and "score" not in r and "p_a" not in r, r
        elif "score" in r:
            assert 1 <= r["score"] <= 5
            if r["method"] == "generative":           # logprob verdicts are read from probabilities, not text
                assert r["parse"] in ("json", "text", "repaired", "tolerant")
        else:
            assert 0.0 <= r["p_a"] <= 1.0


@pytest.mark.parametrize("prefix", ["openai", "litellm/openai"])
def test_generative_judging_through_transformers_serve(transformers_server, prefix):
    from rlaif.judge import judge

    base_url, model = transformers_server
    name = f"{prefix}/{model}"
    rows, s = judge(ROWS, "helpfulness", judge=name, base_url=base_url, generative=True, max_tokens=32,
                    concurrency=2, judge_options={"timeout": REQUEST_TIMEOUT})
    _check(rows, s, len(ROWS))
    assert all(r["judge"] == name and r["method"] == "generative" for r in rows)
    # the server really answered: no row failed on transport; each row is scored or has a verdict-level reason
    assert not any(r.get("error") in ("timeout", "connection_error") or str(r.get("error")).startswith("api_error")
                   for r in rows), rows
    print({r["id"]: (r.get("score"), r.get("error"), r.get("parse")) for r in rows})


@pytest.mark.ci          # one real server start + one request: the representative real-server test in CI
def test_logprob_judging_through_a_server_without_logprobs_is_flagged(transformers_server):
    from rlaif.judge import judge

    base_url, model = transformers_server
    rows, s = judge(ROWS[:1], "helpfulness", judge=f"openai/{model}", base_url=base_url,
                    judge_options={"timeout": REQUEST_TIMEOUT})
    assert rows[0]["method"] == "logprobs" and rows[0]["error"] == "no_logprobs" and "score" not in rows[0]


# ---------------------------------------------------------------------------------------------
# llama.cpp's server: real top_logprobs
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama_cpp_server(tmp_path_factory):
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("fastapi") is None:
        pytest.skip("llama.cpp's server is not installed: pip install 'llama-cpp-python[server]'")
    from rlaif.models import embedded_gguf

    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "llama_cpp_server.log"
    proc, fh = _start([sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf()), "--host", "127.0.0.1",
                       "--port", str(port), "--n_ctx", "2048"], port, "/v1/models", log)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(proc, fh)


@pytest.mark.ci          # ~20 s on 2 cores: real top_logprobs over HTTP, through openai/ and litellm/
@pytest.mark.parametrize("prefix", ["openai", "litellm/openai"])
def test_logprob_judging_through_llama_cpp_server(llama_cpp_server, prefix):
    from rlaif.judge import judge

    rows, s = judge(ROWS, "helpfulness", judge=f"{prefix}/smollm2", base_url=llama_cpp_server, concurrency=1,
                    judge_options={"timeout": REQUEST_TIMEOUT})
    _check(rows, s, len(ROWS))
    scored = [r for r in rows if "score" in r]
    assert scored, rows
    for r in scored:
        assert r["method"] == "logprobs" and abs(sum(r["probs"].values()) - 1) < 1e-6
    pair, _ = judge(PAIR, "helpfulness", judge=f"{prefix}/smollm2", base_url=llama_cpp_server, concurrency=1,
                    judge_options={"timeout": REQUEST_TIMEOUT})
    assert pair[0].get("error") or 0.0 < pair[0]["p_a"] < 1.0      # a soft label from two orders
    if not pair[0].get("error"):
        o = pair[0]["orders"]                                     # both orders asked, P(A) their mean
        assert [x["order"] for x in o] == ["ab", "ba"]
        assert pair[0]["p_a"] == pytest.approx((o[0]["p_a"] + o[1]["p_a"]) / 2)


@pytest.mark.ci          # ~10 s: the JSON-schema path against a real server that only knows json_object + schema
def test_structured_verdicts_through_llama_cpp_server(llama_cpp_server, capfd):
    """llama-cpp-python's server refuses response_format json_schema (a 500 naming the field) and
    takes {"type": "json_object", "schema": ...}: the backend steps down once, says so, and the
    grammar-constrained answers are read as JSON verdicts."""
    from rlaif.judge import judge

    rows, s = judge(ROWS, "helpfulness", judge="openai/smollm2", base_url=llama_cpp_server, concurrency=1,
                    generative=True, max_tokens=120, judge_options={"timeout": REQUEST_TIMEOUT})
    _check(rows, s, len(ROWS))
    assert all(r["method"] == "generative" and r.get("parse") == "json" for r in rows), rows
    assert s.run["api_calls"] == len(ROWS) and s.run["retries"] == 0   # the step-down happens inside one call
    assert capfd.readouterr().err.count("refuses response_format json_schema") == 1
