"""OpenAI / Anthropic / LiteLLM backends against wire-exact fakes.

The SDKs run for real; only the HTTP transport is replaced (httpx.MockTransport for the SDK
clients, respx for LiteLLM, which builds its own clients). Bodies and headers follow the
providers' documented shapes: OpenAI chat.completion with logprobs / json_schema and its error
object, Anthropic message with tool_use and its error envelope (429 rate_limit_error with
retry-after, 529 overloaded_error, 400 invalid_request_error, 401 authentication_error).
"""
from __future__ import annotations

import json
import logging
import math
import traceback

import httpx
import pytest

from rlaif.errors import BackendError, MissingDependencyError
from rlaif.records import GenParams

KEY = "sk-proj-TESTKEY0123456789abcdefSECRET"
ANT_KEY = "sk-ant-api03-TESTKEY0123456789abcdefSECRET-AA"

# ---------------------------------------------------------------------------------------------
# Real response shapes
# ---------------------------------------------------------------------------------------------
OPENAI_HEADERS = {
    "content-type": "application/json", "openai-organization": "user-abc123", "openai-processing-ms": "212",
    "openai-version": "2020-10-01", "x-request-id": "req_7f8e9d0c1b2a3948", "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-remaining-requests": "9999", "x-ratelimit-reset-requests": "6ms",
}


def _top(tok, lp, alts):
    return {"token": tok, "logprob": lp, "bytes": list(tok.encode()),
            "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in alts]}


def openai_completion(content="4", logprobs=None, finish="stop", refusal=None):
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion", "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0,
                     "message": {"role": "assistant", "content": content, "refusal": refusal, "annotations": []},
                     "logprobs": ({"content": logprobs, "refusal": None} if logprobs is not None else None),
                     "finish_reason": finish}],
        "usage": {"prompt_tokens": 312, "completion_tokens": 1, "total_tokens": 313,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
        "service_tier": "default", "system_fingerprint": "fp_06737a9306",
    }


def openai_error(message, type_, code, param=None):
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


OPENAI_429 = openai_error("Rate limit reached for gpt-4o-mini in organization org-abc123 on requests per min (RPM): "
                          "Limit 500, Used 500, Requested 1. Please try again in 120ms. Visit "
                          "https://platform.openai.com/account/rate-limits to learn more.", "requests",
                          "rate_limit_exceeded")
OPENAI_QUOTA = openai_error("You exceeded your current quota, please check your plan and billing details.",
                            "insufficient_quota", "insufficient_quota")
OPENAI_401 = openai_error(f"Incorrect API key provided: {KEY[:8]}*********************{KEY[-4:]}. You can find "
                          "your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error",
                          "invalid_api_key")
OPENAI_400 = openai_error("Invalid schema for response_format 'verdict': In context=(), 'additionalProperties' is "
                          "required to be supplied and to be false.", "invalid_request_error", None,
                          "response_format")
OPENAI_500 = openai_error("The server had an error while processing your request. Sorry about that!", "server_error",
                          None)

ANT_HEADERS = {"content-type": "application/json", "request-id": "req_011CSHoEeqs5C35K2UUqR7Fy",
               "anthropic-organization-id": "b1c2d3e4-0000-4000-8000-000000000000"}


def anthropic_message(content, stop_reason="end_turn"):
    return {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "model": "claude-3-5-haiku-20241022", "content": content, "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 418, "output_tokens": 57, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "service_tier": "standard"}}


def anthropic_error(type_, message):
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}


# ---------------------------------------------------------------------------------------------
# Fake transports
# ---------------------------------------------------------------------------------------------
def _httpx_for(sdk: str):
    """The HTTP library an SDK runs on: recent anthropic SDKs moved to `httpx2` (same API)."""
    if sdk == "anthropic":
        import anthropic._base_client as bc

        return getattr(bc, "httpx2", None) or getattr(bc, "httpx", httpx)
    return httpx


class Wire:
    """An httpx transport answering from a script of (status, body, headers); records requests."""

    def __init__(self, *responses, sdk: str = "openai"):
        self.responses = list(responses)
        self.requests: list = []
        self.httpx = _httpx_for(sdk)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(item, Exception):
            raise item
        status, body, headers = item
        return self.httpx.Response(status, json=body, headers=headers)

    def client(self):
        return self.httpx.AsyncClient(transport=self.httpx.MockTransport(self))

    def body(self, i=-1):
        return json.loads(self.requests[i].content)


def openai_backend(wire, **kw):
    from rlaif.backends.openai import OpenAIBackend

    return OpenAIBackend("gpt-4o-mini", api_key=KEY, http_client=wire.client(), **kw)


def anthropic_backend(wire, **kw):
    from rlaif.backends.anthropic import AnthropicBackend

    return AnthropicBackend("claude-3-5-haiku-latest", api_key=ANT_KEY, http_client=wire.client(), **kw)


MSGS = [{"role": "system", "content": "You grade."}, {"role": "user", "content": "Grade this."}]


# ---------------------------------------------------------------------------------------------
# OpenAI
# ---------------------------------------------------------------------------------------------
async def test_openai_logprobs_become_option_logprobs():
    lps = [_top("4", -0.2231, [("4", -0.2231), ("5", -1.6094), (" 4", -4.0), ("3", -5.1), ("Score", -7.0)])]
    wire = Wire((200, openai_completion("4", lps, finish="length"), OPENAI_HEADERS))
    b = openai_backend(wire)
    c = await b.complete(MSGS, GenParams(max_tokens=1, top_logprobs=20, options=["1", "2", "3", "4", "5"]))
    sent = wire.body()
    assert sent["logprobs"] is True and sent["top_logprobs"] == 20 and sent["max_completion_tokens"] == 1
    assert wire.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert c.text == "4" and c.finish_reason == "length"
    assert set(c.option_logprobs) == {"3", "4", "5"}           # "1"/"2" absent, never invented
    assert c.option_logprobs["4"] == pytest.approx(math.log(math.exp(-0.2231) + math.exp(-4.0)))   # "4" and " 4" merged (log-sum-exp)
    assert c.option_logprobs["5"] == pytest.approx(-1.6094)
    assert c.usage.prompt_tokens == 312 and c.usage.completion_tokens == 1


async def test_openai_json_schema_request_and_answer():
    schema = {"type": "object", "properties": {"rationale": {"type": "string"}, "score": {"type": "integer", "enum": [1, 2, 3]}},
              "required": ["rationale", "score"], "additionalProperties": False}
    wire = Wire((200, openai_completion('{"rationale":"Correct and direct.","score":3}'), OPENAI_HEADERS))
    c = await openai_backend(wire).complete(MSGS, GenParams(max_tokens=256, json_schema=schema))
    rf = wire.body()["response_format"]
    assert rf == {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema, "strict": True}}
    assert "logprobs" not in wire.body()
    assert json.loads(c.text) == {"rationale": "Correct and direct.", "score": 3}


async def test_openai_structured_refusal_is_marked():
    wire = Wire((200, openai_completion(None, refusal="I'm sorry, I can't help with that."), OPENAI_HEADERS))
    c = await openai_backend(wire).complete(MSGS, GenParams(max_tokens=64))
    assert c.finish_reason == "refusal" and c.text.startswith("I'm sorry")


@pytest.mark.parametrize("status,body,headers,code,retryable,retry_after", [
    (429, OPENAI_429, {"retry-after": "7", "retry-after-ms": "6500"}, "rate_limit_exceeded", True, 6.5),
    (429, OPENAI_429, {"retry-after": "3"}, "rate_limit_exceeded", True, 3.0),
    (429, OPENAI_QUOTA, {}, "insufficient_quota", False, None),
    (500, OPENAI_500, {}, "server_error", True, None),
    (503, {"error": {"message": "The engine is currently overloaded, please try again later", "type": "server_error",
                     "param": None, "code": None}}, {}, "server_error", True, None),
    (400, OPENAI_400, {}, "invalid_request_error", False, None),
    (502, "<html>bad gateway</html>", {}, "http_502", True, None),
    (401, OPENAI_401, {}, "invalid_api_key", False, None),
    (403, openai_error("Country, region, or territory not supported", "request_forbidden", "unsupported_country_region_territory"),
     {}, "unsupported_country_region_territory", False, None),
    (404, openai_error("The model `gpt-9` does not exist or you do not have access to it.", "invalid_request_error",
                       "model_not_found"), {}, "model_not_found", False, None),
])
async def test_openai_error_mapping(status, body, headers, code, retryable, retry_after):
    wire = Wire((status, body, {**OPENAI_HEADERS, **headers}))
    with pytest.raises(BackendError) as ei:
        await openai_backend(wire).complete(MSGS, GenParams(max_tokens=1))
    e = ei.value
    assert (e.status, e.retryable, e.retry_after) == (status, retryable, retry_after)
    assert e.code == code       # error.code, else error.type, else http_<status> (a non-JSON body)
    assert len(wire.requests) == 1           # the SDK's own retries are off: engine.py decides


async def test_reasoning_models_get_no_sampling_fields_and_room_to_reason():
    """o3-mini (LiteLLM's map: supports_reasoning) on api.openai.com: no temperature/logprobs, the
    completion budget grows by the reasoning allowance, reasoning_effort passes through, and a
    logprob judge becomes generative up front (recorded in `method`)."""
    from rlaif.backends.openai import OpenAIBackend, REASONING_TOKENS

    wire = Wire((200, openai_completion('{"rationale": "fine", "score": 4}'), OPENAI_HEADERS))
    b = OpenAIBackend("o3-mini", api_key=KEY, http_client=wire.client(), reasoning_effort="low")
    assert b.reasoning and not b.supports_logprobs and b.extra_output_tokens == REASONING_TOKENS
    await b.complete(MSGS, GenParams(max_tokens=512, temperature=0.0, top_logprobs=20, options=["1", "2"]))
    sent = wire.body()
    assert "temperature" not in sent and "logprobs" not in sent and "top_logprobs" not in sent
    assert sent["max_completion_tokens"] == 512 + REASONING_TOKENS and sent["reasoning_effort"] == "low"
    from rlaif.engine import Engine
    eng = Engine(b, dry_run=True)            # cost estimates count the reasoning allowance too
    await eng.complete(MSGS, GenParams(max_tokens=512))
    assert eng.estimate.max_completion_tokens == 512 + REASONING_TOKENS
    assert not OpenAIBackend("gpt-4o-mini", api_key=KEY).reasoning
    assert not OpenAIBackend("o3-mini", api_key=KEY, base_url="http://127.0.0.1:1/v1").reasoning   # not OpenAI's map
    assert not OpenAIBackend("o3-mini", api_key=KEY, reasoning=False).reasoning

    from rlaif.judge import judge
    rows = [{"id": "x", "prompt": "2+2?", "response": "4"}]
    out, _ = judge(rows, "helpfulness", judge=OpenAIBackend("o3-mini", api_key=KEY, http_client=Wire(
        (200, openai_completion('{"rationale": "right", "score": 5}'), OPENAI_HEADERS)).client()))
    assert out[0]["method"] == "generative" and out[0]["score"] == 5


async def test_refused_fields_are_dropped_once_and_said(capsys):
    """A model that answers 400 unsupported_value/unsupported_parameter for a field gets the request
    again without it (max_tokens becomes max_completion_tokens); later requests never send it."""
    refuse_temp = (400, openai_error("Unsupported value: 'temperature' does not support 0 with this model. Only the "
                                     "default (1) value is supported.", "invalid_request_error", "unsupported_value",
                                     "temperature"), OPENAI_HEADERS)
    refuse_max = (400, openai_error("Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                                    "'max_completion_tokens' instead.", "invalid_request_error", "unsupported_parameter",
                                    "max_tokens"), OPENAI_HEADERS)
    ok = (200, openai_completion("4"), OPENAI_HEADERS)
    wire = Wire(refuse_max, refuse_temp, ok, ok)
    b = openai_backend(wire, base_url="http://127.0.0.1:9/v1")       # a compatible server: sends max_tokens
    c = await b.complete(MSGS, GenParams(max_tokens=8, temperature=0.0))
    assert c.text == "4" and len(wire.requests) == 3
    assert "max_tokens" in wire.body(0) and "max_completion_tokens" in wire.body(1) and "temperature" in wire.body(1)
    assert "temperature" not in wire.body(2) and wire.body(2)["max_completion_tokens"] == 8
    await b.complete(MSGS, GenParams(max_tokens=8, temperature=0.0))
    assert len(wire.requests) == 4 and "temperature" not in wire.body(3)
    err = capsys.readouterr().err
    assert err.count("refuses 'temperature'") == 1 and err.count("refuses 'max_tokens'") == 1
    # any other 400 is final, as before: one request, no adaptation
    wire = Wire((400, OPENAI_400, OPENAI_HEADERS))
    with pytest.raises(BackendError):
        await openai_backend(wire).complete(MSGS, GenParams(max_tokens=1))
    assert len(wire.requests) == 1


async def test_response_format_steps_down_json_schema_then_json_object_then_none(capsys):
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
    # llama-cpp-python's server: FastAPI validation of the body, answered as a 500
    refuse = (500, {"error": {"message": "1 validation error: {'type': 'literal_error', 'loc': ('body', "
                              "'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\"}",
                              "type": "internal_server_error", "param": None, "code": None}}, {})
    refuse_object = (400, openai_error("'response_format' of type 'json_object' is not supported with this model",
                                       "invalid_request_error", None, "response_format"), OPENAI_HEADERS)
    ok = (200, openai_completion('{"score": 3}'), OPENAI_HEADERS)
    wire = Wire(refuse, ok)
    b = openai_backend(wire, base_url="http://127.0.0.1:9/v1")
    c = await b.complete(MSGS, GenParams(max_tokens=64, json_schema=schema))
    assert c.text == '{"score": 3}' and len(wire.requests) == 2
    assert wire.body(0)["response_format"]["type"] == "json_schema"
    assert wire.body(1)["response_format"] == {"type": "json_object", "schema": schema}
    wire = Wire(refuse, refuse_object, ok)
    b = openai_backend(wire, base_url="http://127.0.0.1:9/v1")
    await b.complete(MSGS, GenParams(max_tokens=64, json_schema=schema))
    assert len(wire.requests) == 3 and "response_format" not in wire.body(2)
    err = capsys.readouterr().err
    assert "refuses response_format json_schema" in err and "refuses response_format json_object" in err
    # a 500 that does not name the field is an ordinary (retryable) server error
    wire = Wire((500, OPENAI_500, {}))
    with pytest.raises(BackendError) as ei:
        await openai_backend(wire).complete(MSGS, GenParams(max_tokens=64, json_schema=schema))
    assert ei.value.retryable and len(wire.requests) == 1


async def test_openai_timeout_and_connection_errors_are_retryable():
    wire = Wire(httpx.ReadTimeout("stalled"))
    with pytest.raises(BackendError) as ei:
        await openai_backend(wire).complete(MSGS, GenParams(max_tokens=1))
    assert ei.value.code == "timeout" and ei.value.retryable and ei.value.status is None
    wire = Wire(httpx.ConnectError("connection refused"))
    with pytest.raises(BackendError) as ei:
        await openai_backend(wire).complete(MSGS, GenParams(max_tokens=1))
    assert ei.value.code == "connection_error" and ei.value.retryable


async def test_openai_truncated_body_is_a_retryable_failure():
    def handler(request):
        return httpx.Response(200, content=b'{"id": "chatcmpl-1", "object": "chat.completion", "choi',
                              headers={"content-type": "application/json"})

    from rlaif.backends.openai import OpenAIBackend

    b = OpenAIBackend("gpt-4o-mini", api_key=KEY, http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    with pytest.raises(BackendError) as ei:
        await b.complete(MSGS, GenParams(max_tokens=1))
    assert ei.value.retryable


def test_openai_missing_key_fails_at_construction(monkeypatch):
    from rlaif.backends import get_backend

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(BackendError, match="OPENAI_API_KEY") as ei:
        get_backend("openai/gpt-4o-mini")
    assert ei.value.code == "missing_api_key"
    # a local OpenAI-compatible server: no key needed, a placeholder is sent
    b = get_backend("openai/my-model", base_url="http://127.0.0.1:9/v1")
    assert b.base_url == "http://127.0.0.1:9/v1" and b._max_tokens_field == "max_tokens"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert get_backend("openai/my-model").base_url == "http://127.0.0.1:9/v1"


def test_anthropic_missing_key_fails_at_construction(monkeypatch):
    from rlaif.backends import get_backend

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(BackendError, match="ANTHROPIC_API_KEY"):
        get_backend("anthropic/claude-3-5-haiku-latest")


def test_litellm_missing_key_names_the_variable(monkeypatch):
    from rlaif.backends import get_backend

    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    with pytest.raises(BackendError, match="GROQ_API_KEY"):
        get_backend("litellm/groq/llama-3.1-8b-instant")
    with pytest.raises(BackendError, match="litellm/<provider>/<model>"):
        get_backend("litellm/gpt-4o-mini")


def test_missing_sdk_gives_pip_hint(monkeypatch):
    import builtins
    import sys

    real = builtins.__import__

    def fake_import(name, *a, **kw):
        if name == "anthropic" or name.startswith("anthropic."):
            raise ImportError("No module named 'anthropic'")
        return real(name, *a, **kw)

    monkeypatch.setitem(sys.modules, "anthropic", None)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    from rlaif.backends.anthropic import AnthropicBackend

    with pytest.raises(MissingDependencyError, match=r"pip install 'rlaif\[anthropic\]'"):
        AnthropicBackend("claude-3-5-haiku-latest", api_key=ANT_KEY)


# ---------------------------------------------------------------------------------------------
# Anthropic
# ---------------------------------------------------------------------------------------------
async def test_anthropic_tool_use_structured_output():
    schema = {"type": "object", "properties": {"rationale": {"type": "string"}, "better": {"type": "string", "enum": ["A", "B"]}},
              "required": ["rationale", "better"], "additionalProperties": False}
    content = [{"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "record_verdict",
                "input": {"rationale": "B answers the question; A does not.", "better": "B"}}]
    wire = Wire((200, anthropic_message(content, "tool_use"), ANT_HEADERS), sdk="anthropic")
    msgs = MSGS + [{"role": "user", "content": "Also consider length."}]
    c = await anthropic_backend(wire).complete(msgs, GenParams(max_tokens=300, json_schema=schema))
    sent = wire.body()
    assert sent["system"] == "You grade."
    assert sent["messages"] == [{"role": "user", "content": "Grade this.\n\nAlso consider length."}]
    assert sent["tools"][0]["input_schema"] == schema and sent["tool_choice"] == {"type": "tool", "name": "record_verdict"}
    h = wire.requests[0].headers        # x-api-key, or a bearer token in newer SDKs
    assert h.get("x-api-key") == ANT_KEY or h.get("authorization") == f"Bearer {ANT_KEY}"
    assert json.loads(c.text) == {"rationale": "B answers the question; A does not.", "better": "B"}
    assert c.option_logprobs is None and c.usage.prompt_tokens == 418 and c.usage.completion_tokens == 57


async def test_anthropic_sends_temperature_and_drops_it_when_refused(capsys):
    """Verdicts ask for temperature 0 (repeatable); the 2.x SDK has no keyword for it, so it goes in
    the JSON body; a model that refuses it (400 naming temperature) is asked again without it."""
    ok = (200, anthropic_message([{"type": "text", "text": "Score: 4"}]), ANT_HEADERS)
    refuse = (400, anthropic_error("invalid_request_error", "temperature: this model does not support sampling "
                                                             "parameters"), ANT_HEADERS)
    wire = Wire(refuse, ok, ok, sdk="anthropic")
    b = anthropic_backend(wire)
    assert b.sampling
    c = await b.complete(MSGS, GenParams(max_tokens=16, temperature=0.0))
    assert c.text == "Score: 4" and len(wire.requests) == 2
    assert wire.body(0)["temperature"] == 0.0 and "temperature" not in wire.body(1)
    await b.complete(MSGS, GenParams(max_tokens=16, temperature=0.0))
    assert "temperature" not in wire.body(2)
    assert capsys.readouterr().err.count("refuses sampling parameters") == 1
    # a model whose card says it takes no sampling parameters never gets them
    from rlaif.backends.anthropic import AnthropicBackend
    assert not AnthropicBackend("claude-opus-4-7", api_key=ANT_KEY).sampling


async def test_anthropic_text_answer():
    wire = Wire((200, anthropic_message([{"type": "text", "text": "Clear and correct.\nScore: 5"}], "max_tokens"), ANT_HEADERS), sdk="anthropic")
    c = await anthropic_backend(wire).complete(MSGS, GenParams(max_tokens=20))
    assert c.text.endswith("Score: 5") and c.finish_reason == "length"
    assert "tools" not in wire.body() and "top_p" not in wire.body()


@pytest.mark.parametrize("status,body,headers,code,retryable,retry_after", [
    (429, anthropic_error("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit "
                          "(https://docs.anthropic.com/en/api/rate-limits); see the response headers for current usage."),
     {"retry-after": "12", "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0"},
     "rate_limit_error", True, 12.0),
    (429, {"type": "error", "error": {"type": "rate_limit_error", "message": "You have reached your specified API usage limits.",
                                      "details": {"error_code": "enforced_spend_limit_reached"}}}, {},
     "enforced_spend_limit_reached", False, None),
    (529, anthropic_error("overloaded_error", "Overloaded"), {}, "overloaded_error", True, None),
    (500, anthropic_error("api_error", "Internal server error"), {}, "api_error", True, None),
    (400, anthropic_error("invalid_request_error", "max_tokens: Field required"), {}, "invalid_request_error", False, None),
    (401, anthropic_error("authentication_error", "invalid x-api-key"), {}, "authentication_error", False, None),
    (403, anthropic_error("permission_error", "Your API key does not have permission to use the specified resource."),
     {}, "permission_error", False, None),
    (404, anthropic_error("not_found_error", "model: claude-9"), {}, "not_found_error", False, None),
])
async def test_anthropic_error_mapping(status, body, headers, code, retryable, retry_after):
    wire = Wire((status, body, {**ANT_HEADERS, **headers}), sdk="anthropic")
    with pytest.raises(BackendError) as ei:
        await anthropic_backend(wire).complete(MSGS, GenParams(max_tokens=1))
    e = ei.value
    assert (e.status, e.code, e.retryable, e.retry_after) == (status, code, retryable, retry_after)
    assert len(wire.requests) == 1


# ---------------------------------------------------------------------------------------------
# LiteLLM (its OpenAI provider, pointed at a fake OpenAI-compatible server with respx)
# ---------------------------------------------------------------------------------------------
async def test_litellm_openai_compatible_success_and_errors(monkeypatch):
    import litellm
    import respx

    # LiteLLM sends through aiohttp by default; httpx lets respx see the wire.
    monkeypatch.setattr(litellm, "disable_aiohttp_transport", True, raising=False)

    from rlaif.backends import get_backend

    b = get_backend("litellm/openai/my-judge", base_url="http://fake-llm.test/v1", api_key=KEY)
    assert b.supports_logprobs and b.supports_json_schema
    lps = [_top("B", -0.1054, [("B", -0.1054), ("A", -2.3026)])]
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post("http://fake-llm.test/v1/chat/completions")
        route.side_effect = [httpx.Response(200, json=openai_completion("B", lps), headers=OPENAI_HEADERS),
                             httpx.Response(429, json=OPENAI_429, headers={**OPENAI_HEADERS, "retry-after": "2"}),
                             httpx.Response(401, json=OPENAI_401, headers=OPENAI_HEADERS)]
        c = await b.complete(MSGS, GenParams(max_tokens=1, top_logprobs=5, options=["A", "B"]))
        sent = json.loads(route.calls[0].request.content)
        assert sent["model"] == "my-judge" and sent["logprobs"] is True and sent["top_logprobs"] == 5
        assert c.option_logprobs == pytest.approx({"A": -2.3026, "B": -0.1054})
        with pytest.raises(BackendError) as ei:
            await b.complete(MSGS, GenParams(max_tokens=1))
        assert ei.value.status == 429 and ei.value.retryable and ei.value.retry_after == 2.0
        with pytest.raises(BackendError) as ei:
            await b.complete(MSGS, GenParams(max_tokens=1))
        assert ei.value.status == 401 and not ei.value.retryable
        assert KEY not in str(ei.value) and KEY[-4:] + "." not in str(ei.value)
        assert route.call_count == 3           # LiteLLM's own retries are off


# ---------------------------------------------------------------------------------------------
# Secrets never leak
# ---------------------------------------------------------------------------------------------
async def test_api_keys_never_appear_in_errors_reprs_or_logs(caplog, capsys):
    caplog.set_level(logging.DEBUG)
    seen = []
    for make, status, body in [(openai_backend, 401, OPENAI_401), (openai_backend, 429, OPENAI_429),
                               (anthropic_backend, 401, anthropic_error("authentication_error", f"invalid x-api-key {ANT_KEY}"))]:
        wire = Wire((status, body, {"content-type": "application/json"}),
                    sdk="anthropic" if make is anthropic_backend else "openai")
        b = make(wire)
        seen += [repr(b), str(vars(b).get("name"))]
        try:
            await b.complete(MSGS, GenParams(max_tokens=1))
        except BackendError as e:
            seen += [str(e), repr(e), "".join(traceback.format_exception(e))]
    out = capsys.readouterr()
    blob = "\n".join(seen) + caplog.text + out.out + out.err
    for secret in (KEY, ANT_KEY, KEY[-8:], ANT_KEY[-10:], KEY[:12]):
        assert secret not in blob
    assert "***" in blob          # the echoed (masked) key in OpenAI's 401 was redacted too


def test_a_backend_object_survives_several_judge_calls():
    """Each judge() call runs its own event loop; the real OpenAI client (over a loopback server)
    must follow the loop, not fail with 'Event loop is closed' on the second call."""
    from tests.openai_server import start_server

    from rlaif.backends.openai import OpenAIBackend
    from rlaif.judge import judge

    proc, base_url = start_server()
    try:
        b = OpenAIBackend("test-model", base_url=base_url)
        for i in range(3):
            rows, s = judge([{"prompt": f"p{i}", "response": "r"}], "helpfulness", judge=b, cache=False)
            assert s.scored == 1 and 1 <= rows[0]["score"] <= 5, rows[0]
    finally:
        proc.kill()
