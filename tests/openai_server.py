"""A small OpenAI-compatible chat-completions server for tests and bench/, with fault injection.

It answers POST /v1/chat/completions with real OpenAI response bodies (choices, logprobs.content
with top_logprobs, usage), deterministically from a hash of the request, so the same request
always gets the same answer. With --fault-rate it fails that fraction of calls, spread evenly over
429 (with Retry-After / retry-after-ms headers), 500, 503, a stall (no answer for --stall seconds)
and a truncated JSON body. GET /stats reports how often each well-formed answer was sent, so a
test can check that no answered request was ever asked again.

Run: python tests/openai_server.py --port 0 [--latency 0.05] [--fault-rate 0.3]
It prints "PORT <n>" on its first line once it listens. It runs in its own process so that the
server and the client under test do not share one interpreter lock (that would skew benchmarks).

Also here: ThinOpenAIBackend, a minimal rlaif backend over openai.AsyncOpenAI used only by tests
and the benchmark until rlaif/backends/openai.py (built on another branch) is merged.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import sys
import time
from collections import Counter

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:          # run as a script: make the repo's rlaif importable
    sys.path.append(_ROOT)

SCORE_TOKENS = ["1", "2", "3", "4", "5"]


def answer_for(body: dict) -> tuple[str, list[tuple[str, float]]]:
    """Deterministic: the reply text and the top alternatives of its first token."""
    h = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).digest()
    text = "".join(m.get("content", "") for m in body.get("messages", []))
    opts = ["A", "B"] if "Response A" in text or "response_a" in text.lower() else SCORE_TOKENS
    raw = [h[i] / 32.0 for i in range(len(opts))]
    z = math.log(sum(math.exp(r) for r in raw))
    alts = sorted(((o, r - z) for o, r in zip(opts, raw)), key=lambda x: -x[1])
    best = alts[0][0]
    if (body.get("max_tokens") or body.get("max_completion_tokens") or 16) > 1:
        reply = f"The response is fine. Better: {best}" if opts == ["A", "B"] else f"The response is fine. Score: {best}"
    else:
        reply = best
    return reply, alts


def completion_body(body: dict) -> dict:
    reply, alts = answer_for(body)
    prompt_tokens = sum(len(m.get("content", "")) for m in body.get("messages", [])) // 4 + 7
    out = {
        "id": "chatcmpl-" + hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "test-model"),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply, "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "length" if len(reply) == 1 else "stop",
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": max(1, len(reply) // 4),
                  "total_tokens": prompt_tokens + max(1, len(reply) // 4),
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
        "service_tier": "default",
        "system_fingerprint": "fp_test",
    }
    if body.get("logprobs"):
        k = body.get("top_logprobs") or 0
        first = {"token": reply[0] if len(reply) == 1 else "The", "logprob": alts[0][1] if len(reply) == 1 else -0.01,
                 "bytes": list((reply[0] if len(reply) == 1 else "The").encode()),
                 "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in alts[:k]]}
        out["choices"][0]["logprobs"] = {"content": [first], "refusal": None}
    return out


def request_id(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


async def serve(port: int, latency: float, fault_rate: float, stall: float, seed: int, faults: list[str]):
    from aiohttp import web

    rng = random.Random(seed)
    answered: Counter = Counter()
    stats = Counter()

    async def chat(request: web.Request):
        raw = await request.read()
        body = json.loads(raw)
        stats["requests"] += 1
        if latency:
            await asyncio.sleep(latency)
        if fault_rate and rng.random() < fault_rate:
            kind = rng.choice(faults)
            stats[kind] += 1
            if kind == "429":
                return web.json_response(
                    {"error": {"message": "Rate limit reached for requests", "type": "requests",
                               "param": None, "code": "rate_limit_exceeded"}},
                    status=429, headers={"retry-after": "1", "retry-after-ms": "50", "x-request-id": "req_429"})
            if kind in ("500", "503"):
                return web.json_response(
                    {"error": {"message": "The server had an error while processing your request.",
                               "type": "server_error", "param": None, "code": None}}, status=int(kind))
            if kind == "stall":
                await asyncio.sleep(stall)      # the client should have given up long before
                return web.json_response({"error": {"message": "stalled", "type": "server_error"}}, status=504)
            if kind == "truncated":
                text = json.dumps(completion_body(body))
                return web.Response(body=text[: len(text) // 2].encode(), content_type="application/json")
        out = completion_body(body)
        answered[request_id(body)] += 1
        return web.json_response(out)

    async def get_stats(request):
        return web.json_response({"stats": dict(stats), "answered": len(answered),
                                  "answered_twice": sum(1 for v in answered.values() if v > 1),
                                  "well_formed": sum(answered.values())})

    async def reset(request):
        answered.clear()
        stats.clear()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/stats", get_stats)
    app.router.add_post("/reset", reset)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    real_port = site._server.sockets[0].getsockname()[1]
    print(f"PORT {real_port}", flush=True)
    while True:
        await asyncio.sleep(3600)


def start_server(latency: float = 0.0, fault_rate: float = 0.0, stall: float = 30.0, seed: int = 0,
                 faults: str = "429,500,503,stall,truncated"):
    """Start the server in a subprocess; returns (process, base_url). Stop it with proc.kill()."""
    import subprocess

    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--port", "0", "--latency", str(latency),
                             "--fault-rate", str(fault_rate), "--stall", str(stall), "--seed", str(seed),
                             "--faults", faults], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"test server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def server_stats(base_url: str) -> dict:
    import httpx

    return httpx.get(base_url.rsplit("/v1", 1)[0] + "/stats").json()


# ---------------------------------------------------------------------------------------------
# A thin rlaif backend over AsyncOpenAI (tests and bench only; the real one is rlaif/backends/openai.py)
# ---------------------------------------------------------------------------------------------
from rlaif.errors import BackendError  # noqa: E402
from rlaif.records import Completion, Usage  # noqa: E402


class ThinOpenAIBackend:
    supports_logprobs = True

    def __init__(self, model: str = "test-model", base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 600.0):
        import openai

        self.name = f"testoai/{model}"
        self.model = model
        self.base_url = base_url or os.environ["TEST_OAI_BASE_URL"]
        self._kw = dict(base_url=self.base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY", "sk-none"),
                        max_retries=0, timeout=timeout)
        self._clients = {}      # one client per event loop: an httpx pool belongs to the loop that made it

    def _client_for_loop(self):
        import asyncio

        import openai

        loop = asyncio.get_running_loop()
        c = self._clients.get(id(loop))
        if c is None or c[0] is not loop:
            c = self._clients[id(loop)] = (loop, openai.AsyncOpenAI(**self._kw))
        return c[1]

    async def aclose(self):
        """Close the client of the running loop (rlaif.judge() calls this before its loop ends)."""
        import asyncio

        c = self._clients.pop(id(asyncio.get_running_loop()), None)
        if c is not None:
            await c[1].close()

    async def complete(self, messages, params):
        import openai

        kw = dict(model=self.model, messages=messages, max_tokens=params.max_tokens, temperature=params.temperature)
        if params.top_logprobs:
            kw.update(logprobs=True, top_logprobs=params.top_logprobs)
        try:
            r = await self._client_for_loop().chat.completions.create(**kw)
        except openai.APIStatusError as e:
            h = e.response.headers
            ra = None
            if h.get("retry-after-ms"):
                ra = float(h["retry-after-ms"]) / 1000
            elif h.get("retry-after"):
                ra = float(h["retry-after"])
            raise BackendError(f"HTTP {e.status_code}", code=f"http_{e.status_code}", status=e.status_code,
                               retry_after=ra, retryable=e.status_code == 429 or e.status_code >= 500) from None
        except openai.APITimeoutError:
            raise BackendError("timeout", code="timeout", retryable=True) from None
        except openai.APIConnectionError as e:
            raise BackendError(f"connection: {e}", code="connection_error", retryable=True) from None
        except (json.JSONDecodeError, openai.APIResponseValidationError) as e:
            raise BackendError(f"bad response body: {type(e).__name__}", code="bad_response", retryable=True) from None
        ch = r.choices[0]
        olp = None
        if params.options and ch.logprobs and ch.logprobs.content:
            olp = {}
            for alt in ch.logprobs.content[0].top_logprobs:
                t = alt.token.strip()
                if t in params.options and (t not in olp or alt.logprob > olp[t]):
                    olp[t] = alt.logprob
        u = r.usage
        return Completion(text=ch.message.content or "", option_logprobs=olp,
                          usage=Usage(u.prompt_tokens, u.completion_tokens) if u else Usage(),
                          finish_reason=ch.finish_reason)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--stall", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--faults", default="429,500,503,stall,truncated")
    a = ap.parse_args()
    try:
        asyncio.run(serve(a.port, a.latency, a.fault_rate, a.stall, a.seed, a.faults.split(",")))
    except KeyboardInterrupt:
        pass
