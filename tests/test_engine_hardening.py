"""Engine and HTTP backend hardening (issue 15): 19 (connection refused is `connection_error`, not
`timeout`), 20 (credentials in a base URL refused at construction, never shown), 21 (an auth failure
stops the whole job: no further request), 25 (an absurd --tpm is refused, a long wait announced)."""
from __future__ import annotations

import asyncio
import json
import socket

import pytest

from rlaif.engine import Engine
from rlaif.errors import BackendError, JobStopped
from rlaif.records import Completion, GenParams

MSG = [{"role": "user", "content": "hello"}]


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
def test_connection_refused_is_connection_error(transport):
    from rlaif.backends.openai import OpenAIBackend

    b = OpenAIBackend("m", base_url=f"http://127.0.0.1:{_closed_port()}/v1", transport=transport)
    eng = Engine(b, max_retries=0, timeout=20)

    async def go():
        try:
            return await eng.complete(MSG, GenParams(max_tokens=2))
        finally:
            await b.aclose()
    with pytest.raises(BackendError) as e:
        asyncio.run(go())
    assert e.value.code == "connection_error", str(e.value)


def test_engine_maps_os_connection_errors(fake_backend):
    def refuse(m, p):
        raise ConnectionRefusedError(111, "Connection refused")
    eng = Engine(fake_backend(responder=refuse), max_retries=0)
    with pytest.raises(BackendError) as e:
        asyncio.run(eng.complete(MSG, GenParams()))
    assert e.value.code == "connection_error"


@pytest.mark.parametrize("cls,env", [("rlaif.backends.openai:OpenAIBackend", None),
                                     ("rlaif.backends.anthropic:AnthropicBackend", "ANTHROPIC_API_KEY"),
                                     ("rlaif.backends.litellm:LiteLLMBackend", None)])
def test_credentials_in_base_url_refused(cls, env, monkeypatch, capsys):
    import importlib
    mod, name = cls.split(":")
    if env:
        monkeypatch.setenv(env, "sk-ant-test-key-123456")
    Backend = getattr(importlib.import_module(mod), name)
    with pytest.raises(BackendError) as e:
        Backend("openai/m" if "litellm" in mod else "m", base_url="http://alice:hunter2secret@localhost:8000/v1")
    assert e.value.code == "bad_base_url"
    assert "hunter2secret" not in str(e.value) and "alice" not in str(e.value)
    assert "hunter2secret" not in capsys.readouterr().err


def test_auth_failure_stops_the_job(fake_backend):
    calls = []

    def deny(m, p):
        calls.append(m[0]["content"])
        raise BackendError("openai HTTP 401 (http_401): invalid api key", code="http_401", status=401)

    eng = Engine(fake_backend(responder=deny), concurrency=1)

    async def go():
        return await asyncio.gather(*(eng.complete([{"role": "user", "content": str(i)}], GenParams())
                                      for i in range(20)), return_exceptions=True)
    out = asyncio.run(go())
    assert len(calls) == 1                     # one request sent, not twenty
    assert all(isinstance(x, JobStopped) for x in out)
    assert "rejected the request's credentials" in str(out[0])


def test_judge_cli_exits_nonzero_after_first_auth_failure(tmp_path, capsys, monkeypatch):
    from rlaif.backends import fake
    from rlaif.cli import main

    calls = []

    def deny(m, p):
        calls.append(1)
        raise BackendError("HTTP 401: bad key", code="http_401", status=401)
    monkeypatch.setitem(fake.BUILTIN_RESPONDERS, "deny", deny)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"prompt": "q", "response": f"r{i}"}) + "\n" for i in range(30)))
    rc = main(["judge", str(src), "--rubric", "helpfulness", "--judge", "fake/deny", "-o", str(tmp_path / "o.jsonl"),
               "--concurrency", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "credentials" in err and "Traceback" not in err
    assert len(calls) == 1
    assert not (tmp_path / "o.jsonl").exists()


def test_absurd_tpm_is_refused(fake_backend):
    eng = Engine(fake_backend(responder=lambda m, p: "3"), tpm=10)
    with pytest.raises(JobStopped, match="--tpm 10 is smaller than one request"):
        asyncio.run(eng.complete(MSG, GenParams(max_tokens=50)))


def test_long_rate_limit_wait_is_announced(fake_backend, capsys):
    eng = Engine(fake_backend(responder=lambda m, p: Completion(text="3")), rpm=1)
    eng.rpm.level = 0.0                               # the bucket is empty: one request a minute
    eng._check_rates(10)                              # the announcement itself
    assert "waiting ~60 s for the rate limit (--rpm 1" in capsys.readouterr().err
    assert eng.expected_wait(3, 100) == pytest.approx(120.0)
    assert Engine(fake_backend(), tpm=1000).expected_wait(10, 250) == pytest.approx(90.0)


def test_expected_wait_is_said_up_front(fake_backend, capsys):
    eng = Engine(fake_backend(), tpm=1000)
    assert eng.announce_expected_wait(3, 900) == pytest.approx(102.0)
    assert "make 3 requests of ~900 tokens take at least 2 min" in capsys.readouterr().err
    assert Engine(fake_backend(), tpm=100_000).announce_expected_wait(3, 900) == 0.0
    assert capsys.readouterr().err == ""
