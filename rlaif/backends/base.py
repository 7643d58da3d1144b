"""The one provider protocol.

A backend turns chat messages into a Completion, asynchronously. That is all: concurrency,
retries, caching and cost live in engine.py so every provider gets them for free, and
judge.py never imports a vendor SDK.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from rlaif.errors import BackendError
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
