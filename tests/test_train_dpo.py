"""DPO: step-0 values, a differential test against TRL's DPOTrainer, SFT, export, and exact resume."""
import copy
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from rlaif.train.dpo import DPOConfig, dpo_batch_loss, train_dpo
from rlaif.train.lora import LoraSettings, add_lora
from tests._train_utils import pair_rows, save_tiny, tiny_lm


def _metrics(out):
    return [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]


def test_dpo_step0_is_ln2_and_ipo(tmp_path):
    model, tok = tiny_lm()
    train_dpo(pair_rows(4), model=model, tokenizer=tok, max_steps=2, batch_size=2, learning_rate=1e-2,
              output_dir=str(tmp_path / "a"), progress=False)
    m = _metrics(tmp_path / "a")
    assert m[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert m[0]["rewards/margins"] == 0.0 and m[0]["rewards/chosen"] == 0.0
    assert m[1]["loss"] < m[0]["loss"] and m[1]["rewards/margins"] > 0       # it learns
    assert (tmp_path / "a" / "adapter" / "adapter_model.safetensors").exists()
    model, tok = tiny_lm()
    train_dpo(pair_rows(4), model=model, tokenizer=tok, max_steps=1, batch_size=2, loss_type="ipo", beta=0.25,
              output_dir=str(tmp_path / "b"), progress=False)
    assert _metrics(tmp_path / "b")[0]["loss"] == pytest.approx((1 / (2 * 0.25)) ** 2, rel=1e-6)


def test_precomputed_reference_gives_the_same_step(tmp_path):
    a, tok = tiny_lm()
    b, _ = tiny_lm()
    lora = LoraSettings(init_weights=False)       # random B: policy ≠ reference from the start
    for model, name, pre in ((a, "a", False), (b, "b", True)):
        train_dpo(pair_rows(4), model=model, tokenizer=tok, max_steps=2, batch_size=2, lora=lora, precompute_ref=pre,
                  output_dir=str(tmp_path / name), progress=False, seed=3)
    ma, mb = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    assert ma[0]["loss"] != pytest.approx(math.log(2))
    for x, y in zip(ma, mb):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-5)


@pytest.mark.slow          # inductor compiles the tiny model's layer on the CPU: about a minute
def test_compiled_layers_give_the_eager_loss_curve(tmp_path):
    """compile=True changes speed, not numbers: same losses and margins as eager, step for step,
    with a reference pass (adapter off) that differs from the policy from the start, although the
    compiled run pads every batch to a multiple of 64 tokens."""
    from rlaif.train.data import collate_pairs

    ex = [{"prompt_ids": [5, 6, 7], "chosen_ids": [8, 9], "rejected_ids": [10]}]
    b = collate_pairs(ex, 0, None, pad_multiple=64)
    assert b["input_ids"].shape == (2, 64) and b["attention_mask"][0].sum() == 5 and b["completion_mask"][1].sum() == 1
    lora = LoraSettings(init_weights=False)
    curves = {}
    for comp in (False, True):
        model, tok = tiny_lm()
        train_dpo(pair_rows(6), model=model, tokenizer=tok, max_steps=3, batch_size=2, lora=lora, seed=3,
                  output_dir=str(tmp_path / str(comp)), progress=False, compile=comp)
        curves[comp] = _metrics(tmp_path / str(comp))
    for e, c in zip(curves[False], curves[True]):
        assert c["loss"] == pytest.approx(e["loss"], abs=1e-5)
        assert c["rewards/margins"] == pytest.approx(e["rewards/margins"], abs=1e-5)
    assert curves[False][0]["loss"] != pytest.approx(math.log(2))


@pytest.mark.parametrize("ref", ["adapter-disabled", "ref-adapter"])
@pytest.mark.parametrize("loss_type", ["sigmoid"] + [pytest.param(x, marks=pytest.mark.slow) for x in ("ipo", "hinge", "robust")])
def test_matches_trl_dpo_loss_and_lora_gradients(tmp_path, loss_type, ref):
    """Differential test: the same tiny model, LoRA weights and batch through TRL's DPOTrainer and ours.
    ref="adapter-disabled": a fresh adapter, the reference is the base (TRL: peft_config).
    ref="ref-adapter": continuing from a trained adapter, which is also the reference (TRL: a PeftModel).
    In both, the trainable adapter is then moved away from the reference so the loss is non-trivial."""
    from datasets import Dataset
    from peft import LoraConfig, PeftModel, get_peft_model_state_dict, set_peft_model_state_dict
    from trl import DPOConfig as TRLConfig
    from trl import DPOTrainer

    from rlaif.train.data import collate_pairs, read_rows, tokenize_pairs
    from rlaif.train.loop import _make_logprob_module

    base, tok = tiny_lm(seed=1)
    base_ours, base_trl = copy.deepcopy(base), copy.deepcopy(base)
    rows = pair_rows(4)
    ls = 0.1 if loss_type == "robust" else 0.0
    beta = 0.3
    args = TRLConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=4, report_to="none", beta=beta,
                     loss_type=[loss_type], label_smoothing=ls, max_length=None, use_cpu=True, bf16=False,
                     disable_dropout=True, seed=0)
    data = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    if ref == "adapter-disabled":
        trainer = DPOTrainer(model=base_trl, args=args, processing_class=tok, train_dataset=data,
                             peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                                    task_type="CAUSAL_LM"))
        ours = add_lora(base_ours, LoraSettings(r=8, alpha=16))
    else:
        torch.manual_seed(2)
        add_lora(copy.deepcopy(base), LoraSettings(r=8, alpha=16, init_weights=False)).save_pretrained(str(tmp_path / "ad"))
        theirs = PeftModel.from_pretrained(base_trl, str(tmp_path / "ad"), is_trainable=True)
        trainer = DPOTrainer(model=theirs, args=args, processing_class=tok, train_dataset=data)
        ours = add_lora(base_ours, adapter=str(tmp_path / "ad"))
    theirs = trainer.model
    torch.manual_seed(3)
    for n, p in sorted(theirs.named_parameters()):
        if p.requires_grad:
            p.data.add_(0.05 * torch.randn_like(p))
    set_peft_model_state_dict(ours, get_peft_model_state_dict(theirs, adapter_name="default"), adapter_name="default")

    batch = next(iter(trainer.get_train_dataloader()))
    theirs.train()
    trl_loss = trainer.compute_loss(theirs, batch)
    trl_loss.backward()
    trl_grads = {n: p.grad.clone() for n, p in theirs.named_parameters() if p.requires_grad}

    examples, _ = tokenize_pairs(tok, read_rows(rows), max_length=None)
    lp = _make_logprob_module()(ours)
    cfg = DPOConfig(beta=beta, loss_type=loss_type, label_smoothing=ls)
    loss, m = dpo_batch_loss(lp, ours, collate_pairs(examples, tok.pad_token_id), cfg)
    loss.backward()
    assert loss.item() == pytest.approx(trl_loss.item(), abs=1e-4)
    assert m["rewards/margins"].abs().sum() > 1e-3                 # policy ≠ reference: a non-trivial point
    ours_grads = {n: p.grad for n, p in ours.named_parameters() if p.requires_grad}
    assert ours_grads.keys() == trl_grads.keys() and len(ours_grads) > 0
    for n, g in ours_grads.items():
        assert torch.allclose(g, trl_grads[n], atol=1e-4, rtol=1e-3), n
    assert sum(g.abs().sum() for g in ours_grads.values()) > 0


def test_sft_and_export(tmp_path):
    from transformers import AutoModelForCausalLM

    from rlaif.train.export import export
    from rlaif.train.sft import train_sft

    path = save_tiny(tmp_path / "tiny")
    judged = tmp_path / "judged.jsonl"
    judged.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": "Say hi", "response": "Hi!", "score": 5.0},
        {"prompt": "Say hi", "response": "Go away.", "score": 1.0},
        {"prompt": "Count", "response": "1 2 3", "score": 4.0},
        {"prompt": "Count", "response": "x", "score": None, "error": "parse_error"}]))
    s = train_sft(str(judged), model=path, max_steps=3, batch_size=2, learning_rate=5e-3,
                  output_dir=str(tmp_path / "sft"), progress=False)
    m = _metrics(tmp_path / "sft")
    assert s["demos"] == 2 and m[-1]["loss"] < m[0]["loss"]
    merged = export(tmp_path / "sft" / "adapter", tmp_path / "merged", merge=True)
    alone = export(tmp_path / "sft" / "adapter", tmp_path / "alone")
    assert (alone / "adapter_model.safetensors").exists()
    # the merged model equals base + adapter
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(path)
    with_adapter = PeftModel.from_pretrained(base, str(tmp_path / "sft" / "adapter")).eval()
    mm = AutoModelForCausalLM.from_pretrained(str(merged)).eval()
    x = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.allclose(with_adapter(x).logits, mm(x).logits, atol=1e-4)
        assert not torch.allclose(AutoModelForCausalLM.from_pretrained(path)(x).logits, mm(x).logits, atol=1e-4)


def _cli(args, **kw):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return subprocess.Popen([sys.executable, "-m", "rlaif", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.slow
@pytest.mark.ci
def test_killed_and_resumed_dpo_reproduces_the_loss_curve(tmp_path):
    """SIGKILL the CLI after its second checkpoint, resume, and compare with an uninterrupted run."""
    path = save_tiny(tmp_path / "tiny")
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in pair_rows(6)))
    common = [str(data), "--model", path, "--max-steps", "8", "--batch-size", "2", "--lr", "5e-3", "--save-steps", "2",
              "--lr-scheduler", "linear", "--warmup-steps", "2", "--quiet"]
    full = _cli(["train", "dpo", *common, "-o", str(tmp_path / "full")])
    assert full.wait(timeout=600) == 0, full.stdout.read()
    p = _cli(["train", "dpo", *common, "-o", str(tmp_path / "cut")])
    deadline = time.time() + 300
    while not (tmp_path / "cut" / "checkpoint-4").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    cut = _metrics(tmp_path / "cut")
    assert len(cut) < 8, "the run finished before it could be killed"
    r = _cli(["train", "dpo", *common, "-o", str(tmp_path / "cut"), "--resume"])
    out = r.stdout.read()
    assert r.wait(timeout=600) == 0, out
    assert "resumed from" in out
    a, b = _metrics(tmp_path / "full"), _metrics(tmp_path / "cut")
    assert [x["step"] for x in b] == list(range(1, 9))
    for x, y in zip(a, b):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-6) and x["lr"] == pytest.approx(y["lr"])
        assert x["rewards/margins"] == pytest.approx(y["rewards/margins"], abs=1e-6)
