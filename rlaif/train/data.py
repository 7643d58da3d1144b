"""Training data: read it, check it, tokenize it with the right prompt/completion boundary.

Why the boundary matters: DPO, SFT and GRPO score only the completion tokens, so the code must
know exactly where, in the chat-templated token sequence, the prompt ends. We render the prompt
alone (with the generation prompt, e.g. "<|im_start|>assistant\\n") and the prompt + completion,
and take their common token prefix as the prompt — the same rule TRL uses — so a template that
renders the prompt differently on its own, or tokens that merge across the boundary, cannot
shift a token from one side to the other unnoticed.

Accepted inputs (the TRL conversational format `rlaif pairs` writes):
- a dataset folder saved by `datasets` (`rlaif pairs -o DIR`; a DatasetDict uses its "train" split),
- a JSONL file, one row per line.
prompt / chosen / rejected are message lists ([{"role": "user", "content": ...}]) or plain strings.
Plain strings are wrapped as one user / assistant message when the tokenizer has a chat
template (what a chat model expects); without a template they are used as raw text + EOS.
Every bad row stops loading with an error naming the file, the line and the field.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from rlaif.errors import InputError
from rlaif.io import iter_objects


# ---------------------------------------------------------------------------------------------
# Reading rows
# ---------------------------------------------------------------------------------------------
@dataclass
class Rows:
    rows: list[dict]
    path: str
    lines: list[int | None]          # JSONL line (1-based) or dataset row index of each row

    def where(self, i: int) -> tuple[str, int | None]:
        return self.path, self.lines[i]


def read_rows(source, split: str = "train") -> Rows:
    """Rows from a JSONL file, a `datasets` folder (save_to_disk) or a list of dicts."""
    if isinstance(source, (list, tuple)):
        return Rows(list(source), "<rows>", list(range(1, len(source) + 1)))
    path = str(source)
    if os.path.isdir(path):
        try:
            from datasets import DatasetDict, load_from_disk
            ds = load_from_disk(path)
        except (FileNotFoundError, ValueError) as e:
            raise InputError(path, None, None, f"not a dataset folder saved by `datasets` ({e})") from e
        if isinstance(ds, DatasetDict):
            if split not in ds:
                raise InputError(path, None, None, f"the dataset has no '{split}' split (it has {', '.join(ds)})")
            ds = ds[split]
        rows = ds.to_list()
        # dataset rows are 0-based in `datasets`; report them as "row N" with N 1-based like lines
        return Rows(rows, path, list(range(1, len(rows) + 1)))
    lines: list[int | None] = []
    rows = []
    for n, value in iter_objects(path):
        rows.append(value)
        lines.append(n)
    if not rows:
        raise InputError(path, None, None, "no rows")
    return Rows(rows, path, lines)


def as_messages(value, default_role: str, path: str, line, field: str):
    """Validate a prompt/completion field: a non-empty string, or a list of {role, content} messages."""
    if isinstance(value, str):
        if not value.strip():
            raise InputError(path, line, field, "is empty")
        return value
    if isinstance(value, list) and value:
        for k, m in enumerate(value):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise InputError(path, line, f"{field}[{k}]", "expected a message {\"role\": str, \"content\": str}")
        return value
    raise InputError(path, line, field, f"expected a string or a non-empty list of messages, got {type(value).__name__}"
                     + (" (empty list)" if isinstance(value, list) else ""))


# ---------------------------------------------------------------------------------------------
# Tokenizing
# ---------------------------------------------------------------------------------------------
def _ids(x) -> list[int]:
    if isinstance(x, dict) or hasattr(x, "keys"):
        x = x["input_ids"]
    return list(x)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def render_prompt(tok, prompt) -> list[int]:
    """Token ids of the prompt as the model sees it before answering (generation prompt included)."""
    if getattr(tok, "chat_template", None):
        msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return _ids(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True))
    text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
    return _ids(tok(text, add_special_tokens=True))


def encode(tok, prompt, completions: list) -> tuple[list[int], list[list[int]]]:
    """(prompt_ids, [completion_ids, ...]) for one prompt and its completions, split at the common
    prefix of the rendered prompt and every rendered prompt+completion."""
    prompt_ids = render_prompt(tok, prompt)
    fulls = []
    if getattr(tok, "chat_template", None):
        p = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        for c in completions:
            c = [{"role": "assistant", "content": c}] if isinstance(c, str) else list(c)
            fulls.append(_ids(tok.apply_chat_template(p + c, tokenize=True, return_dict=True)))
    else:
        ptext = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
        for c in completions:
            ctext = c if isinstance(c, str) else "\n".join(m["content"] for m in c)
            ids = _ids(tok(ptext + ctext, add_special_tokens=True))
            if tok.eos_token_id is not None and (not ids or ids[-1] != tok.eos_token_id):
                ids.append(tok.eos_token_id)
            fulls.append(ids)
    cut = min([len(prompt_ids)] + [_common_prefix(prompt_ids, f) for f in fulls])
    return prompt_ids[:cut], [f[cut:] for f in fulls]


# ---------------------------------------------------------------------------------------------
# Preference pairs (DPO) and demonstrations (SFT)
# ---------------------------------------------------------------------------------------------
def pair_fields(row, path: str, line) -> tuple:
    """(prompt, chosen, rejected) of one preference row, checked; InputError naming the field."""
    if not isinstance(row, dict):
        raise InputError(path, line, None, f"expected an object, got {type(row).__name__}")
    for f in ("prompt", "chosen", "rejected"):
        if f not in row or row[f] is None:
            raise InputError(path, line, f, "missing (a preference row needs prompt, chosen, rejected)")
    return (as_messages(row["prompt"], "user", path, line, "prompt"),
            as_messages(row["chosen"], "assistant", path, line, "chosen"),
            as_messages(row["rejected"], "assistant", path, line, "rejected"))


def check_pairs(rows: Rows) -> None:
    """Every preference row checked before the model loads (a bad row 9,000 costs no load)."""
    for i, row in enumerate(rows.rows):
        pair_fields(row, *rows.where(i))


def tokenize_pairs(tok, rows: Rows, max_length: int | None = 1024, soft_labels: bool = False) -> tuple[list[dict], int]:
    """Check and tokenize preference rows -> (examples, dropped). Each example holds prompt_ids,
    chosen_ids, rejected_ids (and p_chosen with soft_labels). Rows whose prompt alone fills
    max_length are dropped (no completion token would remain) and counted."""
    out, dropped = [], 0
    for i, row in enumerate(rows.rows):
        path, line = rows.where(i)
        prompt, chosen, rejected = pair_fields(row, path, line)
        ex: dict[str, object] = {}
        if soft_labels:
            p = row.get("p_chosen")
            if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0 or math.isnan(p):
                raise InputError(path, line, "p_chosen", f"soft labels need a probability in [0, 1], got {p!r}")
            ex["p_chosen"] = float(p)
        try:
            prompt_ids, (c_ids, r_ids) = encode(tok, prompt, [chosen, rejected])
        except Exception as e:
            raise InputError(path, line, "prompt", f"cannot apply the chat template: {e}") from e
        if not c_ids or not r_ids:
            raise InputError(path, line, "chosen" if not c_ids else "rejected", "renders to no completion tokens")
        if max_length is not None and len(prompt_ids) >= max_length:
            dropped += 1
            continue
        ex.update(prompt_ids=prompt_ids, chosen_ids=c_ids, rejected_ids=r_ids, row=line)
        out.append(ex)
    return out, dropped


def tokenize_demos(tok, demos: list[tuple[object, object, str, int | None]], max_length: int | None = 1024):
    """SFT demonstrations (prompt, completion, path, line) -> (examples with prompt_ids, completion_ids, dropped)."""
    out, dropped = [], 0
    for prompt, completion, path, line in demos:
        prompt = as_messages(prompt, "user", path, line, "prompt")
        completion = as_messages(completion, "assistant", path, line, "response")
        prompt_ids, (c_ids,) = encode(tok, prompt, [completion])
        if max_length is not None and len(prompt_ids) >= max_length:
            dropped += 1
            continue
        out.append({"prompt_ids": prompt_ids, "completion_ids": c_ids, "row": line})
    return out, dropped


def _prompt_key(prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def best_demos(rows: Rows) -> tuple[list[tuple], dict]:
    """Rejection-sampling distillation data: for each prompt, its best-judged response.

    Input: judged JSONL from `rlaif judge` in absolute mode (prompt, response, score; unscored rows
    have score null and an `error` and are never picked), or preference rows (prompt, chosen), whose
    chosen side is the demonstration. Ties keep the first row. Returns (demos, stats)."""
    best: dict[str, tuple] = {}
    stats = {"rows": len(rows.rows), "unscored": 0, "prompts": 0}
    for i, row in enumerate(rows.rows):
        path, line = rows.where(i)
        if "prompt" not in row:
            raise InputError(path, line, "prompt", "missing")
        if "chosen" in row:
            best.setdefault(_prompt_key(row["prompt"]) + f"#{i}", (row["prompt"], row["chosen"], path, line, 0.0))
            continue
        if "response" not in row:
            raise InputError(path, line, "response", "missing (expected judged rows with prompt, response, score, "
                                                     "or preference rows with prompt, chosen)")
        if "score" not in row:
            raise InputError(path, line, "score", "missing: judge the rows first (`rlaif judge --mode absolute`)")
        score = row["score"]
        if score is None:
            stats["unscored"] += 1
            continue
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            raise InputError(path, line, "score", f"expected a number or null, got {type(score).__name__}")
        k = _prompt_key(row["prompt"])
        if k not in best or score > best[k][4]:
            best[k] = (row["prompt"], row["response"], path, line, float(score))
    demos = [(p, c, path, line) for p, c, path, line, _ in best.values()]
    stats["prompts"] = len(demos)
    return demos, stats


def read_prompts(rows: Rows) -> list[dict]:
    """GRPO prompts: rows with `prompt` (string or messages); every other field is passed on to
    reward functions as a keyword argument (TRL's convention), e.g. a reference answer."""
    out = []
    for i, row in enumerate(rows.rows):
        path, line = rows.where(i)
        if "prompt" not in row:
            raise InputError(path, line, "prompt", "missing")
        as_messages(row["prompt"], "user", path, line, "prompt")
        out.append(dict(row, _line=line))
    return out


# ---------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------
def pad_right(seqs: list[list[int]], value: int, multiple: int = 1):
    import torch

    width = -(-max(len(s) for s in seqs) // multiple) * multiple      # rounded up to a multiple
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def collate_sequences(prompts: list[list[int]], completions: list[list[int]], pad_id: int,
                      max_length: int | None = None, pad_multiple: int = 1) -> dict:
    """Right-padded input_ids, attention_mask and completion_mask (1 on completion tokens) for
    prompt+completion sequences; truncation keeps the start (prompt kept whole). `pad_multiple`
    rounds the padded length up (compiled layers then see a few shapes instead of one per batch)."""
    ids, cmask = [], []
    for p, c in zip(prompts, completions):
        s, m = p + c, [0] * len(p) + [1] * len(c)
        if max_length is not None:
            s, m = s[:max_length], m[:max_length]
        ids.append(s)
        cmask.append(m)
    k = pad_multiple
    return {"input_ids": pad_right(ids, pad_id, k), "attention_mask": pad_right([[1] * len(s) for s in ids], 0, k),
            "completion_mask": pad_right(cmask, 0, k)}


def collate_packed(prompts: list[list[int]], groups: list[list[list[int]]], pad_id: int, layout,
                   max_length: int | None = None) -> dict:
    """A packed batch (packing.build_packed) of prompts, each with its group of continuations; the
    sequences are numbered group by group (prompt 0's continuations first). Holds `packed` for the
    forward and the padded attention_mask / completion_mask of the same sequences (S, T) for the
    losses and token counts."""

    docs: list[tuple[list[int], list[list[int]], list[int]]] = []
    seq_p: list[list[int]] = []
    seq_c: list[list[int]] = []
    for p, conts in zip(prompts, groups):
        docs.append((p, conts, list(range(len(seq_c), len(seq_c) + len(conts)))))
        seq_p += [p] * len(conts)
        seq_c += conts
    return _packed_batch(docs, seq_p, seq_c, pad_id, layout, max_length)


def _packed_batch(docs, seq_p, seq_c, pad_id, layout, max_length) -> dict:
    from rlaif.train.packing import build_packed

    batch = collate_sequences(seq_p, seq_c, pad_id, max_length)
    del batch["input_ids"]                  # the forward reads the packed rows
    batch["packed"] = build_packed(docs, len(seq_c), pad_id, layout, max_length)
    return batch


def collate_pairs(examples: list[dict], pad_id: int, max_length: int | None = None, pad_multiple: int = 1,
                  layout=None) -> dict:
    """A DPO batch: the B chosen sequences then the B rejected ones, in one padded (2B, T) batch
    (one forward pass for both halves); with a packing `layout`, one document per pair
    (prompt | chosen | rejected) instead, packed (`batch["packed"]`)."""
    import torch

    prompts = [e["prompt_ids"] for e in examples] * 2
    comps = [e["chosen_ids"] for e in examples] + [e["rejected_ids"] for e in examples]
    if layout is not None:
        B = len(examples)
        docs = [(e["prompt_ids"], [e["chosen_ids"], e["rejected_ids"]], [i, B + i]) for i, e in enumerate(examples)]
        batch = _packed_batch(docs, prompts, comps, pad_id, layout, max_length)
    else:
        batch = collate_sequences(prompts, comps, pad_id, max_length, pad_multiple)
    if "p_chosen" in examples[0]:
        batch["p_chosen"] = torch.tensor([e["p_chosen"] for e in examples], dtype=torch.float32)
    if "ref_chosen_logps" in examples[0]:
        batch["ref_chosen_logps"] = torch.tensor([e["ref_chosen_logps"] for e in examples], dtype=torch.float32)
        batch["ref_rejected_logps"] = torch.tensor([e["ref_rejected_logps"] for e in examples], dtype=torch.float32)
    return batch


def collate_demos(examples: list[dict], pad_id: int, max_length: int | None = None, pad_multiple: int = 1,
                  layout=None) -> dict:
    """An SFT batch: padded, or packed (several demonstrations per row) with a packing `layout`."""
    if layout is not None:
        return collate_packed([e["prompt_ids"] for e in examples], [[e["completion_ids"]] for e in examples],
                              pad_id, layout, max_length)
    return collate_sequences([e["prompt_ids"] for e in examples], [e["completion_ids"] for e in examples],
                             pad_id, max_length, pad_multiple)


def pad_id_of(tok) -> int:
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


__all__ = ["Rows", "read_rows", "encode", "render_prompt", "tokenize_pairs", "tokenize_demos", "best_demos",
           "read_prompts", "collate_pairs", "collate_demos", "collate_sequences", "collate_packed", "pad_id_of", "Path"]
