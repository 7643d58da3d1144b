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

import dataclasses
import math
import os
from dataclasses import dataclass, field

from rlaif.errors import ConfigError, Problem, RlaifError
from rlaif.train import losses
from rlaif.train.loop import Run, TrainConfig, batch_logps


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
    use_vllm: bool | None = None       # None: vLLM where installed and CUDA runs (else generate, said once)
    vllm_mode: str = "colocate"        # colocate: in this process, asleep between rounds | server: vllm_server_url
    vllm_server_url: str = "http://localhost:8000"
    vllm_server_timeout: float = 600.0
    vllm_gpu_memory_utilization: float = 0.3   # colocate: vLLM's share of the GPU while awake (TRL's default)
    vllm_max_model_len: int | None = None      # colocate: None = the model's own limit
    split: str = "train"
    # rm:PATH rewards (rm_reward.py): the LLM judge for the fallback band and the drift watch
    fallback: object = None            # "rubric:NAME@provider/model" or a reward callable
    fallback_band: float | None = None  # rubric-scale distance from the group mean sent to the judge
    drift_every: int = 0               # every K reward calls, judge a fixed slice too (0: off)
    drift_n: int = 8
    drift_floor: float | None = None
    drift_action: str = "warn"         # warn | stop


GRPO_KEYS = ("loss", "reward", "reward_std", "frac_zero_std", "completion_length")


def _as_completion(prompt, text: str):
    return text if isinstance(prompt, str) else [{"role": "assistant", "content": text}]


def grpo_round(run: Run, batch: list[dict], reward_fns: list, weights, cfg: GRPOConfig, generator=None) -> dict:
    """Generate and score one micro-batch of prompts -> the tensors the loss needs + metrics.
    generator: generation.make_generator's sampler (default: transformers generate)."""
    import torch
    from accelerate.utils import send_to_device

    from rlaif.train.data import pad_id_of, render_prompt
    from rlaif.train.lora import reference
    from rlaif.train.rewards import score

    G = cfg.num_generations
    prompts = [r["prompt"] for r in batch]
    prompt_ids = [render_prompt(run.tok, p) for p in prompts]
    from rlaif.train.generation import HFGenerator

    comp_ids = (generator or HFGenerator()).generate(run, prompt_ids, cfg)
    texts = run.tok.batch_decode(comp_ids, skip_special_tokens=True)
    rep_prompts = [p for p in prompts for _ in range(G)]
    columns: dict[str, list] = {k: [r.get(k) for r in batch for _ in range(G)]
                                for k in batch[0] if k not in ("prompt", "_line")}
    columns["completion_ids"] = comp_ids     # as in TRL: token ids, ending with EOS when the answer finished
    per_func = torch.tensor(score(reward_fns, rep_prompts, [_as_completion(p, t) for p, t in zip(rep_prompts, texts)],
                                  columns), dtype=torch.float32)
    rewards = losses.combine_rewards(per_func, weights)
    adv, zero = losses.group_advantages(rewards, G, cfg.scale_rewards)
    seq = collate_group(prompt_ids, comp_ids, G, pad_id_of(run.tok), run.layout)
    seq = send_to_device(seq, run.device)
    inner = run.lp_model          # the wrapped module: FSDP gathers shards, DDP skips bookkeeping under no_grad
    with torch.no_grad(), run.acc.autocast():
        old = batch_logps(inner, seq) if cfg.num_iterations > 1 else None
        ref = None
        if cfg.beta:
            with reference(run.model):
                ref = batch_logps(inner, seq)
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


def collate_group(prompt_ids: list[list[int]], comp_ids: list[list[int]], G: int, pad: int, layout=None) -> dict:
    """The loss batch of one round: prompt i's G completions are sequences i*G .. i*G+G-1. Padded,
    or packed with a layout (the prompt read once for its whole group when it shares prompts). An
    empty completion is scored as one pad token, as before."""
    from rlaif.train.data import collate_packed, collate_sequences

    comps = [c if c else [pad] for c in comp_ids]
    if layout is not None:
        return collate_packed(prompt_ids, [comps[i * G:(i + 1) * G] for i in range(len(prompt_ids))], pad, layout)
    return collate_sequences([p for p in prompt_ids for _ in range(G)], comps, pad)


def grpo_micro_loss(run: Run, r: dict, cfg: GRPOConfig, num_items: float | None = None):
    seq = r["seq"]
    logps = batch_logps(run.lp_model, seq)
    mask = seq["completion_mask"][:, 1:]
    old = r["old"] if r["old"] is not None else logps.detach()
    return losses.grpo_loss(logps, old, r["ref"], r["adv"], mask, beta=cfg.beta, eps_low=cfg.epsilon,
                            eps_high=cfg.epsilon_high, loss_type=cfg.loss_type,
                            max_completion_length=cfg.max_completion_length, num_items=num_items)


def grpo_problems(values: dict) -> list[Problem]:
    """GRPO's option problems the shared bounds (rlaif/train/checks.py) do not cover, all at once."""
    from rlaif.train.generation import VLLM_MODES
    from rlaif.train.reward_spec import FORMS, parse_reward_spec

    out = []
    if not values.get("rewards"):
        out.append(Problem("rewards", f"no reward: pass --reward SPEC, one of {FORMS}"))
    for where, spec in [*(("rewards", s) for s in values.get("rewards") or []), ("fallback", values.get("fallback"))]:
        if isinstance(spec, str) or (where == "rewards" and not callable(spec)):
            try:            # the grammar up front, with the other problems; files and modules load later
                parse_reward_spec(spec)
            except RlaifError as e:
                out.append(Problem(where, str(e)))
    if values.get("loss_type") not in losses.GRPO_LOSSES:
        out.append(Problem("loss_type", f"unknown loss '{values.get('loss_type')}' "
                                        f"(choose {', '.join(losses.GRPO_LOSSES)})"))
    if values.get("scale_rewards") not in losses.ADV_SCALING:
        out.append(Problem("scale_rewards", f"unknown reward scaling '{values.get('scale_rewards')}' "
                                            f"(choose {', '.join(losses.ADV_SCALING)})"))
    weights, rewards = values.get("reward_weights"), values.get("rewards") or []
    if weights is not None and len(weights) != len(rewards):
        out.append(Problem("reward_weights", f"{len(weights)} reward weights for {len(rewards)} rewards"))
    if values.get("vllm_mode") not in VLLM_MODES:
        out.append(Problem("vllm_mode", f"unknown vllm_mode '{values.get('vllm_mode')}' "
                                        f"(choose {', '.join(VLLM_MODES)})"))
    return out


def train_grpo(prompts, cfg: GRPOConfig | None = None, *, model=None, tokenizer=None, **overrides) -> dict:
    """Train a LoRA adapter with GRPO; the CLI's `rlaif train grpo` calls this.

    prompts: JSONL file, dataset folder or list of rows with a `prompt` (string or messages);
    other columns reach the reward functions as keyword arguments. rewards (GRPOConfig.rewards):
    specs like "rubric:helpfulness@local/default", "pkg.mod:fn", "file.py:fn", or callables.
    Returns a summary; the adapter is written to OUT/adapter, metrics to OUT/metrics.jsonl.
    """
    import torch

    from rlaif.train.data import read_prompts, read_rows
    from rlaif.train.generation import make_generator
    from rlaif.train.loop import with_overrides as _with
    from rlaif.train.rewards import RubricReward, load_reward

    if isinstance(model, str):          # a model name or folder, not a loaded model
        model, overrides = None, dict(overrides, model=model)
    base = cfg or GRPOConfig()
    # GRPO's own checks and the shared bounds (checked when the config is built) in one error
    problems = grpo_problems({**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)}, **overrides})
    try:
        built = _with(base, overrides)
    except ConfigError as e:
        raise ConfigError(list(e.problems) + problems, source="GRPO options") from None
    if problems:
        raise ConfigError(problems, source="GRPO options")
    cfg = built
    run = Run(cfg, "grpo")
    rows = read_prompts(read_rows(prompts, cfg.split))
    reward_fns = [load_reward(s) for s in cfg.rewards]
    _configure_rm_rewards(reward_fns, cfg, run.device)
    weights = torch.tensor(cfg.reward_weights, dtype=torch.float32) if cfg.reward_weights else None
    given = model is not None
    if model is None:
        model, tok = run.load_model()
    else:
        model, tok = run.setup_model(model, tokenizer)
    run.prepare(len(rows), lambda idx: [rows[i] for i in idx])
    generator = make_generator(run, cfg, model_object=given)
    run.start_progress()
    history, cache = [], []
    mu = max(1, cfg.num_iterations)
    try:
        while run.step < cfg.max_steps:
            if run.step % mu == 0:          # a fresh generation batch every μ steps
                cache = [grpo_round(run, run.next_batch(), reward_fns, weights, cfg, generator)
                         for _ in range(cfg.grad_accum)]
            n_tokens = sum(float(r["seq"]["completion_mask"].sum()) for r in cache)
            parts = []
            for k, r in enumerate(cache):
                with run.accumulate(k), run.acc.autocast():
                    # dapo: normalise by the tokens of the whole accumulated batch (× grad_accum undoes
                    # run.backward's division), so every token weighs the same
                    num_items = n_tokens / cfg.grad_accum if cfg.loss_type == "dapo" else None
                    loss, lm = grpo_micro_loss(run, r, cfg, num_items=num_items)
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
    return run.finish({"data": str(prompts) if isinstance(prompts, (str, os.PathLike)) else "<rows>",
                       "prompts": len(rows), "final": history[-1] if history else {}, "loss_type": cfg.loss_type,
                       "rewards": [s if isinstance(s, str) else getattr(s, "__name__", "fn") for s in cfg.rewards]})


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
