"""Duplicate rows are refused before any judging call (issue 15, defect 5): by id when reading the
input (rlaif.io.read_rows, used by judge and jury), and by identity for a sharded run."""
from __future__ import annotations

import json

import pytest

from rlaif.errors import InputError
from rlaif.judge import judge
from rlaif.records import Completion
from rlaif.shards import select_shard


def test_judge_refuses_duplicate_ids_before_any_call(tmp_path, fake_backend):
    calls = []

    def responder(messages, params):
        calls.append(1)
        return Completion(text="3", option_logprobs={"3": 0.0})

    p = tmp_path / "in.jsonl"
    p.write_text("".join(json.dumps({"id": i % 2, "prompt": "q", "response": f"r{i}"}) + "\n" for i in range(3)))
    with pytest.raises(InputError) as e:
        judge(p, "helpfulness", judge=fake_backend(responder=responder))
    assert e.value.line == 3 and "first on line 1" in str(e.value)
    assert calls == []


def test_sharded_run_refuses_identical_rows_before_any_call(tmp_path, fake_backend):
    calls = []

    def responder(messages, params):
        calls.append(1)
        return Completion(text="3", option_logprobs={"3": 0.0})

    rows = [{"prompt": "q", "response": r} for r in ("same", "other", "same")]
    with pytest.raises(InputError, match="same content"):
        judge(rows, "helpfulness", judge=fake_backend(responder=responder), shard="0/2")
    assert calls == []
    with pytest.raises(InputError) as e:
        select_shard(rows, 0, 2, lines=[1, 4, 9], path="in.jsonl")
    assert e.value.line == 9 and "line 1" in str(e.value)
    assert select_shard(rows[:2], 0, 1) == [0, 1]
