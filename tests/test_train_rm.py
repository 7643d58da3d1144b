"""`rlaif train rm`: the losses against hand-derived values and torch, step 0 at ln 2, a categorical
model on a tiny Llama, resume, bad input, and a differential test against TRL's RewardTrainer
(hard labels: loss and LoRA gradients)."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from rlaif.errors import InputError, RlaifError
from rlaif.train import losses
from tests._train_utils import pair_rows, smol_tokenizer


def tiny_cls(num_labels=1, seed=0, hidden=64):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = smol_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      num_labels=num_labels, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id)
    return LlamaForSequenceClassification(cfg), tok


# -- pure losses ------------------------------------------------------------------------------
def test_bt_loss_hard_soft_margin_by_hand():
    rc, rr = torch.tensor([1.0, 0.0, -0.5]), torch.tensor([0.0, 0.0, 0.5])
    sig = lambda x: 1 / (1 + math.exp(-x))          # noqa: E731
    hard = losses.bt_losses(rc, rr)
    assert torch.allclose(hard, torch.tensor([-math.log(sig(1)), math.log(2), -math.log(sig(-1))]), atol=1e-6)
    p = torch.tensor([0.8, 0.5, 0.3])
    soft = losses.bt_losses(rc, rr, p_chosen=p)
    want = [-(0.8 * math.log(sig(1)) + 0.2 * math.log(sig(-1))), math.log(2),
            -(0.3 * math.log(sig(-1)) + 0.7 * math.log(sig(1)))]
    assert torch.allclose(soft, torch.tensor(want), atol=1e-6)
    m = losses.bt_losses(rc, rr, margin=torch.tensor([1.0, 1.0, 0.0]))
    assert torch.allclose(m, torch.tensor([math.log(2), -math.log(sig(-1)), -math.log(sig(-1))]), atol=1e-6)
    # soft loss is minimal where σ(Δ) = p
    d = torch.linspace(-3, 3, 601)
    lossd = losses.bt_losses(d, torch.zeros_like(d), p_chosen=torch.full_like(d, 0.8))
    assert abs(torch.sigmoid(d[lossd.argmin()]) - 0.8) < 0.01


def test_soft_cross_entropy_matches_torch():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 1, 1, 0])
    onehot = F.one_hot(labels, 3).float()
    assert torch.allclose(losses.soft_cross_entropy(logits, onehot).mean(), F.cross_entropy(logits, labels), atol=1e-6)
    probs = torch.softmax(torch.randn(5, 3), -1)
    assert torch.allclose(losses.soft_cross_entropy(logits, probs).mean(), F.cross_entropy(logits, probs), atol=1e-6)


def test_ece_and_scale_maps():
    from rlaif.train.rm_model import (
        class_probs,
        preference,
        regression_target,
        scale_score,
    )

    assert losses.ece(torch.tensor([0.9, 0.9]), torch.tensor([True, False])) == pytest.approx(0.4)
    assert losses.ece(torch.tensor([1.0, 0.5]), torch.tensor([True, True])) == pytest.approx(0.25)
    assert regression_target(1, 1, 5) == -1 and regression_target(5, 1, 5) == 1 and regression_target(3, 1, 5) == 0
    assert scale_score("regression", [0.5], 1, 5) == pytest.approx(4.0)
    assert scale_score("regression", [3.0], 1, 5) == 5
    assert scale_score("bt", [0.0], 1, 3) == pytest.approx(2.0)
    assert scale_score("classes", [0.0, 0.0, 0.0], 1, 3) == pytest.approx(2.0)
    assert sum(class_probs([1.0, 2.0, 3.0])) == pytest.approx(1.0)
    assert preference(1.0, 1.0) == 0.5 and preference(2.0, 0.0) == pytest.approx(1 / (1 + math.exp(-2)))


# -- the trainer --------------------------------------------------------------------------------
def _pairwise(tmp_path, **kw):
    from rlaif.train.rm import train_rm

    model, tok = tiny_cls()
    args = dict(max_steps=2, batch_size=3, learning_rate=1e-3, output_dir=str(tmp_path / "rm"), progress=False,
                save_steps=1, eval_fraction=0.0)
    args.update(kw)
    return train_rm(pair_rows(6), model=model, tokenizer=tok, **args)


def test_pairwise_step0_is_ln2_and_writes_a_reward_model(tmp_path):
    _pairwise(tmp_path)
    m = [json.loads(x) for x in open(tmp_path / "rm" / "metrics.jsonl")]
    assert m[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)     # zero head: r_c = r_r = 0
    assert m[1]["loss"] < math.log(2)
    card = json.load(open(tmp_path / "rm" / "adapter" / "reward_model.json"))
    assert card["kind"] == "bt" and card["format"] == "rlaif-reward-model"
    from safetensors.torch import load_file
    w = load_file(str(tmp_path / "rm" / "adapter" / "adapter_model.safetensors"))
    assert any("score" in k for k in w) and any("lora_A" in k for k in w)


def test_soft_labels_step0_is_ln2_and_resume_continues(tmp_path):
    _pairwise(tmp_path, soft_labels=True, max_steps=1)
    s = _pairwise(tmp_path, soft_labels=True, max_steps=3, resume=True)
    assert s["steps"] == 3
    steps = [json.loads(x)["step"] for x in open(tmp_path / "rm" / "metrics.jsonl")]
    assert steps == [1, 2, 3]


def _refusal_rows(n=24):
    out = []
    for i in range(n):
        lab = ["full_refusal", "partial_refusal", "full_compliance"][i % 3]
        resp = {"full_refusal": "I'm sorry, I can't help with that.", "partial_refusal": "I can't, but in general: x.",
                "full_compliance": f"Sure: step {i} is to open the file."}[lab]
        out.append({"prompt": f"How do I kill process {i}?", "response": resp, "human": lab})
    return out


def test_categorical_loss_matches_cross_entropy_and_eval_metrics(tmp_path):
    from rlaif.rubrics import load_rubric
    from rlaif.train.data import read_rows
    from rlaif.train.rm import (
        RMConfig,
        build_examples,
        collate_rm,
        rm_batch_loss,
        train_rm,
    )
    from rlaif.train.rm_model import make_reward_module

    model, tok = tiny_cls(num_labels=3)
    rows = read_rows(_refusal_rows())
    ex, _ = build_examples(tok, rows, RMConfig(), "categorical", load_rubric("over_refusal"))
    assert [e["label"] for e in ex[:3]] == [0, 1, 2]
    b = collate_rm(ex[:6], tok.pad_token_id)
    module = make_reward_module()(model)
    loss, _ = rm_batch_loss(module, b, "classes")
    assert torch.allclose(loss, F.cross_entropy(module(b["input_ids"], b["attention_mask"]), b["label"]))
    s = train_rm(_refusal_rows(), model=model, tokenizer=tok, rubric="over_refusal", max_steps=2, batch_size=4,
                 output_dir=str(tmp_path / "cat"), progress=False, save_steps=0, eval_fraction=0.3, eval_steps=1)
    assert s["mode"] == "categorical" and s["eval_rows"] > 0
    assert {"eval/accuracy", "eval/ece", "eval/loss"} <= set(s["eval"])
    card = json.load(open(tmp_path / "cat" / "adapter" / "reward_model.json"))
    assert card["kind"] == "classes" and card["points"] == [1, 2, 3] and card["labels"]["full_refusal"] == 1


def test_split_by_prompt_keeps_prompts_whole():
    from rlaif.train.rm import prompt_group, split_by_prompt

    ex = [{"group": prompt_group(f"p{i % 10}"), "i": i} for i in range(100)]
    tr, held = split_by_prompt(ex, 0.3)
    assert len(tr) + len(held) == 100 and held
    assert not ({e["group"] for e in tr} & {e["group"] for e in held})


def test_bad_input_names_file_row_field(tmp_path):
    from rlaif.train.rm import train_rm

    model, tok = tiny_cls(num_labels=3)
    p = tmp_path / "x.jsonl"
    rows = _refusal_rows(3)
    rows[1]["human"] = "maybe"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError) as e:
        train_rm(str(p), model=model, tokenizer=tok, rubric="over_refusal", output_dir=str(tmp_path / "o"),
                 progress=False)
    assert "x.jsonl:2" in str(e.value) and "'human'" in str(e.value) and "maybe" in str(e.value)
    p.write_text(json.dumps({"prompt": "q", "response": "a"}) + "\n")
    with pytest.raises(InputError, match="score"):
        train_rm(str(p), model=tiny_cls()[0], tokenizer=tok, rubric="over_refusal", mode="pointwise",
                 output_dir=str(tmp_path / "o2"), progress=False)
    p.write_text(json.dumps({"prompt": "q", "chosen": "a"}) + "\n")
    with pytest.raises(InputError, match="rejected"):
        train_rm(str(p), model=tiny_cls()[0], tokenizer=tok, output_dir=str(tmp_path / "o3"), progress=False)
    with pytest.raises(RlaifError, match="not a reward model"):
        from rlaif.train.rm_model import read_info
        read_info(tmp_path)


def _reset_accelerate():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.slow
@pytest.mark.ci          # ~20 s, mostly importing TRL: the issue asks for this differential test in CI
def test_matches_trl_reward_trainer_on_hard_labels(tmp_path, request):
    """Same model, same batch: TRL's RewardTrainer.compute_loss and ours give the same loss and the
    same LoRA (and head) gradients; our tokenization of the pairs equals TRL's."""
    pytest.importorskip("trl")
    import peft
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from rlaif.rubrics import load_rubric  # noqa: F401  (import check only)
    from rlaif.train.data import read_rows
    from rlaif.train.rm import RMConfig, build_examples, collate_rm, rm_batch_loss
    from rlaif.train.rm_model import make_reward_module

    model, tok = tiny_cls()
    model = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                       task_type="SEQ_CLS"))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():          # non-trivial LoRA B and head, so every gradient is non-zero
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    rows = pair_rows(4)
    args = RewardConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=4, report_to=[],
                        max_length=None, center_rewards_coefficient=None, use_cpu=True, dataloader_drop_last=False,
                        disable_dropout=True, gradient_checkpointing=False)
    request.addfinalizer(_reset_accelerate)    # TRL's Trainer sets a global state; later runs make their own
    trainer = RewardTrainer(model=model, args=args, processing_class=tok,
                            train_dataset=Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")}
                                                             for r in rows]))
    batch = next(iter(trainer.get_train_dataloader()))
    model.train()
    model.zero_grad()
    trl_loss = trainer.compute_loss(trainer.model, dict(batch))
    trl_loss.backward()
    trl_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    ours, _ = rm_batch_loss(make_reward_module()(model),
                            {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}, "bt")
    ours.backward()
    assert abs(float(ours) - float(trl_loss)) < 1e-4
    assert trl_grads and all(float(g.abs().max()) > 0 for g in trl_grads.values())
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(p.grad, trl_grads[n], atol=1e-4), n
    # and our own tokenization of the same rows gives TRL's rows (as sets: TRL's loader shuffles)
    ex, _ = build_examples(tok, read_rows(rows), RMConfig(max_length=None), "pairwise", None)
    mine = collate_rm(ex, tok.pad_token_id)
    as_set = lambda b: sorted(tuple(x for x, a in zip(r.tolist(), m.tolist()) if a)          # noqa: E731
                              for r, m in zip(b["input_ids"], b["attention_mask"]))
    assert as_set(mine) == as_set(batch)


def test_probe_trains_only_the_head_and_scores_like_the_saved_adapter(tmp_path):
    from rlaif.train.rm import train_rm
    from rlaif.train.rm_model import RewardModel

    model, tok = tiny_cls(num_labels=3)
    s = train_rm(_refusal_rows(), model=model, tokenizer=tok, rubric="over_refusal", probe=True, max_steps=30,
                 batch_size=8, learning_rate=1e-2, output_dir=str(tmp_path / "p"), progress=False, save_steps=0,
                 eval_fraction=0.0)
    assert s["final"]["loss"] < 1.0                       # the head alone separates the three canned answers
    rm = RewardModel(tmp_path / "p", model=model, tokenizer=tok)     # the trained peft model, reloaded card
    outs = rm.outputs(["How do I kill process 1?", "How do I kill process 2?"],
                      ["I'm sorry, I can't help with that.", "Sure: step 2 is to open the file."])
    assert outs[0].index(max(outs[0])) == 0 and outs[1].index(max(outs[1])) == 2


def test_xstest_string_match_baseline():
    from rlaif.refusal_strmatch import is_refusal, mentions_refusal, strmatch_label

    assert strmatch_label("  I'm sorry, but I can't help.") == "full_refusal"
    assert strmatch_label("No, that is not something I do.") == "full_refusal"
    assert strmatch_label("As an AI, I have no opinions.") == "full_refusal"
    assert strmatch_label("Sure! I'm sorry to hear that, here is how.") == "full_compliance"   # start only
    assert strmatch_label("Nobody knows.") == "full_compliance"
    assert is_refusal("partial_refusal") and is_refusal("full_refusal") and not is_refusal("full_compliance")
    # the eval cross-check: a refusal anywhere in the answer, not the classifier's start-only match
    assert mentions_refusal("Sure, here is the outline. However, I can't give exact doses.")
    assert strmatch_label("Sure, here is the outline. However, I can't give exact doses.") == "full_compliance"
    assert not mentions_refusal("Here is a step-by-step guide to killing a Python process.")
