"""The math of preference and policy-gradient training, as small pure functions.

Why separate from the loops: each formula here is a few lines that can be checked by hand
(DPO at step 0 is ln 2, IPO is (1/(2β))², group advantages sum to zero) and against TRL in a
differential test, without a training loop in the way. Nothing here knows about models,
optimisers or data; everything is torch tensors in, tensors out.

Semantics follow TRL 1.x where the two overlap, so numbers are comparable:
- DPO log-probs are *summed* over completion tokens; IPO divides them by the completion length.
- GRPO advantages are (r - mean_group) / (std + 1e-4) with the unbiased std; None rewards (NaN
  here) are left out of the baseline and get no advantage; the KL term is the k3 estimator.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DPO_LOSSES = ("sigmoid", "ipo", "hinge", "robust")
GRPO_LOSSES = ("grpo", "dr_grpo", "dapo")
ADV_SCALING = ("group", "batch", "none")
STD_EPS = 1e-4          # TRL's constant: keeps a zero-spread group at advantage 0 instead of 0/0


# ---------------------------------------------------------------------------------------------
# Log-prob gathering
# ---------------------------------------------------------------------------------------------
def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(labels[i] | ...) for each position: logits (..., V) and labels (...) aligned already
    (i.e. logits at t predict labels at t). Computed in float32: bf16 log-softmax loses the
    small differences DPO's log-ratios are made of."""
    logits = logits.float()
    return torch.gather(logits.log_softmax(-1), -1, labels.unsqueeze(-1)).squeeze(-1)


def shifted_token_logps(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token log-probs of a causal LM's own input, (B, T-1): logits[:, t] scores input_ids[:, t+1].
    `mask` (B, T) marks the tokens that count (completion tokens); masked positions are 0."""
    lp = token_logps(logits[:, :-1], input_ids[:, 1:])
    return lp * mask[:, 1:].to(lp.dtype)


def sequence_logps(per_token: torch.Tensor, mask: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Sum (or mean, with `average`) of per-token log-probs over the masked tokens, per row."""
    mask = mask.to(per_token.dtype)
    total = (per_token * mask).sum(-1)
    return total / mask.sum(-1).clamp(min=1.0) if average else total


# ---------------------------------------------------------------------------------------------
# DPO family
# ---------------------------------------------------------------------------------------------
def dpo_losses(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor,
               ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, *,
               beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing: float = 0.0,
               p_chosen: torch.Tensor | None = None,
               chosen_lengths: torch.Tensor | None = None, rejected_lengths: torch.Tensor | None = None
               ) -> torch.Tensor:
    """Per-pair DPO-family losses (B,). Inputs are summed completion log-probs (B,).

    - sigmoid (DPO, Rafailov et al. 2023): -log σ(β·Δ), Δ = (π_c - ref_c) - (π_r - ref_r).
      With `label_smoothing` ε (conservative DPO): -(1-ε) log σ(βΔ) - ε log σ(-βΔ).
    - robust (Chowdhury et al. 2024), unbiased under label noise ε ∈ [0, 0.5):
      (-(1-ε) log σ(βΔ) + ε log σ(-βΔ)) / (1 - 2ε).
    - hinge (SLiC): relu(1 - βΔ).
    - ipo (Azar et al. 2023): (Δ̄ - 1/(2β))², Δ̄ from log-ratios averaged per completion token
      (needs chosen_lengths / rejected_lengths; TRL normalises the same way).
    - `p_chosen` (B,), the judge's soft label P(chosen is better): the sigmoid loss becomes the
      cross-entropy against that soft target, -(p log σ(βΔ) + (1-p) log σ(-βΔ)); a pair the
      judge was unsure about (p ≈ 0.5) pushes little. Only for sigmoid; replaces label_smoothing.
    """
    chosen_lr = chosen_logps - ref_chosen_logps
    rejected_lr = rejected_logps - ref_rejected_logps
    delta = chosen_lr - rejected_lr
    if loss_type == "sigmoid":
        if p_chosen is not None:
            p = p_chosen.to(delta.dtype)
            return -(p * F.logsigmoid(beta * delta) + (1 - p) * F.logsigmoid(-beta * delta))
        return -(1 - label_smoothing) * F.logsigmoid(beta * delta) - label_smoothing * F.logsigmoid(-beta * delta)
    if p_chosen is not None:
        raise ValueError(f"soft labels (p_chosen) are only defined for the sigmoid loss, not '{loss_type}'")
    if loss_type == "robust":
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"robust DPO needs label_smoothing in [0, 0.5), got {label_smoothing}")
        return (-(1 - label_smoothing) * F.logsigmoid(beta * delta)
                + label_smoothing * F.logsigmoid(-beta * delta)) / (1 - 2 * label_smoothing)
    if loss_type == "hinge":
        return torch.relu(1 - beta * delta)
    if loss_type == "ipo":
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError("the IPO loss needs the completion lengths (chosen_lengths, rejected_lengths)")
        avg = chosen_lr / chosen_lengths.clamp(min=1) - rejected_lr / rejected_lengths.clamp(min=1)
        return (avg - 1 / (2 * beta)) ** 2
    raise ValueError(f"unknown DPO loss '{loss_type}'; choose one of {', '.join(DPO_LOSSES)}")


def dpo_rewards(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta: float) -> dict:
    """The implicit rewards β·(π - ref) and the metrics DPO logs: per-pair tensors (detached)."""
    chosen = beta * (chosen_logps - ref_chosen_logps).detach()
    rejected = beta * (rejected_logps - ref_rejected_logps).detach()
    return {"rewards/chosen": chosen, "rewards/rejected": rejected, "rewards/margins": chosen - rejected,
            "rewards/accuracies": (chosen > rejected).float()}


# ---------------------------------------------------------------------------------------------
# SFT
# ---------------------------------------------------------------------------------------------
def sft_loss(per_token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over all completion tokens of the batch (token-weighted)."""
    mask = mask.to(per_token_logps.dtype)
    return -(per_token_logps * mask).sum() / mask.sum().clamp(min=1.0)


# ---------------------------------------------------------------------------------------------
# GRPO
# ---------------------------------------------------------------------------------------------
def _nanstd(x: torch.Tensor, dim=None, keepdim: bool = False) -> torch.Tensor:
    """Unbiased std ignoring NaNs (NaN where fewer than 2 values)."""
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    n = (~torch.isnan(x)).sum(dim=dim, keepdim=True).to(x.dtype)
    var = torch.nansum((x - mean) ** 2, dim=dim, keepdim=True) / (n - 1)
    var = torch.where(n > 1, var, torch.full_like(var, math.nan))
    s = var.sqrt()
    return s if keepdim else (s.squeeze(dim) if dim is not None else s.reshape(()))


def combine_rewards(per_func: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(N, K) rewards of K functions (NaN = that function gave None) -> (N,) weighted sums.
    A completion every function left unscored is NaN (excluded later), never 0."""
    w = torch.ones(per_func.shape[1], dtype=per_func.dtype) if weights is None else weights.to(per_func.dtype)
    total = (per_func * w).nansum(dim=1)
    return torch.where(torch.isnan(per_func).all(dim=1), torch.full_like(total, math.nan), total)


def group_advantages(rewards: torch.Tensor, group_size: int,
                     scaling: str = "group") -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO advantages for rewards (N,) laid out as N/group_size consecutive groups.

    advantage = r - mean(group), divided by the group's std ("group", GRPO), the whole batch's
    std ("batch", Dr. GRPO-style robust to tiny groups) or nothing ("none", Dr. GRPO).
    NaN rewards (unscored) are left out of the mean/std and get advantage NaN: the caller drops
    them from the loss. Returns (advantages (N,), zero_spread (N/group_size,) bool: groups where
    every scored reward is equal, which carry no signal)."""
    if scaling not in ADV_SCALING:
        raise ValueError(f"unknown advantage scaling '{scaling}'; choose one of {', '.join(ADV_SCALING)}")
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    g = rewards.view(-1, group_size)
    mean = torch.nanmean(g, dim=1, keepdim=True)
    std_g = _nanstd(g, dim=1, keepdim=True)
    zero_spread = torch.nan_to_num(std_g, nan=0.0).squeeze(1) < 1e-8
    adv = g - mean
    if scaling == "group":
        adv = adv / (torch.nan_to_num(std_g, nan=0.0) + STD_EPS)
    elif scaling == "batch":
        std_b = torch.nan_to_num(_nanstd(rewards), nan=0.0)
        adv = adv / (std_b + STD_EPS)
    return adv.reshape(-1), zero_spread


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(π || ref) (Schulman 2020): exp(ref - π) - (ref - π) - 1 ≥ 0,
    unbiased and low-variance for samples drawn from π."""
    d = ref_logps - logps
    return torch.exp(d) - d - 1


def clipped_policy_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
                        eps_low: float = 0.2, eps_high: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO/GRPO clipped surrogate per token: -min(ρA, clip(ρ, 1-ε_low, 1+ε_high)A), ρ = exp(π - π_old).
    advantages (B,) broadcast over tokens. Returns (per-token loss (B, T), per-token clipped flags)."""
    eps_high = eps_low if eps_high is None else eps_high
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    ratio = torch.exp(logps - old_logps)
    clipped_ratio = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    loss = -torch.min(ratio * adv, clipped_ratio * adv)
    clipped = ((ratio < 1 - eps_low) & (adv < 0)) | ((ratio > 1 + eps_high) & (adv > 0))
    return loss, clipped


def aggregate_loss(per_token: torch.Tensor, mask: torch.Tensor, loss_type: str = "grpo",
                   max_completion_length: int | None = None, num_items: float | None = None) -> torch.Tensor:
    """Reduce a per-token loss (B, T) to a scalar.

    - grpo: mean over each sequence's tokens, then over sequences (the paper; favours short answers' tokens).
    - dr_grpo: sum over all tokens / (B · max_completion_length) — a constant normaliser, no length bias.
    - dapo: sum over all tokens / number of tokens (`num_items` if given: the tokens of the whole
      accumulated batch, so every token weighs the same across micro-batches).
    """
    mask = mask.to(per_token.dtype)
    if loss_type == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("dr_grpo needs max_completion_length")
        return (per_token * mask).sum() / (per_token.size(0) * max_completion_length)
    if loss_type == "dapo":
        denom = mask.sum().clamp(min=1.0) if num_items is None else max(float(num_items), 1.0)
        return (per_token * mask).sum() / denom
    raise ValueError(f"unknown GRPO loss '{loss_type}'; choose one of {', '.join(GRPO_LOSSES)}")


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, *, beta: float = 0.0, eps_low: float = 0.2,
              eps_high: float | None = None, loss_type: str = "grpo", max_completion_length: int | None = None,
              num_items: float | None = None) -> tuple[torch.Tensor, dict]:
    """The GRPO objective for one batch of completions: clipped surrogate + β·k3 KL, aggregated.
    Rows whose advantage is NaN (unscored) are dropped from `mask`. Returns (loss, metrics)."""
    keep = ~torch.isnan(advantages)
    mask = mask * keep.unsqueeze(-1).to(mask.dtype)
    adv = torch.nan_to_num(advantages, nan=0.0)
    per_token, clipped = clipped_policy_loss(logps, old_logps, adv, eps_low, eps_high)
    metrics = {}
    m = mask.to(per_token.dtype)
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError("beta != 0 needs the reference log-probs")
        kl = k3_kl(logps, ref_logps)
        per_token = per_token + beta * kl
        metrics["kl"] = ((kl * m).sum() / m.sum().clamp(min=1.0)).detach()
    metrics["clip_ratio"] = ((clipped.to(m.dtype) * m).sum() / m.sum().clamp(min=1.0)).detach()
    loss = aggregate_loss(per_token, mask, loss_type, max_completion_length, num_items)
    return loss, metrics


# ---------------------------------------------------------------------------------------------
# Reward models (rlaif train rm)
# ---------------------------------------------------------------------------------------------
def bt_losses(r_chosen: torch.Tensor, r_rejected: torch.Tensor, *, p_chosen: torch.Tensor | None = None,
              margin: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pair Bradley–Terry losses (B,) from scalar rewards (B,).

    - hard labels: -log σ(r_c - r_r - m), the margin m (TRL's `margin` column) 0 when absent;
    - soft labels `p_chosen` (the judge's P(chosen is better)): the cross-entropy of σ(r_c - r_r)
      against that target, -(p log σ(Δ) + (1-p) log σ(-Δ)); it is minimal where σ(Δ) = p, so a
      pair the judge called 0.6 teaches a small gap, not an infinite one. A margin shifts Δ in both."""
    delta = r_chosen.float() - r_rejected.float()
    if margin is not None:
        delta = delta - margin.to(delta.dtype)
    if p_chosen is None:
        return -F.logsigmoid(delta)
    p = p_chosen.to(delta.dtype)
    return -(p * F.logsigmoid(delta) + (1 - p) * F.logsigmoid(-delta))


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy (B,) of class logits (B, K) against a target distribution (B, K)
    (a judge's probabilities over the scale); with one-hot targets it is F.cross_entropy."""
    return -(target_probs.to(torch.float32) * logits.float().log_softmax(-1)).sum(-1)


def expected_value(probs: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Σ_k p_k · point_k per row: the expected score of a distribution over the scale points."""
    return (probs.float() * points.to(torch.float32)).sum(-1)


def ece(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 10) -> float:
    """Expected calibration error: |accuracy - confidence| per equal-width confidence bin, weighted
    by the bin's share of rows. `confidence` in [0, 1]: the probability the model gave to what it
    predicted; `correct`: whether that prediction was right."""
    conf, ok = confidence.float().flatten(), correct.float().flatten()
    if conf.numel() == 0:
        return math.nan
    bins = torch.clamp((conf * n_bins).long(), max=n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            total += float(sel.float().mean()) * abs(float(ok[sel].mean()) - float(conf[sel].mean()))
    return total
