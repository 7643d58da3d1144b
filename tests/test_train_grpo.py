"""GRPO: rewards (judge + Python, None excluded), the first-step loss, and exact resume."""
import json
import math
import os

import pytest

from rlaif.errors import RlaifError
from rlaif.train.grpo import train_grpo
from rlaif.train.rewards import RubricReward, load_reward, score
from tests._train_utils import tiny_lm

PROMPTS = [{"prompt": [{"role": "user", "content": f"Say something about {w}."}], "topic": w}
           for w in ("cats", "rain", "tea", "maps", "ice", "gold")]


def _metrics(out):
    return [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]


def short_answer(prompts, completions, **kwargs):
    """Longer completions earn less; the first of each batch is deliberately unscored."""
    assert kwargs["topic"] and len(kwargs["topic"]) == len(completions)
    return [None if i == 0 else -len(c[0]["content"]) / 20 for i, c in enumerate(completions)]


def test_rubric_reward_goes_through_the_judge(fake_backend):
    backend = fake_backend(supports_logprobs=False,
                           responder=lambda msgs, p: "Clear. Score: 4" if "good" in msgs[-1]["content"] else "hmm")
    r = RubricReward("helpfulness", backend=backend)
    out = r(["q1", [{"role": "user", "content": "q2"}]], ["a good answer", [{"role": "assistant", "content": "bad"}]])
    assert out == [4.0, None] and r.errors["parse_error"] == 1
    assert len(backend.calls) == 3          # the unreadable verdict is re-asked once, then left unscored


def test_reward_specs(tmp_path):
    f = tmp_path / "my_reward.py"
    f.write_text("def reward(prompts, completions, **kw):\n    return [1.0 for _ in completions]\n"
                 "def bad(prompts, completions, **kw):\n    return [1.0]\n")
    assert load_reward(str(f))(["p"], ["c"]) == [1.0]
    assert load_reward("tests._train_utils:tiny_lm").__name__ == "tiny_lm"
    with pytest.raises(RlaifError, match="no function 'nope'"):
        load_reward(f"{f}:nope")
    with pytest.raises(RlaifError, match="cannot import"):
        load_reward("no_such_module_xyz:fn")
    with pytest.raises(RlaifError, match="expected a list of 2"):
        score([load_reward(f"{f}:bad")], ["p", "q"], ["a", "b"], {})
    per = score([lambda prompts, completions, **k: [None, 2]], ["p", "q"], ["a", "b"], {})
    assert math.isnan(per[0][0]) and per[1][0] == 2.0


def test_first_step_loss_is_zero_with_gradient_and_none_excluded(tmp_path):
    model, tok = tiny_lm()
    train_grpo(PROMPTS, model=model, tokenizer=tok, rewards=[short_answer], max_steps=2, batch_size=2,
               num_generations=4, max_completion_length=12, beta=0.0, loss_type="grpo", num_iterations=1,
               learning_rate=1e-3, output_dir=str(tmp_path / "g"), progress=False)
    m = _metrics(tmp_path / "g")
    assert abs(m[0]["loss"]) < 1e-6 and m[0]["grad_norm"] > 0
    assert m[0]["unscored"] == pytest.approx(1 / 8)            # one None of 8 completions, not counted as 0
    assert m[0]["reward_std"] > 0 and 0 <= m[0]["frac_zero_std"] <= 1
    assert {"reward", "rewards/short_answer", "clip_ratio", "completion_length"} <= set(m[0])


def test_config_problems_reported_together():
    with pytest.raises(RlaifError) as e:
        train_grpo(PROMPTS, rewards=[], loss_type="x", num_generations=1, output_dir="unused")
    assert "no reward" in str(e.value) and "unknown loss" in str(e.value) and "num_generations" in str(e.value)


@pytest.mark.slow
def test_crashed_grpo_resumes_exactly(tmp_path):
    """Sampling depends on the RNG: a resumed run must restore it to reproduce the curve."""
    common = dict(max_steps=4, batch_size=2, num_generations=3, max_completion_length=10, beta=0.04,
                  learning_rate=2e-3, save_steps=2, progress=False)
    model, tok = tiny_lm()
    train_grpo(PROMPTS, model=model, tokenizer=tok, rewards=[short_answer], output_dir=str(tmp_path / "full"), **common)
    calls = {"n": 0}

    def crashing(prompts, completions, **kw):
        calls["n"] += 1
        if calls["n"] == 3:                       # step 3: after checkpoint-2
            raise KeyboardInterrupt("simulated kill")
        return short_answer(prompts, completions, **kw)
    crashing.__name__ = "short_answer"
    model, tok = tiny_lm()
    with pytest.raises(KeyboardInterrupt):
        train_grpo(PROMPTS, model=model, tokenizer=tok, rewards=[crashing], output_dir=str(tmp_path / "cut"), **common)
    model, tok = tiny_lm()                        # the same base; adapter, optimiser, RNG, data position come from the checkpoint
    train_grpo(PROMPTS, model=model, tokenizer=tok, rewards=[short_answer], output_dir=str(tmp_path / "cut"),
               resume=True, **common)
    a, b = _metrics(tmp_path / "full"), _metrics(tmp_path / "cut")
    assert [x["step"] for x in b] == [1, 2, 3, 4]
    for x, y in zip(a, b):
        for k in ("loss", "reward", "kl", "completion_length"):
            assert x[k] == pytest.approx(y[k], abs=1e-6), (x["step"], k)
