"""A scripted backend for tests and examples: `fake/<anything>`.

It answers with whatever `responder(messages, params)` returns (a str or a Completion), or
cycles through `script`. It makes no network call and is deterministic, so tests can control
exactly what a judge "says", including garbage and failures (raise BackendError in responder).
"""
from __future__ import annotations

import asyncio
import itertools
from typing import Callable

from rlaif.records import Completion, GenParams, Message, Usage


class FakeBackend:
    supports_logprobs = True

    def __init__(self, model: str = "fake", responder: Callable | None = None, script: list | None = None,
                 latency: float = 0.0, supports_logprobs: bool = True):
        self.name = f"fake/{model}"
        self.responder = responder
        self._script = itertools.cycle(script) if script else None
        self.latency = latency
        self.supports_logprobs = supports_logprobs
        self.calls: list[tuple[list[Message], GenParams]] = []

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        self.calls.append((messages, params))
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.responder is not None:
            out = self.responder(messages, params)
            if asyncio.iscoroutine(out):
                out = await out
        elif self._script is not None:
            out = next(self._script)
        else:
            out = ""
        if isinstance(out, Completion):
            return out
        return Completion(text=str(out), usage=Usage(sum(len(m["content"]) // 4 for m in messages), len(str(out)) // 4))
