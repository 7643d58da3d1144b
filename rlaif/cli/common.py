"""What several commands share: the help formatter, stderr, and the flags defined once.

The judging flags (`--generative`, `--one-order`, `--tie-margin`, the engine and API-judge groups)
take their defaults and help from the typed option models in rlaif.options, so the CLI, the
Python API and pipeline YAML describe and check one set of options.
"""
from __future__ import annotations

import argparse
import sys

from rlaif.options import EngineOptions, JobOptions, JudgeOptions


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none worth showing (None, False, a
    flag) or the help already says it."""

    def _get_help_string(self, action):
        h = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in h or "%(default)" in h:
            return h
        return super()._get_help_string(action)


def parser(sub, name: str, **kw) -> argparse.ArgumentParser:
    """A sub-command parser with rlaif's help formatter. It records itself as `args.command_parser`
    (the innermost wins), so an error can name an option as that command spells it."""
    p = sub.add_parser(name, formatter_class=HelpFormatter, **kw)
    p.set_defaults(command_parser=p)
    return p


def stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def one_or_many(values):
    """argparse 'append' gives a list; one value means a plain judge, several a jury."""
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def _help(model, name: str) -> str:
    return model.model_fields[name].description or ""


def _default(model, name: str):
    return model.model_fields[name].default


def kappa(text: str) -> float:
    """An argparse type for --min-kappa: κ lies in [-1, 1], so a floor outside it is a typo, refused
    before any work (exit 2) instead of failing the gate after every row was paid for."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [-1, 1], got {text!r}") from None
    if not -1.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"κ lies in [-1, 1]; got {v}")
    return v


def count(text: str) -> int:
    """An argparse type for a count shown or kept (--show): 0 or more; -1 is no 'all' here, it's a typo."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more; got {v}")
    return v


def add_dirs(p) -> None:
    p.add_argument("--rubrics-dir", action="append", default=None, help=_help(JobOptions, "rubrics_dirs"))
    p.add_argument("--prompts-dir", action="append", default=None, help=_help(JobOptions, "prompts_dirs"))


def add_judging_flags(p, *, tie_margin: float | None = None, tie_help: str | None = None) -> None:
    """--generative, --one-order, --tie-margin: shared by judge, rubric test and rubric diff."""
    p.add_argument("--generative", action="store_true", help=_help(JudgeOptions, "generative"))
    p.add_argument("--one-order", action="store_true",
                   help="pairwise: judge only the given A/B order (no position swap)")
    p.add_argument("--tie-margin", type=float, default=_default(JudgeOptions, "tie_margin") if tie_margin is None
                   else tie_margin, help=tie_help or _help(JudgeOptions, "tie_margin"))


def add_concurrency(p) -> None:
    p.add_argument("--concurrency", type=int, default=_default(EngineOptions, "concurrency"),
                   help=_help(EngineOptions, "concurrency"))


def add_quiet(p) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or per-row lines")


def engine_kwargs(args) -> dict:
    """The engine options of `rlaif judge` (limits, ledger, cost, resume, shards, batch) as judge() kwargs."""
    return {"cache": False if args.no_cache else None, "ledger": args.ledger, "rpm": args.rpm, "tpm": args.tpm,
            "timeout": args.timeout, "max_retries": args.max_retries, "max_cost": args.max_cost,
            "prices": args.prices, "dry_run": args.dry_run, "shard": args.shard, "batch": args.batch,
            "batch_poll": args.batch_poll, "fresh": args.fresh}


def add_engine_flags(p) -> None:
    g = p.add_argument_group("API judges: limits, cache, cost, resume, scale")
    g.add_argument("--rpm", type=float, default=None, help=_help(EngineOptions, "rpm"))
    g.add_argument("--tpm", type=float, default=None, help=_help(EngineOptions, "tpm"))
    g.add_argument("--timeout", type=float, default=None, help="seconds per request attempt (default 60)")
    g.add_argument("--max-retries", type=int, default=None, help="retries for 429/5xx/timeouts (default 6)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the request ledger")
    g.add_argument("--ledger", default=None, help="ledger file (default $RLAIF_CACHE_DIR/ledger.sqlite)")
    g.add_argument("--max-cost", type=float, default=None, help=_help(EngineOptions, "max_cost"))
    g.add_argument("--prices", default=None,
                   help="YAML/JSON price table overriding LiteLLM's: model: {input, output} USD per 1M tokens")
    g.add_argument("--dry-run", action="store_true", help="count requests, tokens and cost; send nothing")
    g.add_argument("--shard", default=None,
                   help="judge only partition i/n (0-based), e.g. 0/4; join with `rlaif merge`")
    g.add_argument("--batch", action="store_true",
                   help="use the provider's batch API (OpenAI, Anthropic): half price, slower")
    g.add_argument("--batch-poll", type=float, default=_default(EngineOptions, "batch_poll"),
                   help=_help(EngineOptions, "batch_poll"))
    g.add_argument("--fresh", action="store_true", help=_help(JobOptions, "fresh"))


def add_api_judge_flags(p) -> None:
    g = p.add_argument_group("API judges and juries")
    g.add_argument("--base-url", default=None,
                   help="OpenAI-compatible server for openai/ and litellm/ judges (vLLM, llama.cpp, Ollama, "
                        "transformers serve), e.g. http://127.0.0.1:8000/v1; default $OPENAI_BASE_URL")
    g.add_argument("--samples", type=int, default=_default(JudgeOptions, "samples"), metavar="K",
                   help="estimate probabilities from K sampled verdicts (for judges without logprobs; K x cost)")
    g.add_argument("--no-structured", action="store_true",
                   help="don't ask for JSON-schema / tool-use verdicts; parse prose instead")
    g.add_argument("--no-repair", action="store_true", help="don't re-ask once when a verdict cannot be read")
    g.add_argument("--max-tokens", type=int, default=_default(JudgeOptions, "max_tokens"),
                   help="generative verdicts: room for the rationale and the verdict line")
    g.add_argument("--reasoning-effort", choices=["minimal", "low", "medium", "high"], default=None,
                   help="openai/ reasoning models (o3, o4-mini, gpt-5...): how hard they think before the verdict")
    g.add_argument("--aggregate", choices=["mean", "majority", "weighted"], default=None,
                   help="jury aggregation over several --judge / --rubric (default mean)")
    g.add_argument("--gold", default=None,
                   help="JSONL rows with a gold label (gold/human/label) for --aggregate weighted")


def api_judge_kwargs(args) -> dict:
    return {"base_url": args.base_url, "samples": args.samples, "structured": False if args.no_structured else None,
            "repair": not args.no_repair, "max_tokens": args.max_tokens, "aggregate": args.aggregate,
            "gold": args.gold,
            **({"judge_options": {"reasoning_effort": args.reasoning_effort}} if args.reasoning_effort else {})}
