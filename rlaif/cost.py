"""Prices and token counts: what a judging run costs, before (dry run) and while it spends.

Prices come from LiteLLM's bundled price table (`litellm.model_cost`, read offline: we set
LITELLM_LOCAL_MODEL_COST_MAP=True before importing litellm so it never fetches the table from
the network), overridden by a user's price file (YAML or JSON):

    openai/gpt-4o-mini: {input: 0.15, output: 0.60}        # USD per 1M tokens
    my-vllm/llama-3-8b: {input: 0, output: 0}

Keys are the model names rlaif uses (`provider/model`). A model with no known price has cost
`None` ("unknown"), never 0, and `--max-cost` refuses to start on it rather than spend blindly.
`local/` and `fake/` models run on this machine and cost 0.

Token counting for estimates: tiktoken when it is installed *and* its encoding files are
available (they are downloaded on first use, so offline machines often lack them); otherwise
characters / 4, the usual rule of thumb for English text with BPE tokenizers. `count_method()`
says which one was used, and the dry run prints it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rlaif.errors import ConfigError, Problem

FREE_PROVIDERS = ("local", "fake")
BATCH_DISCOUNT = 0.5     # OpenAI Batch and Anthropic Message Batches both bill half the normal price
PER_MESSAGE_OVERHEAD = 4  # tokens OpenAI's chat format adds per message (role, separators)


@dataclass(frozen=True)
class Price:
    input: float          # USD per token
    output: float
    source: str           # "override file x.yaml", "litellm:gpt-4o-mini", "local"

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.input + completion_tokens * self.output


def load_price_file(path: str | Path) -> dict[str, Price]:
    """A user's price table: {model: {input: USD per 1M tokens, output: USD per 1M tokens}}."""
    from rlaif.errors import InputError
    from rlaif.io import read_json, read_yaml

    path = Path(path)
    try:      # the one reader: UTF-8, BOM, folders, NaN, duplicate keys
        data = read_json(path) if path.suffix == ".json" else read_yaml(path)
    except InputError as e:
        raise ConfigError([Problem(str(path), f"cannot use the price file: {e}")], str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError([Problem(str(path), "expected a mapping of model name -> {input, output}")], str(path))
    problems, out = [], {}
    for model, entry in data.items():
        if not isinstance(entry, dict):
            problems.append(Problem(f"{path}: {model}",
                                    "expected {input: USD per 1M tokens, output: USD per 1M tokens}"))
            continue
        bad = [k for k in entry if k not in ("input", "output")]
        if bad:
            problems.append(Problem(f"{path}: {model}",
                                    f"unknown field(s) {bad}; use input and output (USD per 1M tokens)"))
        vals = {}
        for k in ("input", "output"):
            v = entry.get(k)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                problems.append(Problem(f"{path}: {model}.{k}",
                                        f"expected a non-negative number (USD per 1M tokens), got {v!r}"))
            else:
                vals[k] = float(v) / 1e6
        if len(vals) == 2:
            out[str(model)] = Price(vals["input"], vals["output"], f"price file {path.name}")
    if problems:
        raise ConfigError(problems, str(path))
    return out


@lru_cache(maxsize=1)
def _litellm_table() -> dict:
    """litellm.model_cost as LiteLLM loads it offline (LITELLM_LOCAL_MODEL_COST_MAP=True): its bundled
    model_prices_and_context_window_backup.json. Read straight from the installed package, because
    `import litellm` takes ~15 s on a small machine; imported only if that file has moved."""
    import importlib.util

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.origin:
        return {}
    bundled = Path(spec.origin).parent / "model_prices_and_context_window_backup.json"
    if bundled.exists():
        return json.loads(bundled.read_text(encoding="utf-8"))
    import litellm

    return dict(litellm.model_cost)


def _litellm_names(model: str) -> list[str]:
    """Candidate keys in LiteLLM's table for an rlaif model name."""
    provider, _, rest = model.partition("/")
    if provider == "litellm":
        return [rest, rest.split("/", 1)[-1]]
    if provider in ("openai", "anthropic"):
        return [rest, f"{provider}/{rest}"]
    return [model, rest]


def model_card(model: str) -> dict:
    """What LiteLLM's bundled model map says of `model` ("provider/model"): context window,
    `supports_reasoning`, `supports_response_schema`...; {} when it does not know the model."""
    table = _litellm_table()
    for name in _litellm_names(model):
        if isinstance(table.get(name), dict):
            return table[name]
    return {}


def price_for(model: str, overrides: dict[str, Price] | None = None, *, batch: bool = False) -> Price | None:
    """The price of `model` ("provider/model"), or None if unknown."""
    if overrides and model in overrides:
        p = overrides[model]
        return Price(p.input * BATCH_DISCOUNT, p.output * BATCH_DISCOUNT, p.source + " (batch)") if batch else p
    if model.split("/", 1)[0] in FREE_PROVIDERS:
        return Price(0.0, 0.0, "runs locally")
    table = _litellm_table()
    for name in _litellm_names(model):
        e = table.get(name)
        if e and e.get("input_cost_per_token") is not None:
            pin, pout = float(e["input_cost_per_token"]), float(e.get("output_cost_per_token") or 0.0)
            if batch:
                pin = float(e.get("input_cost_per_token_batches") or pin * BATCH_DISCOUNT)
                pout = float(e.get("output_cost_per_token_batches") or pout * BATCH_DISCOUNT)
            return Price(pin, pout, f"litellm:{name}" + (" (batch)" if batch else ""))
    return None


# ---------------------------------------------------------------------------------------------
# Token counting (estimates only; real usage comes from the provider's response)
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _encoder(model: str):
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        try:
            return tiktoken.encoding_for_model(model.split("/")[-1])
        except KeyError:
            return tiktoken.get_encoding("o200k_base")
    except Exception:  # noqa: BLE001 - encoding files are fetched on first use; offline they are missing
        return None


def count_method(model: str) -> str:
    if _encoder(model) is not None:
        return "tiktoken"
    return "chars/4 estimate (tiktoken or its encoding files unavailable)"


def count_tokens(messages: list[dict], model: str = "") -> int:
    enc = _encoder(model)
    total = 0
    for m in messages:
        text = m.get("content") or ""
        total += (len(enc.encode(text)) if enc is not None else (len(text) + 3) // 4) + PER_MESSAGE_OVERHEAD
    return total + 2    # reply priming


def fmt_usd(x: float | None) -> str:
    if x is None:
        return "unknown"
    return f"${x:,.4f}" if x < 10 else f"${x:,.2f}"
