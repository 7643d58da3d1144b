"""`rlaif train dpo DATA`: LoRA DPO (and IPO, hinge, robust, soft-label DPO) on preference pairs.

The loop, top to bottom: tokenize pairs (prompt/completion boundary under the chat template) →
optionally precompute the reference log-probs once (adapter disabled; saves a forward pass per
step) → per micro-batch: one forward over [chosen; rejected], the reference forward with the
adapter disabled (or the frozen "ref" adapter), the loss from losses.py → accumulate → step →
log (loss, reward margins, accuracies, chosen/rejected log-probs) → checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rlaif.errors import ConfigError, Problem, RlaifError
from rlaif.train import losses
from rlaif.train.loop import Run, TrainConfig, batch_logps
from rlaif.train.loop import with_overrides as _with


@dataclass
class DPOConfig(TrainConfig):
    beta: float = 0.1                   # the DPO paper's default: strong enough pull to the reference
    loss_type: str = "sigmoid"          # sigmoid | ipo | hinge | robust
    label_smoothing: float = 0.0        # cDPO / robust DPO: assumed share of flipped labels
    soft_labels: bool = False           # use each pair's judge probability p_chosen as the target
    precompute_ref: bool = False        # one pass over the data for the reference log-probs, then reuse
    split: str = "train"
    learning_rate: float = 5e-5


DPO_KEYS = ("loss", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected")


def dpo_batch_loss(lp_model, ref_model, batch: dict, cfg: DPOConfig) -> tuple:
    """Loss and metrics of one DPO micro-batch (padded, or packed: one prompt | chosen | rejected
    document per pair). `lp_model` gives per-token log-probs (policy); `ref_model` is the peft
    model (reference via lora.reference) or None when the batch carries precomputed reference
    log-probs."""
    import torch

    from rlaif.train.lora import reference

    cmask = batch["completion_mask"]
    per_tok = batch_logps(lp_model, batch)
    logps = per_tok.sum(-1)
    chosen, rejected = logps.chunk(2)
    if "ref_chosen_logps" in batch:
        ref_chosen, ref_rejected = batch["ref_chosen_logps"], batch["ref_rejected_logps"]
    else:
        with torch.no_grad(), reference(ref_model):
            ref_chosen, ref_rejected = _ref_forward(lp_model, batch).sum(-1).chunk(2)
    lengths = cmask[:, 1:].sum(-1).float()
    c_len, r_len = lengths.chunk(2)
    per_pair = losses.dpo_losses(chosen, rejected, ref_chosen, ref_rejected, beta=cfg.beta, loss_type=cfg.loss_type,
                                 label_smoothing=cfg.label_smoothing,
                                 p_chosen=batch.get("p_chosen") if cfg.soft_labels else None,
                                 chosen_lengths=c_len, rejected_lengths=r_len)
    loss = per_pair.mean()
    m = losses.dpo_rewards(chosen, rejected, ref_chosen, ref_rejected, cfg.beta)
    m.update({"logps/chosen": chosen.detach(), "logps/rejected": rejected.detach()})
    return loss, m


def _ref_forward(lp_model, batch):
    """Reference log-probs through the same (possibly DDP/FSDP-wrapped) module: FSDP must gather
    its shards for any forward; under no_grad DDP skips its gradient bookkeeping."""
    return batch_logps(lp_model, batch)


def precompute_reference(run: Run, examples: list[dict], cfg: DPOConfig) -> None:
    """Fill ref_chosen_logps / ref_rejected_logps into each example (the reference never changes)."""
    import torch
    from accelerate.utils import send_to_device

    from rlaif.train.data import collate_pairs, pad_id_of
    from rlaif.train.lora import reference

    model = run.peft_model.to(run.device)
    lp = run.lp_model.to(run.device)
    bs = max(1, cfg.batch_size)
    with torch.no_grad(), reference(model), run.acc.autocast():
        for i in range(0, len(examples), bs):
            chunk = examples[i:i + bs]
            b = collate_pairs(chunk, pad_id_of(run.tok), cfg.max_length, cfg.pad_multiple, run.layout)
            c, r = batch_logps(lp, send_to_device(b, run.device)).sum(-1).chunk(2)
            for e, cv, rv in zip(chunk, c.tolist(), r.tolist()):
                e["ref_chosen_logps"], e["ref_rejected_logps"] = cv, rv


def train_dpo(data, cfg: DPOConfig | None = None, *, model=None, tokenizer=None, **overrides) -> dict:
    """Train a LoRA adapter with DPO on preference pairs; the CLI's `rlaif train dpo` calls this.

    data: a dataset folder from `rlaif pairs`, a JSONL file, or a list of rows (prompt/chosen/
    rejected as message lists or strings). Keyword overrides set DPOConfig fields
    (`train_dpo("pairs/", max_steps=50, output_dir="out")`). `model`/`tokenizer`: an already
    loaded causal LM to train instead of `cfg.model`. Returns a summary; the adapter is written
    to OUT/adapter, metrics to OUT/metrics.jsonl, checkpoints to OUT/checkpoint-N.
    """
    from rlaif.train.data import check_pairs, collate_pairs, pad_id_of, read_rows, tokenize_pairs

    if isinstance(model, str):          # a model name or folder, not a loaded model
        model, overrides = None, dict(overrides, model=model)
    cfg = _with(cfg or DPOConfig(), overrides)
    problems = []       # every problem at once, each named by its field (the CLI shows the flag)
    if cfg.loss_type not in losses.DPO_LOSSES:
        problems.append(Problem("loss_type", f"unknown DPO loss '{cfg.loss_type}'; choose one of "
                                             f"{', '.join(losses.DPO_LOSSES)}"))
    if cfg.soft_labels and cfg.loss_type != "sigmoid":
        problems.append(Problem("soft_labels", "works with the sigmoid loss only"))
    if problems:
        raise ConfigError(problems, source="options")
    run = Run(cfg, "dpo")
    rows = read_rows(data, cfg.split)
    check_pairs(rows)
    if model is None:
        model, tok = run.load_model()
    else:
        model, tok = run.setup_model(model, tokenizer)
    examples, dropped = tokenize_pairs(tok, rows, cfg.max_length, soft_labels=cfg.soft_labels)
    if not examples:
        raise RlaifError(f"{rows.path}: no usable pairs (all {dropped} prompts are longer than "
                         f"max_length {cfg.max_length})")
    if dropped and run.main:
        print(f"dropped {dropped} pairs whose prompt alone is ≥ max_length {cfg.max_length} tokens", flush=True)
    if cfg.precompute_ref:
        precompute_reference(run, examples, cfg)
    pad = pad_id_of(tok)
    run.prepare(len(examples), lambda idx: collate_pairs([examples[i] for i in idx], pad, cfg.max_length,
                                                         cfg.pad_multiple, run.layout))
    history = run.train_loop(lambda batch: dpo_batch_loss(run.lp_model, run.model, batch, cfg), DPO_KEYS)
    last = history[-1] if history else {}
    return run.finish({"data": rows.path, "pairs": len(examples), "dropped": dropped, "final": last,
                       "loss_type": cfg.loss_type})


__all__ = ["DPOConfig", "train_dpo", "dpo_batch_loss", "field"]
