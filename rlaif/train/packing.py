"""Packed batches: a prompt read once for all its continuations, and sequences packed without padding.

Why: a DPO pair is two sequences that start with the same prompt, and a GRPO group is G of them.
Run as separate padded rows (what TRL does), the prompt goes through the transformer once per
continuation and every row is padded to the longest one. Here one *document* is laid out as

    prompt | continuation 1 | continuation 2 | ...       (DPO: prompt | chosen | rejected)

with position ids restarting at the prompt length for each continuation, and an attention mask in
which a token sees the earlier tokens of its own document that are either prompt tokens or tokens
of its own continuation (so rejected tokens never see chosen ones). Every token then has exactly
the keys, values and positions it would have in its own unpacked row: the log-probs and their
gradients are the unpacked ones (up to float rounding). Several short documents also share a row
(first-fit, never wider than the widest document, so attention cost per row does not grow; for
flash-attention all of them in one row, as its varlen path needs).

Attention back ends: SDPA takes a boolean (rows, 1, W, W) mask, eager a float additive one, flex
attention a BlockMask (built from the same rule). Flash-attention's varlen path cannot express
the continuation rule: there the documents are split into one sequence per continuation (the
prompt repeated) and packed padding-free with position ids only (transformers derives the
sequence boundaries from them). Models with sliding-window or other non-causal layer types take
the ordinary padded batch (`packing_support` says why).

The layout is pure data (lists of ids in, a dict of tensors out) so it is built in the data
loader's collate, and `scatter_logps` maps each scored token back to its (sequence, position) in
the unpacked (S, T-1) per-token layout the losses already use.
"""
from __future__ import annotations

from dataclasses import dataclass

MASKED_IMPLS = ("sdpa", "eager", "flex_attention")
VARLEN_IMPLS = ("flash_attention_2", "flash_attention_3", "kernels-community/flash-attn",
                "kernels-community/flash-attn3")


@dataclass(frozen=True)
class Layout:
    """How a trainer lays out its batches. share_prompt: continuations of one prompt in one document;
    pack: several documents per row; mask: the attention back end the mask is built for."""

    share_prompt: bool = True
    pack: bool = True
    mask: str = "sdpa"                   # sdpa | eager | flex_attention | varlen
    width_multiple: int = 1              # row width rounded up to a multiple (compile: a few shapes)
    ladder: bool = False                 # compile: row widths from a fixed ladder of sizes (no recompiles)


def _text_config(cfg):
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def packing_support(model) -> tuple[str | None, str]:
    """(mask kind, reason): the attention back end a packed batch is built for, or None and why the
    model must take the ordinary padded batch."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = _text_config(lm.config)
    impl = getattr(cfg, "_attn_implementation", None) or getattr(lm.config, "_attn_implementation", None) or "eager"
    types = getattr(cfg, "layer_types", None)
    if types and any(t != "full_attention" for t in types):
        return None, f"{type(lm).__name__} has {sorted(set(types) - {'full_attention'})} layers"
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return None, f"{type(lm).__name__} uses sliding-window attention"
    if getattr(cfg, "is_encoder_decoder", False):
        return None, "encoder-decoder model"
    if impl in MASKED_IMPLS:
        return impl, ""
    if impl in VARLEN_IMPLS or str(impl).startswith("flash"):
        return "varlen", ""
    return None, f"attention implementation '{impl}' takes no custom mask"


WIDTH_LADDER = tuple(sorted({b * 2 ** k for k in range(12) for b in (64, 96)}))   # 64, 96, 128, 192, ...


def round_width(n: int, multiple: int = 1, ladder: bool = False) -> int:
    """A row width ≥ n: the next ladder size (compile: ~2 shapes per doubling, each compiled once) or
    the next multiple."""
    if ladder:
        for w in WIDTH_LADDER:
            if w >= n:
                return w
    return -(-n // multiple) * multiple


def build_packed(docs: list[tuple[list[int], list[list[int]], list[int]]], n_seqs: int, pad_id: int,
                 layout: Layout, max_length: int | None = None) -> dict:
    """Pack documents into rows. docs: (prompt_ids, [continuation_ids, ...], [output sequence index of
    each continuation]). Each continuation is cut so prompt + continuation ≤ max_length (the unpacked
    rule: keep the start). Returns input_ids, position_ids, doc, branch (rows, W) — doc -1 on padding,
    branch 0 on prompt tokens, k ≥ 1 on the k-th continuation — and the scored tokens: src (flat index
    of the hidden state that predicts each), labels, out (flat index into (n_seqs, out_width)), and
    out_shape; out_width = longest unpacked sequence - 1, the layout of shifted per-token log-probs."""
    import torch

    pieces = []          # per document: token ids, positions, branch ids, and its scored tokens
    out_width = 0
    for prompt, conts, seqs in docs:
        if max_length is not None:          # keep the start, as the padded layout does
            prompt = prompt[:max_length]
        cut = [c if max_length is None else c[:max_length - len(prompt)] for c in conts]
        if not layout.share_prompt:   # one document per continuation, the prompt repeated
            split = [(prompt, [c], [s]) for c, s in zip(cut, seqs, strict=True)]
        else:
            split = [(prompt, cut, seqs)]
        for p, cs, ss in split:
            ids, pos, br, scored = list(p), list(range(len(p))), [0] * len(p), []
            for k, (c, s) in enumerate(zip(cs, ss, strict=True), start=1):
                start = len(ids)
                ids += c
                pos += range(len(p), len(p) + len(c))
                br += [k] * len(c)
                out_width = max(out_width, len(p) + len(c) - 1)
                for j, t in enumerate(c):
                    if j == 0 and not p:
                        continue                  # nothing predicts a first token with no prompt
                    from_at = start + j - 1 if j else len(p) - 1
                    scored.append((from_at, t, s, len(p) + j - 1, start + j))
            pieces.append((ids, pos, br, scored))
    width = max(len(x[0]) for x in pieces)
    if layout.mask == "varlen" and layout.pack:
        # flash-attention's varlen path reads boundaries from position ids of one flattened row only
        width = sum(len(x[0]) for x in pieces)
    rows: list[list[int]] = []         # document indices per row, first-fit in the given order
    fill: list[int] = []
    for i, piece in enumerate(pieces):
        n = len(piece[0])
        for r in range(len(rows)):
            if layout.pack and fill[r] + n <= width:
                rows[r].append(i)
                fill[r] += n
                break
        else:
            rows.append([i])
            fill.append(n)
    W = round_width(width, layout.width_multiple, layout.ladder)
    R = len(rows)
    input_ids = torch.full((R, W), pad_id, dtype=torch.long)
    position_ids = torch.zeros((R, W), dtype=torch.long)
    doc = torch.full((R, W), -1, dtype=torch.long)
    branch = torch.zeros((R, W), dtype=torch.long)
    src, labels, out, tok = [], [], [], []
    for r, members in enumerate(rows):
        off = 0
        for d, i in enumerate(members):
            ids, pos, br, scored = pieces[i]
            n = len(ids)
            input_ids[r, off:off + n] = torch.tensor(ids, dtype=torch.long)
            position_ids[r, off:off + n] = torch.tensor(pos, dtype=torch.long)
            doc[r, off:off + n] = d
            branch[r, off:off + n] = torch.tensor(br, dtype=torch.long)
            for s_idx, t, seq, col, at in scored:
                src.append(r * W + off + s_idx)
                labels.append(t)
                out.append(seq * out_width + col)
                tok.append(r * W + off + at)
            off += n
        # padding: positions keep counting so varlen back ends see one trailing pseudo-sequence
        position_ids[r, off:] = torch.arange(W - off)
    return {"input_ids": input_ids, "position_ids": position_ids, "doc": doc, "branch": branch,
            "src": torch.tensor(src, dtype=torch.long), "labels": torch.tensor(labels, dtype=torch.long),
            "out": torch.tensor(out, dtype=torch.long), "tok": torch.tensor(tok, dtype=torch.long),
            "out_shape": (n_seqs, out_width),
            "mask_kind": layout.mask}


def allowed(doc, branch):
    """(rows, W, W) bool: query i may attend key j. Same document, j ≤ i, and j is a prompt token or
    in i's own continuation; padding attends itself only (no empty softmax row)."""
    import torch

    W = doc.size(1)
    causal = torch.ones(W, W, dtype=torch.bool, device=doc.device).tril()
    same = (doc[:, :, None] == doc[:, None, :]) & (doc[:, None, :] >= 0)
    own = (branch[:, None, :] == 0) | (branch[:, None, :] == branch[:, :, None])
    eye = torch.eye(W, dtype=torch.bool, device=doc.device)
    return (same & own & causal) | eye


def flex_mask_mod(doc, branch):
    """`allowed` as a flex-attention mask_mod (b, h, q, kv) -> bool, for create_block_mask."""
    def mask_mod(b, h, q, kv):
        return (((doc[b, q] == doc[b, kv]) & (doc[b, kv] >= 0) & (kv <= q)
                 & ((branch[b, kv] == 0) | (branch[b, kv] == branch[b, q]))) | (q == kv))

    return mask_mod


def attention_inputs(packed: dict, dtype) -> dict:
    """Keyword arguments for the transformer's forward: the 4D mask in the form the attention back
    end takes (or none for varlen: position ids carry the boundaries) and the position ids."""
    import torch

    kind = packed["mask_kind"]
    pos = packed["position_ids"]
    if kind == "varlen":
        return {"attention_mask": None, "position_ids": pos}
    doc, branch = packed["doc"], packed["branch"]
    if kind == "flex_attention":
        from torch.nn.attention.flex_attention import create_block_mask

        R, W = doc.shape
        mask = create_block_mask(flex_mask_mod(doc, branch), R, None, W, W, device=doc.device)
        return {"attention_mask": mask, "position_ids": pos}
    m = allowed(doc, branch)[:, None]
    if kind == "eager":
        m = torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill_(~m, torch.finfo(dtype).min)
    return {"attention_mask": m, "position_ids": pos}


def scatter_logps(flat, packed: dict):
    """Per-token log-probs of the scored tokens (N,) -> the unpacked (S, T-1) layout, 0 elsewhere."""
    import torch

    S, T = packed["out_shape"]
    return torch.zeros(S * T, dtype=flat.dtype, device=flat.device).index_put((packed["out"],), flat).view(S, T)


def last_token_index(packed: dict):
    """Flat index (into rows × W) of each sequence's last scored token, (S,), -1 for a sequence
    with none: where a reward model's value head reads a sequence's score."""
    import torch

    S, T = packed["out_shape"]
    out = packed["out"]
    best = torch.full((S,), -1, dtype=torch.long, device=out.device).scatter_reduce(0, out // T, out, reduce="amax")
    at = torch.full((S,), -1, dtype=torch.long, device=out.device)
    hit = out[None, :] == best[:, None]                      # (S, N): the token holding each sequence's last column
    return torch.where(hit.any(1), packed["tok"][hit.float().argmax(1)], at)


__all__ = ["Layout", "packing_support", "build_packed", "attention_inputs", "scatter_logps", "allowed", "flex_mask_mod",
           "round_width", "last_token_index", "WIDTH_LADDER"]
