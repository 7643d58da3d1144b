"""The one provider protocol.

A backend turns chat messages into a Completion, asynchronously. That is all: concurrency,
retries, caching and cost live in engine.py so every provider gets them for free, and
judge.py never imports a vendor SDK.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from rlaif.errors import BackendError, MissingDependencyError
from rlaif.records import Completion, GenParams, Message


@runtime_checkable
class Backend(Protocol):
    name: str            # "provider/model", as the user wrote it; recorded in every output row

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        """One answer. Raise BackendError (retryable or not) on failure; never invent text."""
        ...


def parse_model_name(name: str) -> tuple[str, str]:
    """'openai/gpt-4o-mini' -> ('openai', 'gpt-4o-mini'); 'litellm/groq/llama3' -> ('litellm', 'groq/llama3')."""
    if "/" not in name:
        raise BackendError(f"model name '{name}' must look like provider/model, e.g. local/default, "
                           "openai/gpt-4o-mini, anthropic/claude-3-5-haiku-latest", code="bad_model_name")
    provider, model = name.split("/", 1)
    if not provider or not model:
        raise BackendError(f"model name '{name}' must look like provider/model", code="bad_model_name")
    return provider, model


# ---------------------------------------------------------------------------------------------
# Helpers the HTTP backends share (openai.py, anthropic.py, litellm.py)
# ---------------------------------------------------------------------------------------------
import re as _re

# Key-like strings: OpenAI (sk-..., sk-proj-...), Anthropic (sk-ant-...), and the partially masked
# echoes providers put in 401 messages ("sk-abc1***...wxyz"). Anything matching is replaced.
_KEY_RE = _re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{6,}")
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


def redact(text: str, *secrets: str | None) -> str:
    """`text` with every given secret (and anything that looks like an API key) replaced by '***'.
    Every message a backend builds from a provider's error goes through this."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return _KEY_RE.sub("***", text)


def parse_retry_after(headers) -> float | None:
    """Seconds to wait from `retry-after-ms` / `retry-after` (seconds or an HTTP date); None if absent."""
    if not headers:
        return None
    get = headers.get
    try:
        ms = get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
    except (TypeError, ValueError):
        pass
    ra = get("retry-after")
    if ra is None:
        return None
    try:
        return max(0.0, float(ra))
    except (TypeError, ValueError):
        pass
    try:
        import email.utils
        import time

        when = email.utils.parsedate_to_datetime(ra)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def http_error(provider: str, status: int | None, message: str, *, code: str | None = None, headers=None,
               secrets: tuple = (), retryable: bool | None = None) -> BackendError:
    """A BackendError for a provider's HTTP failure: retryable for 408/409/429/5xx (and timeouts,
    status None with code 'timeout'), not for 400/401/403/404/422; Retry-After honoured."""
    if retryable is None:
        retryable = status in RETRYABLE_STATUS if status is not None else code in ("timeout", "connection_error")
    code = code or (f"http_{status}" if status else "backend_error")
    where = f"{provider} HTTP {status}" if status else provider
    return BackendError(redact(f"{where} ({code}): {message}", *secrets)[:2000], code=code, status=status,
                        retry_after=parse_retry_after(headers), retryable=retryable)


def say_refused(backend_name: str, what: str, message: str, change: str, secret: str | None) -> None:
    """Say once on stderr that a model refused part of a request and what is sent instead (a
    backend adapting its requests never does so silently); the provider's message is redacted."""
    import sys

    print(f"rlaif: {backend_name} refuses {what} ({redact(message[:200], secret)}); {change}", file=sys.stderr,
          flush=True)


def sdk_transport(sdk, http_client=None, transport: str = "auto") -> str:
    """The HTTP transport an openai/anthropic SDK client uses: "aiohttp" (the SDK's `[aiohttp]`
    extra; LiteLLM installs aiohttp too) where available, else "httpx"; a caller's own http_client
    is always httpx. httpx's connection pool checks every pooled socket on each request, which at
    64-way costs more client CPU than the request itself; the SDK's errors, timeouts and auth are
    the same on both."""
    import importlib.util

    if transport not in ("auto", "aiohttp", "httpx"):
        raise BackendError(f"transport must be auto, aiohttp or httpx, not {transport!r}", code="bad_option")

    def found(name):
        try:
            return importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            return False

    name = sdk.__name__
    # the SDK's transport for aiohttp: vendored in newer releases, the httpx_aiohttp package in older ones
    available = (hasattr(sdk, "DefaultAioHttpClient") and found("aiohttp")
                 and (found(f"{name}._vendor.httpx_aiohttp") or found("httpx_aiohttp")))
    if transport == "aiohttp" and not available:
        raise MissingDependencyError("aiohttp", f"{name}[aiohttp]", "for transport='aiohttp'")
    return "aiohttp" if (available and http_client is None and transport != "httpx") else "httpx"


def sdk_http_client(sdk, transport: str, http_client, timeout: float):
    """The http_client for a new SDK client (one per event loop, like the SDK client itself): the
    caller's, the SDK's aiohttp client, or None for the SDK's default httpx client."""
    if http_client is None and transport == "aiohttp":
        return sdk.DefaultAioHttpClient(timeout=timeout)
    return http_client


def check_base_url(url: str | None, provider: str) -> str | None:
    """`url` if usable as a base URL, else a BackendError at construction (not one per row). A URL with
    `user:pass@` is refused: SDKs do not send it as authentication (every request then fails with an
    unreadable body), and it would put a secret wherever the URL is shown. The error never repeats
    the credentials."""
    if not url:
        return url
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        has_creds = parts.username is not None or parts.password is not None
        host = parts.hostname
    except ValueError:
        raise BackendError(f"{provider} base URL is not a valid URL", code="bad_base_url") from None
    if has_creds:
        shown = f"{parts.scheme}://***@{host or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
        raise BackendError(f"{provider} base URL {shown} contains a user name or password; rlaif does not send "
                           "credentials in the URL. Remove them and pass the key with --api-key or the provider's "
                           "API key variable", code="bad_base_url")
    if parts.scheme not in ("http", "https") or not host:
        raise BackendError(f"{provider} base URL {redact(url)!r} must look like http(s)://host[:port]/path",
                           code="bad_base_url")
    return url


def _connection_refused(e: BaseException) -> bool:
    """True when the exception chain holds an OS-level connection failure (refused, reset, no route,
    DNS), not a timeout: some transports (the SDKs' aiohttp client) report those as timeouts."""
    seen = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        if isinstance(x, OSError) and not isinstance(x, TimeoutError):
            return True
        x = x.__cause__ or x.__context__
    return False


def sdk_transport_error(sdk, e: Exception, provider: str, where: str, secret: str | None) -> BackendError | None:
    """The one translation of the openai/anthropic SDKs' non-status failures (both SDKs share these
    exception classes): timeouts and lost connections retry, a body that cannot be read retries as
    `bad_response`. None: not one of those (the caller re-raises it)."""
    secrets = (secret,)
    if isinstance(e, sdk.APITimeoutError) and not _connection_refused(e):   # before APIConnectionError: a subclass
        return http_error(provider, None, f"request timed out ({where})", code="timeout", secrets=secrets)
    if isinstance(e, sdk.APIConnectionError):
        cause = next((x for x in (e.__cause__, getattr(e.__cause__, "__cause__", None)) if x is not None), None)
        why = f" ({redact(str(cause), secret)[:200]})" if cause is not None else ""
        head = f"cannot connect to {where}" + ("" if isinstance(e, sdk.APITimeoutError) else f": {e}")
        return http_error(provider, None, head + why, code="connection_error", secrets=secrets)
    if isinstance(e, sdk.APIResponseValidationError):
        return http_error(provider, None, f"malformed response body: {e}", code="bad_response", secrets=secrets,
                          retryable=True)
    if isinstance(e, ValueError):       # a truncated or non-JSON body on a 200 (the SDK's json.loads fails)
        return http_error(provider, None, f"unreadable response body: {e}", code="bad_response", secrets=secrets,
                          retryable=True)
    return None


def field_of(obj, name, default=None):
    """Attribute or key: SDKs give pydantic objects; LiteLLM and batch result files give plain dicts."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def logprob_options(top: dict[str, float], options: list[str] | None) -> dict[str, float] | None:
    """Option log-probabilities from one position's top alternatives {token: logprob}: a token
    counts for an option when it equals the option after stripping whitespace (" 4", "4", "4\\n").
    Several variants of one option are summed (log-sum-exp). Options not among the alternatives
    are left out, never invented; -9999 (OpenAI's 'not in the top 20' sentinel) counts as absent."""
    import math

    if not options:
        return None
    out: dict[str, float] = {}
    for tok, lp in top.items():
        key = tok.strip()
        if key in options and lp is not None and lp > -9000:
            out[key] = lp if key not in out else max(out[key], lp) + math.log1p(math.exp(-abs(out[key] - lp)))
    return out


class PerLoopClient:
    """An SDK's async client for the running event loop.

    httpx connection pools belong to the event loop that opened them, and every `rlaif.judge()`
    call runs its own loop (asyncio.run, or a fresh loop on a helper thread inside Jupyter). A backend
    object reused across calls therefore needs one client per loop, closed with that loop
    (`aclose()`, which judge() awaits before its loop ends)."""

    def __init__(self, factory):
        self._factory = factory
        self._client = None
        self._loop = None

    def get(self):
        import asyncio

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client, self._loop = self._factory(), loop
        return self._client

    async def aclose(self) -> None:
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.close()


MAX_TOP_LOGPROBS = 20        # OpenAI's limit (more is a 400); OpenAI-compatible servers follow it


def chat_completion_params(params: GenParams, *, logprobs: bool, json_schema: bool = True,
                           max_tokens_field: str = "max_tokens") -> dict:
    """The OpenAI chat-completions sampling fields for `params`: one definition for the OpenAI and
    LiteLLM backends and the OpenAI Batch body, so a batched request asks exactly what a live one would."""
    kw: dict = {max_tokens_field: params.max_tokens, "temperature": params.temperature}
    if params.top_p != 1.0:
        kw["top_p"] = params.top_p
    if params.seed is not None:
        kw["seed"] = params.seed
    if params.stop:
        kw["stop"] = params.stop
    if logprobs and (params.top_logprobs or params.options):
        kw["logprobs"] = True
        kw["top_logprobs"] = min(MAX_TOP_LOGPROBS, params.top_logprobs or MAX_TOP_LOGPROBS)
    if params.json_schema is not None and json_schema:
        kw["response_format"] = {"type": "json_schema",
                                 "json_schema": {"name": "verdict", "schema": params.json_schema, "strict": True}}
    return kw
