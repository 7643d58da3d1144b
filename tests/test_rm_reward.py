"""GRPO with `rm:PATH`: the pure pieces (groups, the uncertainty band, pair agreement), and a tiny
GRPO run whose reward model sends uncertain completions to the judge (fallback, relabel file) and
whose drift watch logs agreement, warns, and stops under the floor."""
import json

import pytest

from rlaif.train.rm_reward import DriftError, groups_of, pair_agreement, uncertain
from tests._train_utils import save_tiny, tiny_lm, tiny_refusal_rm


def test_groups_band_agreement():
    assert groups_of(["a", "a", "b", "b", "b", "a"]) == [0, 0, 1, 1, 1, 2]
    r = [1.0, 2.0, 3.0, 5.0, 5.0, 5.2]
    # group 0 mean 2: only index 1 is within 0.5; group 1 mean 5.0667: all three within 0.5
    assert uncertain(r, [0, 0, 0, 1, 1, 1], 0.5) == [1, 3, 4, 5]
    assert uncertain([1.0], [0], 10) == []              # a group of one has no advantage
    assert pair_agreement([1, 2, 3], [1, 2, 3], [0, 0, 0]) == 1.0
    assert pair_agreement([3, 2, 1], [1, 2, 3], [0, 0, 0]) == 0.0
    assert pair_agreement([1, 2], [2, 2], [0, 0]) is None           # the judge ties: no informative pair
    assert pair_agreement([1, 2, 5], [1, 2, 0], [0, 0, 1]) == 1.0    # different prompts are not compared


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory):
    return tiny_refusal_rm(tmp_path_factory, max_steps=10)


class MirrorTeacher:
    """A judge that scores with the reward model itself (sign=1: full agreement) or against it
    (sign=-1: every informative pair reversed), so drift agreement is known exactly."""

    def __init__(self, rm_path, sign):
        from rlaif.train.rm_model import RewardModel, scale_score

        self.rm, self.sign, self.calls, self.__name__ = RewardModel(rm_path), sign, 0, "mirror"
        self.score = lambda o: scale_score("classes", o, 1, 3)

    def __call__(self, prompts, completions, **kw):
        self.calls += len(completions)
        outs = self.rm.outputs(list(prompts), [c if isinstance(c, str) else c[0]["content"] for c in completions])
        return [2 + self.sign * (self.score(o) - 2) for o in outs]


class Teacher:
    """A deterministic judge on the over_refusal scale (3 = complies): counts its calls."""

    def __init__(self, verdict=None):
        self.calls = 0
        self.verdict = verdict
        self.__name__ = "teacher"

    def __call__(self, prompts, completions, **kw):
        self.calls += len(completions)
        text = lambda c: c if isinstance(c, str) else c[0]["content"]      # noqa: E731
        return [self.verdict(text(c)) if self.verdict else float(1 + len(text(c)) % 3) for c in completions]


def _grpo(tmp_path, rm, teacher, **kw):
    from rlaif.train.grpo import train_grpo

    model, tok = tiny_lm()
    args = dict(max_steps=2, batch_size=2, num_generations=4, max_completion_length=6, output_dir=str(tmp_path / "g"),
                progress=False, save_steps=0, seed=0, fallback=teacher)
    args.update(kw)
    return train_grpo([{"prompt": f"Say {i}."} for i in range(4)], model=model, tokenizer=tok,
                      rewards=[f"rm:{rm}"], **args)


@pytest.mark.slow
@pytest.mark.ci          # tiny models, ~15 s: the hybrid path end to end
def test_hybrid_fallback_and_drift_watch_in_grpo(tmp_path, tiny_rm):
    teacher = Teacher()
    _grpo(tmp_path, tiny_rm, teacher, fallback_band=10.0, drift_every=1, drift_n=4)
    m = [json.loads(x) for x in open(tmp_path / "g" / "metrics.jsonl")]
    # band 10 on a 1..3 scale: every completion of every group goes to the judge
    assert [x["rm/fallback"] for x in m] == [8.0, 8.0]
    assert teacher.calls == 16 and m[-1]["rm/judge_calls"] == 16.0   # drift reuses the fallback verdicts
    # the judge's verdicts replaced the model's: the logged reward is the teacher's mean
    rows = [json.loads(x) for x in open(tmp_path / "g" / "relabel.jsonl")]
    assert len(rows) == 16 and {r["source"] for r in rows} == {"fallback"}
    assert {"prompt", "response", "score", "rubric", "rm_score"} <= set(rows[0])
    first = [r["score"] for r in rows if r["reward_call"] == 1]
    assert m[0]["reward"] == pytest.approx(sum(first) / len(first), abs=1e-5)
    # the relabel file is training data for the next round (pointwise on the judge's scale)
    from rlaif.train.rm import train_rm
    s = train_rm(str(tmp_path / "g" / "relabel.jsonl"), model=str(tmp_path / "b2"), rubric="over_refusal",
                 probe=True, max_steps=1, output_dir=str(tmp_path / "r2"), progress=False, save_steps=0,
                 eval_fraction=0.0) if save_tiny(tmp_path / "b2") else None
    assert s["mode"] == "pointwise" and s["train_rows"] == 16


@pytest.mark.slow
@pytest.mark.ci          # tiny models, ~20 s: the drift watch's three outcomes
def test_drift_watch_agreement_warn_and_stop(tmp_path, tiny_rm, capsys):
    agree = MirrorTeacher(tiny_rm, +1)
    _grpo(tmp_path / "a", tiny_rm, agree, fallback_band=0.0, drift_every=2, drift_n=8, drift_floor=0.9, max_steps=3)
    m = [json.loads(x) for x in open(tmp_path / "a" / "g" / "metrics.jsonl")]
    assert [x["rm/fallback"] for x in m] == [0.0, 0.0, 0.0]
    assert agree.calls == 16                                   # reward calls 1 and 3, a slice of 8 each
    assert m[0]["rm/drift_agreement"] == 1.0 and "rm/drift_agreement" not in m[1]
    assert "drift watch" not in capsys.readouterr().err
    rows = [json.loads(x) for x in open(tmp_path / "a" / "g" / "relabel.jsonl")]
    assert {r["source"] for r in rows} == {"drift"} and len(rows) == 16
    against = MirrorTeacher(tiny_rm, -1)
    _grpo(tmp_path / "w", tiny_rm, against, fallback_band=0.0, drift_every=1, drift_n=8, drift_floor=0.5, max_steps=1)
    m = [json.loads(x) for x in open(tmp_path / "w" / "g" / "metrics.jsonl")]
    assert m[0]["rm/drift_agreement"] == 0.0
    assert "drift watch" in capsys.readouterr().err
    with pytest.raises(DriftError, match="agrees with mirror on 0% of pairs"):
        _grpo(tmp_path / "s", tiny_rm, MirrorTeacher(tiny_rm, -1), fallback_band=0.0, drift_every=1, drift_n=8,
              drift_floor=0.5, drift_action="stop", max_steps=2)


def test_bad_options(tmp_path, tiny_rm):
    from rlaif.errors import RlaifError

    with pytest.raises(RlaifError, match="need a judge"):
        _grpo(tmp_path, tiny_rm, None, fallback_band=0.3)
    with pytest.raises(RlaifError, match="drift-action"):
        _grpo(tmp_path, tiny_rm, Teacher(), drift_action="panic")
    with pytest.raises(RlaifError, match="apply to an rm:PATH reward"):
        from rlaif.train.grpo import train_grpo
        model, tok = tiny_lm()
        train_grpo([{"prompt": "x"}], model=model, tokenizer=tok, rewards=[lambda prompts, completions, **k: [0.0]],
                   fallback=Teacher(), output_dir=str(tmp_path / "x"), progress=False)


@pytest.mark.slow
def test_pipeline_rm_stage_trains_a_reward_model_then_grpo_with_it_and_resumes(tmp_path):
    from rlaif.errors import ConfigError
    from rlaif.pipeline import run
    from tests.test_pipeline import example_config

    base = save_tiny(tmp_path / "tiny")
    quiet = {"progress": False, "save_steps": 0}
    f = example_config(tmp_path, limit=4, sample={"model": "fake/hash"}, judge={"model": "fake/hash"},
                       rm={"model": base, "probe": True, "max_steps": 2, "eval_fraction": 0.0, **quiet},
                       rm_grpo={"model": base, "max_steps": 1, "batch_size": 2, "num_generations": 2,
                                "max_completion_length": 4, **quiet})
    res = run(f, progress=False)
    names = [s.name for s in res.stages]
    assert names[-2:] == ["rm", "rm_grpo"]
    wd = res.workdir
    assert (wd / "rm" / "adapter" / "reward_model.json").exists()
    m = [json.loads(x) for x in open(wd / "rm_grpo" / "metrics.jsonl")]
    assert any(k.startswith("rewards/rm:") for k in m[0])
    again = run(f, progress=False)                                   # finished stages are skipped
    assert [s.status for s in again.stages if s.name in ("rm", "rm_grpo")] == ["skipped", "skipped"]
    (tmp_path / "b").mkdir()
    bad = example_config(tmp_path / "b", rm={"no_such_option": 1})
    with pytest.raises(ConfigError, match="rm.no_such_option"):
        run(bad, validate_only=True)
