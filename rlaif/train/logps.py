"""Log-probs of the scored tokens from a causal LM, without a (rows × length × vocab) logits tensor.

Why: the LM head's logits are the largest tensor of a DPO/GRPO/SFT step (2B × T × 49k floats for
SmolLM2's vocabulary, 128k for Llama 3) although only completion tokens are scored and only one
logit per token is read. Here the transformer runs without its head, the hidden states of the
scored positions are gathered, and the head runs on them in chunks:

- `head_logps` (the torch path, everywhere): an autograd function whose forward computes, chunk by
  chunk, log p(label) = logit[label] - logsumexp(logits) and, when a gradient is needed, the exact
  Jacobian row ∂lp/∂h = W[label] - softmaxᵀW (a hidden-size vector per token); backward is a
  per-token scale. One chunk of logits is alive at a time, no logits are recomputed in backward
  (a checkpointed chunk loop runs the head matmul three times, this twice). When the head itself
  trains (full fine-tuning, a trainable lm_head) the checkpointed loop is used instead.
- Liger's fused linear cross-entropy (Triton) where `liger-kernel` is installed and CUDA runs:
  taken only after a one-time check on this device that its per-token gradients equal the torch
  path's (several Liger releases returned wrong gradients for reduction="none"); otherwise the torch
  path, said once.
"""
from __future__ import annotations

import sys

LOGIT_BYTES = 2 ** 27   # float32 logits alive per LM-head chunk: 128 MB (683 rows of a 49k vocab, 256 of 128k)


def chunk_rows(vocab: int) -> int:
    """Scored positions per LM-head chunk: ~LOGIT_BYTES of float32 logits, a multiple of 64 rows in [64, 4096]
    (still a large matmul on a GPU; a small peak on a CPU)."""
    return max(64, min(4096, LOGIT_BYTES // (4 * vocab) // 64 * 64))
KERNELS = ("auto", "torch", "checkpoint", "liger")
_said: set[str] = set()


def say_once(msg: str) -> None:
    if msg not in _said:
        _said.add(msg)
        print(msg, file=sys.stderr, flush=True)


def _chunks(h, weight, bias, labels, chunk: int, want_jac: bool):
    """(log-probs (N,) float32, Jacobian rows (N, H) or None), one chunk of logits alive at a time."""
    import torch
    import torch.nn.functional as F

    n = h.size(0)
    out = torch.empty(n, dtype=torch.float32, device=h.device)
    jac = torch.empty_like(h) if want_jac else None
    for i in range(0, n, chunk):
        hc, lab = h[i:i + chunk], labels[i:i + chunk]
        logits = F.linear(hc, weight, bias).float()
        lse = torch.logsumexp(logits, -1)
        out[i:i + chunk] = logits.gather(-1, lab[:, None]).squeeze(-1) - lse
        if jac is not None:
            p = logits.sub_(lse[:, None]).exp_()                # the softmax, in place of the logits
            w = weight if weight.dtype == hc.dtype else weight.to(hc.dtype)
            jac[i:i + chunk] = (w[lab].float() - (p.to(w.dtype) @ w).float()).to(h.dtype)
            del p
        del logits
    return out, jac


def _make_fn():
    import torch

    class HeadLogps(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h, weight, bias, labels, chunk):
            out, jac = _chunks(h, weight, bias, labels, chunk, want_jac=ctx.needs_input_grad[0])
            ctx.save_for_backward(jac)
            return out

        @staticmethod
        def backward(ctx, g):
            (jac,) = ctx.saved_tensors
            return (g[:, None].to(jac.dtype) * jac if jac is not None else None), None, None, None, None

    return HeadLogps


_FN = None


def _checkpointed(h, weight, bias, labels, chunk):
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    def part(x, w, b, lab):
        return F.linear(x, w, b).float().log_softmax(-1).gather(-1, lab[:, None]).squeeze(-1)

    parts = [checkpoint(part, h[i:i + chunk], weight, bias, labels[i:i + chunk], use_reentrant=False)
             if torch.is_grad_enabled() else part(h[i:i + chunk], weight, bias, labels[i:i + chunk])
             for i in range(0, h.size(0), chunk)]
    return torch.cat(parts) if parts else h.new_zeros(0, dtype=torch.float32)


def head_logps(h, weight, bias, labels, chunk: int | None = None, kernel: str = "auto"):
    """log p(labels[i] | h[i]) under the linear head (weight, bias): h (N, H), labels (N,) -> (N,) float32.
    kernel: "auto" (Liger on CUDA where installed and checked, else torch), "torch", "checkpoint"
    (the checkpointed chunk loop; also taken when the head trains), "liger" (error if unusable)."""
    import torch

    global _FN
    chunk = chunk or chunk_rows(weight.size(0))
    if h.size(0) == 0:
        return h.new_zeros(0, dtype=torch.float32)
    head_trains = torch.is_grad_enabled() and (weight.requires_grad or (bias is not None and bias.requires_grad))
    if kernel not in KERNELS:
        raise ValueError(f"unknown log-prob kernel '{kernel}' ({', '.join(KERNELS)})")
    if kernel == "liger" and not h.is_cuda:
        raise ValueError("the liger log-prob kernel runs on CUDA only; use auto or torch")
    if kernel == "checkpoint" or head_trains:
        return _checkpointed(h, weight, bias, labels, chunk)
    if kernel in ("auto", "liger") and h.is_cuda and liger_usable(h.device, required=kernel == "liger"):
        return _liger_logps(h, weight, bias, labels)
    if not (torch.is_grad_enabled() and h.requires_grad):
        return _chunks(h, weight, bias, labels, chunk, want_jac=False)[0]
    _FN = _FN or _make_fn()
    return _FN.apply(h, weight, bias, labels, chunk)


# ---------------------------------------------------------------------------------------------
# Liger
# ---------------------------------------------------------------------------------------------
_liger_ok: dict[str, bool] = {}


def _liger_logps(h, weight, bias, labels):
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    out = liger_fused_linear_cross_entropy(h, weight, labels, bias=bias, reduction="none")
    loss = out[0] if isinstance(out, tuple) else getattr(out, "loss", out)
    return -loss.float()


def liger_usable(device, required: bool = False) -> bool:
    """Whether Liger's fused kernel is installed and gives this device the torch path's per-token
    log-probs and gradients (checked once per device on a small random problem)."""
    key = str(device)
    if key in _liger_ok:
        return _liger_ok[key]
    import torch

    try:
        import liger_kernel.transformers.functional  # noqa: F401
    except ImportError as e:
        if required:
            from rlaif.errors import MissingDependencyError
            raise MissingDependencyError("liger-kernel", why="for --logp-kernel liger") from e
        _liger_ok[key] = False
        return False
    why = ""
    try:
        g = torch.Generator(device=device).manual_seed(0)
        h = torch.randn(37, 64, device=device, generator=g, requires_grad=True)
        w = torch.randn(301, 64, device=device, generator=g) * 0.2
        lab = torch.randint(0, 301, (37,), device=device, generator=g)
        up = torch.rand(37, device=device, generator=g)           # a non-uniform upstream gradient
        a = _liger_logps(h, w, None, lab)
        (ga,) = torch.autograd.grad((a * up).sum(), h)
        h2 = h.detach().requires_grad_()
        b = head_logps(h2, w, None, lab, 16, kernel="torch")
        (gb,) = torch.autograd.grad((b * up).sum(), h2)
        ok = torch.allclose(a, b, atol=1e-3, rtol=1e-3) and torch.allclose(ga, gb, atol=1e-3, rtol=1e-3)
        why = "" if ok else "its per-token gradients differ from the exact ones in this version"
    except Exception as e:  # noqa: BLE001 - any failure of the optional kernel means: use the torch path
        ok, why = False, f"{type(e).__name__}: {e}"
    if not ok:
        if required:
            raise RuntimeError(f"--logp-kernel liger: Liger's fused cross-entropy is unusable here ({why})")
        say_once(f"note: Liger's fused cross-entropy is installed but not used ({why}); the chunked torch path runs")
    _liger_ok[key] = ok
    return ok


__all__ = ["head_logps", "liger_usable", "chunk_rows", "say_once"]
