"""rlaif.pairs: pair policies, the promises (no tie, no unscored, no chosen == rejected), the card."""
from __future__ import annotations

import json
import random
import re
import statistics

import pytest

from rlaif.errors import InputError, RlaifError
from rlaif.pairs import (PairOptions, build_pairs, build_pairs_from_rows, length_ok, model_family, p_better,
                         read_judged)


def cand(pid, k, score, text=None, error=None, model="local/default", probs=None):
    row = {"id": f"{pid}-{k}", "prompt_id": pid, "candidate": k, "prompt": f"question {pid}",
           "messages": [{"role": "user", "content": f"question {pid}"}],
           "response": text if text is not None else f"answer {pid} number {k}", "model": model,
           "mode": "absolute", "judge": "fake/judge", "rubric": "helpfulness@abc", "method": "logprobs",
           "error": error}
    if error is None:
        row["score"] = score
        row["probs"] = probs or {str(round(score)): 1.0}
    return row


def texts(pairs):
    return {p["chosen"][0]["content"] for p in pairs} | {p["rejected"][0]["content"] for p in pairs}


# ---------------------------------------------------------------------------------------------
def test_all_equal_scores_give_no_pair():
    rows = [cand("p", k, 3.0, text=f"different text {k}") for k in range(4)]
    for policy in ("best_vs_worst", "all_pairs", "best_vs_random"):
        b = build_pairs_from_rows(rows, "absolute", PairOptions(policy=policy, min_margin=0.0))
        assert b.pairs == []
        assert b.stats["dropped"]["prompts_without_pair"] == {"all_tied": 1}


def test_unscored_candidates_never_appear():
    # the unscored candidate would be "best" if its error were ignored, and another is a lone 1.0
    rows = [cand("p", 0, 2.0), cand("p", 1, 4.0), cand("p", 2, None, text="UNSCORED", error="parse_error"),
            cand("q", 0, None, text="UNSCORED-Q", error="api_error:429"), cand("q", 1, 5.0)]
    for policy in ("best_vs_worst", "all_pairs", "best_vs_random"):
        b = build_pairs_from_rows(rows, "absolute", PairOptions(policy=policy))
        assert "UNSCORED" not in texts(b.pairs) and "UNSCORED-Q" not in texts(b.pairs)
        assert len(b.pairs) == 1
        assert b.stats["dropped"]["unscored_rows"] == {"api_error:429": 1, "parse_error": 1}
        assert b.stats["dropped"]["prompts_without_pair"] == {"one_scored_candidate": 1}


def test_identical_texts_never_pair():
    rows = [cand("p", 0, 5.0, text="same"), cand("p", 1, 1.0, text="same"), cand("p", 2, 1.0, text="same")]
    b = build_pairs_from_rows(rows, "absolute")
    assert b.pairs == [] and b.stats["dropped"]["prompts_without_pair"] == {"identical_responses": 1}


def test_best_vs_worst_all_pairs_and_margin():
    rows = [cand("p", k, s) for k, s in enumerate([3.0, 4.9, 1.2, 3.1])]
    bw = build_pairs_from_rows(rows, "absolute", PairOptions(policy="best_vs_worst")).pairs
    assert len(bw) == 1 and (bw[0]["score_chosen"], bw[0]["score_rejected"]) == (4.9, 1.2)
    assert bw[0]["margin"] == pytest.approx(3.7)
    allp = build_pairs_from_rows(rows, "absolute", PairOptions(policy="all_pairs", min_margin=0.5)).pairs
    # gaps: 4.9-3.1, 4.9-3.0, 4.9-1.2, 3.1-1.2, 3.0-1.2 clear 0.5; 3.1-3.0 does not
    assert len(allp) == 5
    assert all(p["margin"] >= 0.5 for p in allp)
    b = build_pairs_from_rows(rows, "absolute", PairOptions(policy="all_pairs", min_margin=0.5))
    assert b.stats["dropped"]["candidate_pairs"] == {"below_margin": 1}
    far = build_pairs_from_rows([cand("p", 0, 3.0), cand("p", 1, 3.2)], "absolute", PairOptions(min_margin=0.5))
    assert far.pairs == [] and far.stats["dropped"]["prompts_without_pair"] == {"below_margin": 1}


def test_rows_without_prompt_id_group_by_prompt():
    rows = [{"prompt": "q1", "response": f"r{k}", "score": float(k), "mode": "absolute"} for k in range(3)]
    rows += [{"prompt": "q2", "response": "same", "score": 1.0}, {"prompt": "q2", "response": "other", "score": 4.0}]
    b = build_pairs_from_rows(rows, "absolute")
    assert [(p["prompt"][0]["content"], p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in b.pairs] == [
        ("q1", "r2", "r0"), ("q2", "other", "same")]
    assert len({p["prompt_id"] for p in b.pairs}) == 2 and all(len(p["prompt_id"]) == 13 for p in b.pairs)


def test_best_vs_random_is_seeded():
    rows = [cand("p", k, s) for k, s in enumerate([5.0, 1.0, 2.0, 3.0, 1.5])]
    picks = {build_pairs_from_rows(rows, "absolute", PairOptions(policy="best_vs_random", seed=s)).pairs[0]["rejected_id"]
             for s in range(12)}
    assert len(picks) > 1                       # random across seeds
    again = [build_pairs_from_rows(rows, "absolute", PairOptions(policy="best_vs_random", seed=3)).pairs[0]["rejected_id"]
             for _ in range(3)]
    assert len(set(again)) == 1                 # reproducible for one seed
    assert all(p == "p-0" for p in [build_pairs_from_rows(rows, "absolute", PairOptions(policy="best_vs_random", seed=s))
                                     .pairs[0]["chosen_id"] for s in range(5)])


def test_length_ratio_bound():
    rows = [cand("p", 0, 5.0, text="x" * 400), cand("p", 1, 1.0, text="y" * 10), cand("p", 2, 2.0, text="z" * 200)]
    b = build_pairs_from_rows(rows, "absolute", PairOptions(policy="best_vs_worst", max_length_ratio=3.0))
    assert len(b.pairs) == 1
    p = b.pairs[0]
    assert (p["chosen_id"], p["rejected_id"]) == ("p-0", "p-2")     # 400 vs 10 is too long a gap; next best pair
    assert b.stats["dropped"]["candidate_pairs"]["length_ratio"] >= 1
    assert length_ok("a" * 30, "b" * 10, 3.0) and not length_ok("a" * 31, "b" * 10, 3.0)


def test_random_inputs_keep_every_promise():
    rng = random.Random(0)
    for trial in range(60):
        rows = []
        for p in range(rng.randint(1, 5)):
            for k in range(rng.randint(1, 5)):
                err = "parse_error" if rng.random() < 0.2 else None
                text = rng.choice(["a", "bb", "ccc", f"t{p}{k}" * rng.randint(1, 30)])
                rows.append(cand(f"p{p}", k, None if err else float(rng.choice([1, 2, 3, 3, 4, 5])), text=text, error=err))
        opts = PairOptions(policy=rng.choice(["best_vs_worst", "all_pairs", "best_vs_random"]),
                           min_margin=rng.choice([0.0, 0.5, 2.0]), max_length_ratio=rng.choice([None, 2.0]))
        b = build_pairs_from_rows(rows, "absolute", opts)
        unscored = {r["response"] for r in rows if r["error"]}
        scored = {}          # identical texts of one prompt are merged: their mean score
        for r in rows:
            if not r["error"]:
                scored.setdefault((r["prompt_id"], r["response"]), []).append(r["score"])
        for pr in b.pairs:
            c, r = pr["chosen"][0]["content"], pr["rejected"][0]["content"]
            assert c != r
            # an unscored text may also exist as a scored candidate: then the pair uses the scored ones' mean
            assert pr["score_chosen"] == pytest.approx(statistics.fmean(scored[(pr["prompt_id"], c)]))
            assert pr["score_rejected"] == pytest.approx(statistics.fmean(scored[(pr["prompt_id"], r)]))
            assert pr["score_chosen"] - pr["score_rejected"] >= opts.min_margin
            assert pr["score_chosen"] > pr["score_rejected"]
            assert length_ok(c, r, opts.max_length_ratio)
        assert b.stats["counts"]["pairs"] == len(b.pairs)


def test_p_better_soft_label():
    assert p_better({"5": 1.0}, {"1": 1.0}) == 1.0
    assert p_better({"3": 1.0}, {"3": 1.0}) == 0.5
    assert p_better({"4": 0.5, "2": 0.5}, {"3": 1.0}) == pytest.approx(0.5)
    assert p_better({"4": 0.8, "2": 0.2}, {"3": 1.0}) == pytest.approx(0.8)
    assert p_better(None, {"3": 1.0}) is None


def pw(i, p_a, consistent, a="answer A", b="answer B is longer", **kw):
    return {"id": f"r{i}", "prompt": f"q{i}", "response_a": f"{a} {i}", "response_b": f"{b} {i}", "mode": "pairwise",
            "p_a": p_a, "preference": "tie" if p_a == 0.5 else ("a" if p_a > 0.5 else "b"), "consistent": consistent,
            "judge": "fake/j", "rubric": "helpfulness@abc", "error": None, **kw}


def test_pairwise_rows_ties_and_inconsistency():
    rows = [pw(0, 0.9, True), pw(1, 0.2, True), pw(2, 0.5, True), pw(3, 0.6, False),
            {**pw(4, 0.5, None), "p_a": None, "error": "parse_error"}]
    b = build_pairs_from_rows(rows, "pairwise", PairOptions(inconsistent="drop"))
    assert [(p["prompt_id"], p["chosen"][0]["content"]) for p in b.pairs] == [("r0", "answer A 0"), ("r1", "answer B is longer 1")]
    assert b.pairs[1]["p_chosen"] == pytest.approx(0.8)
    assert b.stats["dropped"]["prompts_without_pair"] == {"inconsistent": 1, "tie": 1, "unscored": 1}
    assert b.stats["bias"]["position_flip_rate"] == pytest.approx(1 / 4)
    dw = build_pairs_from_rows(rows, "pairwise", PairOptions(inconsistent="downweight", inconsistent_weight=0.3))
    assert [p["weight"] for p in dw.pairs] == [1.0, 1.0, 0.3]
    assert dw.pairs[2]["consistent"] is False


def test_rank_rows():
    row = {"id": "r", "prompt": "q", "responses": ["mid", "best", "worst"], "ranking": [1, 0, 2],
           "scores": [0.1, 1.2, -1.3], "consistent": True, "mode": "rank", "judge": "fake/j", "rubric": "h@1",
           "orders": [{"a": 0, "b": 1, "p_a": 0.3}, {"a": 0, "b": 2, "p_a": 0.8}, {"a": 1, "b": 2, "p_a": 0.9}],
           "models": ["m/a", "m/b", "m/c"], "error": None}
    b = build_pairs_from_rows([row], "rank")
    assert len(b.pairs) == 1
    p = b.pairs[0]
    assert (p["chosen"][0]["content"], p["rejected"][0]["content"], p["p_chosen"]) == ("best", "worst", 0.9)
    assert p["model_chosen"] == "m/b"
    bad = build_pairs_from_rows([{**row, "consistent": False}], "rank")
    assert bad.pairs == [] and bad.stats["dropped"]["prompts_without_pair"] == {"inconsistent": 1}


def test_self_preference_measured_with_mixed_samplers():
    rows = []
    for i in range(4):   # the judge (gpt family) picks its own family's answer 3 times out of 4
        own_wins = i < 3
        rows += [cand(f"p{i}", 0, 5.0 if own_wins else 1.0, model="openai/gpt-4o-mini"),
                 cand(f"p{i}", 1, 1.0 if own_wins else 5.0, model="anthropic/claude-3-5-haiku")]
    for r in rows:
        r["judge"] = "openai/gpt-4o"
    sp = build_pairs_from_rows(rows, "absolute").stats["bias"]["self_preference"]
    assert sp["mixed_pairs"] == 4 and sp["own_family_win_rate"] == 0.75
    same = build_pairs_from_rows([cand("p", 0, 5.0), cand("p", 1, 1.0)], "absolute").stats["bias"]["self_preference"]
    assert same["same_family"] is False                      # fake/judge vs local/default
    rows2 = [dict(r, judge="local/default") for r in [cand("p", 0, 5.0), cand("p", 1, 1.0)]]
    s2 = build_pairs_from_rows(rows2, "absolute").stats["bias"]["self_preference"]
    assert s2["same_family"] is True and "same model family" in s2["note"]


def test_model_family():
    assert model_family("openai/gpt-4o-mini") == "gpt"
    assert model_family("anthropic/claude-3-5-haiku-latest") == "claude"
    assert model_family("local/meta-llama/Llama-3.1-8B-Instruct") == "llama"
    assert model_family("local/default") == "smollm"
    assert model_family("litellm/groq/llama3-8b") == "llama"


# ---------------------------------------------------------------------------------------------
def test_read_judged_errors_name_line_and_field(tmp_path):
    f = tmp_path / "j.jsonl"
    f.write_text(json.dumps(cand("p", 0, 3.0)) + "\n" + json.dumps({"prompt": "x", "response": "y", "mode": "absolute"}) + "\n")
    with pytest.raises(InputError, match=r"j.jsonl:2: field 'score'"):
        read_judged(f)
    f.write_text(json.dumps(cand("p", 0, 3.0)) + "\n" + json.dumps(pw(1, 0.9, True)) + "\n")
    with pytest.raises(InputError, match=r"j.jsonl:2: field 'mode'"):
        read_judged(f)
    f.write_text("{not json\n")
    with pytest.raises(InputError, match=r"j.jsonl:1"):
        read_judged(f)


def _judged_file(tmp_path, rows):
    f = tmp_path / "judged.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def _example_rows():
    rng = random.Random(7)
    rows = []
    for p in range(12):
        for k in range(4):
            err = "parse_error" if (p, k) in {(0, 1), (3, 2), (5, 0)} else None
            score = None if err else round(rng.uniform(1, 5), 3)
            if p == 7:
                score = None if err else 3.0             # an all-tied prompt
            probs = None if err else {"1": 0.1, "2": 0.1, "3": 0.2, "4": 0.3, "5": 0.3} if k % 2 else {"3": 0.5, "4": 0.5}
            rows.append(cand(f"p{p}", k, score, text=f"response {p}.{k} " + "word " * rng.randint(1, 40), error=err, probs=probs))
    return rows


def test_card_numbers_equal_those_recomputed_from_the_dataset(tmp_path):
    from datasets import load_from_disk

    rows = _example_rows()
    res = build_pairs(_judged_file(tmp_path, rows), tmp_path / "ds", policy="all_pairs", min_margin=0.3,
                      formats=["parquet", "jsonl"])
    ds = load_from_disk(str(tmp_path / "ds"))
    stats = json.loads((tmp_path / "ds" / "rlaif_stats.json").read_text())
    card = (tmp_path / "ds" / "README.md").read_text()
    assert len(ds) == stats["counts"]["pairs"] == len(res.pairs) > 0
    assert f"| pairs | {len(ds)} |" in card
    assert stats["counts"]["prompts_with_pairs"] == len(set(ds["prompt_id"]))
    assert f"| prompts with pairs | {len(set(ds['prompt_id']))} |" in card
    # unscored rows by reason, from the input
    assert stats["dropped"]["unscored_rows"] == {"parse_error": 3}
    assert "| unscored judged row | parse_error | 3 |" in card
    assert stats["dropped"]["prompts_without_pair"].get("all_tied") == 1
    for col, key in (("score_chosen", "chosen"), ("score_rejected", "rejected"), ("margin", "margin")):
        vals = ds[col]
        assert stats["scores"][key]["mean"] == pytest.approx(statistics.fmean(vals))
        assert stats["scores"][key]["n"] == len(vals)
        assert f"| {key} | {len(vals)} | {statistics.fmean(vals):.3f} |" in card
    lc = [len(c[0]["content"]) for c in ds["chosen"]]
    lr = [len(r[0]["content"]) for r in ds["rejected"]]
    assert stats["length"]["chosen_mean_chars"] == pytest.approx(statistics.fmean(lc))
    assert stats["length"]["rejected_mean_chars"] == pytest.approx(statistics.fmean(lr))
    assert f"mean chosen length: {statistics.fmean(lc):.1f} chars" in card
    assert f"mean rejected length: {statistics.fmean(lr):.1f} chars" in card
    assert stats["bias"]["chosen_longer_rate"] == pytest.approx(sum(a > b for a, b in zip(lc, lr)) / len(ds))
    assert stats["scores"]["p_chosen_mean"] == pytest.approx(statistics.fmean(ds["p_chosen"]))
    # the promises, on the saved dataset
    unscored = {r["response"] for r in rows if r["error"]}
    for ex in ds:
        assert ex["chosen"][0]["content"] != ex["rejected"][0]["content"]
        assert ex["chosen"][0]["content"] not in unscored and ex["rejected"][0]["content"] not in unscored
        assert ex["prompt"][0]["role"] == "user" and ex["chosen"][0]["role"] == "assistant"
    # exports hold the same rows
    exported = [json.loads(line) for line in (tmp_path / "ds" / "pairs.jsonl").read_text().splitlines()]
    assert len(exported) == len(ds) and (tmp_path / "ds" / "pairs.parquet").exists()
    assert re.search(r"sha256 `[0-9a-f]{64}`", card)


def test_no_pairs_writes_nothing(tmp_path):
    f = _judged_file(tmp_path, [cand("p", k, 3.0) for k in range(3)])
    with pytest.raises(RlaifError, match="no preference pairs") as e:
        build_pairs(f, tmp_path / "ds")
    assert "all_tied=1" in str(e.value)
    assert not (tmp_path / "ds").exists()


def test_refuses_to_overwrite_a_foreign_folder_and_replaces_its_own(tmp_path):
    f = _judged_file(tmp_path, [cand("p", 0, 5.0), cand("p", 1, 1.0)])
    other = tmp_path / "mine"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(RlaifError, match="not an rlaif dataset"):
        build_pairs(f, other)
    assert (other / "precious.txt").read_text() == "keep me"
    build_pairs(f, tmp_path / "ds")
    build_pairs(f, tmp_path / "ds", formats=["jsonl"])              # a rebuild replaces the old one whole
    assert (tmp_path / "ds" / "pairs.jsonl").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds.")]


def test_push_to_hub_without_token_fails_clearly_before_writing(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    f = _judged_file(tmp_path, [cand("p", 0, 5.0), cand("p", 1, 1.0)])
    with pytest.raises(RlaifError, match="needs a Hugging Face token"):
        build_pairs(f, tmp_path / "ds", push_to_hub_repo="me/my-prefs")
    assert not (tmp_path / "ds").exists()


def test_cli_pairs(tmp_path, capsys):
    from rlaif.cli import main

    f = _judged_file(tmp_path, _example_rows())
    assert main(["pairs", str(f), "-o", str(tmp_path / "ds"), "--policy", "best_vs_worst", "--format", "parquet"]) == 0
    out = capsys.readouterr().out
    assert "pairs from" in out and "bias audit" in out and "position flip rate" in out
    assert main(["pairs", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "ds3")]) == 2
