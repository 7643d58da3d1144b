"""rlaif rewards inside TRL's own GRPOTrainer: spec resolution, sync and async forms, None for unscored."""
from __future__ import annotations

import asyncio
import logging

import pytest

from rlaif.errors import RlaifError
from rlaif.rewards import AsyncReward, Reward, async_reward, register_resolver, resolve, reward


def _judge(every: int = 3):
    """A fake judge that reads as a score, except for every `every`-th distinct row it is shown, where it
    answers nothing readable (also when asked again to repair its answer): that row is unscored."""
    from rlaif.backends.fake import FakeBackend

    seen: dict[str, int] = {}

    def respond(messages, params):
        key = next(m["content"] for m in messages if m["role"] == "user")
        k = seen.setdefault(key, len(seen))
        return "banana" if k % every == every - 1 else f"Score: {k % 5 + 1}"

    return FakeBackend("judge", responder=respond, supports_logprobs=False)


def test_rubric_reward_gives_none_with_reason_counts(caplog):
    be = _judge()
    r = reward("rubric:helpfulness@fake/judge", judge_backends={"fake/judge": be})
    with caplog.at_level(logging.WARNING, logger="rlaif.rewards"):
        out = r(["p1", "p2", "p3"], ["a", "b", "c"], trainer_state=None, completion_ids=[[1], [2], [3]])
    assert out[0] is not None and out[1] is not None and out[2] is None
    assert sum(r.unscored.values()) == 1 and r.scored == 2
    assert "1/3 completions unscored" in caplog.text
    assert r.__name__ == "rubric:helpfulness@fake/judge"


def test_async_reward_is_a_coroutine_function_trl_awaits():
    from trl.trainer.utils import is_async_callable

    ar = async_reward("rubric:helpfulness@fake/hash")
    assert is_async_callable(ar) and not is_async_callable(reward("rubric:helpfulness@fake/hash"))
    metrics = {}
    out = asyncio.run(ar(["q"], ["an answer"], log_metric=lambda k, v: metrics.__setitem__(k, v)))
    assert isinstance(out[0], float) and metrics == {"rlaif/rubric:helpfulness@fake/hash/unscored_frac": 0.0}


def test_python_specs_sync_async_and_bad_values(tmp_path):
    f = tmp_path / "rw.py"
    f.write_text("def reward(prompts, completions, **kw):\n    return [len(c) if c else None for c in completions]\n"
                 "async def areward(prompts, completions, **kw):\n    return [1.0 for _ in completions]\n"
                 "def bad(prompts, completions, **kw):\n    return ['x' for _ in completions]\n")
    assert reward(str(f))(["p", "q"], ["abc", ""]) == [3.0, None]
    assert reward(f"{f}:areward")(["p"], ["c"]) == [1.0]
    with pytest.raises(RlaifError, match="expected a number or None"):
        reward(f"{f}:bad")(["p"], ["c"])


def test_spec_registry_plugs_a_resolver():
    from rlaif.rewards import Scorer

    class Const(Scorer):
        def __init__(self, rest):
            self.name, self.v = f"const:{rest}", float(rest)

        async def score(self, prompts, completions, **columns):
            return [(self.v, None) for _ in completions]

    register_resolver("const", lambda rest, **o: Const(rest))
    assert reward("const:2.5")(["p"], ["c"]) == [2.5]
    assert isinstance(resolve("const:1"), Const)


@pytest.mark.slow
@pytest.mark.parametrize("make", [pytest.param(reward, id="sync"),     # CI runs the async form (TRL's newer path)
                                  pytest.param(async_reward, id="async", marks=pytest.mark.ci)])
def test_trl_grpo_trainer_two_steps_with_judge_and_python_rewards(tmp_path, make):
    """TRL's own GRPOTrainer, on the embedded SmolLM2, with a judge reward (that leaves some completions
    unscored) mixed with a Python reward: two optimizer steps run and the unscored ones reach TRL as None."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from rlaif.models import resolve_model_path

    path = resolve_model_path("default")
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    judge = make("rubric:helpfulness@fake/judge", judge_backends={"fake/judge": _judge()})
    seen: list = []
    real_values = judge.values

    async def spy(prompts, completions, **kw):      # what TRL receives from the judge reward
        out = await real_values(prompts, completions, **kw)
        seen.extend(out)
        return out

    judge.values = spy

    def brevity(prompts, completions, **kw):
        return [-len(c) / 100 for c in completions]

    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": q}]}
                            for q in ("Name a colour.", "What is 2+2?", "Say hi.", "Name a fruit.")])
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=8, learning_rate=1e-5, logging_steps=1, save_strategy="no",
                      report_to=[], use_cpu=True, bf16=False, seed=0, disable_tqdm=True)
    trainer = GRPOTrainer(model=model, reward_funcs=[judge, brevity], args=args, train_dataset=ds,
                          processing_class=tok)
    trainer.train()
    assert trainer.state.global_step == 2
    assert isinstance(judge, AsyncReward if make is async_reward else Reward)
    assert None in seen and any(v is not None for v in seen)
    assert sum(judge.unscored.values()) == seen.count(None)
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2
    assert any(k.startswith("rewards/rubric:helpfulness") for k in logged[0])


def test_rm_spec_goes_to_the_reward_model_module():
    with pytest.raises(RlaifError, match="rm:"):
        reward("rm:")
    with pytest.raises(RlaifError):          # no such reward model folder (or no rm module in this install)
        reward("rm:/no/such/reward/model")
