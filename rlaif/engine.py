"""The engine: runs many backend requests concurrently, from sync or async code.

Why here and not in each backend: every provider gets the same concurrency limit, error
classification and (later) retries, rate limits, request ledger and cost accounting for free.

`Engine(backend).complete(messages, params)` is the one call judge.py and sampling.py make.
`run_sync(coro)` runs a coroutine from plain code *and* from inside a running event loop
(Jupyter), where asyncio.run would refuse.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Awaitable, TypeVar

from rlaif.backends.base import Backend
from rlaif.errors import BackendError
from rlaif.records import Completion, GenParams, Message

T = TypeVar("T")


class Engine:
    def __init__(self, backend: Backend, concurrency: int = 16):
        self.backend = backend
        self.concurrency = concurrency
        self._sem: asyncio.Semaphore | None = None
        self._loop = None
        self.calls = 0

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._sem is None or self._loop is not loop:   # semaphores bind to one loop
            self._sem, self._loop = asyncio.Semaphore(self.concurrency), loop
        return self._sem

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        """One request, under the concurrency limit. Raises BackendError on failure."""
        async with self._semaphore():
            self.calls += 1
            try:
                return await self.backend.complete(messages, params)
            except BackendError:
                raise
            except Exception as e:  # noqa: BLE001 - a backend bug must surface as a reasoned failure
                raise BackendError(f"{type(e).__name__}: {e}", code="backend_error") from e


def run_sync(coro: Awaitable[T]) -> T:
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
