"""OpenRLHF's remote reward protocol (`--remote_rm_url http://host:port/get_reward`), read from its code.

What OpenRLHF sends (openrlhf/utils/agent.py, SingleTurnAgentExecutor._fetch_rewards_via_http): one POST per
rollout with JSON `{"query": [text], "prompts": [prompt], "labels": [label]}`, where `query` is the prompt and
the response decoded together *with* special tokens (the chat template and the EOS token are in it), `prompts`
is the chat-templated prompt and `labels` the dataset's label column (a string, or None). Its client sends no
headers beyond JSON, retries a failed request 5 times a second apart, then gives up on that rollout.

What it reads back (openrlhf/cli/serve_rm.py, samples_generator._process_response_into_experience):
`{"rewards": [float], "scores": [float], "extra_logs": {name: scalar}}`; `rewards` drive the advantages,
`scores` (falling back to rewards) the dynamic filtering, and each extra_logs value becomes one logged number
per rollout, so the values here are scalars and the keys are the same on every answer.

Functions here are pure: body validation, splitting a query into prompt and response, the answer body.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from rlaif.errors import RlaifError

# Chat-templated prompts -> the last user turn, for the templates OpenRLHF users mostly train with.
_USER_TURN = (
    re.compile(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", re.S),                                 # ChatML (Qwen, SmolLM)
    re.compile(r"<\|start_header_id\|>user<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.S),       # Llama 3
    re.compile(r"<start_of_turn>user\n(.*?)<end_of_turn>", re.S),                                 # Gemma
    re.compile(r"\[INST\](.*?)\[/INST\]", re.S),                                                  # Mistral / Llama 2
)
# End-of-turn / end-of-text tokens left at the end of a response decoded with special tokens.
_TRAILING_SPECIAL = re.compile(r"(?:\s*(?:<\|[A-Za-z_]{1,40}\|>|</s>|<eos>|<end_of_turn>))+\s*$")


class BadRequest(RlaifError):
    """A request body that does not follow the protocol: answered 4xx with this message."""


@dataclass
class RewardRequest:
    prompts: list[str]          # as the judge should read them (last user turn when templated)
    completions: list[str]
    labels: list[str | None]


def user_turn(prompt: str) -> str:
    """The last user turn of a chat-templated prompt; the prompt unchanged when no known template matches."""
    for pat in _USER_TURN:
        found = pat.findall(prompt)
        if found:
            return found[-1].strip()
    return prompt


def split_query(query: str, prompt: str) -> str:
    """The response part of an OpenRLHF query (prompt + response, decoded with special tokens)."""
    if prompt and query.startswith(prompt):
        response = query[len(prompt):]
    elif prompt and prompt in query:
        response = query[query.rindex(prompt) + len(prompt):]
    else:               # the prompt re-tokenized differently: the whole query is what we have
        response = query
    return _TRAILING_SPECIAL.sub("", response).strip()


def _str_list(body: dict, field: str, n: int | None, *, allow_none: bool = False) -> list:
    v = body.get(field)
    if not isinstance(v, list):
        raise BadRequest(f"field '{field}' must be a list of strings, got {type(v).__name__}")
    if n is not None and len(v) != n:
        raise BadRequest(f"field '{field}' has {len(v)} items but 'query' has {n}; they must be the same length")
    for i, x in enumerate(v):
        if isinstance(x, str) or (allow_none and x is None):
            continue
        if allow_none and isinstance(x, (int, float)) and not isinstance(x, bool):
            continue        # a numeric label (an answer like 42) reads as its text
        raise BadRequest(f"field '{field}' item {i} must be a string{' or null' if allow_none else ''}, "
                         f"got {type(x).__name__}")
    return v


def parse_get_reward(body) -> RewardRequest:
    """Validate an OpenRLHF /get_reward body into prompts, completions and labels (BadRequest if malformed)."""
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object with 'query', 'prompts', 'labels'; got {type(body).__name__}")
    if "query" not in body:
        raise BadRequest("missing field 'query' (a list of prompt+response texts)")
    if "prompts" not in body:
        raise BadRequest("missing field 'prompts' (a list of the prompts, one per query)")
    queries = _str_list(body, "query", None)
    if not queries:
        raise BadRequest("field 'query' is empty")
    prompts = _str_list(body, "prompts", len(queries))
    labels = _str_list(body, "labels", len(queries), allow_none=True) if body.get("labels") is not None \
        else [None] * len(queries)
    return RewardRequest(prompts=[user_turn(p) for p in prompts],
                         completions=[split_query(q, p) for q, p in zip(queries, prompts, strict=True)],
                         labels=[None if x is None else str(x) for x in labels])


def get_reward_answer(values: list[float | None], unscored_reward: float | None) -> dict:
    """The /get_reward answer. Unscored values take `unscored_reward` (the value the user chose), counted in
    extra_logs; without one, the caller must answer an error instead (never call this then)."""
    n_unscored = sum(v is None for v in values)
    if n_unscored and unscored_reward is None:
        raise ValueError("unscored values and no --unscored-reward: answer an error instead")
    rewards = [unscored_reward if v is None else v for v in values]
    return {"rewards": rewards, "scores": rewards,
            "extra_logs": {"rlaif_unscored": float(n_unscored), "rlaif_scored": float(len(values) - n_unscored)}}
