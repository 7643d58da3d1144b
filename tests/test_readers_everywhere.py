"""Every reader goes through rlaif.io (issue 15, 9-12/26/27): a price file, a report input and a
shard merge get one clear InputError/ConfigError for non-UTF-8 bytes, a BOM, a folder, NaN."""
from __future__ import annotations

import json

import pytest

from rlaif.errors import ConfigError, InputError, RlaifError
from rlaif.shards import merge


def test_price_file(tmp_path):
    from rlaif.cost import load_price_file

    p = tmp_path / "prices.yaml"
    p.write_bytes(b"\xef\xbb\xbfopenai/x: {input: 1, output: 2}\n")
    assert "openai/x" in load_price_file(p)
    p.write_bytes(b"openai/x: {input: 1, output: 2}\nopenai/x: {input: 3, output: 4}\n")
    with pytest.raises(ConfigError, match="given twice"):
        load_price_file(p)
    with pytest.raises(ConfigError, match="folder"):
        load_price_file(tmp_path)


def test_report_input(tmp_path):
    from rlaif.report import render

    p = tmp_path / "r.json"
    p.write_bytes(b'{"kind": "rubric_test", "x": NaN}')
    with pytest.raises(InputError, match="NaN"):
        render(p)
    p.write_bytes(b'{"kind": "caf\xe9"}')
    with pytest.raises(InputError, match="not UTF-8"):
        render(p)


def test_merge_of_shards(tmp_path):
    a = tmp_path / "a.jsonl"
    a.write_bytes(b'{"id": 1, "prompt": "q", "response": "r", "score": 3}\n{"id": 2, "prompt": "caf\xe9"}\n')
    with pytest.raises(InputError) as e:
        merge([a], tmp_path / "out.jsonl")
    assert e.value.line == 2 and "not UTF-8" in str(e.value)
    b = tmp_path / "b.jsonl"
    b.write_text(json.dumps({"id": 1, "prompt": "q", "response": "r", "score": 3}) + "\n")
    with pytest.raises(RlaifError, match="already present"):
        merge([b, b], tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
