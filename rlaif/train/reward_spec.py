"""Reward specs: the one grammar of the strings that name a reward, and the one registry of extra prefixes.

Why: `rlaif train grpo --reward`, `rlaif.rewards.reward()`/`resolve()`, `rlaif serve reward --reward` and
verl's `compute_score` all take the same strings. Parsing them here, once, keeps the forms and the error
messages (`reward SPEC: ...`, naming the spec) the same everywhere. What a spec becomes is the caller's:
`rlaif.train.rewards.load_reward` builds a callable in TRL's signature (rlaif's own GRPO loop),
`rlaif.rewards.resolve` a Scorer with the judge engine's options (TRL, the reward server, verl).

The forms:
- `rubric:NAME[@provider/model]`: a rubric's absolute score from that judge (default: the embedded model).
- `rm:PATH`: a reward model trained with `rlaif train rm`.
- `path/to/file.py[:function]` (function `reward` if omitted) or `package.module:function`: a Python reward.
- `PREFIX:REST` for a prefix added with `register_prefix` (`rlaif.rewards.register_resolver`).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass

from rlaif.errors import RlaifError

FORMS = "'rubric:NAME[@provider/model]', 'rm:PATH', 'file.py[:function]' or 'module:function'"
BUILT_IN = ("rubric", "rm")

# prefix -> resolver(REST, **options) -> a Scorer (rlaif.rewards); filled by rlaif.rewards.register_resolver
PREFIXES: dict[str, Callable] = {}


@dataclass(frozen=True)
class RewardSpec:
    """One parsed spec. kind: "rubric", "rm", "python" or "plugin" (a registered prefix)."""

    text: str                   # the spec as written: every error message names it
    kind: str
    target: str                 # the rubric name | the reward model's folder | the .py file or module | REST
    judge: str | None = None    # rubric: provider/model of the judge (None: the default judge)
    function: str = ""          # python: the function's name
    prefix: str = ""            # plugin: the registered prefix
    is_file: bool = False       # python: target is a .py file (else an importable module)


def spec_error(spec: str, message: str) -> RlaifError:
    """The one shape of a bad-spec error: `reward SPEC: what is wrong (and the form that works)`."""
    return RlaifError(f"reward {spec}: {message}")


def register_prefix(prefix: str, resolver: Callable) -> None:
    """Make `PREFIX:REST` a spec form everywhere specs are parsed; `resolver` builds its Scorer."""
    if not prefix or ":" in prefix or prefix in BUILT_IN:
        raise RlaifError(f"reward prefix {prefix!r}: a prefix is a non-empty name without ':' other than "
                         f"the built-in {', '.join(BUILT_IN)}")
    PREFIXES[prefix] = resolver


def parse_reward_spec(spec) -> RewardSpec:
    """A RewardSpec from a spec string; a malformed spec raises RlaifError naming it."""
    if not isinstance(spec, str) or not spec.strip():
        raise RlaifError(f"reward spec: expected {FORMS}, got {spec!r}")
    prefix, sep, rest = spec.partition(":")
    if sep and prefix == "rubric":
        name, _, judge = rest.partition("@")
        if not name:
            raise spec_error(spec, "missing the rubric name (rubric:helpfulness@openai/gpt-4o-mini)")
        return RewardSpec(spec, "rubric", name, judge=judge or None)
    if sep and prefix == "rm":
        if not rest:
            raise spec_error(spec, "give the reward model's folder (rm:runs/rm/adapter)")
        return RewardSpec(spec, "rm", rest)
    if sep and prefix in PREFIXES:
        return RewardSpec(spec, "plugin", rest, prefix=prefix)
    target, _, fname = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if not target:
        target, fname = spec, ""
    if target.endswith(".py") or os.path.sep in target:
        return RewardSpec(spec, "python", target, function=fname or "reward", is_file=True)
    if not fname:
        raise spec_error(spec, f"name the function, as module:function (the forms: {FORMS})")
    return RewardSpec(spec, "python", target, function=fname)


def load_function(spec: RewardSpec) -> Callable:
    """The Python function a "python" spec names, imported from its file or module."""
    target = spec.target
    if spec.is_file:
        if not os.path.exists(target):
            raise spec_error(spec.text, f"file {target} not found")
        modspec = importlib.util.spec_from_file_location(f"rlaif_reward_{abs(hash(target))}", target)
        if modspec is None or modspec.loader is None:
            raise spec_error(spec.text, f"{target} cannot be imported as a Python module")
        module = importlib.util.module_from_spec(modspec)
        try:
            modspec.loader.exec_module(module)
        except Exception as e:
            raise spec_error(spec.text, f"importing {target} failed: {type(e).__name__}: {e}") from e
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise spec_error(spec.text, f"cannot import module '{target}': {e}") from e
    fn = getattr(module, spec.function, None)
    if not callable(fn):
        raise spec_error(spec.text, f"no function '{spec.function}' in {target}")
    return fn
