"""Issue 14 item 2: a pipeline naming every stage (sample, judge, pairs, train, eval) runs end to
end from a working directory other than the YAML's folder, every relative path read from the
YAML's folder; and `rlaif run --check` rejects each config the run would reject."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlaif.errors import ConfigError
from rlaif.pipeline import load_config

ROOT = Path(__file__).resolve().parents[1]


def _project(tmp_path, **over) -> Path:
    d = tmp_path / "project"
    (d / "data").mkdir(parents=True, exist_ok=True)
    (d / "data" / "prompts.jsonl").write_text(
        "".join(json.dumps({"id": f"q{i}", "prompt": f"Question number {i}?"}) + "\n" for i in range(4)))
    (d / "data" / "held_out.jsonl").write_text(
        "".join(json.dumps({"id": f"e{i}", "prompt": f"Held-out question {i}?"}) + "\n" for i in range(2)))
    (d / "data" / "cap.jsonl").write_text(
        "".join(json.dumps({"id": f"c{i}", "question": f"What is {i}+1?", "answer": str(i + 1)}) + "\n"
                for i in range(2)))
    cfg = {"name": "all", "prompts": "data/prompts.jsonl", "workdir": "runs/all",
           "sample": {"model": "fake/hash", "n": 3, "max_new_tokens": 8},
           "judge": {"model": "fake/hash", "rubric": "helpfulness"},
           "pairs": {"min_margin": 0.0},
           "train": {"model": "tiny", "max_steps": 1, "batch_size": 2, "max_length": 64, "progress": False},
           "eval": {"prompts": "data/held_out.jsonl", "capability": "data/cap.jsonl", "judge": "fake/hash",
                    "limit": 2, "max_new_tokens": 4, "capability_max_new_tokens": 4}}
    for k, v in over.items():
        if v is None:
            cfg.pop(k, None)
        elif isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {kk: vv for kk, vv in {**cfg[k], **v}.items() if vv is not None}
        else:
            cfg[k] = v
    f = d / "pipeline.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


@pytest.mark.slow
@pytest.mark.ci
def test_every_stage_runs_from_another_working_directory(tmp_path):
    from tests._train_utils import save_tiny

    f = _project(tmp_path)
    save_tiny(f.parent / "tiny")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "rlaif", "run", os.path.relpath(f, elsewhere)]
    chk = subprocess.run([*cmd, "--check"], cwd=elsewhere, capture_output=True, text=True, env=env, timeout=120)
    assert chk.returncode == 0, chk.stderr
    r = subprocess.run(cmd, cwd=elsewhere, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    wd = f.parent / "runs" / "all"                     # relative to the YAML, not to the working directory
    assert not (elsewhere / "runs").exists()
    for name in ("candidates.jsonl", "judged.jsonl", "dataset", "train/adapter", "eval.json"):
        assert (wd / name).exists(), name
    report = json.loads((wd / "eval.json").read_text())
    assert report["schema"] == "rlaif.eval/1" and report["settings"]["prompts"].endswith("held_out.jsonl")
    assert report["capability"]["base"]["n"] == 2
    last = r.stdout.strip().splitlines()[-1]
    assert "rlaif report" in r.stdout and "eval.json" in r.stdout, r.stdout
    assert last.startswith(("eval: win rate", "warning:")), last
    # a second run skips everything
    r2 = subprocess.run(cmd, cwd=elsewhere, capture_output=True, text=True, env=env, timeout=300)
    assert r2.returncode == 0 and r2.stdout.count("already done") == 5, r2.stdout


BROKEN = [
    ("eval without prompts", {"eval": {"prompts": None}}, "eval.prompts: required"),
    ("eval prompts missing", {"eval": {"prompts": "data/nope.jsonl"}}, "eval.prompts: file not found"),
    ("eval capability missing", {"eval": {"capability": "nope.jsonl"}}, "eval.capability: file not found"),
    ("eval adapter with train", {"eval": {"adapter": "data"}}, "eval.adapter: set by the pipeline"),
    ("eval without train or adapter", {"train": None}, "eval.adapter: required"),
    ("eval limit 0", {"eval": {"limit": 0}}, "eval.limit: 0 is out of range"),
    ("eval limit text", {"eval": {"limit": "four"}}, "eval.limit: expected a whole number"),
    ("eval confidence 1", {"eval": {"confidence": 1.0}}, "eval.confidence"),
    ("eval unknown option", {"eval": {"colour": 1}}, "eval.colour: unknown option"),
    ("eval unknown judge", {"eval": {"judge": "nope/x"}}, "eval.judge: unknown provider"),
    ("eval unknown rubric", {"eval": {"rubric": "no-such-rubric"}}, "eval.rubric (no-such-rubric)"),
    ("eval unknown refusal rubric", {"eval": {"refusal_rubric": "nope"}}, "eval.refusal_rubric (nope)"),
    ("eval wired output", {"eval": {"output": "x.json"}}, "eval.output: set by the pipeline"),
    ("train batch 0", {"train": {"batch_size": 0}}, "train.batch_size: 0 is out of range"),
    ("train steps 0", {"train": {"max_steps": 0}}, "train.max_steps: 0 is out of range"),
    ("train unknown option", {"train": {"colour": 1}}, "train.colour: unknown option"),
    ("train wired output", {"train": {"output_dir": "x"}}, "train.output_dir: set by the pipeline"),
]


@pytest.mark.parametrize("name,over,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_check_rejects_what_the_run_would_reject(tmp_path, name, over, expected):
    f = _project(tmp_path, **over)
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert expected in str(e.value), str(e.value)


def test_a_good_config_passes_check(tmp_path):
    load_config(_project(tmp_path))
