"""Packed batches and the fused LM-head log-probs (rlaif/train/packing.py, logps.py): the layout by
hand, and exactness — with each lever on and off, DPO-family losses, per-token log-probs and every
LoRA gradient equal the padded batch's; GRPO groups sharing a prompt give the unpacked log-probs."""
import copy

import pytest
import torch

from rlaif.train.data import collate_demos, collate_pairs, read_rows, tokenize_pairs
from rlaif.train.dpo import DPOConfig, dpo_batch_loss
from rlaif.train.logps import head_logps
from rlaif.train.loop import _make_logprob_module, batch_logps
from rlaif.train.lora import LoraSettings, add_lora
from rlaif.train.packing import Layout, allowed, build_packed, last_token_index, round_width
from tests._train_utils import pair_rows, tiny_lm

LAYOUTS = {"padded": None, "share+pack": Layout(), "share": Layout(pack=False), "pack": Layout(share_prompt=False),
           "eager-mask": Layout(mask="eager"), "ladder": Layout(pack=False, ladder=True)}


def test_pair_layout_by_hand():
    # pair A: prompt [5 6 7], chosen [8 9], rejected [10]; pairs B [1]|[2]|[3] and C [4]|[11]|[12] share row 1
    docs = [([5, 6, 7], [[8, 9], [10]], [0, 3]), ([1], [[2], [3]], [1, 4]), ([4], [[11], [12]], [2, 5])]
    p = build_packed(docs, 6, 0, Layout())
    assert p["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 11, 12]]
    assert p["position_ids"].tolist() == [[0, 1, 2, 3, 4, 3], [0, 1, 1, 0, 1, 1]]    # rejected restarts
    assert p["branch"].tolist() == [[0, 0, 0, 1, 1, 2], [0, 1, 2, 0, 1, 2]]
    m = allowed(p["doc"], p["branch"])
    assert m[0, 5].tolist() == [True, True, True, False, False, True]        # rejected: the prompt and itself
    assert m[1, 4].tolist() == [False, False, False, True, True, False]      # C never sees B
    assert m[1, 2].tolist() == [True, False, True, False, False, False]
    # scored tokens: which hidden state predicts each, and where it lands in the (6, T-1) layout
    assert p["src"].tolist() == [2, 3, 2, 6, 6, 9, 9] and p["labels"].tolist() == [8, 9, 10, 2, 3, 11, 12]
    T = p["out_shape"][1]
    assert p["out_shape"] == (6, 4) and [(o // T, o % T) for o in p["out"].tolist()] == [
        (0, 2), (0, 3), (3, 2), (1, 0), (4, 0), (2, 0), (5, 0)]
    assert last_token_index(p).tolist() == [4, 7, 10, 5, 8, 11]
    # without sharing: one document per continuation, the prompt repeated; max_length cuts continuations
    q = build_packed([([5, 6, 7], [[8, 9], [10]], [0, 1])], 2, 0, Layout(share_prompt=False), max_length=4)
    assert q["input_ids"].tolist() == [[5, 6, 7, 8], [5, 6, 7, 10]] and q["labels"].tolist() == [8, 10]
    # the flex-attention mask_mod states the same rule, token by token
    from rlaif.train.packing import flex_mask_mod

    q, kv = torch.arange(6)[:, None], torch.arange(6)[None, :]
    for r in range(2):
        assert torch.equal(flex_mask_mod(p["doc"], p["branch"])(torch.tensor(r), 0, q, kv), m[r])
    v = build_packed(docs, 6, 0, Layout(share_prompt=False, mask="varlen"))    # flash-attention: one flat row
    assert v["input_ids"].tolist() == [[5, 6, 7, 8, 9, 5, 6, 7, 10, 1, 2, 1, 3, 4, 11, 4, 12]]
    assert v["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 0, 1, 0, 1, 0, 1]]
    assert round_width(65, ladder=True) == 96 and round_width(97, ladder=True) == 128 and round_width(65, 64) == 128


def test_head_logps_value_and_gradient_are_exact():
    torch.manual_seed(0)
    h = torch.randn(50, 16, requires_grad=True)
    w, b = torch.randn(97, 16), torch.randn(97)
    lab = torch.randint(0, 97, (50,))
    up = torch.rand(50)                                    # a non-uniform upstream gradient
    ref = torch.log_softmax(h @ w.T + b, -1).gather(-1, lab[:, None]).squeeze(-1)
    (g_ref,) = torch.autograd.grad((ref * up).sum(), h)
    for kernel in ("torch", "checkpoint"):
        out = head_logps(h, w, b, lab, chunk=7, kernel=kernel)
        (g,) = torch.autograd.grad((out * up).sum(), h)
        assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(g, g_ref, atol=1e-5), kernel
    with torch.no_grad():
        assert torch.allclose(head_logps(h, w, b, lab, chunk=7), ref, atol=1e-5)
    with pytest.raises(ValueError):
        head_logps(h, w, b, lab, kernel="nope")
    from rlaif.train.logps import chunk_rows

    assert chunk_rows(49152) == 640 and chunk_rows(128256) == 256 and chunk_rows(100) == 4096


def _lora_model():
    base, tok = tiny_lm(seed=1)
    torch.manual_seed(2)
    return add_lora(base, LoraSettings(r=8, alpha=16, init_weights=False)), tok   # policy ≠ reference


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge", "robust"])
def test_every_lever_gives_the_padded_loss_and_lora_gradients(loss_type):
    model, tok = _lora_model()
    lp = _make_logprob_module()(model)
    rows = pair_rows(5)
    rows[1]["prompt"][0]["content"] += " Think of the sea and the sky first."      # prompts of unequal length
    ex, _ = tokenize_pairs(tok, read_rows(rows), max_length=None)
    cfg = DPOConfig(beta=0.3, loss_type=loss_type, label_smoothing=0.1 if loss_type == "robust" else 0.0)
    out = {}
    for name, layout in LAYOUTS.items():
        model.zero_grad()
        b = collate_pairs(ex, tok.pad_token_id, 40, 1, layout)       # max_length 40 cuts some completions
        loss, m = dpo_batch_loss(lp, model, b, cfg)
        loss.backward()
        with torch.no_grad():
            per = batch_logps(lp, b)
        out[name] = (loss.detach(), m, per, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    loss0, m0, per0, g0 = out["padded"]
    assert m0["rewards/margins"].abs().sum() > 1e-3 and len(g0) > 0
    for name, (loss, m, per, g) in out.items():
        assert loss.item() == pytest.approx(loss0.item(), abs=1e-4), name
        assert per.shape == per0.shape and torch.allclose(per, per0, atol=1e-4), name
        for k in ("logps/chosen", "logps/rejected", "rewards/margins"):
            assert torch.allclose(m[k], m0[k], atol=1e-4), (name, k)
        for n, grad in g.items():
            assert torch.allclose(grad, g0[n], atol=1e-4, rtol=1e-3), (name, n)


def test_packing_fits_short_sequences_into_one_row_and_sft_matches():
    model, tok = _lora_model()
    lp = _make_logprob_module()(model)
    ex = [{"prompt_ids": list(range(3, 3 + n)), "completion_ids": list(range(40, 40 + k))}
          for n, k in ((20, 10), (4, 3), (5, 2), (9, 6))]
    packed = collate_demos(ex, tok.pad_token_id, None, 1, Layout())
    assert packed["packed"]["input_ids"].shape == (2, 30)          # 30 | 7 + 7 + 15 (padding-free, first fit)
    with torch.no_grad():
        a = batch_logps(lp, collate_demos(ex, tok.pad_token_id))
        b = batch_logps(lp, packed)
    assert torch.allclose(a, b, atol=1e-5) and (a != 0).sum() == 10 + 3 + 2 + 6


def test_grpo_group_shares_its_prompt_with_the_unpacked_logps():
    from rlaif.train.grpo import collate_group

    model, tok = _lora_model()
    lp = _make_logprob_module()(model)
    prompts = [[1, 5, 9, 11, 2], [1, 7, 2]]
    comps = [[20, 21, 22], [23], [], [24, 25], [26, 27, 28, 29], [30]]          # G = 3; one empty completion
    padded = collate_group(prompts, comps, 3, tok.pad_token_id)
    packed = collate_group(prompts, comps, 3, tok.pad_token_id, Layout())
    assert packed["packed"]["input_ids"].numel() < padded["input_ids"].numel()
    a, b = batch_logps(lp, padded), batch_logps(lp, packed)
    assert torch.allclose(a, b, atol=1e-5)
    ga = torch.autograd.grad((a * torch.arange(a.numel()).view_as(a)).sum(), [p for p in model.parameters()
                                                                               if p.requires_grad])
    gb = torch.autograd.grad((b * torch.arange(b.numel()).view_as(b)).sum(), [p for p in model.parameters()
                                                                               if p.requires_grad])
    assert all(torch.allclose(x, y, atol=1e-4) for x, y in zip(ga, gb, strict=True))


def test_a_model_without_mask_support_takes_padded_batches(capsys):
    from rlaif.train.loop import TrainConfig, layout_for

    model, _ = _lora_model()
    assert layout_for(model, TrainConfig()) == Layout(mask="sdpa")
    assert layout_for(model, TrainConfig(compile=True)) == Layout(pack=False, ladder=True)
    assert layout_for(model, TrainConfig(packing=False, share_prompt=False)) is None
    other = copy.deepcopy(model)
    other.get_base_model().config.sliding_window = 64
    assert layout_for(other, TrainConfig()) is None
    assert layout_for(other, TrainConfig()) is None
    assert capsys.readouterr().err.count("packed batches are off") == 1        # said once


def test_reward_model_reads_each_sequence_last_token_from_a_packed_batch():
    """The reward-model path: the hidden state at each sequence's last token, read from a packed pair
    batch, equals the padded forward's hidden state at that sequence's last token."""
    from rlaif.train.loop import packed_hidden_states

    model, tok = _lora_model()
    ex, _ = tokenize_pairs(tok, read_rows(pair_rows(3)), max_length=None)
    padded = collate_pairs(ex, tok.pad_token_id)
    packed = collate_pairs(ex, tok.pad_token_id, None, 1, Layout())["packed"]
    with torch.no_grad():
        h = packed_hidden_states(model, packed)[last_token_index(packed)]
        lm = model.get_base_model()
        full = lm.model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).last_hidden_state
        last = padded["attention_mask"].sum(1) - 1
        ref = full[torch.arange(full.size(0)), last]
    assert h.shape == ref.shape and torch.allclose(h, ref, atol=1e-5)


@pytest.mark.parametrize("ref", ["adapter-disabled", "ref-adapter"])
@pytest.mark.parametrize("loss_type", ["sigmoid"] + [pytest.param(x, marks=pytest.mark.slow)
                                                     for x in ("ipo", "hinge", "robust")])
def test_packed_batches_still_match_trl(tmp_path, monkeypatch, loss_type, ref):
    """The TRL differential test of test_train_dpo.py, unchanged, with our side fed packed batches
    (prompt | chosen | rejected documents, packed rows) instead of padded ones."""
    import rlaif.train.data as data
    from tests.test_train_dpo import test_matches_trl_dpo_loss_and_lora_gradients as trl_test

    padded = data.collate_pairs
    used = []

    def packed(examples, pad_id, max_length=None, pad_multiple=1, layout=None):
        b = padded(examples, pad_id, max_length, pad_multiple, Layout())
        used.append(b["packed"]["input_ids"].shape)
        return b

    monkeypatch.setattr(data, "collate_pairs", packed)
    trl_test(tmp_path, loss_type, ref)
    assert used and used[0][0] <= 4            # 4 pairs: one document each, not 8 padded rows


def test_flex_block_mask_gives_the_sdpa_attention():
    """flex attention's BlockMask, built from the same rule, attends exactly like the SDPA boolean mask
    (flex run eagerly here; a GPU compiles it)."""
    import warnings

    import torch.nn.functional as F
    from torch.nn.attention.flex_attention import flex_attention

    from rlaif.train.packing import attention_inputs

    docs = [([5, 6, 7], [[8, 9], [10]], [0, 3]), ([1], [[2], [3]], [1, 4]), ([4], [[11], [12]], [2, 5])]
    p = build_packed(docs, 6, 0, Layout(mask="flex_attention"))
    block = attention_inputs(p, torch.float32)["attention_mask"]
    q, k, v = torch.randn(3, 2, 2, 6, 8).unbind(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = flex_attention(q, k, v, block_mask=block)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed(p["doc"], p["branch"])[:, None])
    assert torch.allclose(out, ref, atol=1e-5)


def test_cli_levers_off_give_the_same_loss_curve(tmp_path, capsys):
    """`rlaif train dpo` with every lever off (padded rows, the prompt per continuation, the checkpointed
    head) logs the default run's losses and margins; `--use-vllm` without vLLM or a GPU is a one-line error."""
    import json

    from rlaif.cli import main
    from tests._train_utils import save_tiny

    model = save_tiny(tmp_path / "tiny")
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in pair_rows(4)))
    common = [str(data), "--model", model, "--max-steps", "2", "--batch-size", "2", "--lr", "5e-3", "--quiet"]
    assert main(["train", "dpo", *common, "-o", str(tmp_path / "on")]) == 0
    assert main(["train", "dpo", *common, "-o", str(tmp_path / "off"), "--no-packing", "--no-share-prompt",
                 "--logp-kernel", "checkpoint"]) == 0
    on, off = ([json.loads(x) for x in open(tmp_path / d / "metrics.jsonl")] for d in ("on", "off"))
    for a, b in zip(on, off, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
        assert a["rewards/margins"] == pytest.approx(b["rewards/margins"], abs=1e-5)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Say hi"}) + "\n")
    capsys.readouterr()
    assert main(["train", "grpo", str(prompts), "--model", model, "--reward", "tests._train_utils:tiny_lm",
                 "--use-vllm", "-o", str(tmp_path / "g"), "--quiet"]) == 2
    assert "vllm" in capsys.readouterr().err.lower()
