"""A batched answer is read by the same function as the live answer, so the verdict stored under a
ledger key never depends on which path fetched it (issue 10: the old OpenAI batch reader took the
max over token variants instead of their log-sum-exp, kept -9999 sentinels and ignored refusals)."""
import json
import math

import pytest

from rlaif.backends.anthropic import completion_from_anthropic
from rlaif.backends.anthropic_batch import read_result as anthropic_batch_result
from rlaif.backends.fake import FakeBackend
from rlaif.backends.openai import completion_from_openai
from rlaif.backends.openai_batch import read_result as openai_batch_result
from rlaif.judge import judge
from rlaif.records import GenParams

ROWS = [{"id": 0, "prompt": "Capital of France?", "response": "Paris."}]


def openai_body(content, top=None, refusal=None, finish="stop"):
    lp = None
    if top is not None:
        lp = {"content": [{"token": next(iter(top)), "logprob": next(iter(top.values())), "bytes": None,
                           "top_logprobs": [{"token": t, "logprob": v, "bytes": None} for t, v in top.items()]}]}
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": refusal},
                         "logprobs": lp, "finish_reason": finish}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 1, "total_tokens": 121}}


OPENAI_CASES = {
    # "4" and " 4" are one option: their probabilities add up (log-sum-exp), not max
    "token variants": openai_body("4", {"4": math.log(0.3), " 4": math.log(0.3), "5": math.log(0.35),
                                        "3": -9999.0, "\n": math.log(0.05)}),
    "sentinel only": openai_body("4", {"4": -0.01, "2": -9999.0}),
    "refusal": openai_body(None, refusal="I can't help with grading this.", finish="stop"),
    "generative": openai_body("The answer is right and brief.\nScore: 5"),
}


def verdict(completion, **kw):
    b = FakeBackend("openai/gpt-4o-mini", responder=lambda m, p: completion, supports_logprobs=kw.pop("lp", True))
    rows, _ = judge(ROWS, "helpfulness", judge=b, **kw)
    return {k: v for k, v in rows[0].items() if k != "judge"}


@pytest.mark.parametrize("case", list(OPENAI_CASES))
@pytest.mark.parametrize("generative", [False, True])
def test_openai_live_and_batch_readers_give_identical_verdicts(case, generative):
    body = OPENAI_CASES[case]
    params = GenParams(max_tokens=1, top_logprobs=20, options=["1", "2", "3", "4", "5"])
    live = completion_from_openai(json.loads(json.dumps(body)), params)
    batched = openai_batch_result({"custom_id": "k", "response": {"status_code": 200, "body": body}, "error": None},
                                  params)
    assert live == batched
    assert verdict(live, generative=generative) == verdict(batched, generative=generative)


def test_the_batch_reader_sums_token_variants_and_drops_sentinels():
    params = GenParams(max_tokens=1, top_logprobs=20, options=["1", "2", "3", "4", "5"])
    c = openai_batch_result({"custom_id": "k", "response": {"status_code": 200, "body": OPENAI_CASES["token variants"]}},
                            params)
    assert c.option_logprobs["4"] == pytest.approx(math.log(0.6)) and "3" not in c.option_logprobs
    r = openai_batch_result({"custom_id": "k", "response": {"status_code": 200, "body": OPENAI_CASES["refusal"]}},
                            params)
    assert r.finish_reason == "refusal"
    assert verdict(r, generative=True)["error"] == "refused"


def anthropic_body(content, stop="end_turn"):
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-latest",
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 150, "output_tokens": 20}}


ANTHROPIC_CASES = {
    "tool use": anthropic_body([{"type": "tool_use", "id": "toolu_1", "name": "record_verdict",
                                 "input": {"rationale": "Correct.", "score": 4}}], stop="tool_use"),
    "text": anthropic_body([{"type": "text", "text": "Fine answer.\nScore: 3"}]),
    "refusal": anthropic_body([{"type": "text", "text": "I won't grade this."}], stop="refusal"),
}


@pytest.mark.parametrize("case", list(ANTHROPIC_CASES))
def test_anthropic_live_and_batch_readers_give_identical_verdicts(case):
    anthropic = pytest.importorskip("anthropic")
    body = ANTHROPIC_CASES[case]
    live = completion_from_anthropic(anthropic.types.Message.model_validate(body))     # what the SDK hands back
    batched = anthropic_batch_result({"type": "succeeded", "message": body})
    assert live == batched
    assert verdict(live, lp=False) == verdict(batched, lp=False)
