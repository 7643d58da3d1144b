"""Generative verdicts (structured → parse → one re-ask → tolerant), reason codes, the k-sample
estimate, logprob judging through the OpenAI wire format, and rank mode."""
from __future__ import annotations

import json
import math

import httpx
import pytest

from rlaif.backends.fake import FakeBackend
from rlaif.errors import BackendError
from rlaif.judge import (Judge, JudgeConfig, bradley_terry, judge, parse_json_verdict, parse_verdict, tolerant_parse,
                         verdict_schema)
from rlaif.records import Completion
from rlaif.rubrics import load_rubric

ROW = {"id": "r1", "prompt": "What is the capital of France?", "response": "Paris."}
PAIR = {"id": "p1", "prompt": "What is the capital of France?", "response_a": "Paris.", "response_b": "Lyon."}


def gen_backend(replies, **kw):
    """A non-logprob judge answering from a list (one reply per call, in call order)."""
    it = iter(replies)

    def responder(messages, params):
        out = next(it)
        return out(messages, params) if callable(out) else out

    return FakeBackend("gen", responder=responder, supports_logprobs=False, **kw)


def run(rows, backend, **kw):
    out, summary = judge(rows, "helpfulness", judge=backend, **kw)
    return out, summary


# ---------------------------------------------------------------------------------------------
# Parsers (pure)
# ---------------------------------------------------------------------------------------------
def test_json_verdicts():
    assert parse_json_verdict('```json\n{"rationale": "ok", "score": 4}\n```', "score").value == 4
    assert parse_json_verdict('{"rationale": "x", "score": "5"}', "score").value == 5
    assert parse_json_verdict('{"rationale": "x", "score": 9}', "score").error == "parse_error"
    assert parse_json_verdict('{"rationale": "x", "score": 4.5}', "score").error == "parse_error"
    assert parse_json_verdict('{"rationale": "x", "score": true}', "score").error == "parse_error"
    assert parse_json_verdict('{"rationale": "x"}', "score").error == "parse_error"
    assert parse_json_verdict("Score: 4", "score") is None                 # no JSON: read as prose
    assert parse_json_verdict('{"better": "b", "rationale": "r"}', "preference").value == "B"
    assert parse_json_verdict('{"better": "C"}', "preference").error == "parse_error"
    assert parse_json_verdict('{"ranking": [2, 3, 1]}', "ranking", n=3).value == [1, 2, 0]
    assert parse_json_verdict('{"ranking": [2, 2, 1]}', "ranking", n=3).error == "parse_error"
    assert parse_verdict("Fine answer.\nScore: 3", "score").value == 3


def test_verdict_schema_is_strict_mode_shaped():
    s = verdict_schema("score", 1, 5)
    assert s["additionalProperties"] is False and set(s["required"]) == set(s["properties"]) == {"rationale", "score"}
    assert s["properties"]["score"]["enum"] == [1, 2, 3, 4, 5]
    assert verdict_schema("preference")["properties"]["better"]["enum"] == ["A", "B"]


@pytest.mark.parametrize("text,kind,want", [
    ("I would rate this response 4 out of 5 overall.", "score", 4),
    ("Good, but incomplete: 3/5", "score", 3),
    ("My verdict is **2**", "score", 2),
    ("Final: [[5]]", "score", 5),
    ("The answer is correct.\nSo: 4", "score", 4),
    ("Worth 7 points out of 10", "score", None),          # off-scale never counts
    ("I'd give it 4 because it is right.", "score", 4),
    ("Overall my rating is 2.", "score", 2),
    # an echo of the prompt's rubric is not a verdict
    ("Score levels (1 = worst, 5 = best):\n1: Ignores the request.\n5: Fully and accurately addresses the request.", "score", None),
    ("Overall, Response B is clearly better.", "preference", "B"),
    ("[[A]]", "preference", "A"),
    ("I prefer response A here.", "preference", "A"),
    ("Both are fine.", "preference", None),
    ("Best to worst: 2, 3, 1", "ranking", [1, 2, 0]),
    ("2 -> 1", "ranking", None),                          # not a permutation of 1..3
])
def test_tolerant_patterns(text, kind, want):
    p = tolerant_parse(text, kind, 1, 5, 3)
    assert p.value == want and (p.error is None) == (want is not None)


# ---------------------------------------------------------------------------------------------
# The repair loop and reason codes
# ---------------------------------------------------------------------------------------------
def test_readable_first_reply_makes_one_call():
    b = gen_backend(["Correct and concise.\nScore: 5"])
    out, s = run([ROW], b)
    assert out[0]["score"] == 5.0 and out[0]["parse"] == "text" and out[0]["method"] == "generative"
    assert out[0]["rationale"] == "Correct and concise." and len(b.calls) == 1
    assert b.calls[0][1].temperature == 0.0 and b.calls[0][1].json_schema is None


def test_unreadable_reply_is_reasked_once_with_the_error():
    b = gen_backend(["It is a good answer.", "Score: 4"])
    out, _ = run([ROW], b)
    assert out[0]["score"] == 4.0 and out[0]["parse"] == "repaired" and len(b.calls) == 2
    retry = b.calls[1][0]
    assert retry[-2] == {"role": "assistant", "content": "It is a good answer."}
    assert "could not be read" in retry[-1]["content"] and "no score found" in retry[-1]["content"]
    assert 'Score: N' in retry[-1]["content"]


def test_tolerant_regex_is_the_last_resort():
    b = gen_backend(["It is a good answer.", "I'd give it 4 out of 5."])
    out, _ = run([ROW], b)
    assert out[0]["score"] == 4.0 and out[0]["parse"] == "tolerant" and len(b.calls) == 2


def test_unparseable_after_reask_is_unscored_never_invented():
    b = gen_backend(["It is a good answer.", "Still a good answer."])
    out, s = run([ROW], b)
    assert out[0]["error"] == "parse_error" and "score" not in out[0] and len(b.calls) == 2
    assert "after one re-ask" in out[0]["detail"] and s.unscored["parse_error"] == 1


def test_no_repair_goes_straight_to_tolerant():
    b = gen_backend(["meh 4/5", "unused"])
    out, _ = run([ROW], b, repair=False)
    assert out[0]["score"] == 4.0 and out[0]["parse"] == "tolerant" and len(b.calls) == 1


def test_refusals_are_not_reasked():
    b = gen_backend(["I'm sorry, but I can't help with evaluating this."])
    out, _ = run([ROW], b)
    assert out[0]["error"] == "refused" and len(b.calls) == 1
    b = gen_backend([Completion(text="I can't do that", finish_reason="refusal")])
    out, _ = run([ROW], b)
    assert out[0]["error"] == "refused" and len(b.calls) == 1


def test_api_errors_become_reason_codes():
    def fail(messages, params):
        raise BackendError("openai HTTP 429 (rate_limit_exceeded): slow down", code="rate_limit_exceeded", status=429,
                           retry_after=1.0, retryable=True)

    # max_retries=0: the engine's retries are tested in test_engine.py; here only the reason code
    out, s = run([ROW], FakeBackend("x", responder=fail, supports_logprobs=False), max_retries=0)
    assert out[0]["error"] == "api_error:429" and s.unscored["api_error:429"] == 1

    def stall(messages, params):
        raise BackendError("timed out", code="timeout", retryable=True)

    out, _ = run([ROW], FakeBackend("x", responder=stall, supports_logprobs=False), max_retries=0)
    assert out[0]["error"] == "timeout"


def test_structured_output_where_the_backend_supports_it():
    b = gen_backend(['{"rationale": "Right answer.", "score": 5}'])
    b.supports_json_schema = True
    out, _ = run([ROW], b)
    params = b.calls[0][1]
    assert params.json_schema == verdict_schema("score", 1, 5)
    assert "JSON object" in b.calls[0][0][-1]["content"]
    assert out[0]["score"] == 5.0 and out[0]["parse"] == "json" and out[0]["rationale"] == "Right answer."
    # a JSON verdict with an invalid field is re-asked, asking for JSON again
    b = gen_backend(['{"rationale": "r", "score": 11}', '{"rationale": "r", "score": 2}'])
    b.supports_json_schema = True
    out, _ = run([ROW], b)
    assert out[0]["score"] == 2.0 and out[0]["parse"] == "repaired" and "JSON object" in b.calls[1][0][-1]["content"]
    # structured=False: plain prose verdicts even where JSON is available
    b = gen_backend(["Score: 3"])
    b.supports_json_schema = True
    out, _ = run([ROW], b, structured=False)
    assert b.calls[0][1].json_schema is None and out[0]["score"] == 3.0


def test_pairwise_generative_both_orders_and_one_order():
    # the judge always prefers whichever response mentions Paris, wherever it is shown
    def responder(messages, params):
        user = messages[-1]["content"]
        return "Better: A" if user.index("Paris") < user.index("Lyon") else "Better: B"

    b = FakeBackend("x", responder=responder, supports_logprobs=False)
    out, s = run([PAIR], b)
    assert out[0]["p_a"] == 1.0 and out[0]["preference"] == "a" and out[0]["consistent"] is True
    assert len(b.calls) == 2 and s.consistency == 1.0
    b = FakeBackend("x", responder=lambda m, p: "Better: A", supports_logprobs=False)   # always the first shown
    out, _ = run([PAIR], b)
    assert out[0]["p_a"] == 0.5 and out[0]["preference"] == "tie" and out[0]["consistent"] is False
    b = FakeBackend("x", responder=responder, supports_logprobs=False)
    out, _ = run([PAIR], b, both_orders=False)
    assert len(b.calls) == 1 and out[0]["p_a"] == 1.0 and "consistent" not in out[0]


# ---------------------------------------------------------------------------------------------
# k-sample estimate (no logprobs)
# ---------------------------------------------------------------------------------------------
def test_k_sample_estimate_absolute():
    by_seed = {0: "Score: 4", 1: "Score: 4", 2: "Score: 5", 3: "Score: 3", 4: "Score: 4"}
    b = FakeBackend("x", responder=lambda m, p: by_seed[p.seed], supports_logprobs=False)
    out, _ = run([ROW], b, samples=5)
    r = out[0]
    assert r["method"] == "samples" and r["n_samples"] == 5
    assert r["probs"] == pytest.approx({"1": 0, "2": 0, "3": 0.2, "4": 0.6, "5": 0.2})
    assert r["score"] == pytest.approx(4.0)
    assert sorted(p.seed for _, p in b.calls) == [0, 1, 2, 3, 4]
    assert {p.temperature for _, p in b.calls} == {1.0}


def test_k_sample_estimate_pairwise_soft_label():
    def responder(messages, params):
        user = messages[-1]["content"]
        paris_first = user.index("Paris") < user.index("Lyon")
        vote_paris = params.seed != 0            # 3 of 4 samples prefer Paris, in each order
        return "Better: A" if vote_paris == paris_first else "Better: B"

    b = FakeBackend("x", responder=responder, supports_logprobs=False)
    out, _ = run([PAIR], b, samples=4)
    assert out[0]["p_a"] == pytest.approx(0.75) and out[0]["preference"] == "a" and len(b.calls) == 8


def test_k_sample_needs_half_the_samples_readable():
    by_seed = {0: "Score: 4", 1: "no idea", 2: "no idea", 3: "no idea"}
    b = FakeBackend("x", responder=lambda m, p: by_seed[p.seed], supports_logprobs=False)
    out, _ = run([ROW], b, samples=4, repair=False)
    assert out[0]["error"] == "parse_error" and "only 1 of 4 samples" in out[0]["detail"]


# ---------------------------------------------------------------------------------------------
# Logprob judging over the OpenAI wire format (soft scores and labels)
# ---------------------------------------------------------------------------------------------
def _chat(content, alts):
    pos = {"token": content, "logprob": alts[content], "bytes": list(content.encode()),
           "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in alts.items()]}
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1741569952, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "logprobs": {"content": [pos], "refusal": None}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 300, "completion_tokens": 1, "total_tokens": 301}}


def _openai(handler):
    from rlaif.backends.openai import OpenAIBackend

    return OpenAIBackend("gpt-4o-mini", api_key="sk-test-000000000000",
                         http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))


def test_logprob_weighted_score_through_openai():
    alts = {"4": math.log(0.6), "5": math.log(0.3), "3": math.log(0.05), "The": math.log(0.05)}
    b = _openai(lambda req: httpx.Response(200, json=_chat("4", alts)))
    out, _ = run([ROW], b)
    r = out[0]
    assert r["method"] == "logprobs"
    assert r["probs"]["4"] == pytest.approx(0.6 / 0.95) and r["probs"]["1"] == 0.0
    assert r["score"] == pytest.approx((4 * 0.6 + 5 * 0.3 + 3 * 0.05) / 0.95)


def test_soft_pairwise_label_through_openai():
    def handler(req):
        user = json.loads(req.content)["messages"][-1]["content"]
        paris_first = user.index("Paris") < user.index("Lyon")
        p_first = 0.8 if paris_first else 0.3            # some position bias towards A
        return httpx.Response(200, json=_chat("A", {"A": math.log(p_first), "B": math.log(1 - p_first)}))

    out, _ = run([PAIR], _openai(handler))
    r = out[0]
    assert r["p_a"] == pytest.approx((0.8 + (1 - 0.3)) / 2) and r["preference"] == "a" and r["consistent"] is True
    assert [o["order"] for o in r["orders"]] == ["ab", "ba"]


def test_server_without_logprobs_is_flagged_not_guessed():
    body = _chat("4", {"4": -0.1})
    body["choices"][0]["logprobs"] = None
    out, s = run([ROW], _openai(lambda req: httpx.Response(200, json=body)))
    assert out[0]["error"] == "no_logprobs" and "--generative" in out[0]["detail"]


# ---------------------------------------------------------------------------------------------
# Rank mode
# ---------------------------------------------------------------------------------------------
RANK = {"id": "k1", "prompt": "Explain why the sky is blue.",
        "responses": ["Blue.", "Because of Rayleigh scattering of sunlight by air molecules.",
                      "Rayleigh scattering: shorter (blue) wavelengths scatter more, so the sky looks blue from every direction."]}


def test_bradley_terry_recovers_an_order():
    wins = [[0, 8, 9], [2, 0, 7], [1, 3, 0]]
    s = bradley_terry(wins)
    assert s[0] > s[1] > s[2] and abs(sum(s)) < 1e-9


def test_rank_default_is_a_tournament_with_bradley_terry(fake_backend):
    # a logprob judge preferring the longer response with P = 0.8, in both orders
    def responder(messages, params):
        user = messages[-1]["content"]
        a = user.split("Response A:")[1].split("Response B:")[0]
        b = user.split("Response B:")[1].split("Which response")[0]
        p = 0.8 if len(a) > len(b) else 0.2
        return Completion(text="A", option_logprobs={"A": math.log(p), "B": math.log(1 - p)})

    b = fake_backend(responder=responder)
    out, _ = run([RANK], b)
    r = out[0]
    assert r["ranking"] == [2, 1, 0] and r["consistent"] is True
    assert len(b.calls) == 3 * 2 * 1          # n(n-1): every pair, both orders
    assert len(r["scores"]) == 3 and r["scores"][2] > r["scores"][1] > r["scores"][0]


def test_rank_listwise_permutations_and_borda():
    def responder(messages, params):
        user = messages[-1]["content"]
        shown = [user.split(f"<response_{i}>")[1].split(f"</response_{i}>")[0] for i in (1, 2, 3)]
        order = sorted(range(3), key=lambda i: -len(shown[i]))
        return "Ranking: " + " > ".join(str(i + 1) for i in order)

    b = FakeBackend("x", responder=responder, supports_logprobs=False)
    out, _ = run([RANK], b, rank_method="listwise")
    r = out[0]
    assert r["ranking"] == [2, 1, 0] and r["consistent"] is True and len(b.calls) == 2
    assert [o["permutation"] for o in r["orders"]] == [[0, 1, 2], [2, 1, 0]]


def test_rank_listwise_unreadable_is_unscored():
    b = gen_backend(["no ranking here", "still none", "x", "y"])
    out, _ = run([RANK], b, rank_method="listwise")
    assert out[0]["error"] == "parse_error" and "ranking" not in out[0]


def test_judge_keeps_its_config_defaults():
    cfg = JudgeConfig()
    assert cfg.rank_method == "tournament" and cfg.both_orders and cfg.repair and cfg.samples == 0
    assert cfg.structured is None
    j = Judge(load_rubric("helpfulness"), FakeBackend("x", supports_logprobs=False))
    assert j.method == "generative" and j.structured is False


# ---------------------------------------------------------------------------------------------
# Structured verdicts over the real SDKs' wire formats, and keys never reaching rows
# ---------------------------------------------------------------------------------------------
def test_openai_json_schema_verdicts_end_to_end():
    seen = []

    def handler(req):
        body = json.loads(req.content)
        seen.append(body)
        content = json.dumps({"rationale": "Names the right city.", "score": 5})
        return httpx.Response(200, json={
            "id": "chatcmpl-2", "object": "chat.completion", "created": 1741569952, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 400, "completion_tokens": 14, "total_tokens": 414}})

    out, _ = run([ROW], _openai(handler), generative=True)
    assert seen[0]["response_format"]["type"] == "json_schema"
    assert seen[0]["response_format"]["json_schema"]["schema"] == verdict_schema("score", 1, 5)
    assert out[0]["score"] == 5.0 and out[0]["parse"] == "json" and out[0]["rationale"] == "Names the right city."


def test_anthropic_tool_use_verdicts_end_to_end():
    import anthropic._base_client as bc

    hx = getattr(bc, "httpx2", None) or httpx
    calls = []

    def handler(req):
        body = json.loads(req.content)
        calls.append(body)
        user = body["messages"][-1]["content"]
        better = "A" if user.index("Paris") < user.index("Lyon") else "B"
        return hx.Response(200, json={
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
            "content": [{"type": "tool_use", "id": "toolu_01", "name": "record_verdict",
                         "input": {"rationale": "Paris is the capital.", "better": better}}],
            "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 500, "output_tokens": 30}})

    from rlaif.backends.anthropic import AnthropicBackend

    b = AnthropicBackend("claude-3-5-haiku-latest", api_key="sk-ant-test-0000000000",
                         http_client=hx.AsyncClient(transport=hx.MockTransport(handler)))
    out, _ = run([PAIR], b)
    r = out[0]
    assert r["method"] == "generative" and r["parse"] == "json"
    assert r["p_a"] == 1.0 and r["consistent"] is True and len(calls) == 2
    assert calls[0]["tool_choice"] == {"type": "tool", "name": "record_verdict"}
    assert calls[0]["tools"][0]["input_schema"] == verdict_schema("preference")


def test_api_key_never_reaches_output_rows(tmp_path):
    key = "sk-proj-LEAKCHECK0123456789abcdef"
    body = {"error": {"message": f"Incorrect API key provided: {key}. You can find your API key at "
                                 "https://platform.openai.com/account/api-keys.", "type": "invalid_request_error",
                      "param": None, "code": "invalid_api_key"}}
    from rlaif.backends.openai import OpenAIBackend

    b = OpenAIBackend("gpt-4o-mini", api_key=key,
                      http_client=httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(401, json=body))))
    out_file = tmp_path / "judged.jsonl"
    from rlaif.errors import JobStopped

    with pytest.raises(JobStopped) as e:        # a 401 stops the job (issue 15, defect 21)
        judge([ROW], "helpfulness", judge=b, output=str(out_file))
    assert e.value.cause.status == 401
    partial = out_file.with_name(out_file.name + ".partial")
    text = str(e.value) + (partial.read_text() if partial.exists() else "")
    assert key not in text and key[8:20] not in text and "***" in text
