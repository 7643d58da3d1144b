"""OpenAI Batch (`rlaif judge --batch` with openai/ judges): files + batches, half price.

Wire format (OpenAI's REST API): POST /files (purpose=batch, JSONL of {custom_id, method, url,
body}), POST /batches {input_file_id, endpoint: /v1/chat/completions, completion_window: 24h},
GET /batches/{id} until status is completed/failed/expired/cancelled, GET
/files/{output_file_id}/content (and the error file): lines {custom_id, response: {status_code,
body}, error}. Each body is read by `completion_from_openai`, the live backend's reader, so a
batched verdict equals the live verdict stored under the same ledger key.
"""
from __future__ import annotations

import json
import os

from rlaif.backends import batch_base
from rlaif.backends.base import chat_completion_params
from rlaif.backends.openai import completion_from_openai
from rlaif.errors import BackendError
from rlaif.records import Completion, GenParams, Message


class OpenAIBatch:
    provider = "openai"

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None,
                 request_kwargs=None, logprobs: bool = True, http_factory=None):
        self.model = model
        self.logprobs = logprobs
        # the live backend's own request fields (a reasoning model's, or fields the model refused)
        self._kwargs = request_kwargs
        base = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        key = batch_base.api_key(api_key, "OPENAI_API_KEY")
        self.http = (http_factory or batch_base.make_http_client)(str(base).rstrip("/"),
                                                                  {"Authorization": f"Bearer {key}"})

    def body(self, messages: list[Message], p: GenParams) -> dict:
        if self._kwargs is not None:
            return self._kwargs(messages, p)
        return {"model": self.model, "messages": messages, **chat_completion_params(p, logprobs=self.logprobs)}

    def submit(self, requests: list[tuple[str, list[Message], GenParams]]) -> str:
        lines = "".join(json.dumps({"custom_id": k, "method": "POST", "url": "/v1/chat/completions",
                                    "body": self.body(m, p)}, ensure_ascii=False) + "\n" for k, m, p in requests)
        f = batch_base.check(self.http.post("/files", data={"purpose": "batch"},
                                  files={"file": ("rlaif-batch.jsonl", lines.encode(), "application/jsonl")}),
                   "uploading the batch file").json()
        create = {"input_file_id": f["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h",
                  "metadata": {"source": "rlaif"}}
        b = batch_base.check(self.http.post("/batches", json=create), "creating the batch").json()
        return b["id"]

    def poll(self, batch_id: str) -> tuple[bool, str]:
        b = batch_base.check(self.http.get(f"/batches/{batch_id}"), "checking the batch").json()
        c = b.get("request_counts") or {}
        return (b["status"] in ("completed", "failed", "expired", "cancelled"),
                f"{b['status']} ({c.get('completed', 0)}/{c.get('total', 0)} done, {c.get('failed', 0)} failed)")

    def results(self, batch_id: str, params: dict[str, GenParams]) -> dict[str, Completion | BackendError]:
        b = batch_base.check(self.http.get(f"/batches/{batch_id}"), "checking the batch").json()
        if b["status"] == "failed" and not b.get("output_file_id"):
            errs = (b.get("errors") or {}).get("data") or []
            raise BackendError("the batch failed validation: " + "; ".join(e.get("message", "") for e in errs[:5]),
                               code="batch_failed")
        out: dict[str, Completion | BackendError] = {}
        for fid in (b.get("output_file_id"), b.get("error_file_id")):
            if not fid:
                continue
            text = batch_base.check(self.http.get(f"/files/{fid}/content"), "downloading batch results").text
            for line in text.splitlines():
                if line.strip():
                    rec = json.loads(line)
                    out[rec["custom_id"]] = self._parse(rec, params.get(rec["custom_id"]))
        return out

    @staticmethod
    def _parse(rec: dict, p: GenParams | None) -> Completion | BackendError:
        return read_result(rec, p)


def read_result(rec: dict, p: GenParams | None) -> Completion | BackendError:
    """One line of a batch output/error file: the answer, read by the live reader
    (`completion_from_openai`: log-sum-exp over token variants, -9999 ignored, refusals), or the
    request's error."""
    resp, err = rec.get("response"), rec.get("error")
    if resp is None or resp.get("status_code") != 200:
        status = resp.get("status_code") if resp else None
        body_err = ((resp or {}).get("body") or {}).get("error") or err or {}
        return BackendError(f"batch request failed: {body_err.get('message', body_err)}", code="batch_error",
                            status=status)
    try:
        return completion_from_openai(resp["body"], p or GenParams())
    except BackendError as e:
        return e
