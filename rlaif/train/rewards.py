"""GRPO rewards: rubric judges (through rlaif.judge) and Python functions, mixed freely.

A reward is anything with TRL's signature `f(prompts, completions, **kwargs) -> list[float | None]`.
`completions` has the prompt's shape: strings for string prompts, [{"role": "assistant", ...}]
lists for message prompts; `kwargs` holds the prompt rows' other columns (one value per
completion), e.g. a reference answer. None means "could not score this one": such completions
are left out of the advantage baseline and of the loss, never counted as 0.

Specs on the command line (`--reward`, repeatable; the grammar is rlaif/train/reward_spec.py, shared with
rlaif.rewards and the reward server):
- `rubric:NAME` or `rubric:NAME@provider/model`: the rubric's absolute score from that judge
  (default local/default), through the judge engine (concurrent, any backend; unparseable
  verdicts give None with their reason code counted).
- `rm:PATH`: a reward model trained with `rlaif train rm` (rm_reward.py: batched, with an optional
  LLM-judge fallback band and drift watch).
- `package.module:function`, or `path/to/file.py:function` (`:reward` if omitted).
"""
from __future__ import annotations

import importlib
import math
from collections import Counter
from typing import Any

from rlaif.errors import RlaifError
from rlaif.train.reward_spec import RewardSpec, load_function, parse_reward_spec, spec_error

# reason code for a Python reward that returned None (or NaN) for a completion: it said "cannot score this"
PY_NONE = "reward_returned_none"

Scored = tuple[float | None, str | None]          # (value, reason it is unscored)


def prompt_text(prompt) -> str:
    """A prompt as the plain text a judge reads: the string, or the user turn(s) of a conversation."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    if len(users) == 1:
        return users[0]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def completion_text(c) -> str:
    return c if isinstance(c, str) else "".join(m["content"] for m in c)


class RubricReward:
    """The absolute score of a rubric as the reward, judged by any backend."""

    def __init__(self, rubric: str, judge: str | None = None, backend=None, concurrency: int = 16):
        from rlaif.backends import get_backend
        from rlaif.engine import Engine
        from rlaif.rubrics import load_rubric

        self.rubric = load_rubric(rubric)
        if "absolute" not in self.rubric.modes:
            raise RlaifError(f"rubric '{self.rubric.name}' has no absolute mode; a GRPO reward needs one")
        self.backend = backend or get_backend(judge)
        self.engine = Engine(self.backend, concurrency=concurrency)
        self.__name__ = f"rubric:{self.rubric.name}@{self.backend.name}"
        self.errors: Counter = Counter()
        self._judge: Any = None       # one Judge per engine, not per call (see score)

    async def score(self, prompts, completions, **columns) -> list[Scored]:
        """(score, None) or (None, reason) per completion: the one judging path of a rubric reward, shared by
        the GRPO loop (`__call__`) and rlaif.rewards.RubricScorer. A `reference` column reaches the judge."""
        import asyncio

        from rlaif.judging.judge import Judge

        rows = [{"prompt": prompt_text(p), "response": completion_text(c)}
                for p, c in zip(prompts, completions, strict=True)]
        ref = columns.get("reference")
        if ref is not None and len(ref) == len(rows):     # a rubric with a reference reads it from the row
            for row, r in zip(rows, ref, strict=True):
                if r is not None:
                    row["reference"] = r
        # What judge_rows_async does, with the Judge built once (rebuilt if the engine is swapped, as RubricScorer
        # does): a reward server answers many one-completion requests, and building a Judge (options, method)
        # per call was a few % of its CPU per request (bench/reward_server.py). Rows are judged independently.
        if self._judge is None or self._judge.engine is not self.engine:
            self._judge = Judge(self.rubric, self.backend, self.engine)
        verdicts = await asyncio.gather(*(self._judge.judge_row(r, "absolute") for r in rows))
        out: list[Scored] = []
        for v in verdicts:
            if v.error:
                out.append((None, v.error))
            else:
                assert v.score is not None, "a verdict without an error has a score"
                out.append((float(v.score), None))
        return out

    def __call__(self, prompts, completions, **kwargs) -> list[float | None]:
        from rlaif.engine import run_sync

        scored = run_sync(self.score(prompts, completions, **kwargs))
        self.errors.update(why for v, why in scored if v is None)
        return [v for v, _ in scored]


def load_reward(spec, judge_backends: dict | None = None):
    """A reward callable in TRL's signature from a spec (parsed by rlaif.train.reward_spec, the one grammar
    of reward specs), a parsed RewardSpec, or a callable (returned as is). judge_backends: {judge spec:
    backend} to reuse for rubric rewards."""
    if callable(spec):
        return spec
    parsed = spec if isinstance(spec, RewardSpec) else parse_reward_spec(spec)
    if parsed.kind == "rubric":
        return RubricReward(parsed.target, parsed.judge, backend=(judge_backends or {}).get(parsed.judge))
    if parsed.kind == "rm":         # a trained reward model (rlaif train rm), in-process and batched
        try:    # named, not imported: rm_reward builds on this module (its fallback judge is a reward from here)
            module = importlib.import_module("rlaif.train.rm_reward")
        except ImportError as e:
            raise spec_error(parsed.text, "reward models need rlaif's reward-model module (rlaif.train.rm_reward), "
                                          "which this install does not have") from e
        return module.RMReward(parsed.target)
    if parsed.kind == "python":
        return load_function(parsed)
    # a registered prefix builds a Scorer (rlaif.rewards), whose sync TRL form lives in that upper layer
    raise spec_error(parsed.text, f"'{parsed.prefix}:' rewards come from rlaif.rewards.register_resolver; pass "
                                  f"rlaif.rewards.reward({parsed.text!r}) (a callable) instead of the string")


def reward_name(fn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def check_values(name: str, values: Any, n: int) -> list[Scored]:
    """A reward function's output checked: a list of n numbers or None; anything else is the user's bug.
    None or NaN -> (None, PY_NONE): unscored, never a number made up."""
    if not isinstance(values, (list, tuple)) or len(values) != n:
        got = len(values) if hasattr(values, "__len__") else "?"
        raise RlaifError(f"reward {name} returned {type(values).__name__} of length {got}; expected a list of {n}")
    out: list[Scored] = []
    for i, v in enumerate(values):
        if v is None:
            out.append((None, PY_NONE))
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise RlaifError(f"reward {name} returned {v!r} for completion {i}; expected a number or None")
        elif math.isnan(float(v)):
            out.append((None, PY_NONE))
        else:
            out.append((float(v), None))
    return out


def score(reward_fns: list, prompts: list, completions: list, columns: dict) -> list[list[float]]:
    """Call every reward function -> rows[i][k] = reward of completion i by function k (NaN for None).
    A function that returns the wrong number of values or a non-number is a user error (check_values)."""
    out = [[math.nan] * len(reward_fns) for _ in completions]
    for k, fn in enumerate(reward_fns):
        values = fn(prompts=prompts, completions=completions, **columns)
        for i, (v, _) in enumerate(check_values(reward_name(fn), values, len(completions))):
            if v is not None:
                out[i][k] = v
    return out
