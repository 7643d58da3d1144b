"""Model backends: one file per provider behind one async method (see base.py).

`get_backend("provider/model")` is the only entry point the rest of rlaif uses; vendor SDKs
are imported inside each backend's module, lazily, so `import rlaif` never needs them.
"""
from __future__ import annotations

from rlaif.backends.base import Backend, parse_model_name
from rlaif.errors import BackendError

# provider -> "module:Class". Add a provider by adding a file and a line here.
PROVIDERS = {
    "local": "rlaif.backends.local:LocalBackend",
    "fake": "rlaif.backends.fake:FakeBackend",
    "openai": "rlaif.backends.openai:OpenAIBackend",
    "anthropic": "rlaif.backends.anthropic:AnthropicBackend",
    "litellm": "rlaif.backends.litellm:LiteLLMBackend",
    "rm": "rlaif.backends.rm:RMBackend",          # a trained reward model (rlaif train rm)
}

DEFAULT_MODEL = "local/default"


def get_backend(name: str | None = None, **options) -> Backend:
    """`get_backend("openai/gpt-4o-mini", base_url=...)` -> a Backend. None means the embedded model."""
    import importlib

    provider, model = parse_model_name(name or DEFAULT_MODEL)
    if provider not in PROVIDERS:
        raise BackendError(f"unknown provider '{provider}' in '{name}'; known: {', '.join(sorted(PROVIDERS))}",
                           code="unknown_provider")
    module_name, cls_name = PROVIDERS[provider].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("rlaif"):
            raise BackendError(f"provider '{provider}' is not available in this build",
                               code="unknown_provider") from None
        raise
    return getattr(module, cls_name)(model, **options)


def as_backend(spec, **options) -> Backend:
    """A Backend given as itself, or by name (None: the embedded model); `options` go to get_backend."""
    if spec is not None and not isinstance(spec, str):
        return spec
    return get_backend(spec, **options)


def provider_of(spec) -> str:
    """The provider part of a judge: "openai" for "openai/gpt-4o-mini", a Backend, or None (local)."""
    name = spec if isinstance(spec, str) else (getattr(spec, "name", None) if spec is not None else None)
    return (name or DEFAULT_MODEL).split("/", 1)[0]


__all__ = ["Backend", "get_backend", "as_backend", "provider_of", "parse_model_name", "PROVIDERS", "DEFAULT_MODEL"]
