"""Provider batch APIs (`rlaif judge --batch`): OpenAI Batch and Anthropic Message Batches.

Why: both bill half price for requests that may take up to 24 h. A judging job rarely needs
answers within seconds, so for large jobs this halves the bill.

How it fits: batch mode only *fills the request ledger*. A dry pass of the judge collects every
request the job needs that the ledger cannot answer (rlaif.engine's dry run), those go out as one
batch (submit → poll → collect), and each answer is written to the ledger under the same key a live
call would use. Then the normal judging pass runs and finds every answer in the ledger. A second
round catches follow-up requests that only exist once real answers are known (e.g. a judge's re-ask
after an unparseable reply). Requests the batch failed (an `errored` / `error` line, an expired
batch) are asked live in the final pass, through the usual retries, so no row is silently dropped.

Resumable: the batch id is saved under `<cache_dir>/batches/<job>.json` (job = hash of the
provider, model and the set of pending request keys) before polling starts. Killed while waiting,
the same command finds that file and resumes polling the same batch instead of paying again.
The request ledger key doubles as the `custom_id` (64 hex chars: within both providers' limits).
Wire formats and answer reading live beside each provider: rlaif/backends/openai_batch.py and
rlaif/backends/anthropic_batch.py (answers read by the live backends' own readers).
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from rlaif.backends import provider_of
from rlaif.backends.base import field_of, logprob_options
from rlaif.backends.batch_base import make_http_client
from rlaif.errors import RlaifError
from rlaif.journal import write_json_atomic
from rlaif.records import Completion

MAX_ROUNDS = 3      # initial requests, then re-asks that depend on real answers; more is never needed
BATCH_PROVIDERS = ("openai", "anthropic")


def option_logprobs(first_token_top: list[dict], options: list[str] | None) -> dict[str, float] | None:
    """{option: logprob} from OpenAI's top_logprobs list of the first token: the live reader's rule
    (rlaif.backends.base.logprob_options: variants like '3' and ' 3' summed, -9999 ignored)."""
    if not options or not first_token_top:
        return None
    return logprob_options({field_of(a, "token"): field_of(a, "logprob") for a in first_token_top}, options)


def batch_client(backend):
    """The provider's batch client for this judge: the backend's own (it holds the key), or for
    an OpenAI-shaped stand-in an OpenAI Batch client from its public attributes."""
    provider = provider_of(backend)
    if provider not in BATCH_PROVIDERS:
        raise RlaifError(f"--batch works with {' and '.join(p + '/' for p in BATCH_PROVIDERS)} judges, "
                         f"not '{backend.name}'")
    factory = make_http_client            # looked up now, so a test can swap this module's factory
    if provider == "anthropic":
        from rlaif.backends.anthropic_batch import AnthropicBatch

        if not hasattr(backend, "batch_client"):
            raise RlaifError(f"--batch for anthropic/ needs rlaif's Anthropic backend, not {type(backend).__name__}")
        return backend.batch_client(AnthropicBatch, http_factory=factory)
    from rlaif.backends.openai_batch import OpenAIBatch

    if hasattr(backend, "batch_client"):
        return backend.batch_client(OpenAIBatch, http_factory=factory)
    return OpenAIBatch(backend.name.partition("/")[2], api_key=getattr(backend, "api_key", None),
                       base_url=getattr(backend, "base_url", None),
                       logprobs=getattr(backend, "supports_logprobs", True), http_factory=factory)


# ---------------------------------------------------------------------------------------------
def _state_path(provider: str, model: str, keys: list[str]) -> Path:
    from rlaif.models import cache_dir

    h = hashlib.sha256(json.dumps([provider, model, sorted(keys)]).encode()).hexdigest()[:24]
    return cache_dir() / "batches" / f"{h}.json"


def run_batch(rows, rubric, mode, backend, cfg, ledger, make_engine, *, poll: float = 30.0, log=None,
              prompts_dirs: list | None = None) -> dict:
    """Fill the ledger with the answers this job needs, through the provider's batch API.
    Returns {"batches": [...ids], "answered": n, "failed": n, "cost": USD or None}."""
    from rlaif.cost import price_for
    from rlaif.engine import run_sync
    from rlaif.judging.judge import judge_rows_async

    if ledger is None:
        raise RlaifError("--batch stores answers in the request ledger; it cannot be combined with --no-cache")
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    client = batch_client(backend)
    price = price_for(backend.name, batch=True)
    report: dict[str, Any] = {"batches": [], "answered": 0, "failed": 0, "cost": 0.0 if price else None}
    tried: set[str] = set()
    for _ in range(MAX_ROUNDS):
        eng = make_engine(dry=True)
        run_sync(judge_rows_async(rows, rubric, mode, judge=backend, config=cfg, engine=eng,
                                  prompts_dirs=prompts_dirs))
        pending = [r for r in eng.pending if r[0] not in tried]
        if not pending:
            break
        tried.update(k for k, _, _ in pending)
        state = _state_path(client.provider, client.model, [k for k, _, _ in pending])
        if state.exists():
            batch_id = json.loads(state.read_text())["batch_id"]
            log(f"resuming {client.provider} batch {batch_id} ({len(pending)} requests)")
        else:
            batch_id = client.submit(pending)
            write_json_atomic(state, {"provider": client.provider, "model": client.model, "batch_id": batch_id,
                                      "requests": len(pending), "submitted": time.time()}, indent=None)
            log(f"submitted {client.provider} batch {batch_id}: {len(pending)} requests (state: {state}); "
                "if interrupted, run the same command again to resume it")
        report["batches"].append(batch_id)
        while True:
            done, status = client.poll(batch_id)
            log(f"batch {batch_id}: {status}")
            if done:
                break
            time.sleep(poll)
        results = client.results(batch_id, {k: p for k, _, p in pending})
        for key, _m, _p in pending:
            res = results.get(key)
            if isinstance(res, Completion):
                if price is not None:
                    res.cost = price.cost(res.usage.prompt_tokens, res.usage.completion_tokens)
                    report["cost"] += res.cost
                ledger.put(key, backend.name, res, commit=False)     # bulk import: one commit below
                report["answered"] += 1
            else:
                report["failed"] += 1
        ledger.flush()
        state.unlink(missing_ok=True)
        if report["failed"]:
            log(f"{report['failed']} batch request(s) failed; they will be asked live")
    return report
