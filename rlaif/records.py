"""The records that flow between stages.

Dataclasses, not pydantic: these are internal, made by code, never written by people.
On disk every stage speaks JSONL; `to_row()` gives the dict written there.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

Message = dict[str, str]          # {"role": "user", "content": "..."}


@dataclass
class GenParams:
    """What a backend is asked for. Part of the request-ledger key, so keep it plain data."""

    max_tokens: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    # How many alternatives to report per generated position (OpenAI's top_logprobs).
    top_logprobs: int | None = None
    # Score the first generated token against exactly these strings ("1".."5", "A"/"B").
    # Backends that can compute them exactly (local) do; API backends fill them from top_logprobs.
    options: list[str] | None = None
    # A JSON schema the answer must follow, where the provider supports structured output.
    json_schema: dict | None = None
    stop: list[str] | None = None

    def key(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Completion:
    """One answer from a backend."""

    text: str
    # log-probabilities of `GenParams.options` at the first generated position (None where the
    # provider returns no logprobs). Missing options are absent, never invented.
    option_logprobs: dict[str, float] | None = None
    # top alternatives at each generated position: [{token: logprob}, ...]
    top_logprobs: list[dict[str, float]] | None = None
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    cost: float | None = None          # USD, where a price is known
    cached: bool = False               # answered from the request ledger


@dataclass
class Judgment:
    """The verdict for one input row. `score`/`p_a`/`ranking` are None when unscored,
    and then `error` holds a reason code (`parse_error`, `refused`, `api_error:429`, `budget`...)."""

    mode: str                                   # absolute | pairwise | rank
    judge: str                                  # "local/default", "openai/gpt-4o-mini"
    rubric: str                                 # "helpfulness@3f2a9c1d"
    score: float | None = None                  # absolute: expected score on the rubric scale
    probs: dict[str, float] | None = None       # absolute: distribution over scale points
    p_a: float | None = None                    # pairwise: P(response_a is better), order-averaged
    preference: str | None = None               # pairwise: "a" | "b" | "tie"
    consistent: bool | None = None              # pairwise: both orders agree on the winner
    orders: list[dict] | None = None            # pairwise: per presentation order details
    ranking: list[int] | None = None            # rank: indices into responses, best first
    scores: list[float] | None = None           # rank: one strength per response
    rationale: str | None = None
    error: str | None = None
    detail: str | None = None                   # human-readable detail for `error`
    parse: str | None = None                    # generative: how it was read: json | text | repaired | tolerant
    n_samples: int | None = None                # k-sample estimate: how many samples gave a readable verdict
    members: list[dict] | None = None           # jury: each member's verdict (judge, rubric, weight, score/p_a, error)

    def to_row(self) -> dict[str, Any]:
        """The output row's verdict fields. A verdict holding a number that is not finite (NaN from an
        overflowing weighted sum, inf) is never stored: the row becomes unscored `non_finite`."""
        if self.error is None and (bad := self.non_finite()):
            self.detail = f"the verdict's {bad} is not a finite number; nothing was stored as a score"
            self.error = "non_finite"
            self.score = self.p_a = self.probs = self.ranking = self.scores = self.preference = None
        # Shallow (not dataclasses.asdict, whose deep copy was a third of a cached re-run's time).
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None or f.name == "error"}

    def non_finite(self) -> str | None:
        """The name of the first verdict field holding NaN or an infinity, else None."""
        for name in ("score", "p_a"):
            v = getattr(self, name)
            if isinstance(v, float) and not math.isfinite(v):
                return name
        if self.probs and any(not math.isfinite(v) for v in self.probs.values() if isinstance(v, float)):
            return "probs"
        if self.scores and any(not math.isfinite(v) for v in self.scores if isinstance(v, float)):
            return "scores"
        return None

    @classmethod
    def from_row(cls, row: dict[str, Any], mode: str) -> Judgment:
        """The verdict back from an output row of `rlaif.judge` (the input row + `to_row()` fields).
        An unscored row gives no verdict values, whatever fields its input row carried."""
        j = cls(mode=row.get("mode", mode), judge=row.get("judge", ""), rubric=row.get("rubric", ""),
                **{k: row[k] for k in _VERDICT_FIELDS if k in row})
        if j.error:
            j.score = j.p_a = j.ranking = j.probs = j.preference = None
        return j


_VERDICT_FIELDS = tuple(f.name for f in fields(Judgment) if f.name not in ("mode", "judge", "rubric", "members"))
