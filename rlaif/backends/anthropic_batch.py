"""Anthropic Message Batches (`rlaif judge --batch` with anthropic/ judges), half price.

Wire format: POST /v1/messages/batches {requests: [{custom_id, params}]}, GET
/v1/messages/batches/{id} until processing_status == "ended", GET results_url: lines {custom_id,
result: {type: succeeded|errored|canceled|expired, message|error}}. `params` are exactly what a
live request sends and each message is read by `completion_from_anthropic`, the live reader.
"""
from __future__ import annotations

import json
import os

from rlaif.backends import batch_base
from rlaif.backends.anthropic import completion_from_anthropic
from rlaif.errors import BackendError
from rlaif.records import Completion, GenParams, Message


class AnthropicBatch:
    provider = "anthropic"
    VERSION = "2023-06-01"

    def __init__(self, model: str, *, api_key: str | None, base_url: str | None, batch_params, http_factory=None):
        self.model = model
        # the live backend's own request and answer reading, so a batched verdict is the live one
        self._params = batch_params
        base = base_url or os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"
        self.headers = {"x-api-key": batch_base.api_key(api_key, "ANTHROPIC_API_KEY"),
                        "anthropic-version": self.VERSION}
        self.http = (http_factory or batch_base.make_http_client)(str(base).rstrip("/"), self.headers)

    def body(self, messages: list[Message], p: GenParams) -> dict:
        return self._params(messages, p)

    def submit(self, requests: list[tuple[str, list[Message], GenParams]]) -> str:
        payload = {"requests": [{"custom_id": k, "params": self.body(m, p)} for k, m, p in requests]}
        return batch_base.check(self.http.post("/v1/messages/batches", json=payload),
                                "creating the message batch").json()["id"]

    def poll(self, batch_id: str) -> tuple[bool, str]:
        b = batch_base.check(self.http.get(f"/v1/messages/batches/{batch_id}"), "checking the message batch").json()
        c = b.get("request_counts") or {}
        return b["processing_status"] == "ended", (
            f"{b['processing_status']} ({c.get('succeeded', 0)} succeeded, "
            f"{c.get('errored', 0)} errored, {c.get('processing', 0)} processing)")

    def results(self, batch_id: str, params: dict[str, GenParams]) -> dict[str, Completion | BackendError]:
        b = batch_base.check(self.http.get(f"/v1/messages/batches/{batch_id}"), "checking the message batch").json()
        url = b.get("results_url") or f"/v1/messages/batches/{batch_id}/results"
        text = batch_base.check(self.http.get(url), "downloading message batch results").text
        out: dict[str, Completion | BackendError] = {}
        for line in text.splitlines():
            if line.strip():
                rec = json.loads(line)
                out[rec["custom_id"]] = self._parse(rec["result"])
        return out

    @staticmethod
    def _parse(result: dict) -> Completion | BackendError:
        return read_result(result)


def read_result(result: dict) -> Completion | BackendError:
    """One result of a message batch: the answer read by the live reader, or its error."""
    if result["type"] != "succeeded":
        e = (result.get("error") or {}).get("error") or {}
        return BackendError(f"batch request {result['type']}: {e.get('type', '')} {e.get('message', '')}".strip(),
                            code=f"batch_{result['type']}")
    return completion_from_anthropic(result["message"])
