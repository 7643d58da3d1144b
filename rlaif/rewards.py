"""Rewards for RL engines: one spec string -> a reward TRL's GRPOTrainer, the reward server and verl can call.

Why: the judge machinery (engine, ledger, retries, cost cap, debiasing, rubric versions) should be the reward
inside whatever RL engine a user already runs, without each engine re-implementing it. This module is the one
public entry point; `rlaif.train.rewards` keeps the building blocks rlaif's own GRPO loop uses.

    from rlaif.rewards import reward, async_reward
    trainer = GRPOTrainer(model=..., reward_funcs=[reward("rubric:helpfulness@openai/gpt-4o-mini"),
                                                    reward("my_rewards.py:length_penalty")], ...)

Specs (`resolve`; the grammar is rlaif/train/reward_spec.py, the same one `rlaif train grpo --reward` reads):
`rubric:NAME[@provider/model]` (the rubric's absolute score, judged through the engine), `path/file.py[:func]`
or `module:func` (a Python reward in TRL's signature, sync or async), and `rm:PATH` (a reward model from
`rlaif train rm`, when that module is installed). More prefixes plug in with `register_resolver`.

The call signature is TRL's: `f(prompts, completions, **kwargs) -> list[float | None]`; kwargs carry the
dataset's other columns plus TRL's own (`completion_ids`, `trainer_state`, `log_metric`, `log_extra`). A
completion that could not be scored is None, never a number made up: TRL turns None into NaN and leaves it out
of the group's advantage (nan-aware mean/std). Each batch with unscored completions logs one warning with the
reason counts (`parse_error: 2, api_error:429: 1`), `reward.unscored` keeps the running totals, and under TRL
`log_metric` receives the unscored share so it shows next to the reward curves.

`reward(spec)` is synchronous (runs the judge's async engine to completion per call); `async_reward(spec)` has
an `async def __call__`, which TRL (>= 0.20) awaits on its own event loop concurrently with its other async
reward functions: judge calls of several rewards then overlap instead of running one after the other.
"""
from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import Callable

from rlaif.train.reward_spec import PREFIXES, parse_reward_spec, register_prefix
from rlaif.train.rewards import PY_NONE, RubricReward, Scored, check_values, load_reward, reward_name

log = logging.getLogger("rlaif.rewards")

# kwargs TRL adds to every reward call: a judge has no use for them, a Python reward may (passed through).
TRL_KWARGS = ("completion_ids", "trainer_state", "log_metric", "log_extra", "environments")

Resolver = Callable[..., "Scorer"]


class Scorer:
    """What a spec resolves to: `await score(prompts, completions, **columns)` -> one (value, reason) per
    completion. Subclasses: rubric judges, Python functions, reward models (registered by the rm module)."""

    name: str = "reward"

    async def score(self, prompts: list, completions: list, **columns) -> list[Scored]:
        raise NotImplementedError


class RubricScorer(Scorer):
    """A rubric's absolute score through the judge engine (`rlaif.train.rewards.RubricReward` underneath)."""

    def __init__(self, rubric: str, judge: str | None = None, *, backend=None, concurrency: int = 16,
                 cache: bool | None = None, ledger=None, max_cost: float | None = None,
                 max_retries: int | None = None, timeout: float | None = None, backend_options: dict | None = None):
        from rlaif.backends import get_backend
        from rlaif.engine import DEFAULT_RETRIES, DEFAULT_TIMEOUT, Engine
        from rlaif.judge import default_cache
        from rlaif.ledger import Ledger

        if backend is None:           # backend_options: e.g. base_url of a self-hosted OpenAI-compatible server
            backend = get_backend(judge, **(backend_options or {}))
        self.inner = RubricReward(rubric, judge, backend=backend, concurrency=concurrency)
        be = self.inner.backend
        if cache is None:
            cache = default_cache(be)      # API judges use the ledger (never pay twice); local/fake do not
        led = ledger if isinstance(ledger, Ledger) else (Ledger(ledger) if cache else None)
        # The engine the judge calls go through: ledger, retries, timeout, cost cap (RubricReward's own has none).
        self.engine = Engine(be, concurrency=concurrency, ledger=led, max_cost=max_cost,
                             max_retries=DEFAULT_RETRIES if max_retries is None else max_retries,
                             timeout=timeout or DEFAULT_TIMEOUT)
        self.inner.engine = self.engine
        self.name = self.inner.__name__

    async def score(self, prompts, completions, **columns) -> list[Scored]:
        return await self.inner.score(prompts, completions, **columns)


class PythonScorer(Scorer):
    """A Python function in TRL's signature, sync or async. None from it means unscored (PY_NONE)."""

    def __init__(self, fn: Callable, name: str | None = None):
        self.fn = fn
        self.name = name or reward_name(fn)
        self.is_async = _is_async(fn)

    async def score(self, prompts, completions, **columns) -> list[Scored]:
        import asyncio

        if self.is_async:
            values = await self.fn(prompts=prompts, completions=completions, **columns)
        else:   # in a worker thread: a slow Python reward must not stall the server's event loop
            values = await asyncio.to_thread(lambda: self.fn(prompts=prompts, completions=completions, **columns))
        return check_values(self.name, values, len(completions))


def _is_async(fn) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


# ------------------------------------------------------------------------------------------------
# the spec registry
# ------------------------------------------------------------------------------------------------
RESOLVERS: dict[str, Resolver] = PREFIXES       # the one registry, kept beside the one spec grammar


def register_resolver(prefix: str, resolver: Resolver) -> None:
    """Make `PREFIX:REST` specs resolve through `resolver(REST, **options) -> Scorer`. `options` are the
    engine options of `resolve` (concurrency, cache, ledger, max_cost, ...): a resolver ignores those it has
    no use for. The built-in prefixes (rubric, rm) cannot be replaced."""
    register_prefix(prefix, resolver)


def resolve(spec, **options) -> Scorer:
    """A Scorer from a spec string (rlaif.train.reward_spec's grammar, the one `rlaif train grpo --reward`
    reads), a Scorer, or a Python callable. `options` go to the judge engine of rubric specs (concurrency,
    cache, ledger, max_cost, max_retries, timeout, backend_options, judge_backends) and to registered
    resolvers."""
    if isinstance(spec, Scorer):
        return spec
    if callable(spec):
        return PythonScorer(spec)
    parsed = parse_reward_spec(spec)
    if parsed.kind == "rubric":
        backend = (options.pop("judge_backends", None) or {}).get(parsed.judge)
        return RubricScorer(parsed.target, parsed.judge, backend=backend, **options)
    if parsed.kind == "plugin":
        return RESOLVERS[parsed.prefix](parsed.target, **options)
    return PythonScorer(load_reward(parsed))   # rm:PATH and Python functions: built as the GRPO loop builds them


# ------------------------------------------------------------------------------------------------
# the callables handed to TRL
# ------------------------------------------------------------------------------------------------
class Reward:
    """A reward in TRL's synchronous signature, with unscored-reason accounting."""

    def __init__(self, spec, **options):
        self.scorer = resolve(spec, **options)
        self.__name__ = self.scorer.name          # TRL names the reward's metrics after this
        self.unscored: Counter = Counter()         # reason -> count, over every call
        self.calls = 0
        self.scored = 0

    async def values(self, prompts, completions, **kwargs) -> list[float | None]:
        log_metric = kwargs.get("log_metric")
        columns = kwargs if isinstance(self.scorer, PythonScorer) else \
            {k: v for k, v in kwargs.items() if k not in TRL_KWARGS}
        scored = await self.scorer.score(list(prompts), list(completions), **columns)
        self._account(scored, log_metric)
        return [v for v, _ in scored]

    def _account(self, scored: list[Scored], log_metric) -> None:
        self.calls += 1
        batch = Counter(r for v, r in scored if v is None)
        self.scored += len(scored) - sum(batch.values())
        self.unscored.update(batch)
        if batch:
            reasons = ", ".join(f"{k}: {n}" for k, n in batch.most_common())
            log.warning("reward %s: %d/%d completions unscored (%s); they reach the trainer as None",
                        self.__name__, sum(batch.values()), len(scored), reasons)
        if callable(log_metric) and scored:
            log_metric(f"rlaif/{self.__name__}/unscored_frac", sum(batch.values()) / len(scored))

    def __call__(self, prompts, completions, **kwargs) -> list[float | None]:
        from rlaif.engine import run_sync

        return run_sync(self.values(prompts, completions, **kwargs))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__name__!r}, scored={self.scored}, unscored={dict(self.unscored)})"


class AsyncReward(Reward):
    """The same reward with `async def __call__`: TRL awaits it on its event loop, alongside its other async
    rewards. The judge engine binds to that one loop, so in-flight duplicate requests are shared."""

    async def __call__(self, prompts, completions, **kwargs) -> list[float | None]:  # type: ignore[override]
        return await self.values(prompts, completions, **kwargs)


def reward(spec, **options) -> Reward:
    """A synchronous TRL reward function from a spec (see the module docstring)."""
    return Reward(spec, **options)


def async_reward(spec, **options) -> AsyncReward:
    """An async TRL reward function from a spec: TRL runs it concurrently with its other async rewards."""
    return AsyncReward(spec, **options)


def rewards(specs: list, *, use_async: bool = False, **options) -> list[Reward]:
    """Several rewards at once, e.g. `GRPOTrainer(reward_funcs=rewards(["rubric:helpfulness", "f.py:len"]))`."""
    make: Callable[..., Reward] = async_reward if use_async else reward
    return [make(s, **options) for s in specs]


def unscored_summary(fns: list) -> dict[str, dict[str, int]]:
    """{reward name: {reason: count}} over rewards made here (for an end-of-run line)."""
    return {f.__name__: dict(f.unscored) for f in fns if isinstance(f, Reward) and f.unscored}


__all__ = ["Reward", "AsyncReward", "Scorer", "RubricScorer", "PythonScorer", "reward", "async_reward", "rewards",
           "resolve", "register_resolver", "unscored_summary", "check_values", "PY_NONE"]
