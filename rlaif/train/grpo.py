"""`rlaif train grpo PROMPTS --reward ...`: LoRA GRPO with judges and Python functions as rewards.

One optimiser step, top to bottom: take B prompts → sample G completions each with the current
policy (transformers `generate`) → score every completion with every reward (rubric judges through
the judge engine, Python functions) → group-relative advantages (None rewards left out) → per-token
log-probs of the completions under the policy (and under the reference, adapter disabled, when
β > 0) → clipped surrogate + β·k3 KL, aggregated grpo / dr_grpo / dapo → backward → step.
With num_iterations μ > 1 each generated batch is reused for μ optimiser steps (π_old is the
policy that sampled it), as in the GRPO paper.

Reported per step: loss, reward mean/std over scored completions, each reward function's mean,
the share of groups whose rewards have zero spread (they teach nothing), unscored share, KL,
clip ratio and completion length.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from rlaif.errors import RlaifError
from rlaif.train import losses
from rlaif.train.loop import Run, TrainConfig


@dataclass
class GRPOConfig(TrainConfig):
    rewards: list = field(default_factory=list)       # specs or callables (rewards.py)
    reward_weights: list[float] | None = None
    num_generations: int = 8           # G: completions per prompt; the group the baseline is taken over
    max_completion_length: int = 128
    temperature: float = 1.0           # sample from the policy itself: the objective assumes on-policy samples
    top_p: float = 1.0
    beta: float = 0.0                  # KL weight; 0 (Dr. GRPO, DAPO): no reference pass, cheaper, works as well
    epsilon: float = 0.2
    epsilon_high: float | None = None  # DAPO's clip-higher (0.28); None: same as epsilon
    loss_type: str = "dapo"            # token-level normalisation: no length bias (TRL's default too)
    scale_rewards: str = "group"       # group | batch | none
    num_iterations: int = 1            # μ: optimiser steps per generated batch
    batch_size: int = 2                # prompts per micro-batch (× G completions)
    learning_rate: float = 1e-5
    use_vllm: bool | None = None       # None: vLLM when it is installed and CUDA is available
    split: str = "train"
    # rm:PATH rewards (rm_reward.py): the LLM judge for the fallback band and the drift watch
    fallback: object = None            # "rubric:NAME@provider/model" or a reward callable
    fallback_band: float | None = None  # rubric-scale distance from the group mean sent to the judge
    drift_every: int = 0               # every K reward calls, judge a fixed slice too (0: off)
    drift_n: int = 8
    drift_floor: float | None = None
    drift_action: str = "warn"         # warn | stop


GRPO_KEYS = ("loss", "reward", "reward_std", "frac_zero_std", "completion_length")


def _generate(run: Run, prompt_ids: list[list[int]], cfg: GRPOConfig):
    """G samples per prompt from the current policy -> (prompt index, completion ids) per sample,
    completion ids cut after the first EOS."""
    import torch

    from rlaif.train.data import pad_id_of

    tok, model = run.tok, run.model
    pad = pad_id_of(tok)
    width = max(len(p) for p in prompt_ids)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids], device=run.device)
    attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids], device=run.device)
    eos = model.generation_config.eos_token_id if model.generation_config.eos_token_id is not None else tok.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), run.acc.autocast():
            out = model.generate(input_ids=ids, attention_mask=attn, do_sample=True, temperature=cfg.temperature,
                                 top_p=cfg.top_p, top_k=0, max_new_tokens=cfg.max_completion_length,
                                 num_return_sequences=cfg.num_generations, pad_token_id=pad, use_cache=True)
    finally:
        model.train(was_training)
    comps = []
    for row in out[:, width:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        comps.append(row[:cut])
    return comps


def _as_completion(prompt, text: str):
    return text if isinstance(prompt, str) else [{"role": "assistant", "content": text}]


def grpo_round(run: Run, batch: list[dict], reward_fns: list, weights, cfg: GRPOConfig) -> dict:
    """Generate and score one micro-batch of prompts -> the tensors the loss needs + metrics."""
    import torch

    from rlaif.train.data import collate_sequences, pad_id_of, render_prompt
    from rlaif.train.lora import reference
    from rlaif.train.rewards import score

    G = cfg.num_generations
    prompts = [r["prompt"] for r in batch]
    prompt_ids = [render_prompt(run.tok, p) for p in prompts]
    comp_ids = _generate(run, prompt_ids, cfg)
    texts = run.tok.batch_decode(comp_ids, skip_special_tokens=True)
    rep_prompts = [p for p in prompts for _ in range(G)]
    columns = {k: [r.get(k) for r in batch for _ in range(G)] for k in batch[0] if k not in ("prompt", "_line")}
    columns["completion_ids"] = comp_ids     # as in TRL: token ids, ending with EOS when the answer finished
    per_func = torch.tensor(score(reward_fns, rep_prompts, [_as_completion(p, t) for p, t in zip(rep_prompts, texts)],
                                  columns), dtype=torch.float32)
    rewards = losses.combine_rewards(per_func, weights)
    adv, zero = losses.group_advantages(rewards, G, cfg.scale_rewards)
    seq = collate_sequences([p for p in prompt_ids for _ in range(G)], [c if c else [pad_id_of(run.tok)] for c in comp_ids],
                            pad_id_of(run.tok))
    seq = {k: v.to(run.device) for k, v in seq.items()}
    inner = run.lp_model          # the wrapped module: FSDP gathers shards, DDP skips bookkeeping under no_grad
    with torch.no_grad(), run.acc.autocast():
        old = inner(seq["input_ids"], seq["attention_mask"], seq["completion_mask"]) if cfg.num_iterations > 1 else None
        ref = None
        if cfg.beta:
            with reference(run.model):
                ref = inner(seq["input_ids"], seq["attention_mask"], seq["completion_mask"])
    scored = rewards[~torch.isnan(rewards)]
    m = {"reward": scored.mean() if scored.numel() else torch.tensor(math.nan),
         "reward_std": scored.std() if scored.numel() > 1 else torch.tensor(0.0),
         "frac_zero_std": zero.float().mean(),
         "unscored": torch.isnan(rewards).float().mean(),
         "completion_length": torch.tensor([float(len(c)) for c in comp_ids]).mean()}
    from rlaif.train.rewards import reward_name
    for k, fn in enumerate(reward_fns):
        col = per_func[:, k]
        col = col[~torch.isnan(col)]
        m[f"rewards/{reward_name(fn)}"] = col.mean() if col.numel() else torch.tensor(math.nan)
    return {"seq": seq, "adv": adv.to(run.device), "old": old, "ref": ref, "metrics": m, "texts": texts}


def grpo_micro_loss(run: Run, r: dict, cfg: GRPOConfig, num_items: float | None = None):
    seq = r["seq"]
    logps = run.lp_model(seq["input_ids"], seq["attention_mask"], seq["completion_mask"])
    mask = seq["completion_mask"][:, 1:]
    old = r["old"] if r["old"] is not None else logps.detach()
    return losses.grpo_loss(logps, old, r["ref"], r["adv"], mask, beta=cfg.beta, eps_low=cfg.epsilon,
                            eps_high=cfg.epsilon_high, loss_type=cfg.loss_type,
                            max_completion_length=cfg.max_completion_length, num_items=num_items)


def train_grpo(prompts, cfg: GRPOConfig | None = None, *, model=None, tokenizer=None, **overrides) -> dict:
    """Train a LoRA adapter with GRPO; the CLI's `rlaif train grpo` calls this.

    prompts: JSONL file, dataset folder or list of rows with a `prompt` (string or messages);
    other columns reach the reward functions as keyword arguments. rewards (GRPOConfig.rewards):
    specs like "rubric:helpfulness@local/default", "pkg.mod:fn", "file.py:fn", or callables.
    Returns a summary; the adapter is written to OUT/adapter, metrics to OUT/metrics.jsonl.
    """
    import torch

    from rlaif.train.data import read_prompts, read_rows
    from rlaif.train.loop import with_overrides as _with
    from rlaif.train.rewards import RubricReward, load_reward

    if isinstance(model, str):          # a model name or folder, not a loaded model
        model, overrides = None, dict(overrides, model=model)
    cfg = _with(cfg or GRPOConfig(), overrides)
    problems = []
    if not cfg.rewards:
        problems.append("no reward: pass --reward rubric:NAME[@judge] or --reward module:function")
    if cfg.loss_type not in losses.GRPO_LOSSES:
        problems.append(f"unknown loss '{cfg.loss_type}' (choose {', '.join(losses.GRPO_LOSSES)})")
    if cfg.scale_rewards not in losses.ADV_SCALING:
        problems.append(f"unknown reward scaling '{cfg.scale_rewards}' (choose {', '.join(losses.ADV_SCALING)})")
    if cfg.num_generations < 2:
        problems.append("num_generations must be ≥ 2: the advantage is relative to the group")
    if cfg.reward_weights is not None and len(cfg.reward_weights) != len(cfg.rewards):
        problems.append(f"{len(cfg.reward_weights)} reward weights for {len(cfg.rewards)} rewards")
    if problems:
        raise RlaifError("; ".join(problems))
    if cfg.use_vllm:
        raise RlaifError("vLLM generation is not implemented yet; run without --use-vllm (transformers generate)")
    run = Run(cfg, "grpo")
    rows = read_prompts(read_rows(prompts, cfg.split))
    reward_fns = [load_reward(s) for s in cfg.rewards]
    _configure_rm_rewards(reward_fns, cfg, run.device)
    weights = torch.tensor(cfg.reward_weights, dtype=torch.float32) if cfg.reward_weights else None
    if model is None:
        model, tok = run.load_model()
    else:
        model, tok = run.setup_model(model, tokenizer)
    run.prepare(len(rows), lambda idx: [rows[i] for i in idx])
    run.start_progress()
    history, cache = [], []
    mu = max(1, cfg.num_iterations)
    try:
        while run.step < cfg.max_steps:
            if run.step % mu == 0:          # a fresh generation batch every μ steps
                cache = [grpo_round(run, run.next_batch(), reward_fns, weights, cfg) for _ in range(cfg.grad_accum)]
            n_tokens = sum(float(r["seq"]["completion_mask"].sum()) for r in cache)
            parts = []
            for k, r in enumerate(cache):
                with run.accumulate(k), run.acc.autocast():
                    # dapo: normalise by the tokens of the whole accumulated batch (× grad_accum undoes
                    # run.backward's division), so every token weighs the same
                    loss, lm = grpo_micro_loss(run, r, cfg, num_items=n_tokens / cfg.grad_accum if cfg.loss_type == "dapo" else None)
                    run.backward(loss)
                run.tokens += int(r["seq"]["attention_mask"].sum())
                parts.append(dict(r["metrics"], loss=loss.detach(), **lm))
            grad_norm = run.optimizer_step()
            metrics = run.reduce(_nanavg(parts))
            metrics["grad_norm"] = grad_norm
            for fn in reward_fns:
                if isinstance(fn, RubricReward) and fn.errors:
                    metrics[f"unscored/{fn.__name__}"] = sum(fn.errors.values())
                if hasattr(fn, "step_metrics"):          # rm: fallback count, drift agreement
                    metrics.update(fn.step_metrics())
            history.append(run.log(metrics, GRPO_KEYS))
            if run.step % mu == 0:
                run.maybe_save()
    finally:
        run.stop_progress()
    return run.finish({"prompts": len(rows), "final": history[-1] if history else {},
                       "loss_type": cfg.loss_type, "rewards": [str(s) if isinstance(s, str) else getattr(s, "__name__", "fn")
                                                              for s in cfg.rewards]})


def _configure_rm_rewards(reward_fns: list, cfg: GRPOConfig, device) -> None:
    """rm:PATH rewards run on the training device; the fallback / drift options attach the LLM judge."""
    from rlaif.train.rm_reward import RMReward

    rms = [fn for fn in reward_fns if isinstance(fn, RMReward)]
    wants = cfg.fallback is not None or cfg.fallback_band is not None or cfg.drift_every
    if wants and not rms:
        raise RlaifError("--fallback / --fallback-band / --drift-every apply to an rm:PATH reward")
    band = cfg.fallback_band if cfg.fallback_band is not None else (0.25 if cfg.fallback is not None else None)
    for fn in rms:
        fn.device = fn.device or device
        fn.configure(judge=cfg.fallback, band=band, drift_every=cfg.drift_every, drift_n=cfg.drift_n,
                     drift_floor=cfg.drift_floor, drift_action=cfg.drift_action, out_dir=cfg.output_dir)


def _nanavg(parts: list[dict]) -> dict:
    import torch

    out = {}
    for k in parts[0]:
        v = torch.stack([torch.as_tensor(p[k]).float().mean().cpu() for p in parts])
        out[k] = torch.nanmean(v) if not torch.isnan(v).all() else torch.tensor(math.nan)
    return out
