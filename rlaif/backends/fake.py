"""A scripted backend for tests and examples: `fake/<anything>`.

It answers with whatever `responder(messages, params)` returns (a str or a Completion), or
cycles through `script`. It makes no network call and is deterministic, so tests can control
exactly what a judge "says", including garbage and failures (raise BackendError in responder).

`fake/hash` (no responder given) is a built-in deterministic stand-in usable by name, e.g. from a
pipeline YAML or a subprocess, where no Python responder can be passed: see `hash_responder`.
It is for tests and offline demos only; its verdicts mean nothing.
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from collections.abc import Callable

from rlaif.records import Completion, GenParams, Message, Usage


class FakeBackend:
    supports_logprobs = True

    def __init__(self, model: str = "fake", responder: Callable | None = None, script: list | None = None,
                 latency: float = 0.0, supports_logprobs: bool = True):
        self.name = f"fake/{model}"
        self.responder = responder if responder is not None or script else BUILTIN_RESPONDERS.get(model)
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


_WORDS = ("the answer is simple", "consider this", "in short", "for example", "step one", "then", "water",
          "light", "a small garden", "numbers", "carefully", "because", "it depends", "finally", "yes", "no")


def hash_responder(messages: list[Message], params: GenParams) -> Completion | str:
    """`fake/hash`: answers follow from a hash of (messages, seed), nothing else.

    A scoring request (`params.options`, e.g. "1".."5" or "A"/"B") gets log-probabilities peaked on
    one option picked by the hash, so a judge sees varied, reproducible verdicts (including ties and
    order flips). Any other request gets a short text of hash-chosen length and words, so a sampler
    gets varied, reproducible candidates."""
    h = int.from_bytes(hashlib.sha256(json.dumps([messages, params.seed]).encode()).digest()[:8], "big")
    if params.options:
        pick = params.options[h % len(params.options)]
        lp = {o: (-0.05 if o == pick else -3.0 - (h >> (4 + i)) % 4) for i, o in enumerate(params.options)}
        return Completion(text=pick, option_logprobs=lp, top_logprobs=[lp], usage=Usage(0, 1), finish_reason="length")
    n = 1 + h % 12
    text = " ".join(_WORDS[(h >> (3 * i)) % len(_WORDS)] for i in range(n)) + "."
    return Completion(text=text, usage=Usage(0, n), finish_reason="stop")


BUILTIN_RESPONDERS = {"hash": hash_responder}
