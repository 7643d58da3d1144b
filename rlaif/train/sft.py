"""`rlaif train sft DATA`: LoRA SFT on the best-judged response of each prompt.

Rejection-sampling distillation: sample N candidates, judge them (`rlaif judge`, absolute mode),
train on the winner of each prompt. The cheapest baseline to compare DPO and GRPO against, and
the seed's SFT phase. Input: the judged JSONL (prompt, response, score; unscored rows never win)
or a preference dataset, whose `chosen` side is the demonstration. Shares data handling,
checkpoints and metrics with DPO and GRPO (loop.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from rlaif.errors import RlaifError
from rlaif.train import losses
from rlaif.train.loop import Run, TrainConfig, batch_logps


@dataclass
class SFTConfig(TrainConfig):
    learning_rate: float = 1e-4      # plain NLL tolerates a larger LoRA step than DPO
    split: str = "train"


SFT_KEYS = ("loss", "confident_tokens")


def train_sft(data, cfg: SFTConfig | None = None, *, model=None, tokenizer=None, **overrides) -> dict:
    """Train a LoRA adapter on the best-judged response per prompt; `rlaif train sft` calls this.
    Returns a summary; adapter in OUT/adapter, metrics in OUT/metrics.jsonl."""
    import torch

    from rlaif.train.data import best_demos, collate_demos, pad_id_of, read_rows, tokenize_demos
    from rlaif.train.loop import with_overrides as _with

    if isinstance(model, str):          # a model name or folder, not a loaded model
        model, overrides = None, dict(overrides, model=model)
    cfg = _with(cfg or SFTConfig(), overrides)
    run = Run(cfg, "sft")
    rows = read_rows(data, cfg.split)
    demos, stats = best_demos(rows)
    if not demos:
        raise RlaifError(f"{rows.path}: no scored rows to learn from ({stats['unscored']} unscored)")
    if model is None:
        model, tok = run.load_model()
    else:
        model, tok = run.setup_model(model, tokenizer)
    examples, dropped = tokenize_demos(tok, demos, cfg.max_length)
    if not examples:
        raise RlaifError(f"{rows.path}: every prompt is longer than max_length {cfg.max_length}")
    pad = pad_id_of(tok)
    run.prepare(len(examples), lambda idx: collate_demos([examples[i] for i in idx], pad, cfg.max_length,
                                                         cfg.pad_multiple, run.layout))

    def micro_step(b):
        per_tok = batch_logps(run.lp_model, b)
        loss = losses.sft_loss(per_tok, b["completion_mask"][:, 1:])
        with torch.no_grad():
            m = b["completion_mask"][:, 1:].bool()
            # share of completion tokens the model gives probability > 1/2 (a lower bound on
            # top-1 accuracy that needs no logits)
            acc = (per_tok[m] > -0.6931).float().mean()
        return loss, {"confident_tokens": acc}

    history = run.train_loop(micro_step, SFT_KEYS)
    return run.finish({"data": rows.path, "demos": len(examples), "dropped": dropped, "source": stats,
                       "final": history[-1] if history else {}})
