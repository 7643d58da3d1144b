"""Sampling: N candidate responses per prompt, the raw material a judge grades.

`rlaif sample prompts.jsonl -n 4 -o candidates.jsonl` reads rows with a `prompt` (a string, or a
chat as a list of {role, content} messages ending with a user turn) and an optional `id`, and
writes one row per candidate:

    {"id": "p1-2", "prompt_id": "p1", "candidate": 2, "prompt": "...", "messages": [...],
     "response": "...", "model": "local/default", "sampling": {...}, "finish_reason": "stop", ...}

`prompt` is the text a judge shows (the user turn, or a transcript for multi-turn chats) and
`messages` is the exact conversation the sampler saw, which becomes the DPO `prompt` later.
Any other input fields (a `reference`, a `category`) are carried along.

Why per-request seeds: candidate k of prompt p is sampled with seed hash(seed, p, k). The local
backend draws each request's tokens from its own random stream, so the same seed gives the same
candidates however requests happen to be batched; API backends get the same per-request seed
(OpenAI honours it on a best-effort basis) and the request ledger key stays stable across runs,
so a re-run after a crash finds its paid calls cached.

The whole output file is written atomically at the end: a crash leaves the previous file (or
none), never half a candidate set. With `resume=True` each finished candidate is also appended to
`<output>.partial` as it arrives, and a re-run after a crash reuses those (same prompt, model and
sampling parameters) instead of asking the model again: no paid call is repeated.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlaif.backends import as_backend
from rlaif.backends.base import Backend
from rlaif.engine import Engine, run_sync
from rlaif.errors import BackendError, ConfigError, InputError, Problem, RlaifError
from rlaif.io import numbered_rows
from rlaif.journal import Journal, check_output, write_jsonl_atomic
from rlaif.progress import progress_bar
from rlaif.records import GenParams

ROLES = ("system", "user", "assistant")
# Fields a candidate row sets itself; an input row's own copies of these are not carried along.
RESERVED = {"id", "prompt_id", "candidate", "prompt", "messages", "response", "model", "sampling",
            "finish_reason", "completion_tokens"}

DEFAULT_N = 4
DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_TEMPERATURE = 0.8     # diverse enough that candidates differ, low enough to stay on topic
DEFAULT_TOP_P = 0.95
DEFAULT_SEED = 0              # reproducible unless asked otherwise


# ---------------------------------------------------------------------------------------------
# Reading prompts
# ---------------------------------------------------------------------------------------------
def check_prompt_row(row, path: str, line: int | None) -> None:
    """InputError naming file, line and field for a malformed prompt row."""
    if not isinstance(row, dict):
        raise InputError(path, line, None, f"expected a JSON object, got {type(row).__name__}")
    if "prompt" not in row:
        raise InputError(path, line, "prompt", "missing (a prompt row needs `prompt`: a string or a list of messages)")
    p = row["prompt"]
    if isinstance(p, str):
        if not p.strip():
            raise InputError(path, line, "prompt", "is empty")
    elif isinstance(p, list):
        if not p:
            raise InputError(path, line, "prompt", "is an empty message list")
        for i, m in enumerate(p):
            where = f"prompt[{i}]"
            if not isinstance(m, dict):
                raise InputError(path, line, where, f"expected a message object, got {type(m).__name__}")
            if m.get("role") not in ROLES:
                raise InputError(path, line, f"{where}.role",
                                 f"expected one of {', '.join(ROLES)}, got {m.get('role')!r}")
            if not isinstance(m.get("content"), str):
                raise InputError(path, line, f"{where}.content", f"expected str, got {type(m.get('content')).__name__}")
        if p[-1]["role"] != "user":
            raise InputError(path, line, f"prompt[{len(p) - 1}].role",
                             "the last message must be a user turn (the model answers it)")
    else:
        raise InputError(path, line, "prompt", f"expected str or a list of messages, got {type(p).__name__}")
    if "id" in row and (not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool)):
        raise InputError(path, line, "id", f"expected str or int, got {type(row['id']).__name__}")


def read_prompts(source: str | Path | list, limit: int | None = None) -> list[dict]:
    """Validated prompt rows, each with a string `id` (the row's 0-based index when absent).
    Duplicate ids are an error: candidates are grouped by prompt id later. Every row is checked,
    even past `limit` (the first `limit` rows are returned), so a bad file fails the same way."""
    if isinstance(source, (str, Path)):
        path = str(source)
        items = numbered_rows(path)
        if not items:
            raise InputError(path, None, None, "file is empty: expected one JSON object per line")
    else:
        path = "<prompts>"
        items = [(i + 1, {"prompt": v} if isinstance(v, (str, list)) else v) for i, v in enumerate(source)]
        if not items:
            raise InputError(path, None, None, "no prompts given")
    rows: list[dict] = []
    seen: dict[str, int | None] = {}
    row: Any
    for idx, (n, row) in enumerate(items):
        check_prompt_row(row, path, n)
        pid = str(row["id"]) if "id" in row else str(idx)
        if pid in seen:
            raise InputError(path, n, "id", f"duplicate id {pid!r} (first on line {seen[pid]})")
        seen[pid] = n
        rows.append({**row, "id": pid})
    return rows[:limit] if limit is not None else rows


def as_messages(prompt: str | list) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]


def judge_text(messages: list[dict]) -> str:
    """The prompt text a judge sees: the user turn alone for a one-turn chat, else a transcript."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


def request_seed(seed: int, prompt_id: str, k: int) -> int:
    """A stable 31-bit seed for candidate k of one prompt (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{prompt_id}:{k}".encode()).digest()[:4], "big") >> 1


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------
@dataclass
class SampleSummary:
    prompts: int = 0
    requested: int = 0
    written: int = 0
    reused: int = 0                                        # taken from an interrupted run's journal
    failed: Counter = field(default_factory=Counter)       # reason code -> count
    finish: Counter = field(default_factory=Counter)       # finish_reason -> count
    distinct: int = 0                                      # distinct (prompt, text) pairs

    def to_dict(self) -> dict:
        return {"prompts": self.prompts, "requested": self.requested, "written": self.written, "reused": self.reused,
                "failed": dict(self.failed), "finish_reasons": dict(self.finish), "distinct_candidates": self.distinct}

    def render(self) -> str:
        lines = [f"sampled {self.written} of {self.requested} candidates for {self.prompts} prompts "
                 f"({self.distinct} distinct)"
                 + (f"; {self.reused} reused from an interrupted run" if self.reused else "")]
        for code, n in self.failed.most_common():
            lines.append(f"  failed {code}: {n} (not written)")
        if self.finish:
            lines.append("  finish reasons: " + ", ".join(f"{k}={v}" for k, v in sorted(self.finish.items())))
        return "\n".join(lines)


async def sample_async(prompts: list[dict], n: int, backend: Backend, *, max_new_tokens: int, temperature: float,
                       top_p: float, seed: int | None, concurrency: int = 16, progress: bool = False,
                       done: dict | None = None, on_row=None):
    """(candidate rows in prompt/candidate order, summary). Failed requests are counted, not written.
    `done` maps (prompt id, k) to a row already sampled (reused if it matches the request exactly);
    `on_row(row)` is called as each new candidate arrives."""
    engine = Engine(backend, concurrency=concurrency)
    summary = SampleSummary(prompts=len(prompts), requested=len(prompts) * n)
    jobs = [(p, k) for p in prompts for k in range(n)]
    bar = progress_bar(progress, len(jobs), f"sampling with {backend.name}")
    sampling = {"n": n, "max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}

    async def one(p, k):
        messages = as_messages(p["prompt"])
        rseed = request_seed(seed, p["id"], k) if seed is not None else None
        old = (done or {}).get((p["id"], k))
        if (old and seed is not None and old.get("model") == backend.name and old.get("messages") == messages
                and old.get("sampling") == {**sampling, "request_seed": rseed}):
            summary.reused += 1
            if bar:
                bar.advance()
            return old, None
        params = GenParams(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=rseed)
        try:
            c = await engine.complete(messages, params)
        except BackendError as e:
            return None, (f"api_error:{e.status}" if e.status else e.code)
        finally:
            if bar:
                bar.advance()
        extra = {key: v for key, v in p.items() if key not in RESERVED}
        row = {"id": f"{p['id']}-{k}", "prompt_id": p["id"], "candidate": k, "prompt": judge_text(messages),
               "messages": messages, "response": c.text, "model": backend.name,
               "sampling": {**sampling, "request_seed": rseed}, "finish_reason": c.finish_reason,
               "completion_tokens": c.usage.completion_tokens, **extra}
        if on_row:
            on_row(row)
        return row, None

    try:
        results = await asyncio.gather(*(one(p, k) for p, k in jobs))
    finally:
        if bar:
            bar.stop()
    rows = []
    for row, err in results:
        if err:
            summary.failed[err] += 1
        else:
            rows.append(row)
            summary.finish[row["finish_reason"] or "unknown"] += 1
    summary.written = len(rows)
    summary.distinct = len({(r["prompt_id"], r["response"]) for r in rows})
    return rows, summary


def sample(prompts: str | Path | list, n: int = DEFAULT_N, *, model: str | Backend | None = None,
           output: str | Path | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
           temperature: float = DEFAULT_TEMPERATURE, top_p: float = DEFAULT_TOP_P, seed: int | None = DEFAULT_SEED,
           concurrency: int = 16, backend_options: dict | None = None, limit: int | None = None,
           resume: bool = False, progress: bool = False) -> tuple[list[dict], SampleSummary]:
    """N candidates per prompt; `rlaif sample` calls this. Returns (candidate rows, summary).

    `model` is `provider/model` (default `local/default`, the embedded SmolLM2, batched) or a
    Backend. With `output` the rows are written there atomically. `limit` samples only the first
    prompts (quick trials). `resume=True` journals candidates to `<output>.partial` as they arrive
    and reuses a previous, interrupted run's journal. Works inside a running event loop.
    """
    problems = []
    if not isinstance(n, int) or n < 1:
        problems.append(Problem("n", f"must be a positive integer (got {n!r})"))
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        problems.append(Problem("max_new_tokens", f"must be a positive integer (got {max_new_tokens!r})"))
    if not 0 <= temperature <= 5:
        problems.append(Problem("temperature", f"must be in 0..5 (got {temperature})"))
    elif temperature == 0 and isinstance(n, int) and n > 1:
        problems.append(Problem("temperature", "0 is greedy decoding: all candidates of a prompt would be "
                                               "identical; use a temperature > 0 (e.g. 0.8) or n=1"))
    if not 0 < top_p <= 1:
        problems.append(Problem("top_p", f"must be in (0, 1] (got {top_p})"))
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        problems.append(Problem("limit", f"must be a positive integer (got {limit!r})"))
    if not isinstance(concurrency, int) or concurrency < 1:
        problems.append(Problem("concurrency", f"must be a positive integer (got {concurrency!r})"))
    if problems:      # all at once, before any prompt is read or request sent; the CLI names each by its flag
        raise ConfigError(problems, source="options")
    if output is not None:
        check_output(output, inputs=[prompts])
    rows = read_prompts(prompts, limit)
    backend = as_backend(model, **(backend_options or {}))
    # The journal of candidates (rlaif/journal.py: locked, a torn last line cut off). Its rows are
    # self-describing, so each is reused only when its model, conversation and sampling match.
    journal = Journal(output, None) if (resume and output is not None) else None
    with journal if journal is not None else contextlib.nullcontext():
        done = {(v["prompt_id"], v["candidate"]): v for v in (journal.done.values() if journal else [])
                if "prompt_id" in v and "candidate" in v}
        out, summary = run_sync(sample_async(rows, n, backend, max_new_tokens=max_new_tokens, temperature=temperature,
                                             top_p=top_p, seed=seed, concurrency=concurrency, progress=progress,
                                             done=done, on_row=journal.add if journal else None))
        if not out:
            raise RlaifError(f"every one of the {summary.requested} sampling requests failed: "
                             + ", ".join(f"{k}={v}" for k, v in summary.failed.items()))
        if journal is not None:
            journal.finish(out)          # the output, atomically; then the journal has done its job
        elif output is not None:
            write_jsonl_atomic(output, out)
    return out, summary
