"""Sharding a judging job across machines, and merging the shards' outputs.

`rlaif judge in.jsonl --shard 2/8 -o out.2.jsonl` judges only the rows whose stable hash falls in
partition 2 of 8 (0-based). The hash is SHA-256 of the row's `id` when it has one, else of the row's
canonical JSON, so every machine computes the same partition with no coordination, whatever its
Python version or hash seed (Python's hash() is salted per process: unusable here).

`rlaif merge out.*.jsonl -o out.jsonl --input in.jsonl` joins the shard outputs; with `--input` it
restores the input's row order and checks that every input row appears exactly once (a shard that
is missing or was run twice is an error naming the rows), so the merged file equals an unsharded run.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rlaif.errors import InputError, RlaifError

# The fields that identify an input row inside an output row (output rows add verdict fields).
ROW_FIELDS = ("id", "prompt", "response", "response_a", "response_b", "responses", "reference")


def parse_shard(spec: str) -> tuple[int, int]:
    """'2/8' -> (2, 8); 0 <= i < n."""
    try:
        i, n = (int(x) for x in str(spec).split("/"))
    except ValueError:
        raise RlaifError(f"--shard must look like i/n (e.g. 0/4), got {spec!r}") from None
    if n < 1 or not 0 <= i < n:
        raise RlaifError(f"--shard {spec}: need n >= 1 and 0 <= i < n (shards are numbered from 0)")
    return i, n


def row_key(row: dict) -> str:
    """A stable identity of an input row: its id, or its content."""
    if "id" in row and row["id"] is not None:
        return "id:" + json.dumps(row["id"])
    ident = {k: row[k] for k in ROW_FIELDS if k in row}
    return "c:" + hashlib.sha256(json.dumps(ident, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def shard_of(row: dict, n: int) -> int:
    return int(hashlib.sha256(row_key(row).encode()).hexdigest()[:16], 16) % n


def select_shard(rows: list[dict], i: int, n: int, lines: list[int] | None = None, path: str = "<rows>") -> list[int]:
    """Indices of the rows that belong to shard i of n. Two rows with one identity (the same id, or
    no id and the same content) are refused here, before any call: `merge` could not tell them
    apart, and would fail only after every shard was paid for."""
    first: dict[str, int] = {}
    out = []
    for k, r in enumerate(rows):
        key = row_key(r)
        if key in first:
            n_line = lines[k] if lines else k + 1
            what = "the same id" if key.startswith("id:") else "the same content and no id"
            raise InputError(path, n_line, "id" if key.startswith("id:") else None,
                             f"row has {what} as {'line' if lines else 'row'} {first[key]}: a sharded run needs "
                             "every row once (give rows distinct ids)")
        first[key] = lines[k] if lines else k + 1
        if shard_of(r, n) == i:
            out.append(k)
    return out


def merge(paths: list[str | Path], output: str | Path, input: str | Path | None = None) -> int:
    """Merge shard outputs into `output` (atomically). Returns the number of rows written."""
    from rlaif.io import check_row, infer_mode, iter_jsonl, iter_objects, write_jsonl
    from rlaif.journal import check_output

    check_output(output, inputs=[*paths, *([input] if input is not None else [])])
    seen: dict[str, tuple[str, int]] = {}
    merged: list[dict] = []
    for p in paths:
        for line, row in iter_objects(p):
            check_row(row, str(p), line, infer_mode(row))     # a judged row still carries its input row
            k = row_key(row)
            if k in seen:
                raise InputError(str(p), line, "id" if k.startswith("id:") else None,
                                 f"row already present in {seen[k][0]}:{seen[k][1]} (a shard given twice?)")
            seen[k] = (str(p), line)
            merged.append(row)
    if input is not None:
        by_key = {row_key(r): r for r in merged}
        ordered, missing = [], []
        for line, value in iter_jsonl(input):
            if isinstance(value, InputError) or not isinstance(value, dict):
                continue                    # invalid input rows were skipped by judge too
            k = row_key(value)
            if k in by_key:
                ordered.append(by_key.pop(k))
            else:
                missing.append(line)
        if missing:
            raise RlaifError(f"{len(missing)} row(s) of {input} are in no shard output (lines "
                             f"{', '.join(map(str, missing[:20]))}{' ...' if len(missing) > 20 else ''}); "
                             "is a shard missing or unfinished?")
        if by_key:
            raise RlaifError(f"{len(by_key)} row(s) in the shard outputs are not in {input}")
        merged = ordered
    write_jsonl(output, merged)
    return len(merged)
