"""Every other provider through LiteLLM: `litellm/<provider>/<model>`, e.g. litellm/groq/llama-3.1-8b-instant,
litellm/bedrock/anthropic.claude-3-haiku-20240307-v1:0, or litellm/openai/<name> with base_url= for
any OpenAI-compatible server.

LiteLLM translates the OpenAI request shape to each provider and answers in the OpenAI shape, so
the response is read by the same code as openai.py (`completion_from_openai`). Which optional
features to ask for comes from LiteLLM's own tables: log-probabilities only where the provider
lists `logprobs`, json_schema `response_format` only where it lists `response_format`.

Keys: LiteLLM reads each provider's variable (GROQ_API_KEY, ...). Which one is needed comes from
`litellm.validate_environment`, checked at construction, so a missing key fails at once naming
the variable. With `base_url=` (a self-hosted server) a missing key is allowed, as in openai.py.
LiteLLM's own retries are off (num_retries=0; engine.py retries) and its exceptions, which
subclass the OpenAI SDK's, map to BackendError the same way.
"""
from __future__ import annotations

import os

from rlaif.backends.base import chat_completion_params, check_base_url, http_error
from rlaif.errors import BackendError, MissingDependencyError
from rlaif.records import Completion, GenParams, Message


def _import_litellm():
    # Use the bundled price/model table instead of fetching one from GitHub at import time.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm
    except ImportError as e:
        raise MissingDependencyError("litellm", "litellm", "for litellm/ judges") from e
    litellm.suppress_debug_info = True     # no "Give Feedback / Get Help" banners in our output
    return litellm


class LiteLLMBackend:
    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, logprobs: bool | None = None):
        litellm = _import_litellm()
        if "/" not in model:
            raise BackendError(f"litellm model '{model}' must name its provider: litellm/<provider>/<model>, "
                               "e.g. litellm/groq/llama-3.1-8b-instant", code="bad_model_name")
        self.name = f"litellm/{model}"
        self.model = model
        self.base_url = check_base_url(base_url, "litellm")
        provider, bare = model.split("/", 1)
        if not api_key and not base_url:
            env = litellm.validate_environment(model=model)
            missing = env.get("missing_keys") or []
            if missing:
                raise BackendError(f"{', '.join(missing)} is not set: litellm/{model} needs it "
                                   f"(export {missing[0]}=...)", code="missing_api_key")
        self._secret = api_key or ("EMPTY" if base_url else None)
        try:
            supported = set(litellm.get_supported_openai_params(model=bare, custom_llm_provider=provider) or [])
        except Exception:  # noqa: BLE001 - an unknown provider: ask for nothing optional
            supported = set()
        self.supports_logprobs = ("logprobs" in supported) if logprobs is None else bool(logprobs)
        self.supports_json_schema = "response_format" in supported
        self._litellm = litellm
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"LiteLLMBackend(model={self.model!r}, base_url={self.base_url!r})"

    def request_kwargs(self, messages: list[Message], params: GenParams) -> dict:
        kw: dict = {"model": self.model, "messages": messages, "timeout": self.timeout, "num_retries": 0,
                    **chat_completion_params(params, logprobs=self.supports_logprobs,
                                             json_schema=self.supports_json_schema)}
        if self.base_url:
            kw["api_base"] = self.base_url
        if self._secret:
            kw["api_key"] = self._secret
        return kw

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        import openai  # LiteLLM depends on it; its exceptions subclass the SDK's

        from rlaif.backends.openai import completion_from_openai

        try:
            resp = await self._litellm.acompletion(**self.request_kwargs(messages, params))
        except openai.APITimeoutError:
            raise http_error("litellm", None, "request timed out", code="timeout", secrets=(self._secret,)) from None
        except openai.APIStatusError as e:
            status = getattr(e, "status_code", None)
            headers = getattr(e, "litellm_response_headers", None) or getattr(getattr(e, "response", None), "headers",
                                                                              None)
            raise http_error("litellm", status, getattr(e, "message", str(e)), code=type(e).__name__,
                             headers=headers, secrets=(self._secret,)) from None
        except openai.APIConnectionError as e:
            raise http_error("litellm", None, f"cannot connect: {getattr(e, 'message', e)}",
                             code="connection_error", secrets=(self._secret,)) from None
        return completion_from_openai(resp, params)


__all__ = ["LiteLLMBackend"]
