"""Anthropic's Messages API: `anthropic/<model>` (e.g. anthropic/claude-3-5-haiku-latest).

- System messages go to the `system` parameter; consecutive messages of one role are merged
  (the API wants user/assistant alternation).
- Structured output through tool use: `GenParams.json_schema` becomes one tool whose
  `input_schema` is the schema, and `tool_choice` forces it; the tool call's input, as JSON, is
  the completion text. That is Anthropic's documented way to get schema-shaped output.
- No log-probabilities: `supports_logprobs = False`, so judges go generative (or, opt-in, estimate
  probabilities from k samples; see judge.py).
- Errors become BackendError with status / retry_after / retryable: 429 rate_limit_error and
  529 overloaded_error and 5xx retry; 400 invalid_request_error, 401, 403, 404 do not; a 429 that
  says the spend limit is reached is final too (waiting does not refill the budget).
- temperature (0 for verdicts: repeatable) is sent as a keyword with SDKs whose messages.create
  takes it (anthropic < 2) and through `extra_body` with newer ones, except to models that LiteLLM's
  model map marks `supports_sampling_params: false`; a model that answers 400 naming temperature
  or top_p gets requests without them from then on (said once on stderr).
- Transport: the SDK's aiohttp client (`anthropic[aiohttp]`) where installed, as for openai/.
- The SDK's own retries are off (engine.py retries); the key lives only inside the SDK client and
  never in a message (every error text is redacted).

API key: `api_key=` or `ANTHROPIC_API_KEY` (checked at construction); `ANTHROPIC_BASE_URL` or
`base_url=` for a proxy/gateway.
"""
from __future__ import annotations

import json
import os

from rlaif.backends.base import (
    PerLoopClient,
    check_base_url,
    field_of,
    http_error,
    say_refused,
    sdk_http_client,
    sdk_transport,
    sdk_transport_error,
)
from rlaif.errors import BackendError, MissingDependencyError
from rlaif.records import Completion, GenParams, Message, Usage

TOOL_NAME = "record_verdict"
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "stop",
           "refusal": "refusal"}


class AnthropicBackend:
    supports_logprobs = False
    supports_json_schema = True

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, http_client=None, sampling: bool | None = None, transport: str = "auto"):
        try:
            import anthropic
        except ImportError as e:
            raise MissingDependencyError("anthropic", "anthropic", "for anthropic/ judges") from e
        self.name = f"anthropic/{model}"
        self.model = model
        self.base_url = check_base_url(base_url or os.environ.get("ANTHROPIC_BASE_URL") or None, "anthropic")
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise BackendError("ANTHROPIC_API_KEY is not set: export ANTHROPIC_API_KEY=... (or pass api_key=)",
                               code="missing_api_key")
        self._secret = key
        self.transport = sdk_transport(anthropic, http_client, transport)

        def make_client():
            http = sdk_http_client(anthropic, self.transport, http_client, timeout)
            return anthropic.AsyncAnthropic(api_key=key, base_url=self.base_url, timeout=timeout, max_retries=0,
                                            http_client=http)

        self._clients = PerLoopClient(make_client)
        self._anthropic = anthropic
        # SDK generations differ: anthropic 2.x's messages.create has no temperature/top_p keyword;
        # the API still takes them (except on models whose card says otherwise), via extra_body.
        import inspect

        self._sampling_keyword = "temperature" in inspect.signature(
            anthropic.resources.messages.AsyncMessages.create).parameters
        if sampling is None:
            from rlaif.cost import model_card
            sampling = model_card(self.name).get("supports_sampling_params", True) is not False
        self.sampling = bool(sampling)

    async def aclose(self) -> None:
        await self._clients.aclose()

    def __repr__(self) -> str:
        return f"AnthropicBackend(model={self.model!r}, base_url={self.base_url!r}, transport={self.transport!r})"

    def request_kwargs(self, messages: list[Message], params: GenParams) -> dict:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns: list[dict] = []
        for m in messages:
            if m["role"] == "system":
                continue
            if turns and turns[-1]["role"] == m["role"]:
                turns[-1]["content"] += "\n\n" + m["content"]
            else:
                turns.append({"role": m["role"], "content": m["content"]})
        kw: dict = {"model": self.model, "max_tokens": params.max_tokens, "messages": turns}
        if self.sampling:
            sampling = {"temperature": params.temperature}
            if params.top_p != 1.0:       # newer Claude models reject temperature and top_p together
                sampling["top_p"] = params.top_p
            if self._sampling_keyword:
                kw.update(sampling)
            else:
                kw["extra_body"] = sampling
        if system:
            kw["system"] = system
        if params.stop:
            kw["stop_sequences"] = params.stop
        if params.json_schema is not None:
            kw["tools"] = [{"name": TOOL_NAME, "description": "Record the verdict for the graded response(s).",
                            "input_schema": params.json_schema}]
            kw["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        return kw

    def _refuses_sampling(self, e) -> bool:
        """A 400 that names temperature/top_p while we sent them: stop sending them (True: ask again)."""
        message = str(_error_of(e).get("message") or "")
        if e.status_code != 400 or not any(f in message for f in ("temperature", "top_p")):
            return False
        if self.sampling:
            self.sampling = False
            say_refused(self.name, "sampling parameters", message,
                        "sending requests without temperature/top_p from now on", self._secret)
        return True

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        a = self._anthropic
        for attempt in range(2):
            sent_sampling = self.sampling
            try:
                resp = await self._clients.get().messages.create(**self.request_kwargs(messages, params))
                break
            except a.APIStatusError as e:
                if attempt == 0 and sent_sampling and self._refuses_sampling(e):
                    continue
                raise _status_error(e, self._secret) from None
            except (a.APIError, ValueError) as e:
                mapped = sdk_transport_error(a, e, "anthropic", self.base_url or "api.anthropic.com", self._secret)
                if mapped is None:
                    raise
                raise mapped from None
        return completion_from_anthropic(resp)

    def batch_params(self, messages: list[Message], params: GenParams) -> dict:
        """The `params` of one Message Batches request: exactly what a live request sends."""
        kw = self.request_kwargs(messages, params)
        return {**{k: v for k, v in kw.items() if k != "extra_body"}, **kw.get("extra_body", {})}

    def batch_client(self, client_class, http_factory=None):
        """This judge's batch client: `client_class` (rlaif.backends.anthropic_batch.AnthropicBatch)
        built with this backend's own key and request building (the caller passes the class, so
        this module never imports its batch module)."""
        return client_class(self.model, api_key=self._secret, base_url=self.base_url, batch_params=self.batch_params,
                            http_factory=http_factory)


def completion_from_anthropic(resp) -> Completion:
    """A Completion from a Messages API answer: the SDK's Message, or the plain dict a Message
    Batches result holds (rlaif/backends/anthropic_batch.py), read the same way."""
    texts, tool_input = [], None
    for block in field_of(resp, "content") or []:
        if field_of(block, "type") == "text":
            texts.append(field_of(block, "text") or "")
        elif field_of(block, "type") == "tool_use" and field_of(block, "name") == TOOL_NAME:
            tool_input = field_of(block, "input")
    text = json.dumps(tool_input, ensure_ascii=False) if tool_input is not None else "".join(texts)
    u, stop = field_of(resp, "usage"), field_of(resp, "stop_reason")
    return Completion(text=text, finish_reason=_FINISH.get(stop, stop),
                      usage=Usage(field_of(u, "input_tokens", 0) or 0, field_of(u, "output_tokens", 0) or 0))


def _error_of(e) -> dict:
    """The `error` object of an Anthropic error body ({"type": "error", "error": {type, message}})."""
    body = e.body if isinstance(e.body, dict) else {}
    err = body.get("error")
    return err if isinstance(err, dict) else {}


def _status_error(e, secret: str) -> BackendError:
    err = _error_of(e)
    code = err.get("type") or f"http_{e.status_code}"
    message = err.get("message") or str(e)
    raw = err.get("details")
    details: dict = raw if isinstance(raw, dict) else {}
    retryable = None
    if "spend_limit" in str(details.get("error_code", "")) or "spend_limit" in code:
        code, retryable = details.get("error_code") or code, False
    return http_error("anthropic", e.status_code, message, code=code, headers=e.response.headers,
                      secrets=(secret,), retryable=retryable)


__all__ = ["AnthropicBackend", "TOOL_NAME", "completion_from_anthropic"]
