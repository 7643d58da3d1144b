"""The engine: runs many backend requests concurrently, from sync or async code.

Why here and not in each backend: every provider gets the same concurrency limit, rate limits,
retries, request ledger (cache + resume), cost accounting and budget for free, and judge.py makes
one call: `await Engine(backend).complete(messages, params)`.

One request goes through, in order:
1. the ledger: an answer already on disk is returned at once (no API call, no cost);
2. in-flight de-duplication: the same request already on its way is awaited, not sent again;
3. the budget: past `max_cost` every new request fails with code `budget` (finished rows stay);
4. the rate limits (requests/min, tokens/min, token buckets) and the concurrency semaphore;
5. the backend call under a per-request timeout, so a stalled connection cannot hang the job
   (not for an in-process backend, `in_process = True`: local generation is bounded by tokens);
6. retries with exponential backoff and jitter for 429, 5xx, timeouts and broken responses,
   honouring Retry-After (a 429 pauses the whole backend: rate limits are per account); no retry
   for auth or validation errors (400/401/403/404/422), which would fail the same way again; an
   auth failure (401/403) stops the whole job (JobStopped): no later request is sent;
7. the answer's cost (rlaif.cost prices) is added to the run's totals and it is written to the ledger.

`run_sync(coro)` runs a coroutine from plain code *and* from inside a running event loop
(Jupyter), where asyncio.run would refuse.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rlaif.backends.base import Backend
from rlaif.cost import Price, count_tokens, price_for
from rlaif.errors import BackendError, JobStopped, RlaifError
from rlaif.ledger import Ledger, request_key
from rlaif.records import Completion, GenParams, Message, Usage

T = TypeVar("T")
_timeout = getattr(asyncio, "timeout", None)

NEVER_RETRY = {400, 401, 403, 404, 413, 422}     # auth / validation: the same request fails the same way
# Failures every later request of the job would repeat: the first one stops the job (JobStopped).
STOP_STATUS = {401, 403}                         # the key is wrong, revoked, or lacks access
STOP_CODES = {"missing_api_key", "authentication_error", "permission_error", "invalid_api_key"}
LONG_WAIT = 30.0          # s: a rate-limit wait longer than this is announced on stderr, with its cause
RETRY_STATUS = {408, 409, 425, 429}              # plus every 5xx
DEFAULT_TIMEOUT = 60.0    # s per attempt: judge replies are <= 512 tokens; a healthy API answers well within this
DEFAULT_RETRIES = 6       # with 1 s base doubling to a 60 s cap: ~2 minutes of patience per request
MAX_RETRY_AFTER = 600.0   # a Retry-After longer than 10 min is treated as "not today": the row fails


def is_retryable(e: BackendError) -> bool:
    if e.status is not None:
        if e.status in NEVER_RETRY:
            return False
        if e.status in RETRY_STATUS or e.status >= 500:
            return True
    return bool(e.retryable)


def backoff_delay(attempt: int, retry_after: float | None = None, base: float = 1.0, cap: float = 60.0,
                  rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (0-based). A server's Retry-After is a floor
    (plus up to 10% jitter so a crowd of clients does not return in lockstep); otherwise
    exponential backoff base*2^attempt capped at `cap`, with "equal jitter" (50-100% of it)."""
    uniform = rng.random if rng is not None else random.random
    if retry_after is not None and retry_after >= 0:
        return retry_after * (1.0 + 0.1 * uniform())
    return min(cap, base * (2 ** attempt)) * (0.5 + 0.5 * uniform())


class RateLimiter:
    """A token bucket holding up to one minute's allowance, refilled continuously. `acquire(n)`
    waits until n units are available (a request larger than the whole bucket waits for a full
    bucket, then goes). Waiters are served first come, first served."""

    def __init__(self, per_minute: float, clock=time.monotonic):
        if per_minute <= 0:
            raise ValueError("a rate limit must be positive")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.clock = clock
        self.t = clock()
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
        self.t = now

    def wait_time(self, n: float) -> float:
        """Seconds until n units are available (0 = now). Pure given the clock; used by acquire."""
        self._refill()
        need = min(n, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    async def acquire(self, n: float = 1.0) -> None:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        async with self._lock:
            while (w := self.wait_time(n)) > 0:
                await asyncio.sleep(w)
            self.level -= n

    def refund(self, n: float) -> None:
        """Give back units charged by an estimate that turned out too high (or take more, n < 0)."""
        self.level = min(self.capacity, self.level + n)


@dataclass
class RunStats:
    """What a run cost and did. `cost` is money spent by this run; cached answers are free."""

    requests: int = 0              # complete() calls answered (live or cached)
    cached: int = 0                # answered from the ledger
    api_calls: int = 0             # attempts sent to the backend (incl. retries)
    retries: int = 0
    failed: Counter = field(default_factory=Counter)     # final failures by code
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cost_known: bool = True
    saved: float = 0.0             # what the cached answers cost when they were first bought

    def to_dict(self) -> dict:
        return {"requests": self.requests, "cached": self.cached, "api_calls": self.api_calls,
                "retries": self.retries, "failed": dict(self.failed), "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cost": self.cost if self.cost_known else None,
                "saved_by_cache": self.saved}


class Budget:
    """A spending cap (USD). One per job; a jury's members share one, across their threads.

    `check` refuses a request whose estimated cost (added to what is spent and what requests in
    flight have reserved) would pass the cap; once refused, every later request is refused too,
    so rows finish in order and the job stops cleanly."""

    def __init__(self, max_cost: float):
        self.max_cost = max_cost
        self.spent = 0.0
        self.reserved = 0.0
        self.stopped = False
        self._lock = threading.Lock()

    def check(self, reserve: float) -> None:
        with self._lock:
            if self.stopped or self.spent + self.reserved + reserve > self.max_cost:
                self.stopped = True
                raise BackendError(f"budget of ${self.max_cost:g} reached (spent ${self.spent:.4f})", code="budget")

    def hold(self, amount: float) -> None:        # + before a request is sent, - when it returns
        with self._lock:
            self.reserved += amount

    def spend(self, cost: float) -> None:
        with self._lock:
            self.spent += cost


@dataclass
class DryRunEstimate:
    requests: int = 0              # requests the job would send
    cached: int = 0                # of which already answered in the ledger (free)
    prompt_tokens: int = 0         # of the uncached requests
    max_completion_tokens: int = 0  # upper bound: max_tokens of each uncached request
    cost: float | None = 0.0       # upper bound, None if the price is unknown
    count_method: str = ""
    price_source: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Engine:
    def __init__(self, backend: Backend, concurrency: int = 16, *, rpm: float | None = None,
                 tpm: float | None = None, timeout: float = DEFAULT_TIMEOUT, max_retries: int = DEFAULT_RETRIES,
                 ledger: Ledger | None = None, max_cost: float | None = None,
                 prices: dict[str, Price] | None = None, dry_run: bool = False, backoff_base: float = 1.0,
                 backoff_cap: float = 60.0, seed: int | None = None, budget: Budget | None = None):
        if concurrency < 1:
            raise RlaifError(f"concurrency must be >= 1, got {concurrency}")
        self.backend = backend
        self.concurrency = concurrency
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.rpm = RateLimiter(rpm) if rpm else None
        self.tpm = RateLimiter(tpm) if tpm else None
        self.ledger = ledger
        self.dry_run = dry_run
        self.price = price_for(backend.name, prices)
        if budget is None and max_cost is not None:
            budget = Budget(max_cost)
        self.budget = budget
        if budget is not None and self.price is None:
            raise RlaifError(f"--max-cost needs a price for '{backend.name}', and none is known; give one in a "
                             "price file (--prices prices.yaml with '{name}: {{input: USD/1M, output: USD/1M}}')"
                             .replace("{name}", backend.name))
        self.stats = RunStats(cost_known=self.price is not None)
        # completion tokens a backend adds to max_tokens (a reasoning model's hidden reasoning)
        self._extra_out = int(getattr(backend, "extra_output_tokens", 0) or 0)
        self.estimate = DryRunEstimate(price_source=self.price.source if self.price else None)
        self._rng = random.Random(seed)
        # A cache/dedup namespace: the same model name on two different servers is two models.
        base_url = getattr(backend, "base_url", None)
        self._model_id = backend.name + (f"@{base_url}" if base_url else "")
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: dict[str, asyncio.Future] = {}
        self._pause_until = 0.0          # monotonic time before which no request is sent (after a 429)
        self.stopped: JobStopped | None = None    # set by the first auth failure: no request is sent after it
        self._warned_wait = False
        self._in_process = bool(getattr(backend, "in_process", False))
        self._to_commit: list[tuple[str, str, Completion]] = []
        self._commit_fut: asyncio.Future | None = None
        self._dry_seen: set[str] = set()
        self._dry_hits: set[str] = set()
        self.pending: list[tuple[str, list[Message], GenParams]] = []   # dry run: uncached requests (--batch)

    @property
    def max_cost(self) -> float | None:
        return self.budget.max_cost if self.budget is not None else None

    def _bind_loop(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._sem is None or self._loop is not loop:   # semaphores and futures bind to one loop
            self._sem, self._loop, self._inflight = asyncio.Semaphore(self.concurrency), loop, {}
            self._commit_fut = None
        return self._sem

    # -- the one call --------------------------------------------------------------------------
    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        """One answer, from the ledger or the backend. Raises BackendError on (final) failure."""
        sem = self._bind_loop()
        key = request_key(self._model_id, messages, params)
        if self.dry_run:
            return self._dry(key, messages, params)
        if self.ledger is not None:
            hit = self.ledger.get(key)
            if hit is not None:
                self.stats.requests += 1
                self.stats.cached += 1
                self.stats.saved += hit.cost or 0.0
                return hit
        if self.stopped is not None:          # an earlier request showed the job cannot succeed: send nothing
            raise self.stopped
        fut = self._inflight.get(key)
        if fut is not None:                   # the same request is already on its way: share its answer
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            c = await self._live(sem, messages, params)
            if self.ledger is not None:
                # Committed before the answer is handed on (so before its row is written anywhere):
                # a SIGKILL re-pays only requests in flight. Answers arriving together share one
                # commit. Still in _inflight meanwhile, so an identical request waits for this one.
                await self._commit(key, c)
        except BaseException as e:
            if not fut.done():
                if isinstance(e, asyncio.CancelledError):
                    fut.cancel()
                else:
                    fut.set_exception(e)
                    fut.exception()       # mark retrieved: nobody else may be waiting
            raise
        finally:
            self._inflight.pop(key, None)
        fut.set_result(c)
        return c

    async def _commit(self, key: str, c: Completion) -> None:
        """Group commit: queue the answer; the first waiter of a loop iteration schedules one commit
        for everything queued by then (call_soon runs it after the callbacks already ready)."""
        loop = asyncio.get_running_loop()
        self._to_commit.append((key, self.backend.name, c))
        if self._commit_fut is None or self._commit_fut.done():
            self._commit_fut = loop.create_future()
            loop.call_soon(self._flush_commits, self._commit_fut)
        await asyncio.shield(self._commit_fut)

    def _flush_commits(self, fut: asyncio.Future) -> None:
        items, self._to_commit = self._to_commit, []
        try:
            assert self.ledger is not None, "commits are queued only when there is a ledger"
            self.ledger.put_many(items)
        except BaseException as e:  # noqa: BLE001 - delivered to every waiter of this commit
            if not fut.done():
                fut.set_exception(e)
            return
        if not fut.done():
            fut.set_result(None)

    async def _live(self, sem, messages, params) -> Completion:
        est_prompt = sum((len(m.get("content") or "") + 3) // 4 + 4 for m in messages)
        max_out = (params.max_tokens or 0) + self._extra_out
        est_tokens = est_prompt + max_out
        reserve = self.price.cost(est_prompt, max_out) if (self.price and self.budget is not None) else 0.0
        err: BackendError | None = None
        for attempt in range(self.max_retries + 1):
            self._check_budget(reserve)
            if (pause := self._pause_until - time.monotonic()) > 0:
                await asyncio.sleep(pause)
            if attempt == 0:
                self._check_rates(est_tokens)
            if self.rpm:
                await self.rpm.acquire(1)
            if self.tpm:
                await self.tpm.acquire(est_tokens)
            async with sem:
                # Checked again inside the slot: what is spent (or reserved by requests in flight)
                # now is known, so concurrency cannot race past the budget.
                self._check_budget(reserve)
                if self.budget is not None:
                    self.budget.hold(reserve)
                try:
                    self.stats.api_calls += 1
                    c = await self._attempt(messages, params)
                except BackendError as e:
                    err = e
                else:
                    self._account(c, est_tokens)
                    return c
                finally:
                    if self.budget is not None:
                        self.budget.hold(-reserve)
            if not is_retryable(err) or attempt == self.max_retries:
                break
            if err.retry_after is not None and err.retry_after > MAX_RETRY_AFTER:
                err = BackendError(f"{err} (server asked to wait {err.retry_after:.0f}s; giving up)", code=err.code,
                                   status=err.status, retry_after=err.retry_after)
                break
            delay = backoff_delay(attempt, err.retry_after, self.backoff_base, self.backoff_cap, self._rng)
            if err.status == 429:             # rate limits are per account: everyone waits
                self._pause_until = max(self._pause_until, time.monotonic() + delay)
            self.stats.retries += 1
            await asyncio.sleep(delay)
        assert err is not None
        self.stats.failed[f"api_error:{err.status}" if err.status else err.code] += 1
        if err.status in STOP_STATUS or err.code in STOP_CODES:
            if self.stopped is None:
                self.stopped = JobStopped(
                    f"{self.backend.name} rejected the request's credentials ({err}); every other request would "
                    "fail the same way, so the job stopped and sent no more. Fix the API key (or its access) and "
                    "run the same command again: rows already finished are kept.", err)
            raise self.stopped
        raise err

    async def _attempt(self, messages, params) -> Completion:
        """One backend call under the timeout; every failure comes out as a BackendError. An
        in-process backend (local transformers) gets no wall-clock timeout: its work is bounded by
        tokens, and a timeout could not stop the computation, only abandon it (see backends/local.py)."""
        try:
            if self._in_process:
                return await self.backend.complete(messages, params)
            if _timeout is not None:      # Python >= 3.11: no extra task per request (wait_for makes one)
                async with _timeout(self.timeout):
                    return await self.backend.complete(messages, params)
            return await asyncio.wait_for(self.backend.complete(messages, params), self.timeout)
        except BackendError:
            raise
        except asyncio.TimeoutError as e:
            # a CPU-bound in-process timeout is not retried: another attempt would only add load
            raise BackendError(f"no answer within {self.timeout:g}s", code="timeout",
                               retryable=not self._in_process) from e
        except json.JSONDecodeError as e:
            raise BackendError(f"broken response: {type(e).__name__}: {e}", code="bad_response", retryable=True) from e
        except ConnectionError as e:       # refused, reset: the server is not there, which is not a timeout
            raise BackendError(f"connection failed: {type(e).__name__}: {e}", code="connection_error",
                               retryable=True) from e
        except Exception as e:
            import httpx

            if isinstance(e, httpx.TransportError):
                raise BackendError(f"connection failed: {type(e).__name__}: {e}", code="connection_error",
                                   retryable=True) from e
            raise BackendError(f"{type(e).__name__}: {e}", code="backend_error") from e

    def expected_wait(self, requests: int, tokens_each: float) -> float:
        """Seconds the rate limits alone make `requests` requests of ~`tokens_each` tokens take (from
        full buckets): what a job will wait, whatever the concurrency. 0 without limits."""
        waits = [0.0]
        if self.rpm:
            waits.append(max(0.0, requests - self.rpm.capacity) / self.rpm.rate)
        if self.tpm:
            waits.append(max(0.0, requests * tokens_each - self.tpm.capacity) / self.tpm.rate)
        return max(waits)

    def announce_expected_wait(self, requests: int, tokens_each: float) -> float:
        """Say up front on stderr how long the rate limits alone will make a job of `requests`
        requests of ~`tokens_each` tokens wait, when that is over LONG_WAIT; returns the seconds."""
        wait = self.expected_wait(requests, tokens_each)
        if wait > LONG_WAIT:
            self._warned_wait = True
            print(f"rlaif: the rate limits ({', '.join(self._limits())}) make {requests} requests of "
                  f"~{tokens_each:.0f} tokens take at least {_duration(wait)}", file=sys.stderr, flush=True)
        return wait

    def _limits(self) -> list[str]:
        return [x for x in (f"--rpm {self.rpm.capacity:g}" if self.rpm else "",
                            f"--tpm {self.tpm.capacity:g}" if self.tpm else "") if x]

    def _check_rates(self, est_tokens: int) -> None:
        """Refuse a request that no --tpm wait can admit; say so once when a wait will be long."""
        if self.tpm and est_tokens > self.tpm.capacity:
            if self.stopped is None:
                self.stopped = JobStopped(
                    f"--tpm {self.tpm.capacity:g} is smaller than one request (~{est_tokens} tokens: prompt plus "
                    f"max_tokens): each request would wait ~{_duration(est_tokens / self.tpm.rate)}. Raise --tpm "
                    "to your account's real tokens-per-minute limit (it is per minute, not per second).")
            raise self.stopped
        if self._warned_wait:
            return
        wait = max(self.rpm.wait_time(1) if self.rpm else 0.0, self.tpm.wait_time(est_tokens) if self.tpm else 0.0)
        if wait > LONG_WAIT:
            self._warned_wait = True
            limits = ", ".join(self._limits())
            per = max(1 / self.rpm.rate if self.rpm else 0.0, est_tokens / self.tpm.rate if self.tpm else 0.0)
            print(f"rlaif: waiting ~{_duration(wait)} for the rate limit ({limits}; a request needs ~{est_tokens} "
                  f"tokens, so each further request waits ~{_duration(per)})", file=sys.stderr, flush=True)

    def _check_budget(self, reserve: float) -> None:
        if self.budget is not None:
            self.budget.check(reserve)

    def _account(self, c: Completion, est_tokens: int) -> None:
        u = c.usage or Usage()
        self.stats.requests += 1
        self.stats.prompt_tokens += u.prompt_tokens
        self.stats.completion_tokens += u.completion_tokens
        if c.cost is None and self.price is not None:
            c.cost = self.price.cost(u.prompt_tokens, u.completion_tokens)
        if c.cost is not None:
            self.stats.cost += c.cost
            if self.budget is not None:
                self.budget.spend(c.cost)
        if self.tpm:
            self.tpm.refund(est_tokens - (u.prompt_tokens + u.completion_tokens))

    # -- dry run -------------------------------------------------------------------------------
    def _dry(self, key: str, messages: list[Message], params: GenParams) -> Completion:
        """Count the request instead of sending it. An answer already in the ledger is returned as
        is, so the judge goes on exactly as it will for real. Otherwise the reply is empty; a judge
        that re-asks after an unparseable answer would re-ask here, so such follow-ups (whose
        messages extend an uncached counted request) are not counted: they happen only when a
        real answer fails to parse."""
        e = self.estimate
        hit = self.ledger.get(key) if self.ledger is not None else None
        if hit is not None:
            if key not in self._dry_hits:
                self._dry_hits.add(key)
                e.requests += 1
                e.cached += 1
            return hit
        if key in self._dry_seen or any(_messages_hash(messages[:k]) in self._dry_seen
                                        for k in range(1, len(messages))):
            return Completion(text="", usage=Usage())
        self._dry_seen.add(key)
        self._dry_seen.add(_messages_hash(messages))
        self.pending.append((key, messages, params))
        from rlaif.cost import count_method

        e.requests += 1
        e.count_method = e.count_method or count_method(self.backend.name)
        e.prompt_tokens += count_tokens(messages, self.backend.name)
        e.max_completion_tokens += (params.max_tokens or 0) + self._extra_out
        e.cost = self.price.cost(e.prompt_tokens, e.max_completion_tokens) if self.price else None
        return Completion(text="", usage=Usage())


def _duration(seconds: float) -> str:
    """'45 s', '12 min', '1 h 45 min'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def _messages_hash(messages: list[Message]) -> str:
    return "m:" + hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, except that inside a running loop (a notebook) the coroutine runs to
    completion in a fresh loop on a helper thread instead of failing."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict = {}

    def target():
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, name="rlaif-run-sync")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
