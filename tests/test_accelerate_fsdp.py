"""`accelerate launch --config_file examples/accelerate/fsdp2.yaml` (FSDP2, fully_shard) with 2 CPU processes over
gloo: the DPO loss curve equals one process with twice the batch, only rank 0 writes, the adapter saved from the
shards loads with peft and equals the one-process adapter, and --resume continues the curve.

accelerate keeps CPU processes on DDP whatever the config says, so the processes start through tests/_fsdp_cpu.py,
which gives accelerate the FSDP state it would have set on GPUs (see that file); rlaif's own check refuses the
config without it (test_fsdp_config_on_cpu_is_refused_not_silently_ddp)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests._train_utils import pair_rows, save_tiny
from tests.test_accelerate_ddp import curve, free_port

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "accelerate" / "fsdp2.yaml"


def launch_fsdp(*args: str, wrapper: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    target = [str(ROOT / "tests" / "_fsdp_cpu.py")] if wrapper else ["-m", "rlaif"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG), "--num_processes", "2",
           "--mixed_precision", "no", "--main_process_port", str(free_port()), *target, *args, "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_dpo_fsdp2_two_processes_equal_one_with_twice_the_batch_and_resume(tmp_path):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from rlaif.cli import main

    model = save_tiny(tmp_path / "tiny")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in pair_rows(16)))
    common = ["--model", model, "--lr", "5e-3", "--save-steps", "2", "--seed", "3"]
    one = tmp_path / "one"
    assert main(["train", "dpo", str(pairs), *common, "--batch-size", "4", "--max-steps", "4", "-o", str(one),
                 "--quiet"]) == 0
    two = tmp_path / "two"
    first = launch_fsdp("train", "dpo", str(pairs), *common, "--batch-size", "2", "--max-steps", "2", "-o", str(two))
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stderr.count("trained 2 steps") == 1                 # one report, from rank 0
    ck = two / "checkpoint-2"
    assert sorted(p.name for p in ck.iterdir()) == ["adapter", "optimizer.pt", "rng-0.pt", "rng-1.pt", "scheduler.pt",
                                                    "state.json"]
    state = json.loads((ck / "state.json").read_text())
    assert state["fsdp"] is True and state["num_processes"] == 2      # it really ran sharded
    # the optimiser state was gathered whole: both Adam moments of every LoRA tensor, full shape
    optim = torch.load(ck / "optimizer.pt", weights_only=False)
    assert optim["state"] and all(s["exp_avg"].shape == s["exp_avg_sq"].shape for s in optim["state"].values())
    again = launch_fsdp("train", "dpo", str(pairs), *common, "--batch-size", "2", "--max-steps", "4", "-o", str(two),
                        "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    ref, got = curve(one), curve(two)
    assert [m["step"] for m in got] == [1, 2, 3, 4]                   # one line per step: only rank 0 logs
    for a, b in zip(ref, got, strict=True):
        for k in ("loss", "logps/chosen", "logps/rejected", "rewards/margins", "grad_norm"):
            assert abs(a[k] - b[k]) < 1e-4, (k, a, b)
    assert ref[-1]["loss"] < ref[0]["loss"] - 1e-3                     # the curve moves: equality is not trivial
    assert sorted(p.name for p in two.iterdir() if not p.name.startswith(".")) == \
        ["adapter", "checkpoint-2", "checkpoint-4", "metrics.jsonl", "train_summary.json"]
    # the adapter written from the shards: full tensors, the same keys and values as the one-process run's
    a1 = load_file(str(one / "adapter" / "adapter_model.safetensors"))
    a2 = load_file(str(two / "adapter" / "adapter_model.safetensors"))
    assert sorted(a1) == sorted(a2) and a1
    for k in a1:
        assert a1[k].shape == a2[k].shape and torch.allclose(a1[k], a2[k], atol=1e-4), k
    assert any(float(v.abs().max()) > 0 for k, v in a2.items() if "lora_B" in k)   # trained, not the initial zeros
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model), str(two / "adapter"))
    loaded = {k: v for k, v in peft.state_dict().items() if "lora_" in k}
    assert len(loaded) == len(a2)


def test_fsdp_config_on_cpu_is_refused_not_silently_ddp(monkeypatch):
    from accelerate.utils import DistributedType

    from rlaif.errors import RlaifError
    from rlaif.train.fsdp import check_strategy

    cpu = SimpleNamespace(distributed_type=DistributedType.MULTI_CPU, is_fsdp2=False)
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert check_strategy(cpu) is False                                # plain DDP: fine
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(RlaifError, match="asks for FSDP, but accelerate set up MULTI_CPU"):
        check_strategy(cpu)
    assert check_strategy(SimpleNamespace(distributed_type=DistributedType.FSDP, is_fsdp2=True)) is True
    with pytest.raises(RlaifError, match="fsdp_version: 2"):
        check_strategy(SimpleNamespace(distributed_type=DistributedType.FSDP, is_fsdp2=False))
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(RlaifError, match="DeepSpeed"):
        check_strategy(cpu)


@pytest.mark.slow
def test_grpo_and_sft_fsdp2_two_processes(tmp_path):
    """GRPO generates through the FSDP root (its weights gathered, ranks kept in step with synced_gpus) and
    SFT trains; each writes one adapter and one checkpoint."""
    model = save_tiny(tmp_path / "tiny")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Say {w}", "word": w}) + "\n" for w in "abcd"))
    rf = tmp_path / "rw.py"
    rf.write_text("def has_word(prompts, completions, word, **kw):\n"
                  "    return [float(w in c) for c, w in zip(completions, word)]\n")
    g = tmp_path / "grpo"
    out = launch_fsdp("train", "grpo", str(prompts), "--model", model, "--reward", f"{rf}:has_word", "-G", "2",
                      "--batch-size", "1", "--max-steps", "2", "--max-completion-length", "4", "-o", str(g))
    assert out.returncode == 0, out.stderr[-3000:]
    assert [m["step"] for m in curve(g)] == [1, 2] and (g / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((g / "checkpoint-2" / "state.json").read_text())["fsdp"] is True
    judged = tmp_path / "judged.jsonl"
    judged.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": f"Say {w}", "response": w.upper() + "!", "score": 5.0} for w in "abcdefgh"]))
    s = tmp_path / "sft"
    out = launch_fsdp("train", "sft", str(judged), "--model", model, "--batch-size", "2", "--max-steps", "2",
                      "-o", str(s))
    assert out.returncode == 0, out.stderr[-3000:]
    assert [m["step"] for m in curve(s)] == [1, 2] and (s / "adapter" / "adapter_model.safetensors").exists()
