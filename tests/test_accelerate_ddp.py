"""`accelerate launch` with 2 CPU processes (gloo DDP) runs `rlaif train dpo|grpo|sft`: the DPO loss curve equals
one process with twice the batch, only rank 0 writes (one metrics line per step, one adapter, one checkpoint with
every rank's RNG state), and --resume continues the curve across processes."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tests._train_utils import pair_rows, save_tiny

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*args: str, n: int = 2) -> subprocess.CompletedProcess:
    """`accelerate launch --multi_gpu --num_processes n ... -m rlaif ARGS` on CPU (the launcher's --multi_gpu is the
    one that starts n processes; on a machine without CUDA they join over gloo)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), "-m", "rlaif", *args, "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def curve(out_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (out_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    model = save_tiny(d / "tiny")
    pairs = d / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in pair_rows(16)))
    return d, model, pairs


@pytest.mark.slow
@pytest.mark.ci
def test_dpo_two_processes_equal_one_with_twice_the_batch_and_resume(tiny):
    from rlaif.cli import main

    d, model, pairs = tiny
    common = ["--model", model, "--lr", "5e-3", "--save-steps", "2", "--seed", "3"]
    one = d / "one"
    assert main(["train", "dpo", str(pairs), *common, "--batch-size", "4", "--max-steps", "4", "-o", str(one),
                 "--quiet"]) == 0
    two = d / "two"
    first = launch("train", "dpo", str(pairs), *common, "--batch-size", "2", "--max-steps", "2", "-o", str(two))
    assert first.stderr.count("trained 2 steps") == 1          # one report, from rank 0
    ck = two / "checkpoint-2"
    assert sorted(p.name for p in ck.iterdir()) == ["adapter", "optimizer.pt", "rng-0.pt", "rng-1.pt", "scheduler.pt",
                                                    "state.json"]
    assert json.loads((ck / "state.json").read_text())["num_processes"] == 2
    launch("train", "dpo", str(pairs), *common, "--batch-size", "2", "--max-steps", "4", "-o", str(two), "--resume")
    ref, got = curve(one), curve(two)
    assert [m["step"] for m in got] == [1, 2, 3, 4]             # one line per step: only rank 0 logs
    for a, b in zip(ref, got, strict=True):
        for k in ("loss", "logps/chosen", "logps/rejected", "rewards/margins"):
            assert abs(a[k] - b[k]) < 1e-4, (k, a, b)
    assert ref[-1]["loss"] < ref[0]["loss"] - 1e-3               # the curve moves: equality is not trivial
    assert sorted(p.name for p in two.iterdir() if not p.name.startswith(".")) == \
        ["adapter", "checkpoint-2", "checkpoint-4", "metrics.jsonl", "train_summary.json"]
    assert (two / "adapter" / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_grpo_and_sft_two_processes(tiny):
    d, model, _ = tiny
    prompts = d / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Say {w}", "word": w}) + "\n" for w in "abcd"))
    rf = d / "rw.py"
    rf.write_text("def has_word(prompts, completions, word, **kw):\n"
                  "    return [float(w in c) for c, w in zip(completions, word)]\n")
    g = d / "grpo"
    launch("train", "grpo", str(prompts), "--model", model, "--reward", f"{rf}:has_word", "-G", "2",
           "--batch-size", "1", "--max-steps", "2", "--max-completion-length", "4", "-o", str(g))
    assert [m["step"] for m in curve(g)] == [1, 2] and (g / "adapter").is_dir()
    assert sorted(p.name for p in (g / "checkpoint-2").glob("rng-*.pt")) == ["rng-0.pt", "rng-1.pt"]
    judged = d / "judged.jsonl"
    judged.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": f"Say {w}", "response": w.upper() + "!", "score": 5.0} for w in "abcdefgh"]))
    s = d / "sft"
    launch("train", "sft", str(judged), "--model", model, "--batch-size", "2", "--max-steps", "2", "-o", str(s))
    assert [m["step"] for m in curve(s)] == [1, 2] and (s / "adapter").is_dir()
