"""Option sets shared by the Python API, the CLI and pipeline YAML: one definition, one check.

Why pydantic here: an option a person writes (a flag, a YAML key, a keyword argument) is checked
once, before any request is sent or any file is opened for writing, and every problem is
reported at once with the allowed values (`rank_method: Input should be 'tournament' or
'listwise'`), like torchtune's ConfigError. The CLI builds its flags' defaults and help from
these fields, and `rlaif.judge(**flat)` routes each keyword to the model that owns it.

- JudgeOptions: how verdicts are produced (everything but the rubric and judge that changes a
  verdict is here, and is hashed into the job fingerprint and the ledger's verdict keys).
- EngineOptions: how requests are sent (concurrency, limits, retries, budget, ledger, batch).
- JobOptions: a run over a file (shard, dry run, resume, invalid rows, progress, look-up folders).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rlaif.errors import ConfigError, Problem
from rlaif.ties import TIE_MARGIN

GENERATIVE_MAX_TOKENS = 512     # room for a short rationale and the verdict line
Aggregate = Literal["mean", "majority", "weighted"]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True)


class JudgeOptions(_Options):
    """How a judge produces verdicts. Field order is part of the verdict key: append, never reorder."""

    generative: bool = Field(False, description="the judge writes a rationale and a verdict line instead of "
                                                "reading token log-probabilities")
    both_orders: bool = Field(True, description="pairwise: judge both presentation orders (position debiasing)")
    rank_method: Literal["tournament", "listwise"] = Field("tournament", description="rank: every pair judged "
                                                           "and a Bradley-Terry fit, or one call per permutation")
    n_permutations: int = Field(2, ge=1, description="listwise: identity and reversed, then rotations")
    max_tokens: int = Field(GENERATIVE_MAX_TOKENS, ge=1, description="most tokens of a generative verdict")
    # pairwise: |P(A) - 0.5| at or below this is a tie. 0.05 because a judge whose two orders nearly
    # cancel (P(A)=0.502) has not expressed a preference; the soft label p_a is kept either way.
    tie_margin: float = Field(TIE_MARGIN, ge=0, le=0.5, description="pairwise: |P(A)-0.5| at or below this is a tie")
    structured: bool | None = Field(None, description="JSON-schema / tool-use verdicts; None: wherever the "
                                                      "backend supports them")
    repair: bool = Field(True, description="re-ask once when a verdict cannot be read")
    samples: int = Field(0, ge=0, description="k > 1: estimate probabilities from k sampled verdicts (k calls)")
    # the provider's default sampling; 0 would make the k samples identical
    sample_temperature: float = Field(1.0, gt=0, le=5, description="temperature of sampled verdicts")

    def verdict_key(self) -> dict:
        """Every option that can change a verdict, in field order (hashed into fingerprints and keys)."""
        return {name: getattr(self, name) for name in type(self).model_fields}


class EngineOptions(_Options):
    """How requests are sent. None: the engine's default (its reason is documented in rlaif.engine)."""

    concurrency: int = Field(16, ge=1, description="requests in flight at once")
    # gt=0: a limit of 0 would mean "never send"; it used to be read as "no limit" (issue 15.24)
    rpm: float | None = Field(None, gt=0, description="requests per minute (None: no limit)")
    tpm: float | None = Field(None, gt=0, description="tokens per minute (None: no limit)")
    timeout: float | None = Field(None, gt=0, description="seconds per request (None: the engine's default)")
    max_retries: int | None = Field(None, ge=0, description="retries of a transient failure (None: the default)")
    max_cost: float | None = Field(None, ge=0, description="stop spending at this many USD; the rest are "
                                                           "unscored 'budget'")
    prices: str | Path | dict | None = Field(None, description="a price file (YAML/JSON) or table, USD per 1M tokens")
    cache: bool | None = Field(None, description="the request ledger; None: on for API judges, off for local/ "
                                                 "and fake/")
    ledger: Any = Field(None, description="a Ledger or the ledger file (None: the default under the cache dir)")
    batch: bool = Field(False, description="send uncached requests through the provider's batch API (half price)")
    batch_poll: float = Field(30.0, ge=0, description="seconds between batch status checks")
    base_url: str | None = Field(None, description="an OpenAI-compatible server (openai/ and litellm/ judges)")
    judge_options: dict = Field(default_factory=dict, description="extra options for the judge's backend")


class JobOptions(_Options):
    """A run over a file."""

    aggregate: Aggregate | None = Field(None, description="combine several judges/rubrics (a jury)")
    gold: str | Path | list | None = Field(None, description="rows with a gold label: weights of a weighted jury")
    shard: str | tuple[int, int] | None = Field(None, description="judge only partition i of n ('i/n')")
    dry_run: bool = Field(False, description="send nothing; estimate requests, tokens and cost")
    fresh: bool = Field(False, description="discard an unfinished OUT.partial instead of resuming it")
    skip_invalid: bool = Field(False, description="skip (and list) invalid input rows instead of stopping")
    progress: bool = Field(False, description="draw a progress bar on stderr")
    prompts_dirs: list | None = Field(None, description="folders searched for templates first")
    rubrics_dirs: list | None = Field(None, description="folders searched for rubrics first")


OPTION_MODELS: tuple[type[_Options], ...] = (JudgeOptions, EngineOptions, JobOptions)


def _problems(e: ValidationError, source: str) -> list[Problem]:
    out = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"] if not str(x).startswith(("function-", "lax-")))
        msg = err["msg"] if err["type"] != "extra_forbidden" else "unknown option"
        out.append(Problem(f"{source}: {loc}" if source else loc, f"{msg} (got {err.get('input')!r})"))
    return out


def split_options(flat: dict, *, source: str = "", given: tuple = ()) -> tuple[JudgeOptions, EngineOptions, JobOptions]:
    """Route flat keyword options to the model that owns each; validate all three; raise ONE
    ConfigError listing every problem (unknown names included). `given` are ready-made models
    that the flat keywords update."""
    owners = {name: m for m in OPTION_MODELS for name in m.model_fields}
    problems = [Problem(f"{source}: {k}" if source else k, "unknown option; known options: "
                        + ", ".join(sorted(owners))) for k in flat if k not in owners]
    built = []
    for m in OPTION_MODELS:
        base = next((g for g in given if isinstance(g, m)), None)
        mine = {k: v for k, v in flat.items() if owners.get(k) is m}
        data = {**(dict(base) if base is not None else {}), **mine}
        try:
            built.append(m.model_validate(data))
        except ValidationError as e:
            problems += _problems(e, source)
    if problems:
        raise ConfigError(problems, source="options")
    return built[0], built[1], built[2]     # type: ignore[return-value]


def check(model: type[_Options], values: dict, source: str = "") -> _Options:
    """One option model from `values`, or one ConfigError listing every problem."""
    try:
        return model.model_validate(values)
    except ValidationError as e:
        raise ConfigError(_problems(e, source), source="options") from None


__all__ = ["JudgeOptions", "EngineOptions", "JobOptions", "split_options", "check", "GENERATIVE_MAX_TOKENS"]
