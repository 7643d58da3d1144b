"""OpenAI and every OpenAI-compatible server: `openai/<model>`.

One chat-completions call per `complete()`, through the official SDK (imported lazily). The same
backend reaches vLLM, llama.cpp's server, Ollama, `transformers serve`, LM Studio...: give it a
base URL (`base_url=` / `--base-url`, or `OPENAI_BASE_URL`).

- Log-probabilities: `GenParams.top_logprobs` / `options` ask for `logprobs=True, top_logprobs=k`;
  the first position's alternatives become `Completion.option_logprobs` (exact string match after
  stripping whitespace). A server that ignores the request (transformers serve does) simply returns
  none, and the judge marks such rows `no_logprobs` rather than guessing.
- Structured output: `GenParams.json_schema` becomes `response_format={"type": "json_schema", ...}`.
- Errors become rlaif.errors.BackendError with `status`, `retry_after` (from `retry-after-ms` /
  `retry-after`) and `retryable` set, so engine.py decides about retries. The SDK's own retries are
  switched off (max_retries=0): retrying in two layers would multiply waits and hide failures.
- The API key lives only inside the SDK client: it is not an attribute of this object, and every
  error message passes through `redact()` (provider 401 messages echo part of the key).

- Reasoning models (o1/o3/o4-mini, gpt-5...; LiteLLM's bundled model map says `supports_reasoning`)
  reject `temperature`, `top_p` and `logprobs` on api.openai.com and spend hidden reasoning tokens
  out of `max_completion_tokens`. For them no sampling fields and no logprobs are sent (so judges
  go generative, recorded in each row's `method`), and `reasoning_tokens` (default 4096) are added
  to the completion budget so the verdict is not cut off; `reasoning_effort=` is passed through.
  `reasoning=True/False` overrides the map. Any other model or server that answers 400
  `unsupported_parameter` / `unsupported_value` for one of those fields gets the request again
  without it (`max_tokens` becomes `max_completion_tokens`), and the change is said once on stderr.

API key: `api_key=` or `OPENAI_API_KEY`; missing, construction fails at once naming the variable.
Exception: with a custom base URL (a local server, which usually checks no key) a missing key is
allowed and the placeholder "EMPTY" is sent (vLLM's documented convention). A server that does
check keys then answers 401, which is reported, not retried.
"""
from __future__ import annotations

import os

from rlaif.backends.base import (
    PerLoopClient,
    chat_completion_params,
    check_base_url,
    field_of,
    http_error,
    logprob_options,
    redact,
    say_refused,
    sdk_http_client,
    sdk_transport,
    sdk_transport_error,
)
from rlaif.errors import BackendError, MissingDependencyError
from rlaif.records import Completion, GenParams, Message, Usage

OPENAI_URL = "https://api.openai.com/v1"
REASONING_TOKENS = 4096     # hidden reasoning comes out of max_completion_tokens: room for it, then the verdict
# request fields a model may refuse (400 unsupported_parameter/unsupported_value) that a verdict can do without
ADAPTABLE = ("temperature", "top_p", "seed", "stop", "logprobs", "top_logprobs", "max_tokens", "response_format")


class OpenAIBackend:
    supports_json_schema = True

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, logprobs: bool = True, http_client=None, organization: str | None = None,
                 provider: str = "openai", reasoning: bool | None = None, reasoning_effort: str | None = None,
                 reasoning_tokens: int = REASONING_TOKENS, transport: str = "auto"):
        try:
            import openai
        except ImportError as e:
            raise MissingDependencyError("openai", "openai", "for openai/ judges") from e
        self.name = f"{provider}/{model}"
        self.model = model
        self.base_url = check_base_url((base_url or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/") or None,
                                       provider)
        # Whether to ask for log-probabilities at all: OpenAI and vLLM/llama.cpp return them;
        # pass logprobs=False for a server known not to, so judges go generative up front.
        self.supports_logprobs = bool(logprobs)
        custom = self.base_url is not None and self.base_url != OPENAI_URL
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if not custom:
                raise BackendError("OPENAI_API_KEY is not set: export OPENAI_API_KEY=... (or pass api_key=); "
                                   "for a local OpenAI-compatible server pass --base-url / OPENAI_BASE_URL",
                                   code="missing_api_key")
            key = "EMPTY"
        self._secret = key
        # 'max_completion_tokens' is what api.openai.com wants (reasoning models reject max_tokens);
        # many compatible servers only know 'max_tokens'.
        self._max_tokens_field = "max_tokens" if custom else "max_completion_tokens"
        self._dropped: set[str] = set()        # fields this model refuses: never sent
        # structured output, stepped down when a server refuses a form: OpenAI's json_schema, then
        # {"type": "json_object", "schema": ...} (llama-cpp-python's server), then none (parse + re-ask)
        self._response_format = "json_schema"
        if reasoning is None:                   # the map describes OpenAI's models, not a local server's
            from rlaif.cost import model_card
            reasoning = not custom and bool(model_card(self.name).get("supports_reasoning"))
        self.reasoning = bool(reasoning)
        self.reasoning_effort = reasoning_effort
        self.extra_output_tokens = reasoning_tokens if self.reasoning else 0   # the engine's cost estimates add it
        if self.reasoning:
            self._dropped |= {"temperature", "top_p", "logprobs", "top_logprobs"}
            self.supports_logprobs = False
        self.transport = sdk_transport(openai, http_client, transport)

        def make_client():
            return openai.AsyncOpenAI(api_key=key, base_url=self.base_url, timeout=timeout, max_retries=0,
                                      http_client=sdk_http_client(openai, self.transport, http_client, timeout),
                                      organization=organization)

        self._clients = PerLoopClient(make_client)
        self._openai = openai

    async def aclose(self) -> None:
        await self._clients.aclose()

    def batch_client(self, client_class, http_factory=None):
        """This judge's batch client: `client_class` (rlaif.backends.openai_batch.OpenAIBatch) built
        with this backend's own key, base URL and request fields. The caller passes the class so
        this module never imports its batch module (which imports this one's reader)."""
        return client_class(self.model, api_key=self._secret, base_url=self.base_url,
                            request_kwargs=self.request_kwargs, http_factory=http_factory)

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, transport={self.transport!r})"

    def request_kwargs(self, messages: list[Message], params: GenParams) -> dict:
        """The chat.completions.create arguments for one request (public: tests assert the wire format)."""
        kw = chat_completion_params(params, logprobs=self.supports_logprobs, max_tokens_field=self._max_tokens_field)
        for f in self._dropped:
            kw.pop(f, None)
        if "response_format" in kw and self._response_format == "json_object":
            kw["response_format"] = {"type": "json_object", "schema": params.json_schema}
        if self.extra_output_tokens and kw.get(self._max_tokens_field):
            kw[self._max_tokens_field] += self.extra_output_tokens
        if self.reasoning_effort:
            kw["reasoning_effort"] = self.reasoning_effort
        return {"model": self.model, "messages": messages, **kw}

    def _adapt(self, e, sent: dict) -> bool:
        """After a 400 that names one refused field of the request `sent`: stop sending it (True:
        ask again). Concurrent requests may all hit the same 400; the first one says so."""
        err = _error_of(e)
        param, code = err.get("param"), err.get("code")
        message = str(err.get("message") or getattr(e, "message", "") or "")
        if ("response_format" in sent and e.status_code in (400, 422, 500) and param != "max_tokens"
                and (param == "response_format" or "response_format" in message)):
            return self._step_down_response_format(sent, message)
        if e.status_code != 400 or code not in ("unsupported_parameter", "unsupported_value") or param not in ADAPTABLE:
            return False
        if param not in sent:
            return False
        if param == "max_tokens":
            if self._max_tokens_field == "max_completion_tokens":
                return True                 # switched meanwhile by a concurrent request
            self._max_tokens_field = "max_completion_tokens"
            change = "sending max_completion_tokens instead"
        elif param in self._dropped:
            return True                     # dropped meanwhile by a concurrent request
        else:
            gone = {"logprobs", "top_logprobs"} if param in ("logprobs", "top_logprobs") else {param}
            self._dropped |= gone
            change = f"sending requests without {'/'.join(sorted(gone))} from now on"
            if "logprobs" in gone:
                change += " (logprob verdicts become no_logprobs rows: judge with --generative)"
        say_refused(self.name, f"'{param}'", str(err.get("message", "")), change, self._secret)
        return True

    def _step_down_response_format(self, sent: dict, message: str) -> bool:
        order = ["json_schema", "json_object", "none"]
        was = sent["response_format"].get("type")
        if was not in order[:2]:
            return False
        if order.index(self._response_format) > order.index(was):
            return True                     # a concurrent request stepped down already
        self._response_format = order[order.index(was) + 1]
        if self._response_format == "none":
            self._dropped.add("response_format")
        change = ('sending {"type": "json_object", "schema": ...} instead' if self._response_format == "json_object"
                  else "asking for JSON in the prompt only (parsed, re-asked once)")
        say_refused(self.name, f"response_format {was}", message, change, self._secret)
        return True

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        for _ in range(len(ADAPTABLE) + 3):   # each pass drops one more refused field
            kw = self.request_kwargs(messages, params)
            try:
                return await self._create(kw, params)
            except self._openai.APIStatusError as e:
                if not self._adapt(e, kw):
                    raise _status_error(e, self._secret) from None
        raise BackendError(f"{self.name}: the server kept refusing request fields", code="bad_request")

    async def _create(self, kw: dict, params: GenParams) -> Completion:
        o = self._openai
        try:
            # The SDK's own POST with our plain-JSON body: `chat.completions.create` would first run
            # its typed-params transform over every message (a fifth of the client's CPU per request
            # at 64-way on a small machine) to produce the same JSON, then build pydantic objects
            # that completion_from_openai reads as plain dicts anyway. Errors, auth, timeouts and
            # connection handling are the SDK's, unchanged (client.post is its documented way to
            # send a request body as is).
            resp = await self._clients.get().post("/chat/completions", body=kw, cast_to=object)
        except o.APIStatusError:
            raise
        except (o.APIError, ValueError) as e:
            mapped = sdk_transport_error(o, e, "openai", self.base_url or OPENAI_URL, self._secret)
            if mapped is None:
                raise
            raise mapped from None
        return completion_from_openai(resp, params)


def _error_of(e) -> dict:
    """The error object of an SDK status error (the SDK gives the body's `error`, or the body)."""
    body = e.body if isinstance(e.body, dict) else {}
    return body.get("error", body) if isinstance(body.get("error", body), dict) else {}


def _status_error(e, secret: str) -> BackendError:
    """Map an SDK status error; 429 'insufficient_quota' (no credit left) is final, not a rate limit."""
    err = _error_of(e)
    code = err.get("code") or err.get("type") or f"http_{e.status_code}"
    message = err.get("message") or str(e)
    retryable = None
    if code in ("insufficient_quota", "billing_hard_limit_reached"):
        retryable = False
    return http_error("openai", e.status_code, message, code=str(code), headers=e.response.headers,
                      secrets=(secret,), retryable=retryable)


def completion_from_openai(resp, params: GenParams) -> Completion:
    """A Completion from an OpenAI-shaped chat completion (SDK object or LiteLLM ModelResponse)."""
    choices = field_of(resp, "choices") or []
    if not choices:
        raise BackendError("the server returned no choices", code="bad_response", retryable=True)
    ch = choices[0]
    msg = field_of(ch, "message")
    text = field_of(msg, "content") or ""
    finish = field_of(ch, "finish_reason")
    refusal = field_of(msg, "refusal")
    if refusal and not text:          # structured-output refusal: the model declined to answer
        text, finish = refusal, "refusal"
    top: list[dict[str, float]] | None = None
    lp = field_of(ch, "logprobs")
    content = field_of(lp, "content")
    if content:
        top = []
        for pos in content:
            alts = {field_of(a, "token"): field_of(a, "logprob") for a in (field_of(pos, "top_logprobs") or [])}
            alts.setdefault(field_of(pos, "token"), field_of(pos, "logprob"))
            top.append(alts)
    option_lp = logprob_options(top[0], params.options) if top else None
    usage = field_of(resp, "usage")
    tokens = Usage(field_of(usage, "prompt_tokens", 0) or 0, field_of(usage, "completion_tokens", 0) or 0)
    return Completion(text=text, option_logprobs=option_lp, top_logprobs=top, finish_reason=finish, usage=tokens)


__all__ = ["OpenAIBackend", "completion_from_openai", "redact"]
