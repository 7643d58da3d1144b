"""GRPO rewards: rubric judges (through rlaif.judge) and Python functions, mixed freely.

A reward is anything with TRL's signature `f(prompts, completions, **kwargs) -> list[float | None]`.
`completions` has the prompt's shape: strings for string prompts, [{"role": "assistant", ...}]
lists for message prompts; `kwargs` holds the prompt rows' other columns (one value per
completion), e.g. a reference answer. None means "could not score this one": such completions
are left out of the advantage baseline and of the loss, never counted as 0.

Specs on the command line (`--reward`, repeatable):
- `rubric:NAME` or `rubric:NAME@provider/model`: the rubric's absolute score from that judge
  (default local/default), through the judge engine (concurrent, any backend; unparseable
  verdicts give None with their reason code counted).
- `rm:PATH`: a reward model trained with `rlaif train rm` (rm_reward.py: batched, with an optional
  LLM-judge fallback band and drift watch).
- `package.module:function`, or `path/to/file.py:function` (`:reward` if omitted).
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
from collections import Counter

from rlaif.errors import RlaifError


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

    def __call__(self, prompts, completions, **kwargs) -> list[float | None]:
        from rlaif.engine import run_sync
        from rlaif.judging.judge import judge_rows_async

        rows = [{"prompt": prompt_text(p), "response": completion_text(c)} for p, c in zip(prompts, completions)]
        verdicts = run_sync(judge_rows_async(rows, self.rubric, "absolute", judge=self.backend, engine=self.engine))
        out: list[float | None] = []
        for v in verdicts:
            if v.error:
                self.errors[v.error] += 1
                out.append(None)
            else:
                assert v.score is not None, "a verdict without an error has a score"
                out.append(float(v.score))
        return out


def load_reward(spec, judge_backends: dict | None = None):
    """A reward callable from a spec string (see the module docstring) or a callable."""
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec:
        raise RlaifError(f"--reward: expected 'rubric:NAME[@judge]' or 'module:function', got {spec!r}")
    if spec.startswith("rm:"):          # a trained reward model (rlaif train rm), in-process and batched
        # named, not imported: rm_reward builds on this module (its fallback judge is a reward from here)
        return importlib.import_module("rlaif.train.rm_reward").RMReward(spec[len("rm:"):])
    if spec.startswith("rubric:"):
        name, _, judge = spec[len("rubric:"):].partition("@")
        if not name:
            raise RlaifError(f"--reward {spec}: missing the rubric name (rubric:helpfulness@local/default)")
        backend = (judge_backends or {}).get(judge or None)
        return RubricReward(name, judge or None, backend=backend)
    target, _, fname = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if not target:
        target, fname = spec, ""
    if target.endswith(".py") or os.path.sep in target:
        if not os.path.exists(target):
            raise RlaifError(f"--reward {spec}: file {target} not found")
        modspec = importlib.util.spec_from_file_location(f"rlaif_reward_{abs(hash(target))}", target)
        if modspec is None or modspec.loader is None:
            raise RlaifError(f"--reward {spec}: {target} cannot be imported as a Python module")
        module = importlib.util.module_from_spec(modspec)
        try:
            modspec.loader.exec_module(module)
        except Exception as e:
            raise RlaifError(f"--reward {spec}: importing {target} failed: {type(e).__name__}: {e}") from e
        fname = fname or "reward"
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise RlaifError(f"--reward {spec}: cannot import module '{target}': {e}") from e
        if not fname:
            raise RlaifError(f"--reward {spec}: name the function, as module:function")
    fn = getattr(module, fname, None)
    if not callable(fn):
        raise RlaifError(f"--reward {spec}: no function '{fname}' in {target}")
    return fn


def reward_name(fn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def score(reward_fns: list, prompts: list, completions: list, columns: dict) -> list[list[float]]:
    """Call every reward function -> rows[i][k] = reward of completion i by function k (NaN for None).
    A function that returns the wrong number of values or a non-number is a user error."""
    out = [[math.nan] * len(reward_fns) for _ in completions]
    for k, fn in enumerate(reward_fns):
        values = fn(prompts=prompts, completions=completions, **columns)
        name = reward_name(fn)
        if not isinstance(values, (list, tuple)) or len(values) != len(completions):
            raise RlaifError(f"reward {name} returned {type(values).__name__} of length "
                             f"{len(values) if hasattr(values, '__len__') else '?'}; "
                             f"expected a list of {len(completions)}")
        for i, v in enumerate(values):
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise RlaifError(f"reward {name} returned {v!r} for completion {i}; expected a number or None")
            out[i][k] = float(v)
    return out
