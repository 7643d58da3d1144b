"""Provider batch APIs against wire-shaped fakes (httpx.MockTransport): OpenAI Batch (files +
batches + output/error files) and Anthropic Message Batches (create, poll, results JSONL)."""
from __future__ import annotations

import json
import re

import httpx
import pytest

import rlaif.judging.batch as batch_mod
from tests.openai_server import completion_body
from rlaif import RlaifError, judge
from rlaif.records import Completion, Usage


def rows(n):
    return [{"id": i, "prompt": f"Question {i}?", "response": f"Answer number {i}."} for i in range(n)]


class LiveCounter:
    """A judge backend that must (almost) never be called live in batch mode."""

    supports_logprobs = True

    def __init__(self, name, api_key="sk-batch-SECRET-1", logprobs=True):
        self.name, self.api_key, self.live = name, api_key, []
        self.supports_logprobs = logprobs

    async def complete(self, messages, params):
        self.live.append(messages)
        body = completion_body({"messages": messages, "max_tokens": params.max_tokens, "logprobs": bool(params.top_logprobs),
                                "top_logprobs": params.top_logprobs})
        ch = body["choices"][0]
        olp = None
        if ch["logprobs"]:
            olp = batch_mod.option_logprobs(ch["logprobs"]["content"][0]["top_logprobs"], params.options)
        return Completion(ch["message"]["content"], option_logprobs=olp, usage=Usage(body["usage"]["prompt_tokens"], 1))


class FakeOpenAIBatches:
    """Just enough of api.openai.com/v1 files + batches, with the real JSON shapes."""

    def __init__(self, fail_first=True, polls_before_done=1):
        self.files, self.batches, self.calls = {}, {}, []
        self.fail_first, self.polls_before_done = fail_first, polls_before_done

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.calls.append((req.method, req.url.path))
        assert req.headers["authorization"] == "Bearer sk-batch-SECRET-1"
        path = req.url.path
        if req.method == "POST" and path == "/v1/files":
            body = req.content
            assert b'name="purpose"' in body and b"batch" in body
            lines = [json.loads(x) for x in re.findall(rb'^\{"custom_id".*$', body, re.M)]
            assert lines and all(x["method"] == "POST" and x["url"] == "/v1/chat/completions" for x in lines)
            fid = f"file-in{len(self.files)}"
            self.files[fid] = lines
            return httpx.Response(200, json={"id": fid, "object": "file", "bytes": len(body), "created_at": 1711471533,
                                             "filename": "rlaif-batch.jsonl", "purpose": "batch"})
        if req.method == "POST" and path == "/v1/batches":
            b = json.loads(req.content)
            assert b["endpoint"] == "/v1/chat/completions" and b["completion_window"] == "24h"
            bid = f"batch_{len(self.batches)}"
            self.batches[bid] = {"id": bid, "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
                                 "input_file_id": b["input_file_id"], "completion_window": "24h", "status": "validating",
                                 "output_file_id": None, "error_file_id": None, "created_at": 1711471533,
                                 "in_progress_at": None, "expires_at": 1711557933, "finalizing_at": None,
                                 "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None,
                                 "cancelled_at": None, "request_counts": {"total": 0, "completed": 0, "failed": 0},
                                 "metadata": b.get("metadata"), "_polls": 0}
            return httpx.Response(200, json={k: v for k, v in self.batches[bid].items() if not k.startswith("_")})
        m = re.fullmatch(r"/v1/batches/(batch_\d+)", path)
        if req.method == "GET" and m:
            b = self.batches[m.group(1)]
            b["_polls"] += 1
            lines = self.files[b["input_file_id"]]
            if b["_polls"] > self.polls_before_done:
                out, err = [], []
                for i, line in enumerate(lines):
                    if self.fail_first and i == 0 and m.group(1) == "batch_0":
                        err.append({"id": f"batch_req_{i}", "custom_id": line["custom_id"],
                                    "response": {"status_code": 400, "request_id": f"req_{i}",
                                                 "body": {"error": {"message": "Invalid 'messages'", "type": "invalid_request_error",
                                                                    "param": "messages", "code": None}}}, "error": None})
                    else:
                        out.append({"id": f"batch_req_{i}", "custom_id": line["custom_id"],
                                    "response": {"status_code": 200, "request_id": f"req_{i}", "body": completion_body(line["body"])},
                                    "error": None})
                self.files[f"file-out-{b['id']}"] = out
                self.files[f"file-err-{b['id']}"] = err
                b.update(status="completed", output_file_id=f"file-out-{b['id']}",
                         error_file_id=f"file-err-{b['id']}" if err else None,
                         request_counts={"total": len(lines), "completed": len(out), "failed": len(err)})
            else:
                b.update(status="in_progress", request_counts={"total": len(lines), "completed": 0, "failed": 0})
            return httpx.Response(200, json={k: v for k, v in b.items() if not k.startswith("_")})
        m = re.fullmatch(r"/v1/files/([\w-]+)/content", path)
        if req.method == "GET" and m:
            return httpx.Response(200, text="".join(json.dumps(x) + "\n" for x in self.files[m.group(1)]))
        return httpx.Response(404, json={"error": {"message": f"no route {path}", "type": "invalid_request_error"}})


@pytest.fixture
def mock_http(monkeypatch):
    def install(handler):
        monkeypatch.setattr(batch_mod, "make_http_client",
                            lambda base_url, headers: httpx.Client(base_url=base_url, headers=headers,
                                                                   transport=httpx.MockTransport(handler)))
    return install


def test_openai_batch_fills_the_ledger_then_judges_from_it(tmp_path, mock_http, monkeypatch):
    monkeypatch.setenv("RLAIF_CACHE_DIR", str(tmp_path))
    svc = FakeOpenAIBatches()
    mock_http(svc)
    b = LiveCounter("openai/gpt-4o-mini")
    out, s = judge(rows(6), "helpfulness", judge=b, batch=True, batch_poll=0, output=tmp_path / "o.jsonl")
    assert all(r["error"] is None and r["score"] is not None for r in out)
    assert len(b.live) == 1                  # only the request the batch failed (HTTP 400 line) went live
    rep = s.run["batch"]
    assert rep["answered"] == 5 and rep["failed"] == 1 and rep["batches"] == ["batch_0"]
    assert rep["cost"] > 0                   # gpt-4o-mini has a (half) batch price in LiteLLM's table
    # same verdicts as a live run
    b2 = LiveCounter("openai/gpt-4o-mini")
    out2, _ = judge(rows(6), "helpfulness", judge=b2, cache=False)
    assert [r["score"] for r in out] == [r["score"] for r in out2]
    assert not list((tmp_path / "batches").glob("*.json"))        # state removed once collected
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert b"sk-batch-SECRET-1" not in f.read_bytes()


def test_openai_batch_resumes_by_job_id(tmp_path, mock_http, monkeypatch):
    monkeypatch.setenv("RLAIF_CACHE_DIR", str(tmp_path))
    svc = FakeOpenAIBatches(fail_first=False, polls_before_done=3)
    mock_http(svc)

    class Killed(Exception):
        pass

    def die(_):
        raise Killed()

    monkeypatch.setattr(batch_mod.time, "sleep", die)          # the process dies while waiting
    with pytest.raises(Killed):
        judge(rows(4), "helpfulness", judge=LiveCounter("openai/gpt-4o-mini"), batch=True, batch_poll=1)
    state = list((tmp_path / "batches").glob("*.json"))
    assert len(state) == 1 and json.loads(state[0].read_text())["batch_id"] == "batch_0"
    monkeypatch.setattr(batch_mod.time, "sleep", lambda s: None)
    b = LiveCounter("openai/gpt-4o-mini")
    out, s = judge(rows(4), "helpfulness", judge=b, batch=True, batch_poll=1)
    assert [c for c in svc.calls if c == ("POST", "/v1/batches")] == [("POST", "/v1/batches")]   # not paid twice
    assert s.run["batch"]["batches"] == ["batch_0"] and not b.live
    assert all(r["score"] is not None for r in out)


class FakeAnthropicBatches:
    def __init__(self):
        self.batches, self.calls = {}, []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.calls.append((req.method, req.url.path))
        assert req.headers["x-api-key"] == "sk-ant-SECRET" and req.headers["anthropic-version"] == "2023-06-01"
        path = req.url.path
        if req.method == "POST" and path == "/v1/messages/batches":
            reqs = json.loads(req.content)["requests"]
            for r in reqs:
                p = r["params"]
                assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", r["custom_id"])
                assert all(m["role"] in ("user", "assistant") for m in p["messages"]) and p["max_tokens"] > 1
                assert "system" in p                          # the system message moved to the top-level field
                assert p["temperature"] == 0.0 and "extra_body" not in p        # what a live request sends
                assert p["tools"][0]["name"] == "record_verdict"
            bid = "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF"
            self.batches[bid] = reqs
            return httpx.Response(200, json={"id": bid, "type": "message_batch", "processing_status": "in_progress",
                                             "request_counts": {"processing": len(reqs), "succeeded": 0, "errored": 0,
                                                                "canceled": 0, "expired": 0},
                                             "ended_at": None, "created_at": "2024-09-24T18:37:24.100435Z",
                                             "expires_at": "2024-09-25T18:37:24.100435Z", "cancel_initiated_at": None,
                                             "results_url": None})
        m = re.fullmatch(r"/v1/messages/batches/(msgbatch_\w+)", path)
        if req.method == "GET" and m:
            n = len(self.batches[m.group(1)])
            return httpx.Response(200, json={"id": m.group(1), "type": "message_batch", "processing_status": "ended",
                                             "request_counts": {"processing": 0, "succeeded": n - 1, "errored": 1,
                                                                "canceled": 0, "expired": 0},
                                             "ended_at": "2024-09-24T19:37:24Z", "created_at": "2024-09-24T18:37:24Z",
                                             "expires_at": "2024-09-25T18:37:24Z", "cancel_initiated_at": None,
                                             "results_url": f"https://api.anthropic.com/v1/messages/batches/{m.group(1)}/results"})
        m = re.fullmatch(r"/v1/messages/batches/(msgbatch_\w+)/results", path)
        if req.method == "GET" and m:
            lines = []
            for i, r in enumerate(self.batches[m.group(1)]):
                if i == 0:
                    lines.append({"custom_id": r["custom_id"], "result": {"type": "errored", "error": {
                        "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}}})
                else:
                    lines.append({"custom_id": r["custom_id"], "result": {"type": "succeeded", "message": {
                        "id": f"msg_{i}", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
                        "content": [{"type": "text", "text": f"Clear and correct. Score: {1 + i % 5}"}],
                        "stop_reason": "end_turn", "stop_sequence": None,
                        "usage": {"input_tokens": 310, "output_tokens": 9}}}})
            return httpx.Response(200, text="".join(json.dumps(x) + "\n" for x in lines))
        return httpx.Response(404, json={"type": "error", "error": {"type": "not_found_error", "message": path}})


def test_anthropic_message_batch(tmp_path, mock_http, monkeypatch):
    monkeypatch.setenv("RLAIF_CACHE_DIR", str(tmp_path))
    svc = FakeAnthropicBatches()
    mock_http(svc)

    from rlaif.backends.anthropic import AnthropicBackend

    class Claude(AnthropicBackend):       # the real request building; live calls counted, not sent
        live: list = []

        async def complete(self, messages, params):
            self.live.append(messages)
            return Completion("Live answer. Score: 3", usage=Usage(300, 5))

    b = Claude("claude-3-5-haiku-latest", api_key="sk-ant-SECRET")
    out, s = judge(rows(5), "helpfulness", judge=b, batch=True, batch_poll=0)
    assert s.run["batch"]["answered"] == 4 and s.run["batch"]["failed"] == 1 and len(b.live) == 1
    assert [r["score"] for r in out] == [3.0, 2.0, 3.0, 4.0, 5.0]
    assert all(r["method"] == "generative" for r in out)


def test_batch_refuses_other_providers_and_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLAIF_CACHE_DIR", str(tmp_path))
    from rlaif.backends.fake import FakeBackend

    with pytest.raises(RlaifError, match="--batch works with"):
        judge(rows(2), "helpfulness", judge=FakeBackend("x", responder=lambda m, p: "Score: 3"), batch=True, cache=True)
    with pytest.raises(RlaifError, match="no-cache"):
        judge(rows(2), "helpfulness", judge=LiveCounter("openai/gpt-4o-mini"), batch=True, cache=False)


def test_missing_key_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("RLAIF_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    from rlaif.errors import BackendError

    with pytest.raises(BackendError, match="OPENAI_API_KEY"):
        judge(rows(2), "helpfulness", judge=LiveCounter("openai/gpt-4o-mini", api_key=None), batch=True)
