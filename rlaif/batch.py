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

Wire formats follow the providers' REST APIs:
- OpenAI: POST /files (purpose=batch, JSONL of {custom_id, method, url, body}), POST /batches
  {input_file_id, endpoint: /v1/chat/completions, completion_window: 24h}, GET /batches/{id}
  until status is completed/failed/expired/cancelled, GET /files/{output_file_id}/content (and the
  error file): lines {custom_id, response: {status_code, body}, error}.
- Anthropic: POST /v1/messages/batches {requests: [{custom_id, params}]}, GET
  /v1/messages/batches/{id} until processing_status == "ended", GET results_url: lines
  {custom_id, result: {type: succeeded|errored|canceled|expired, message|error}}.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from rlaif.backends.base import chat_completion_params
from rlaif.errors import BackendError, RlaifError
from rlaif.records import Completion, GenParams, Message, Usage

MAX_ROUNDS = 3      # initial requests, then re-asks that depend on real answers; more is never needed


def make_http_client(base_url: str, headers: dict):
    """The HTTP client batch calls use (tests replace this with an httpx.MockTransport one)."""
    import httpx

    return httpx.Client(base_url=base_url, headers=headers, timeout=httpx.Timeout(120.0, connect=10.0))


def _key(env: str, backend) -> str:
    # the key the backend was built with (api_key= or its environment variable), never logged
    k = getattr(backend, "_secret", None) or getattr(backend, "api_key", None) or os.environ.get(env)
    if not k:
        raise BackendError(f"--batch needs an API key: set {env}", code="missing_api_key")
    return k


def _check(r, what: str):
    if r.status_code >= 400:
        try:
            msg = r.json().get("error", {})
            msg = msg.get("message") if isinstance(msg, dict) else str(msg)
        except ValueError:
            msg = r.text[:200]
        raise BackendError(f"{what} failed: HTTP {r.status_code}: {msg}", code="batch_error", status=r.status_code)
    return r


def option_logprobs(first_token_top: list[dict], options: list[str] | None) -> dict[str, float] | None:
    """{option: logprob} from OpenAI's top_logprobs of the first generated token ('3' and ' 3' both count)."""
    if not options or not first_token_top:
        return None
    out: dict[str, float] = {}
    for alt in first_token_top:
        t = alt["token"].strip()
        if t in options and (t not in out or alt["logprob"] > out[t]):
            out[t] = alt["logprob"]
    return out


# ---------------------------------------------------------------------------------------------
class OpenAIBatch:
    provider = "openai"

    def __init__(self, backend, model: str):
        from rlaif.backends.openai import OpenAIBackend

        self.model = model
        self.logprobs = getattr(backend, "supports_logprobs", True)
        # the live backend's own request fields (a reasoning model's, or fields the model refused)
        self._kwargs = backend.request_kwargs if isinstance(backend, OpenAIBackend) else None
        base = getattr(backend, "base_url", None) or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        self.http = make_http_client(str(base).rstrip("/"), {"Authorization": f"Bearer {_key('OPENAI_API_KEY', backend)}"})

    def body(self, messages: list[Message], p: GenParams) -> dict:
        if self._kwargs is not None:
            return self._kwargs(messages, p)
        return {"model": self.model, "messages": messages, **chat_completion_params(p, logprobs=self.logprobs)}

    def submit(self, requests: list[tuple[str, list[Message], GenParams]]) -> str:
        lines = "".join(json.dumps({"custom_id": k, "method": "POST", "url": "/v1/chat/completions",
                                    "body": self.body(m, p)}, ensure_ascii=False) + "\n" for k, m, p in requests)
        f = _check(self.http.post("/files", data={"purpose": "batch"},
                                  files={"file": ("rlaif-batch.jsonl", lines.encode(), "application/jsonl")}),
                   "uploading the batch file").json()
        b = _check(self.http.post("/batches", json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                                                    "completion_window": "24h", "metadata": {"source": "rlaif"}}),
                   "creating the batch").json()
        return b["id"]

    def poll(self, batch_id: str) -> tuple[bool, str]:
        b = _check(self.http.get(f"/batches/{batch_id}"), "checking the batch").json()
        c = b.get("request_counts") or {}
        return (b["status"] in ("completed", "failed", "expired", "cancelled"),
                f"{b['status']} ({c.get('completed', 0)}/{c.get('total', 0)} done, {c.get('failed', 0)} failed)")

    def results(self, batch_id: str, params: dict[str, GenParams]) -> dict[str, Completion | BackendError]:
        b = _check(self.http.get(f"/batches/{batch_id}"), "checking the batch").json()
        if b["status"] == "failed" and not b.get("output_file_id"):
            errs = (b.get("errors") or {}).get("data") or []
            raise BackendError("the batch failed validation: " + "; ".join(e.get("message", "") for e in errs[:5]),
                               code="batch_failed")
        out: dict[str, Completion | BackendError] = {}
        for fid in (b.get("output_file_id"), b.get("error_file_id")):
            if not fid:
                continue
            text = _check(self.http.get(f"/files/{fid}/content"), "downloading batch results").text
            for line in text.splitlines():
                if line.strip():
                    rec = json.loads(line)
                    out[rec["custom_id"]] = self._parse(rec, params.get(rec["custom_id"]))
        return out

    @staticmethod
    def _parse(rec: dict, p: GenParams | None) -> Completion | BackendError:
        resp, err = rec.get("response"), rec.get("error")
        if resp is None or resp.get("status_code") != 200:
            status = resp.get("status_code") if resp else None
            body_err = ((resp or {}).get("body") or {}).get("error") or err or {}
            return BackendError(f"batch request failed: {body_err.get('message', body_err)}", code="batch_error",
                                status=status)
        body = resp["body"]
        ch = body["choices"][0]
        lp = ((ch.get("logprobs") or {}).get("content") or [])
        u = body.get("usage") or {}
        return Completion(text=ch["message"].get("content") or "",
                          option_logprobs=option_logprobs(lp[0].get("top_logprobs") if lp else [], p.options if p else None),
                          top_logprobs=[{a["token"]: a["logprob"] for a in t.get("top_logprobs", [])} for t in lp] or None,
                          usage=Usage(u.get("prompt_tokens", 0), u.get("completion_tokens", 0)),
                          finish_reason=ch.get("finish_reason"))


# ---------------------------------------------------------------------------------------------
class AnthropicBatch:
    provider = "anthropic"
    VERSION = "2023-06-01"

    def __init__(self, backend, model: str):
        from rlaif.backends.anthropic import AnthropicBackend

        self.model = model
        if not isinstance(backend, AnthropicBackend):
            raise RlaifError(f"--batch for anthropic/ needs rlaif's Anthropic backend, not {type(backend).__name__}")
        # the live backend's own request and answer reading, so a batched verdict is the live one
        self._params = backend.batch_params
        base = getattr(backend, "base_url", None) or os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"
        self.headers = {"x-api-key": _key("ANTHROPIC_API_KEY", backend), "anthropic-version": self.VERSION}
        self.http = make_http_client(str(base).rstrip("/"), self.headers)

    def body(self, messages: list[Message], p: GenParams) -> dict:
        return self._params(messages, p)

    def submit(self, requests: list[tuple[str, list[Message], GenParams]]) -> str:
        payload = {"requests": [{"custom_id": k, "params": self.body(m, p)} for k, m, p in requests]}
        return _check(self.http.post("/v1/messages/batches", json=payload), "creating the message batch").json()["id"]

    def poll(self, batch_id: str) -> tuple[bool, str]:
        b = _check(self.http.get(f"/v1/messages/batches/{batch_id}"), "checking the message batch").json()
        c = b.get("request_counts") or {}
        return b["processing_status"] == "ended", (f"{b['processing_status']} ({c.get('succeeded', 0)} succeeded, "
                                                   f"{c.get('errored', 0)} errored, {c.get('processing', 0)} processing)")

    def results(self, batch_id: str, params: dict[str, GenParams]) -> dict[str, Completion | BackendError]:
        b = _check(self.http.get(f"/v1/messages/batches/{batch_id}"), "checking the message batch").json()
        url = b.get("results_url") or f"/v1/messages/batches/{batch_id}/results"
        text = _check(self.http.get(url), "downloading message batch results").text
        out: dict[str, Completion | BackendError] = {}
        for line in text.splitlines():
            if line.strip():
                rec = json.loads(line)
                out[rec["custom_id"]] = self._parse(rec["result"])
        return out

    @staticmethod
    def _parse(result: dict) -> Completion | BackendError:
        if result["type"] != "succeeded":
            e = (result.get("error") or {}).get("error") or {}
            return BackendError(f"batch request {result['type']}: {e.get('type', '')} {e.get('message', '')}".strip(),
                                code=f"batch_{result['type']}")
        from rlaif.backends.anthropic import AnthropicBackend

        return AnthropicBackend._completion(result["message"])


BATCH_PROVIDERS = {"openai": OpenAIBatch, "anthropic": AnthropicBatch}


def batch_client(backend):
    provider, _, model = backend.name.partition("/")
    if provider not in BATCH_PROVIDERS:
        raise RlaifError(f"--batch works with {' and '.join(p + '/' for p in BATCH_PROVIDERS)} judges, not '{backend.name}'")
    return BATCH_PROVIDERS[provider](backend, model)


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
    report = {"batches": [], "answered": 0, "failed": 0, "cost": 0.0 if price else None}
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
            state.parent.mkdir(parents=True, exist_ok=True)
            tmp = state.with_suffix(".tmp")
            tmp.write_text(json.dumps({"provider": client.provider, "model": client.model, "batch_id": batch_id,
                                       "requests": len(pending), "submitted": time.time()}))
            os.replace(tmp, state)
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
                ledger.put(key, backend.name, res)
                report["answered"] += 1
            else:
                report["failed"] += 1
        ledger.flush()
        state.unlink(missing_ok=True)
        if report["failed"]:
            log(f"{report['failed']} batch request(s) failed; they will be asked live")
    return report
