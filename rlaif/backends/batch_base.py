"""What the two provider batch APIs share: the HTTP client and the error check.

The batch clients (openai_batch.py, anthropic_batch.py) sit beside their live backends and read
answers with the live backends' own readers, so a batched verdict is the live verdict.
"""
from __future__ import annotations

import os

from rlaif.errors import BackendError


def make_http_client(base_url: str, headers: dict):
    """The HTTP client batch calls use (tests pass their own factory with an httpx.MockTransport)."""
    import httpx

    return httpx.Client(base_url=base_url, headers=headers, timeout=httpx.Timeout(120.0, connect=10.0))


def api_key(given: str | None, env: str) -> str:
    """The key a batch client sends: the judge's own, else the environment's; never logged."""
    k = given or os.environ.get(env)
    if not k:
        raise BackendError(f"--batch needs an API key: set {env}", code="missing_api_key")
    return k


def check(r, what: str):
    """`r` if it succeeded; else a BackendError with the provider's message (HTTP status kept)."""
    if r.status_code >= 400:
        try:
            msg = r.json().get("error", {})
            msg = msg.get("message") if isinstance(msg, dict) else str(msg)
        except ValueError:
            msg = r.text[:200]
        raise BackendError(f"{what} failed: HTTP {r.status_code}: {msg}", code="batch_error", status=r.status_code)
    return r
