"""`rlaif serve reward`: OpenRLHF's remote reward protocol exactly, a plain JSON route, bad bodies, auth,
and 64 concurrent requests through a judge that fails 30% of its calls."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from rlaif.integrations.openrlhf import BadRequest, parse_get_reward, split_query, user_turn
from rlaif.serve import RewardServerConfig, RewardService, build_app

CHATML_PROMPT = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 6 times 7?<|im_end|>\n" \
                "<|im_start|>assistant\n"

REWARD_PY = """
seen = []
def reward(prompts, completions, label=None, **kw):
    seen.append((list(prompts), list(completions), list(label)))
    return [float(len(c)) if c != "skip" else None for c in completions]
"""


@contextlib.contextmanager
def running(app):
    """The app under a real uvicorn on a free loopback port, in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        t.join(10)


def openrlhf_post(url: str, payload: dict):
    """Post exactly as OpenRLHF's SingleTurnAgentExecutor._fetch_rewards_via_http does (aiohttp, json=)."""
    import aiohttp

    async def go():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:
            async with session.post(url, json=payload) as response:
                return response.status, await response.json()

    return asyncio.run(go())


def test_protocol_pieces():
    assert user_turn(CHATML_PROMPT) == "What is 6 times 7?"
    assert user_turn("plain prompt") == "plain prompt"
    assert split_query(CHATML_PROMPT + "It is 42.<|im_end|>", CHATML_PROMPT) == "It is 42."
    assert split_query("Q: hi A: yo</s>", "Q: hi") == "A: yo"
    req = parse_get_reward({"query": [CHATML_PROMPT + "42<|im_end|>"], "prompts": [CHATML_PROMPT], "labels": [42]})
    assert (req.prompts, req.completions, req.labels) == (["What is 6 times 7?"], ["42"], ["42"])
    for body, msg in [({"prompts": []}, "missing field 'query'"), ({"query": ["a"]}, "missing field 'prompts'"),
                      ({"query": ["a", "b"], "prompts": ["a"]}, "same length"),
                      ({"query": ["a"], "prompts": [3]}, "item 0 must be a string"),
                      ({"query": "a", "prompts": ["a"]}, "must be a list"), ([1], "JSON object")]:
        with pytest.raises(BadRequest, match=msg):
            parse_get_reward(body)


@pytest.fixture
def app(tmp_path):
    f = tmp_path / "rw.py"
    f.write_text(REWARD_PY)

    def make(**kw):
        cfg = RewardServerConfig(rewards=[str(f), "rubric:helpfulness@fake/hash"], **kw)
        return build_app(cfg)

    return make


def test_openrlhf_request_shape_exactly(app):
    a = app(unscored_reward=-1.0)
    with running(a) as url:
        query = CHATML_PROMPT + "The answer is 42.<|im_end|>"
        status, out = openrlhf_post(url + "/get_reward", {"query": [query], "prompts": [CHATML_PROMPT],
                                                          "labels": ["42"]})
        assert status == 200, out
        assert set(out) == {"rewards", "scores", "extra_logs"}
        assert len(out["rewards"]) == 1 and isinstance(out["rewards"][0], float) and out["scores"] == out["rewards"]
        assert out["extra_logs"] == {"rlaif_unscored": 0.0, "rlaif_scored": 1.0}
        # the Python reward saw the last user turn, the response without special tokens, and the label
        py = a.state.service.scorers[0].fn.__globals__["seen"]
        assert py[-1] == (["What is 6 times 7?"], ["The answer is 42."], ["42"])
        assert out["rewards"][0] > len("The answer is 42.")       # sum of both rewards, the judge's >= 1
        # unscored: the value the user chose, counted
        status, out = openrlhf_post(url + "/get_reward", {"query": ["P skip"], "prompts": ["P"], "labels": [None]})
        assert status == 200 and out["rewards"] == [-1.0] and out["extra_logs"]["rlaif_unscored"] == 1.0
        # the plain route: null with the reason, per-reward values
        r = httpx.post(url + "/score", json={"prompts": ["P", [{"role": "user", "content": "Q"}]],
                                             "completions": ["skip", "abc"]}).json()
        assert r["rewards"][0] is None and r["unscored"][0].endswith("reward_returned_none")
        assert r["rewards"][1] == pytest.approx(3.0 + r["by_reward"]["rubric:helpfulness@fake/hash"][1])
        st = httpx.get(url + "/stats").json()
        assert st["requests"] == 3 and st["completions"] == 4 and st["scored"] == 2


def test_unscored_without_a_policy_is_an_error_not_a_number(app):
    with running(app()) as url:
        status, out = openrlhf_post(url + "/get_reward", {"query": ["P skip"], "prompts": ["P"], "labels": [None]})
        assert status == 503 and "--unscored-reward" in out["error"] and out["unscored"] == 1


def test_bad_bodies_get_4xx_with_a_clear_message(app):
    with running(app(unscored_reward=0.0)) as url:
        cases = [({"prompts": ["p"], "labels": [None]}, 422, "missing field 'query'"),
                 ({"query": ["a", "b"], "prompts": ["a"], "labels": [None, None]}, 422, "same length"),
                 ({"query": [1], "prompts": ["a"], "labels": [None]}, 422, "item 0 must be a string"),
                 ({"query": ["a"], "prompts": ["a"], "labels": [{"x": 1}]}, 422, "'labels' item 0"),
                 ({"query": [], "prompts": [], "labels": []}, 422, "empty")]
        for body, status, msg in cases:
            r = httpx.post(url + "/get_reward", json=body)
            assert r.status_code == status and msg in r.json()["error"], (body, r.text)
        r = httpx.post(url + "/get_reward", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
        big = json.dumps({"query": ["x" * (10 * 1024 * 1024)], "prompts": ["p"], "labels": [None]})
        r = httpx.post(url + "/get_reward", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "limit" in r.json()["error"]
        r = httpx.post(url + "/score", json={"prompts": ["a"], "completions": ["x", "y"]})
        assert r.status_code == 422 and "same length" in r.json()["error"]
        r = httpx.post(url + "/score", json={"prompts": [{"role": 1}], "completions": ["x"]})
        assert r.status_code == 422 and "messages" in r.json()["error"]
        assert httpx.get(url + "/health").json() == {"status": "ok"}       # still serving


@pytest.mark.slow
def test_cli_server_token_and_health(tmp_path):
    """The real command in a subprocess: loopback, /health open, everything else needs the bearer token."""
    env = {**os.environ, "RW_TOKEN": "s3cret-token", "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))}
    proc = subprocess.Popen([sys.executable, "-m", "rlaif", "serve", "reward", "--reward",
                             "rubric:helpfulness@fake/hash", "--port", "0", "--token-env", "RW_TOKEN",
                             "--unscored-reward", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert "reward server on http://127.0.0.1:" in line, line
        url = line.split("on ", 1)[1].split()[0]
        body = {"query": ["P an answer"], "prompts": ["P"], "labels": [None]}
        assert httpx.get(url + "/health").status_code == 200
        r = httpx.post(url + "/get_reward", json=body)
        assert r.status_code == 401 and "bearer token" in r.json()["error"]
        r = httpx.post(url + "/get_reward", json=body, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = httpx.post(url + "/get_reward", json=body, headers={"Authorization": "Bearer s3cret-token"})
        assert r.status_code == 200 and len(r.json()["rewards"]) == 1
        assert httpx.get(url + "/stats").status_code == 401
    finally:
        proc.terminate()
        proc.wait(10)
    assert "s3cret-token" not in proc.stderr.read()


def test_missing_token_env_is_a_clear_error():
    from rlaif.errors import RlaifError

    os.environ.pop("RLAIF_NO_SUCH_TOKEN", None)
    with pytest.raises(RlaifError, match="RLAIF_NO_SUCH_TOKEN"):
        build_app(RewardServerConfig(rewards=["rubric:helpfulness@fake/hash"], token_env="RLAIF_NO_SUCH_TOKEN"))


@pytest.mark.slow
@pytest.mark.ci
def test_64_concurrent_requests_through_a_judge_failing_30_percent(tmp_path):
    """Every request answered (scored, or the chosen unscored value, counted), no crash, and no judge answer
    paid for twice: 16 of the 64 requests repeat another's completion and share its answer."""
    sys.path.insert(0, os.path.dirname(__file__))
    from tests.openai_server import server_stats, start_server

    from rlaif.backends import get_backend
    from rlaif.ledger import Ledger
    from rlaif.rewards import RubricScorer

    proc, judge_url = start_server(latency=0.01, fault_rate=0.30, stall=30.0, seed=3)
    try:
        backend = get_backend("openai/m", base_url=judge_url, api_key="sk-fault-SECRET")
        scorer = RubricScorer("helpfulness", backend=backend, concurrency=16, ledger=Ledger(tmp_path / "l.sqlite"),
                              timeout=5.0, max_retries=8)
        scorer.engine.backoff_base, scorer.engine.backoff_cap = 0.05, 1.0     # keep the test quick
        cfg = RewardServerConfig(rewards=["rubric:helpfulness@openai/m"], unscored_reward=0.0, concurrency=16)
        app = build_app(cfg, RewardService(cfg, scorers=[scorer]))
        bodies = [{"query": [f"Question {i % 48}? Answer {i % 48}"], "prompts": [f"Question {i % 48}?"],
                   "labels": [None]} for i in range(64)]
        with running(app) as url:
            async def go():
                async with httpx.AsyncClient(timeout=120) as client:
                    return await asyncio.gather(*(client.post(url + "/get_reward", json=b) for b in bodies))

            answers = asyncio.run(go())
            st = httpx.get(url + "/stats").json()
        judge_stats = server_stats(judge_url)
    finally:
        proc.kill()
        proc.wait()
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200][:3]
    outs = [r.json() for r in answers]
    assert all(len(o["rewards"]) == 1 and isinstance(o["rewards"][0], float) for o in outs)
    unscored = sum(o["extra_logs"]["rlaif_unscored"] for o in outs)
    assert unscored == sum(st["unscored"].values()) and st["completions"] == 64
    faults = judge_stats["stats"]
    assert sum(faults.get(k, 0) for k in ("429", "500", "503", "stall", "truncated")) >= 5, faults
    assert judge_stats["answered_twice"] == 0, judge_stats
    assert judge_stats["well_formed"] == judge_stats["answered"] <= 48
    assert judge_stats["answered"] >= 48 - unscored
    for i in range(48, 64):            # a repeated completion got the same reward as its first asking
        assert outs[i]["rewards"] == outs[i % 48]["rewards"] or outs[i]["extra_logs"]["rlaif_unscored"] \
            or outs[i % 48]["extra_logs"]["rlaif_unscored"]


def test_hot_routes_answer_what_the_fastapi_routes_answer(app):
    """POST /get_reward and /score skip FastAPI (rlaif.serve.RewardApp); the bytes and statuses are the ones the
    FastAPI app behind it gives for the same requests, and other methods/paths still get FastAPI's 405/404."""
    from fastapi.responses import JSONResponse
    from fastapi.testclient import TestClient

    from rlaif.serve import render_json

    for payload in ({"rewards": [0.5, None], "unscored": [None, "parse_error"], "by_reward": {"é": [1e-07, 2.0]}},
                    {"error": "x"}):
        assert render_json(payload) == JSONResponse(payload).body
    a = app(unscored_reward=-1.0)
    fast, slow = TestClient(a), TestClient(a.api)
    bodies = [("/get_reward", {"query": ["P abc"], "prompts": ["P"], "labels": [None]}),
              ("/get_reward", {"query": ["P skip"], "prompts": ["P"]}),
              ("/score", {"prompts": ["P"], "completions": ["abcd"], "labels": ["l"]}),
              ("/score", {"prompts": ["P"], "completions": [3]}), ("/get_reward", {"query": []})]
    for path, body in bodies:
        r1, r2 = fast.post(path, json=body), slow.post(path, json=body)
        assert (r1.status_code, r1.content) == (r2.status_code, r2.content), (path, body)
        assert r1.headers["content-type"] == "application/json"
    r1, r2 = fast.post("/score", content=b"{not json"), slow.post("/score", content=b"{not json")
    assert r1.status_code == r2.status_code == 400 and r1.content == r2.content
    assert fast.get("/get_reward").status_code == 405 and fast.post("/nope", json={}).status_code == 404
    assert fast.get("/health").json() == {"status": "ok"}
