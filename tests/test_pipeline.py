"""rlaif.pipeline: validation before any work, resumable stages, kill-and-rerun, the examples config."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import rlaif
from rlaif.errors import ConfigError
from rlaif.pipeline import load_config, run

ROOT = Path(__file__).resolve().parents[1]


def prompts_file(tmp_path, n=6):
    f = tmp_path / "prompts.jsonl"
    f.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Question number {i}?"}) + "\n" for i in range(n)))
    return f


def config(tmp_path, **over) -> Path:
    cfg = {"prompts": "prompts.jsonl", "workdir": "run",
           "sample": {"model": "fake/hash", "n": 4, "max_new_tokens": 16},
           "judge": {"model": "fake/hash", "rubric": "helpfulness"},
           "pairs": {"min_margin": 0.1, "formats": ["jsonl"]}}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        elif v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    f = tmp_path / "pipeline.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


def test_bad_config_lists_every_problem_before_any_work(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump({
        "prompts": "missing.jsonl", "workdir": "run", "colour": "blue",
        "sample": {"model": "nonsense", "n": 0, "temperature": 9},
        "judge": {"model": "foo/bar", "rubric": "no-such-rubric", "mode": "pairwise"},
        "pairs": {"policy": "random", "formats": ["csv"]},
        "train": {"no_such_option": 1}}))
    with pytest.raises(ConfigError) as e:
        run(f)
    msg = str(e.value)
    expected = ["colour: unknown key", "sample.n", "sample.temperature", "judge.mode", "pairs.policy", "pairs.formats",
                "prompts: file not found", "sample.model: model name 'nonsense'", "judge.model: unknown provider 'foo'",
                "judge.rubric (no-such-rubric)",
                "train.no_such_option: unknown option" if hasattr(rlaif, "train_dpo") else "train: the train stage is not available"]
    for piece in expected:
        assert piece in msg, piece
    assert len(e.value.problems) >= len(expected)
    assert not (tmp_path / "run").exists()                      # nothing was started


def test_bad_prompt_rows_and_yaml_syntax_are_config_errors(tmp_path):
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "ok"}\n{"id": 1}\n')
    with pytest.raises(ConfigError, match=r"prompts.jsonl:2: field 'prompt'"):
        load_config(config(tmp_path))
    bad = tmp_path / "broken.yaml"
    bad.write_text("prompts: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+: invalid YAML"):
        load_config(bad)
    prompts_file(tmp_path)
    with pytest.raises(ConfigError, match="greedy decoding"):
        load_config(config(tmp_path, sample={"temperature": 0}))
    with pytest.raises(ConfigError, match="does not support rank"):
        load_config(config(tmp_path, judge={"rubric": "honesty", "mode": "rank"}))   # absolute/pairwise only
    assert load_config(config(tmp_path)).cfg.sample.n == 4


def test_push_to_hub_without_token_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    prompts_file(tmp_path)
    with pytest.raises(ConfigError, match="pairs.push_to_hub: --push-to-hub needs a Hugging Face token"):
        run(config(tmp_path, pairs={"push_to_hub": "me/prefs"}))
    assert not (tmp_path / "run").exists()


def test_cli_check(tmp_path, capsys):
    from rlaif.cli import main

    prompts_file(tmp_path)
    assert main(["run", str(config(tmp_path)), "--check"]) == 0
    assert main(["run", str(config(tmp_path, judge={"model": "nope"})), "--check"]) == 2
    assert "judge.model" in capsys.readouterr().err


def test_stages_resume_and_rerun_only_what_changed(tmp_path):
    from datasets import load_from_disk

    prompts_file(tmp_path)
    f = config(tmp_path)
    first = run(f, progress=False)
    assert [s.status for s in first.stages] == ["ran", "ran", "ran"]
    ds = load_from_disk(str(first.dataset))
    assert len(ds) > 0 and set(ds["prompt_id"]) <= {f"q{i}" for i in range(6)}
    again = run(f, progress=False)
    assert [s.status for s in again.stages] == ["skipped", "skipped", "skipped"]
    # a pairs-only change reruns pairs only
    f = config(tmp_path, pairs={"policy": "all_pairs"})
    assert [s.status for s in run(f, progress=False).stages] == ["skipped", "skipped", "ran"]
    # a damaged stage output is redone; the judge is deterministic here, so its new output equals the
    # old one and the pairs stage (keyed by its input's content) stays done
    judged = tmp_path / "run" / "judged.jsonl"
    good = judged.read_text()
    judged.write_text(good[:-40])
    assert [s.status for s in run(f, progress=False).stages] == ["skipped", "ran", "skipped"]
    assert judged.read_text() == good
    # a new sampling seed changes every stage's input
    f = config(tmp_path, sample={"seed": 9}, pairs={"policy": "all_pairs"})
    assert [s.status for s in run(f, progress=False).stages] == ["ran", "ran", "ran"]
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert set(man["stages"]) == {"sample", "judge", "pairs"} and all(len(s["sha256"]) == 64 for s in man["stages"].values())


async def test_run_inside_a_running_event_loop(tmp_path):
    prompts_file(tmp_path, 3)
    res = rlaif.run(config(tmp_path), progress=False)
    assert [s.name for s in res.stages] == ["sample", "judge", "pairs"]


def test_rank_mode_pipeline_measures_position_flips(tmp_path):
    prompts_file(tmp_path, 4)
    res = run(config(tmp_path, judge={"mode": "rank"}, pairs={"inconsistent": "keep", "min_margin": None}), progress=False)
    stats = json.loads((res.dataset / "rlaif_stats.json").read_text())
    assert stats["mode"] == "rank"
    assert stats["bias"]["position_checked"] == 4 and stats["bias"]["position_flip_rate"] is not None


def _files_state(d: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in d.iterdir() if p.is_file()}


def test_kill_mid_stage_and_rerun_finishes_without_redoing_finished_stages(tmp_path):
    prompts_file(tmp_path, 10)
    # a slow judge (40 calls, one at a time) so the kill lands inside the judge stage
    f = config(tmp_path, judge={"concurrency": 1, "options": {"latency": 0.1}})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "rlaif", "run", str(f)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = tmp_path / "run" / "judged.jsonl.partial"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if partial.exists() and len(partial.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_dir = tmp_path / "run"
    man = json.loads((run_dir / "manifest.json").read_text())
    assert set(man["stages"]) == {"sample"}                      # judge was cut off mid-stage
    assert not (run_dir / "judged.jsonl").exists()               # no half-written stage output
    before = _files_state(run_dir)["candidates.jsonl"]

    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "[sample] already done" in out.stderr and "[judge] running" in out.stderr
    assert _files_state(run_dir)["candidates.jsonl"] == before   # the finished stage was not redone
    man = json.loads((run_dir / "manifest.json").read_text())
    assert set(man["stages"]) == {"sample", "judge", "pairs"}
    judged = [json.loads(line) for line in (run_dir / "judged.jsonl").read_text().splitlines()]
    assert len(judged) == 40 and len({r["id"] for r in judged}) == 40
    # the resumed run's dataset equals an uninterrupted run's
    clean = run(config(tmp_path, workdir="clean", judge={"concurrency": 1, "options": {"latency": 0.0}}), progress=False)
    a = [json.loads(line) for line in (run_dir / "dataset" / "pairs.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (clean.dataset / "pairs.jsonl").read_text().splitlines()]
    assert a == b and a
    third = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0 and third.stderr.count("already done") == 3


def test_kill_during_sampling_reuses_the_finished_candidates(tmp_path):
    prompts_file(tmp_path, 8)
    f = config(tmp_path, sample={"concurrency": 1, "options": {"latency": 0.1}})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "rlaif", "run", str(f)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = tmp_path / "run" / "candidates.jsonl.partial"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run" / "candidates.jsonl").exists()
    finished = []
    for line in journal.read_text().splitlines():
        try:
            finished.append(json.loads(line))
        except json.JSONDecodeError:            # a line the kill cut short is not reused
            pass
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{len(finished)} reused from an interrupted run" in out.stderr
    rows = (tmp_path / "run" / "candidates.jsonl").read_text().splitlines()
    assert len(rows) == 32 and not journal.exists()


# ---------------------------------------------------------------------------------------------
# The examples/ pipeline → datasets.load_from_disk → TRL DPOTrainer
# ---------------------------------------------------------------------------------------------
def example_config(tmp_path, **sections) -> Path:
    cfg = yaml.safe_load((ROOT / "examples" / "pipeline.yaml").read_text())
    cfg["prompts"] = str(ROOT / "examples" / cfg["prompts"])
    cfg["workdir"] = str(tmp_path / "run")
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    f = tmp_path / "pipeline.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


def dpo_one_step(dataset_dir: Path, tmp_path: Path) -> float:
    """One DPO step of a tiny Llama (SmolLM2's tokenizer and chat template) on the dataset as saved."""
    import copy

    import torch
    from datasets import load_from_disk
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    from rlaif.models import embedded_model_dir

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(embedded_model_dir()))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                         eos_token_id=tok.eos_token_id))
    ds = load_from_disk(str(dataset_dir))                          # unchanged: no column dropped or renamed
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=1, per_device_train_batch_size=2, learning_rate=1e-3,
                     report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, bf16=False, max_length=256,
                     dataloader_num_workers=0)
    ref = copy.deepcopy(model)             # a model built from a config has no path TRL could reload it from
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=ds, processing_class=tok)
    out = trainer.train()
    assert out.global_step == 1
    return out.training_loss


def test_examples_pipeline_dataset_trains_one_dpo_step(tmp_path):
    """The examples config with the fast deterministic fake/hash backend standing in for the
    embedded model (the slow test below runs it unchanged)."""
    import math

    f = example_config(tmp_path, limit=6, sample={"model": "fake/hash"}, judge={"model": "fake/hash"})
    res = run(f, progress=False)
    loss = dpo_one_step(res.dataset, tmp_path)
    assert math.isfinite(loss)


@pytest.mark.slow
def test_examples_pipeline_unchanged_on_the_embedded_model(tmp_path):
    import math

    from datasets import load_from_disk

    res = run(example_config(tmp_path), progress=False)
    ds = load_from_disk(str(res.dataset))
    assert len(ds) > 0
    assert all(ex["chosen"][0]["content"] != ex["rejected"][0]["content"] for ex in ds)
    assert math.isfinite(dpo_one_step(res.dataset, tmp_path))
