"""Reading and writing the JSONL files that flow between stages.

Bad input gets an error naming the file, the line and the field, before any work starts, so a
typo at row 9,000 doesn't cost 9,000 paid judgments. `skip_invalid=True` collects those errors
instead and lets the rest through. Output lines are written whole and flushed one at a time, so
whatever was written before a crash stays a valid JSONL prefix.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rlaif.errors import InputError

# The fields each judging mode needs from a row, and their types.
MODE_FIELDS = {
    "absolute": {"prompt": str, "response": str},
    "pairwise": {"prompt": str, "response_a": str, "response_b": str},
    "rank": {"prompt": str, "responses": list},
}


@dataclass
class ReadResult:
    rows: list[dict]
    lines: list[int]                                     # source line of each row
    skipped: list[InputError] = field(default_factory=list)


def infer_mode(row: dict) -> str:
    if "responses" in row:
        return "rank"
    if "response_a" in row or "response_b" in row:
        return "pairwise"
    return "absolute"


def check_row(row, path: str, line: int, mode: str, needs_reference: bool = False) -> None:
    if not isinstance(row, dict):
        raise InputError(path, line, None, f"expected a JSON object, got {type(row).__name__}")
    for name, typ in MODE_FIELDS[mode].items():
        if name not in row:
            raise InputError(path, line, name, f"missing (a {mode} row needs {', '.join(MODE_FIELDS[mode])})")
        if not isinstance(row[name], typ):
            raise InputError(path, line, name, f"expected {typ.__name__}, got {type(row[name]).__name__}")
    if mode == "rank":
        rs = row["responses"]
        if len(rs) < 2:
            raise InputError(path, line, "responses", f"needs at least 2 responses to rank, got {len(rs)}")
        for i, r in enumerate(rs):
            if not isinstance(r, str):
                raise InputError(path, line, f"responses[{i}]", f"expected str, got {type(r).__name__}")
    if "id" in row and not isinstance(row["id"], (str, int)):
        raise InputError(path, line, "id", f"expected str or int, got {type(row['id']).__name__}")
    if needs_reference:
        if "reference" not in row:
            raise InputError(path, line, "reference", "missing (this rubric requires a reference answer)")
        if not isinstance(row["reference"], str):
            raise InputError(path, line, "reference", f"expected str, got {type(row['reference']).__name__}")
    elif "reference" in row and row["reference"] is not None and not isinstance(row["reference"], str):
        raise InputError(path, line, "reference", f"expected str, got {type(row['reference']).__name__}")


def iter_jsonl(path: str | Path) -> Iterable[tuple[int, object]]:
    """(line number, parsed value) for each non-blank line; InputError on invalid JSON."""
    path = str(path)
    if not os.path.exists(path):
        raise InputError(path, None, None, "file not found")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                yield n, InputError(path, n, None, f"invalid JSON: {e.msg} (column {e.colno})")


def numbered_rows(path: str | Path) -> list[tuple[int, object]]:
    """Every (line number, value) of a JSONL file; the first invalid line raises its InputError."""
    items = []
    for n, value in iter_jsonl(path):
        if isinstance(value, InputError):
            raise value
        items.append((n, value))
    return items


def read_rows(path: str | Path, mode: str | None = None, *, needs_reference: bool = False,
              skip_invalid: bool = False) -> tuple[ReadResult, str]:
    """Read and validate every row. Returns (result, mode); mode is inferred from the first valid row."""
    path = str(path)
    result = ReadResult([], [])
    seen_any = False
    for n, value in iter_jsonl(path):
        seen_any = True
        try:
            if isinstance(value, InputError):
                raise value
            m = mode or (infer_mode(value) if isinstance(value, dict) else "absolute")
            check_row(value, path, n, m, needs_reference)
            mode = m
            result.rows.append(value)
            result.lines.append(n)
        except InputError as e:
            if not skip_invalid:
                raise
            result.skipped.append(e)
    if not seen_any:
        raise InputError(path, None, None, "file is empty: expected one JSON object per line")
    if not result.rows:
        raise InputError(path, None, None, f"no valid rows ({len(result.skipped)} skipped)")
    return result, mode or "absolute"


class JsonlWriter:
    """Append JSON lines, each written whole and flushed, so a crash leaves a valid prefix."""

    def __init__(self, path: str | Path, mode: str = "w"):
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, mode, encoding="utf-8")

    def write(self, row: dict) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Write all rows atomically: to a temp file, then rename over `path`."""
    from rlaif.journal import write_jsonl_atomic

    write_jsonl_atomic(path, rows)
