"""One grammar of reward specs: `rlaif train grpo --reward` (load_reward) and rlaif.rewards.resolve (TRL,
the reward server, verl) parse through rlaif.train.reward_spec, so they accept the same forms and refuse a
bad spec with the same message naming it."""
import json

import pytest

from rlaif.engine import run_sync
from rlaif.errors import RlaifError
from rlaif.rewards import PythonScorer, RubricScorer, Scorer, register_resolver, resolve
from rlaif.train.reward_spec import PREFIXES, RewardSpec, parse_reward_spec
from rlaif.train.rewards import RubricReward, load_reward


@pytest.mark.parametrize("spec,want", [
    ("rubric:helpfulness", RewardSpec("rubric:helpfulness", "rubric", "helpfulness")),
    ("rubric:helpfulness@openai/gpt-4o-mini",
     RewardSpec("rubric:helpfulness@openai/gpt-4o-mini", "rubric", "helpfulness", judge="openai/gpt-4o-mini")),
    ("rubric:helpfulness@", RewardSpec("rubric:helpfulness@", "rubric", "helpfulness")),
    ("rm:runs/rm", RewardSpec("rm:runs/rm", "rm", "runs/rm")),
    ("r.py", RewardSpec("r.py", "python", "r.py", function="reward", is_file=True)),
    ("dir/r.py:length", RewardSpec("dir/r.py:length", "python", "dir/r.py", function="length", is_file=True)),
    ("pkg.mod:fn", RewardSpec("pkg.mod:fn", "python", "pkg.mod", function="fn")),
])
def test_the_forms(spec, want):
    assert parse_reward_spec(spec) == want


BAD = {
    "": "reward spec: expected 'rubric:NAME[@provider/model]'",
    "rubric:": "reward rubric:: missing the rubric name",
    "rubric:@openai/gpt-4o-mini": "reward rubric:@openai/gpt-4o-mini: missing the rubric name",
    "rm:": "reward rm:: give the reward model's folder",
    "just_a_module": "reward just_a_module: name the function, as module:function",
    "no_such_module_xyz:fn": "reward no_such_module_xyz:fn: cannot import module 'no_such_module_xyz'",
    "missing/r.py:fn": "reward missing/r.py:fn: file missing/r.py not found",
    "tests._train_utils:nope": "reward tests._train_utils:nope: no function 'nope' in tests._train_utils",
}


@pytest.mark.parametrize("spec", list(BAD))
def test_both_front_doors_refuse_a_bad_spec_alike(spec):
    with pytest.raises(RlaifError) as grpo:
        load_reward(spec)
    with pytest.raises(RlaifError) as integrations:
        resolve(spec)
    assert str(grpo.value) == str(integrations.value)
    assert str(grpo.value).startswith(BAD[spec]), str(grpo.value)


def test_both_front_doors_build_the_same_reward(tmp_path, fake_backend):
    f = tmp_path / "r.py"
    f.write_text("def reward(prompts, completions, **kw):\n    return [len(c) for c in completions]\n")
    assert load_reward(str(f))(["p"], ["abc"]) == [3]
    scorer = resolve(str(f))
    assert isinstance(scorer, PythonScorer) and scorer.fn.__name__ == "reward"
    backend = fake_backend()
    r = load_reward("rubric:helpfulness@fake/x", {"fake/x": backend})
    s = resolve("rubric:helpfulness@fake/x", judge_backends={"fake/x": backend})
    assert isinstance(r, RubricReward) and isinstance(s, RubricScorer)
    assert r.backend is backend and s.inner.backend is backend and r.__name__ == s.name


def test_a_registered_prefix_is_one_grammar_everywhere():
    class Const(Scorer):
        async def score(self, prompts, completions, **columns):
            return [(1.0, None)] * len(completions)

    register_resolver("const_spec_test", lambda rest, **o: Const())
    try:
        assert parse_reward_spec("const_spec_test:x").kind == "plugin"
        assert isinstance(resolve("const_spec_test:x"), Const)
        # the GRPO loop calls rewards synchronously: it says how to pass this one, not "cannot import module"
        with pytest.raises(RlaifError, match=r"reward const_spec_test:x: .*rlaif.rewards.reward\("):
            load_reward("const_spec_test:x")
    finally:
        PREFIXES.pop("const_spec_test")
    with pytest.raises(RlaifError, match="built-in"):
        register_resolver("rubric", lambda rest, **o: Const())


def test_train_grpo_cli_refuses_a_bad_spec_with_the_shared_message(tmp_path, capsys):
    from rlaif.cli import main

    p = tmp_path / "prompts.jsonl"
    p.write_text(json.dumps({"prompt": "hi"}) + "\n")
    rc = main(["train", "grpo", str(p), "--reward", "rubric:@fake/x", "-o", str(tmp_path / "out")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1 and "reward rubric:@fake/x: missing the rubric name" in err[0], err
    assert not (tmp_path / "out").exists()          # refused with the option problems, before any work


def test_a_rubric_reward_reads_the_reference_column_on_both_paths(fake_backend):
    """One judging path for a rubric reward: the GRPO loop's callable and the Scorer both pass `reference`."""
    seen = []

    def responder(messages, params):
        seen.append("REF-42" in messages[-1]["content"])
        return "Fine. Score: 5"

    backend = fake_backend(responder=responder, supports_logprobs=False)
    spec = "rubric:instruction_following@fake/x"
    assert load_reward(spec, {"fake/x": backend})(["What is 6x7?"], ["42"], reference=["REF-42"]) == [5.0]
    s = resolve(spec, judge_backends={"fake/x": backend})
    assert run_sync(s.score(["What is 6x7?"], ["42"], reference=["REF-42"])) == [(5.0, None)]
    assert seen == [True, True]
