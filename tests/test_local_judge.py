"""The local transformers judge: real SmolLM2 scores, and pairwise logic proven on a model whose logits we control."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from rlaif.backends.local import LocalBackend
from rlaif.judge import judge
from rlaif.rubrics import load_rubric


class ControlledJudge(torch.nn.Module):
    """A 'model' whose next-token logits we set: it reads the rendered prompt and puts
    log-probability log(p) on the token 'A' and log(1-p) on 'B', where p = prefer(first, second)."""

    def __init__(self, tok, prefer):
        super().__init__()
        self.tok, self.prefer = tok, prefer
        self.a, self.b = tok.encode("A", add_special_tokens=False)[0], tok.encode("B", add_special_tokens=False)[0]
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    @property
    def device(self):
        return torch.device("cpu")

    def forward(self, input_ids, attention_mask=None, logits_to_keep=None, **kw):
        self.calls += 1
        logits = torch.full((input_ids.shape[0], 1, len(self.tok)), -30.0)
        for i, ids in enumerate(input_ids):
            text = self.tok.decode(ids[attention_mask[i].bool()])
            first = text.split("<response_a>\n")[1].split("\n</response_a>")[0]
            second = text.split("<response_b>\n")[1].split("\n</response_b>")[0]
            p = self.prefer(first, second)
            logits[i, 0, self.a], logits[i, 0, self.b] = math.log(p), math.log(1 - p)
        return SimpleNamespace(logits=logits)


@pytest.fixture(scope="module")
def tok(embedded):
    return embedded[1]


def controlled(tok, prefer):
    return LocalBackend("controlled", model_obj=ControlledJudge(tok, prefer), tokenizer=tok)


def test_swapping_the_inputs_flips_the_preference(tok):
    b = controlled(tok, lambda first, second: 0.9 if "Paris" in first else 0.1)
    row = {"prompt": "Capital of France?", "response_a": "Paris.", "response_b": "Lyon."}
    swapped = {**row, "response_a": row["response_b"], "response_b": row["response_a"]}
    rows, s = judge([row, swapped], "helpfulness", judge=b)
    assert rows[0]["p_a"] == pytest.approx(0.9, abs=1e-4) and rows[0]["preference"] == "a"
    assert rows[1]["p_a"] == pytest.approx(0.1, abs=1e-4) and rows[1]["preference"] == "b"
    assert rows[0]["consistent"] is True and rows[1]["consistent"] is True
    # P(A) of each presentation order is read from the model's A/B token probabilities
    assert [o["p_first"] for o in rows[0]["orders"]] == pytest.approx([0.9, 0.1], abs=1e-4)


def test_consistent_is_computed_from_the_two_orders(tok):
    # prefers whatever is shown first: the two orders disagree on the winner
    b = controlled(tok, lambda first, second: 0.7)
    rows, s = judge([{"prompt": "q", "response_a": "x", "response_b": "y"}], "helpfulness", judge=b)
    assert rows[0]["consistent"] is False and rows[0]["p_a"] == pytest.approx(0.5, abs=1e-4)
    assert rows[0]["preference"] == "tie" and s.consistency == 0.0
    # content preference that survives a first-position bonus stays consistent
    b = controlled(tok, lambda first, second: min(0.95, (0.8 if "good" in first else 0.3) + 0.1))
    rows, _ = judge([{"prompt": "q", "response_a": "good", "response_b": "bad"}], "helpfulness", judge=b)
    assert rows[0]["consistent"] is True and rows[0]["p_a"] == pytest.approx((0.9 + 0.6) / 2, abs=1e-4)


def test_requests_are_batched_into_few_forward_passes(tok):
    model = ControlledJudge(tok, lambda f, s: 0.6)
    b = LocalBackend("controlled", model_obj=model, tokenizer=tok, batch_size=8)
    rows, _ = judge([{"prompt": f"q{i}", "response_a": "x", "response_b": "y"} for i in range(8)], "helpfulness", judge=b)
    assert len(rows) == 8 and model.calls <= 4          # 16 requests in batches of up to 8


def test_smollm2_absolute_scores_lie_in_range_and_distributions_sum_to_one(local_judge):
    rows, s = judge("examples/judge/absolute.jsonl", "helpfulness", judge=local_judge)
    assert s.scored == len(rows) == 6
    for r in rows:
        assert 1 <= r["score"] <= 5
        assert set(r["probs"]) == {"1", "2", "3", "4", "5"}
        assert sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-6)
        assert r["score"] == pytest.approx(sum(int(k) * p for k, p in r["probs"].items()))
    # a real model gives different inputs different distributions
    assert len({round(r["score"], 6) for r in rows}) > 1


def test_multi_token_scale_is_scored_exactly(local_judge, tmp_path):
    """1..10: '10' shares its first token with '1' in SmolLM2's tokenizer, so options are scored as
    whole continuations; P('1') must not include P('10')."""
    r = tmp_path / "ten.yaml"
    r.write_text("name: ten\ndescription: d\nscale: {min: 1, max: 10}\ncriteria:\n  - name: quality\n"
                 "    levels: {1: bad, 10: great}\nmodes: [absolute]\n")
    rows, s = judge([{"prompt": "What is 2+2?", "response": "4"}], str(r), judge=local_judge)
    probs = rows[0]["probs"]
    assert set(probs) == {str(i) for i in range(1, 11)}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
    assert 1 <= rows[0]["score"] <= 10


def test_smollm2_generative_mode_gives_a_score_or_a_reason(local_judge):
    from rlaif.engine import run_sync
    from rlaif.judge import Judge, JudgeConfig

    j = Judge(load_rubric("helpfulness"), local_judge, config=JudgeConfig(generative=True, max_tokens=48))
    r = run_sync(j.judge_row({"prompt": "What is the capital of France?", "response": "Paris."}, "absolute"))
    assert (r.score is not None and 1 <= r.score <= 5) or (r.error in ("parse_error", "refused") and r.detail)
