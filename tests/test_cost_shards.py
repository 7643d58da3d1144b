"""Cost: price table and overrides, dry run, --max-cost through judge(). Sharding and merge."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rlaif import judge
from rlaif.backends.fake import FakeBackend
from rlaif.cost import Price, count_tokens, load_price_file, price_for
from rlaif.errors import ConfigError, RlaifError
from rlaif.records import Completion, Usage
from rlaif.shards import merge, parse_shard, select_shard, shard_of


def rows(n, pairwise=False):
    if pairwise:
        return [{"id": i, "prompt": f"Q{i}", "response_a": f"a{i}", "response_b": f"bb{i}"} for i in range(n)]
    return [{"id": i, "prompt": f"Question number {i}?", "response": f"Answer {i}."} for i in range(n)]


def scoring(messages, params):
    text = messages[-1]["content"]
    return Completion(text="", option_logprobs={"4": -0.2, "2": -1.0 - len(text) % 5, "A": -0.3, "B": -0.9},
                      usage=Usage(1000, 1))


# -- prices ---------------------------------------------------------------------------------------
def test_litellm_prices_and_overrides(tmp_path):
    p = price_for("openai/gpt-4o-mini")
    assert p is not None and p.input > 0 and p.output > p.input and p.source.startswith("litellm:")
    assert price_for("openai/gpt-4o-mini", batch=True).input == pytest.approx(p.input / 2)
    assert price_for("openai/no-such-model-xyz") is None        # unknown is None, never 0
    assert price_for("local/default").cost(1000, 1000) == 0
    f = tmp_path / "prices.yaml"
    f.write_text("openai/gpt-4o-mini: {input: 1.0, output: 2.0}\nmy/model: {input: 0, output: 0}\n")
    table = load_price_file(f)
    assert price_for("openai/gpt-4o-mini", table).cost(1_000_000, 500_000) == pytest.approx(2.0)
    assert price_for("my/model", table).cost(10, 10) == 0


def test_bad_price_file_lists_every_problem(tmp_path):
    f = tmp_path / "prices.yaml"
    f.write_text("a/b: {input: -1, output: 2}\nc/d: {inp: 1, output: x}\ne/f: 3\n")
    with pytest.raises(ConfigError) as ei:
        load_price_file(f)
    msg = str(ei.value)
    assert "a/b.input" in msg and "c/d" in msg and "c/d.output" in msg and "e/f" in msg and "prices.yaml" in msg


def test_token_count_is_reasonable():
    n = count_tokens([{"role": "user", "content": "word " * 400}])
    assert 300 <= n <= 600


# -- dry run and budget through judge() -------------------------------------------------------------
def test_dry_run_counts_both_orders_and_sends_nothing(tmp_path):
    b = FakeBackend("t", responder=scoring)
    out, s = judge(rows(10, pairwise=True), "helpfulness", judge=b, dry_run=True,
                   prices={"fake/t": Price(1e-6, 1e-6, "test")}, output=tmp_path / "o.jsonl")
    e = s.estimate
    assert out == [] and len(b.calls) == 0 and not (tmp_path / "o.jsonl").exists()
    assert e["rows"] == 10 and e["requests"] == 20 and e["cached"] == 0
    assert e["max_completion_tokens"] == 20                     # logprob judging: 1 token each
    assert e["cost"] == pytest.approx((e["prompt_tokens"] + 20) * 1e-6)
    # after a real run, the same dry run finds everything in the ledger: nothing to spend
    judge(rows(10, pairwise=True), "helpfulness", judge=b, cache=True, ledger=tmp_path / "l.sqlite")
    _, s2 = judge(rows(10, pairwise=True), "helpfulness", judge=b, dry_run=True, cache=True,
                  ledger=tmp_path / "l.sqlite", prices={"fake/t": Price(1e-6, 1e-6, "test")})
    assert s2.estimate["cached"] == 20 and s2.estimate["prompt_tokens"] == 0 and s2.estimate["cost"] == 0


def test_max_cost_stops_cleanly_and_a_rerun_finishes(tmp_path):
    b = FakeBackend("t", responder=scoring)
    prices = {"fake/t": Price(1e-5, 0.0, "test")}             # 1000 prompt tokens = 0.01 USD a request
    out_path = tmp_path / "o.jsonl"
    out, s = judge(rows(20), "helpfulness", judge=b, cache=True, ledger=tmp_path / "l.sqlite", concurrency=1,
                   max_cost=0.055, prices=prices, output=out_path)
    scored = [r for r in out if r["error"] is None]
    assert len(out) == 20 and 5 <= len(scored) <= 6
    assert all(r["error"] == "budget" for r in out[len(scored):]) and all(r["error"] is None for r in out[:len(scored)])
    assert s.unscored["budget"] == 20 - len(scored) and s.run["cost"] <= 0.055 + 0.01
    assert [json.loads(x) for x in out_path.read_text().splitlines()] == out     # finished rows kept, on disk
    calls = len(b.calls)
    out2, s2 = judge(rows(20), "helpfulness", judge=b, cache=True, ledger=tmp_path / "l.sqlite", max_cost=1.0,
                     prices=prices, output=out_path)
    assert all(r["error"] is None for r in out2) and out2[:len(scored)] == scored
    assert len(b.calls) - calls == 20 - len(scored)         # only the budget rows were asked


def test_cli_dry_run_prints_estimate(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows(4)))
    r = subprocess.run([sys.executable, "-m", "rlaif", "judge", str(inp), "-r", "helpfulness", "-j", "fake/x",
                        "--dry-run"], capture_output=True, text=True, env={**__import__("os").environ,
                                                                         "RLAIF_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "4 rows -> 4 requests" in r.stderr and "estimated cost: at most $0.0000" in r.stderr
    assert "chars/4" in r.stderr or "tiktoken" in r.stderr


# -- shards -----------------------------------------------------------------------------------------
def test_parse_shard():
    assert parse_shard("2/8") == (2, 8)
    for bad in ("8/8", "-1/3", "a/b", "3", "1/0"):
        with pytest.raises(RlaifError):
            parse_shard(bad)


def test_shards_are_a_stable_partition():
    rs = rows(200) + [{"prompt": f"p{i}", "response": "r"} for i in range(50)]     # some rows without id
    parts = [select_shard(rs, i, 4) for i in range(4)]
    flat = sorted(k for p in parts for k in p)
    assert flat == list(range(250))                      # disjoint and complete
    assert all(20 < len(p) < 110 for p in parts)         # roughly balanced
    # pinned: a different machine/Python/hash seed computes the same partition
    assert [shard_of({"id": i}, 4) for i in range(10)] == [2, 1, 0, 2, 2, 0, 2, 2, 3, 1]
    assert shard_of({"prompt": "p", "response": "r"}, 7) == 2


def test_sharded_runs_merge_to_the_unsharded_output(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows(40)))
    b = FakeBackend("t", responder=scoring)
    judge(inp, "helpfulness", judge=b, output=tmp_path / "full.jsonl")
    outs = []
    for i in range(3):
        o = tmp_path / f"s{i}.jsonl"
        judge(inp, "helpfulness", judge=b, output=o, shard=f"{i}/3")
        outs.append(o)
    assert sum(len(o.read_text().splitlines()) for o in outs) == 40
    n = merge(outs, tmp_path / "merged.jsonl", input=inp)
    assert n == 40 and (tmp_path / "merged.jsonl").read_bytes() == (tmp_path / "full.jsonl").read_bytes()
    with pytest.raises(RlaifError, match="in no shard output"):
        merge(outs[:2], tmp_path / "m2.jsonl", input=inp)
    with pytest.raises(Exception, match="already present"):
        merge([outs[0], outs[0]], tmp_path / "m3.jsonl")
    r = subprocess.run([sys.executable, "-m", "rlaif", "merge", *map(str, outs), "-o", str(tmp_path / "m4.jsonl"),
                        "--input", str(inp)], capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / "m4.jsonl").read_bytes() == (tmp_path / "full.jsonl").read_bytes()
