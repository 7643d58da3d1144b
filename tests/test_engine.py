"""Engine: retries (which errors, how long), timeouts, rate limits, in-flight de-duplication,
budget stop, dry run, running inside an event loop."""
from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

from rlaif.cost import Price
from rlaif.engine import Engine, RateLimiter, backoff_delay, is_retryable, run_sync
from rlaif.errors import BackendError, JobStopped, RlaifError
from rlaif.ledger import Ledger
from rlaif.records import Completion, GenParams, Usage

MSG = [{"role": "user", "content": "hi"}]
P = GenParams(max_tokens=4)


def flaky(errors, answer="ok"):
    """A responder that raises the given errors in turn, then answers."""
    seq = list(errors)

    def respond(messages, params):
        if seq:
            raise seq.pop(0)
        return Completion(text=answer, usage=Usage(10, 2))

    return respond


@pytest.mark.parametrize("status,retry", [(429, True), (500, True), (502, True), (503, True), (408, True),
                                          (400, False), (401, False), (403, False), (404, False), (422, False)])
def test_retry_classes(status, retry):
    assert is_retryable(BackendError("x", status=status, retryable=True)) is retry
    # a backend flagging a 401 "retryable" is still not retried: auth never fixes itself
    assert is_retryable(BackendError("x", status=status)) is retry


def test_retryable_codes_without_status():
    assert is_retryable(BackendError("t", code="timeout", retryable=True))
    assert not is_retryable(BackendError("bad model", code="bad_model_name"))


def test_backoff_is_exponential_with_jitter_and_honours_retry_after():
    rng = random.Random(0)
    for attempt in range(8):
        d = backoff_delay(attempt, None, base=1.0, cap=60.0, rng=rng)
        full = min(60.0, 2.0 ** attempt)
        assert 0.5 * full <= d <= full
    for _ in range(50):
        d = backoff_delay(0, 7.0, base=1.0, cap=60.0, rng=rng)
        assert 7.0 <= d <= 7.7               # Retry-After is a floor, never shortened


async def test_429_retry_after_is_honoured(fake_backend):
    b = fake_backend(responder=flaky([BackendError("slow down", status=429, retry_after=0.3, retryable=True)]))
    eng = Engine(b, backoff_base=0.001)
    t0 = time.monotonic()
    c = await eng.complete(MSG, P)
    assert c.text == "ok" and len(b.calls) == 2
    assert time.monotonic() - t0 >= 0.3
    assert eng.stats.retries == 1


@pytest.mark.parametrize("status", [400, 401])
async def test_no_retry_on_auth_or_validation(fake_backend, status):
    b = fake_backend(responder=flaky([BackendError("nope", status=status)] * 5))
    eng = Engine(b, backoff_base=0.001)
    with pytest.raises((BackendError, JobStopped)) as ei:
        await eng.complete(MSG, P)
    # an auth failure (401/403) stops the whole job (issue 15, defect 21); the others fail the one row
    err = ei.value.cause if isinstance(ei.value, JobStopped) else ei.value
    assert isinstance(ei.value, JobStopped) == (status in (401, 403))
    assert err.status == status
    assert len(b.calls) == 1
    assert eng.stats.failed[f"api_error:{status}"] == 1


async def test_5xx_retried_until_max_then_fails(fake_backend):
    b = fake_backend(responder=flaky([BackendError("boom", status=503)] * 10))
    eng = Engine(b, max_retries=3, backoff_base=0.001)
    with pytest.raises(BackendError):
        await eng.complete(MSG, P)
    assert len(b.calls) == 4


async def test_5xx_then_success(fake_backend):
    b = fake_backend(responder=flaky([BackendError("boom", status=500), BackendError("boom", status=502)]))
    eng = Engine(b, backoff_base=0.001)
    assert (await eng.complete(MSG, P)).text == "ok"
    assert len(b.calls) == 3


async def test_stall_times_out_and_is_retried(fake_backend):
    n = {"calls": 0}

    async def respond(messages, params):
        n["calls"] += 1
        if n["calls"] == 1:
            await asyncio.sleep(30)         # a 30-second stall must not hang the job
        return "ok"

    eng = Engine(fake_backend(responder=respond), timeout=0.2, backoff_base=0.001)
    t0 = time.monotonic()
    assert (await eng.complete(MSG, P)).text == "ok"
    assert time.monotonic() - t0 < 2.0 and n["calls"] == 2


async def test_stall_gives_up_with_timeout_code(fake_backend):
    async def respond(messages, params):
        await asyncio.sleep(30)

    eng = Engine(fake_backend(responder=respond), timeout=0.05, max_retries=1, backoff_base=0.001)
    with pytest.raises(BackendError) as ei:
        await eng.complete(MSG, P)
    assert ei.value.code == "timeout"


async def test_backend_bug_is_not_retried(fake_backend):
    def respond(messages, params):
        raise KeyError("oops")

    b = fake_backend(responder=respond)
    with pytest.raises(BackendError) as ei:
        await Engine(b, backoff_base=0.001).complete(MSG, P)
    assert ei.value.code == "backend_error" and len(b.calls) == 1


async def test_broken_json_is_retried(fake_backend):
    b = fake_backend(responder=flaky([json.JSONDecodeError("Unterminated string", '{"a', 2)]))
    assert (await Engine(b, backoff_base=0.001).complete(MSG, P)).text == "ok"
    assert len(b.calls) == 2


async def test_concurrency_limit(fake_backend):
    live = {"now": 0, "max": 0}

    async def respond(messages, params):
        live["now"] += 1
        live["max"] = max(live["max"], live["now"])
        await asyncio.sleep(0.01)
        live["now"] -= 1
        return "ok"

    eng = Engine(fake_backend(responder=respond), concurrency=3)
    await asyncio.gather(*(eng.complete([{"role": "user", "content": str(i)}], P) for i in range(20)))
    assert live["max"] == 3


async def test_identical_requests_in_flight_are_sent_once(fake_backend):
    b = fake_backend(responder=lambda m, p: "same", latency=0.05)
    eng = Engine(b)
    outs = await asyncio.gather(*(eng.complete(MSG, P) for _ in range(5)))
    assert [o.text for o in outs] == ["same"] * 5 and len(b.calls) == 1


def test_rate_limiter_token_bucket():
    now = [0.0]
    rl = RateLimiter(60, clock=lambda: now[0])        # 1 per second, bucket of 60
    assert rl.wait_time(60) == 0
    rl.level -= 60
    assert rl.wait_time(1) == pytest.approx(1.0)
    now[0] = 0.5
    assert rl.wait_time(1) == pytest.approx(0.5)
    now[0] = 100.0
    assert rl.wait_time(60) == 0 and rl.level == 60    # never above one minute's allowance
    assert rl.wait_time(500) == 0                      # oversize requests go when the bucket is full


async def test_rpm_limit_paces_requests(fake_backend):
    b = fake_backend(responder=lambda m, p: "ok")
    eng = Engine(b, rpm=600)                # 10/s after a burst of 600
    eng.rpm.level = 0                       # start empty to see the pacing
    t0 = time.monotonic()
    await asyncio.gather(*(eng.complete([{"role": "user", "content": str(i)}], P) for i in range(5)))
    assert time.monotonic() - t0 >= 0.45


async def test_tpm_limit_paces_by_tokens(fake_backend):
    b = fake_backend(responder=lambda m, p: Completion("ok", usage=Usage(100, 4)))
    eng = Engine(b, tpm=6000)               # 100 tokens/s
    eng.tpm.level = 0
    t0 = time.monotonic()
    await eng.complete([{"role": "user", "content": "x" * 80}], P)   # ~28 estimated tokens
    assert time.monotonic() - t0 >= 0.2


async def test_budget_stops_cleanly(fake_backend):
    b = fake_backend(responder=lambda m, p: Completion("ok", usage=Usage(1000, 0)))
    prices = {"fake/test": Price(1e-4, 0.0, "test")}          # 0.10 USD per request
    eng = Engine(b, concurrency=1, max_cost=0.35, prices=prices)
    ok, budget = 0, 0
    for i in range(10):
        try:
            await eng.complete([{"role": "user", "content": str(i)}], P)
            ok += 1
        except BackendError as e:
            assert e.code == "budget"
            budget += 1
    # Before each request the engine checks spent + the request's estimated cost (chars/4 prompt
    # tokens + max_tokens) against the budget. Here the estimate (~5 tokens) is far below the real
    # usage (1000 tokens), so a 4th request still fits at 0.30 spent; after it nothing more goes.
    # The overshoot is bounded by one request per concurrency slot.
    assert ok == 4 and budget == 6 and len(b.calls) == 4
    assert eng.stats.cost == pytest.approx(0.40)


async def test_budget_counts_the_estimate_of_the_next_request(fake_backend):
    b = fake_backend(responder=lambda m, p: Completion("ok", usage=Usage(1000, 0)))
    eng = Engine(b, concurrency=1, max_cost=0.35, prices={"fake/test": Price(1e-4, 0.0, "test")})
    big = [{"role": "user", "content": "x" * 4000}]          # estimated ~1004 tokens = 0.10 USD
    spent = 0
    for i in range(10):
        try:
            await eng.complete(big + [{"role": "user", "content": str(i)}], P)
            spent += 1
        except BackendError:
            pass
    assert spent == 3 and eng.stats.cost <= 0.35


def test_max_cost_without_a_price_refuses(fake_backend):
    class B:
        name = "openai/some-unknown-model-xyz"

        async def complete(self, m, p):
            return Completion("x")

    with pytest.raises(RlaifError, match="price"):
        Engine(B(), max_cost=1.0)


def test_run_sync_inside_running_loop(fake_backend):
    b = fake_backend(responder=lambda m, p: "inner")
    eng = Engine(b)

    async def notebook_cell():
        # a notebook's code runs inside a live loop; run_sync must still work there
        return run_sync(eng.complete(MSG, P))

    assert asyncio.run(notebook_cell()).text == "inner"


async def test_ledger_answers_without_calling(fake_backend, tmp_path):
    b = fake_backend(responder=lambda m, p: Completion("ans", usage=Usage(5, 1)))
    with Ledger(tmp_path / "l.sqlite") as led:
        eng = Engine(b, ledger=led)
        assert (await eng.complete(MSG, P)).cached is False
        eng2 = Engine(b, ledger=led)
        c = await eng2.complete(MSG, P)
        assert c.cached and c.text == "ans" and len(b.calls) == 1
        assert eng2.stats.cached == 1 and eng2.stats.api_calls == 0


async def test_failures_are_not_cached(fake_backend, tmp_path):
    b = fake_backend(responder=flaky([BackendError("no", status=400)]))
    with Ledger(tmp_path / "l.sqlite") as led:
        with pytest.raises(BackendError):
            await Engine(b, ledger=led).complete(MSG, P)
        assert len(led) == 0
        assert (await Engine(b, ledger=led).complete(MSG, P)).text == "ok"
        assert len(b.calls) == 2 and len(led) == 1


async def test_dry_run_sends_nothing_and_counts(fake_backend, tmp_path):
    b = fake_backend(responder=lambda m, p: "x")
    eng = Engine(b, dry_run=True, prices={"fake/test": Price(1e-6, 2e-6, "t")})
    for i in range(3):
        await eng.complete([{"role": "user", "content": "a" * 400 + str(i)}], GenParams(max_tokens=10))
    # a follow-up that extends an already counted request (a re-ask after a parse error) is not counted
    await eng.complete([{"role": "user", "content": "a" * 400 + "0"}, {"role": "assistant", "content": ""},
                        {"role": "user", "content": "please answer"}], GenParams(max_tokens=10))
    e = eng.estimate
    assert len(b.calls) == 0 and e.requests == 3 and e.max_completion_tokens == 30
    assert e.prompt_tokens >= 3 * 100
    assert e.cost == pytest.approx(e.prompt_tokens * 1e-6 + 30 * 2e-6)
