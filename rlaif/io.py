"""Reading and writing the JSONL files that flow between stages.

Bad input gets an error naming the file, the line and the field, before any work starts, so a
typo at row 9,000 doesn't cost 9,000 paid judgments. `skip_invalid=True` collects those errors
instead and lets the rest through. Output lines are written whole and flushed one at a time, so
whatever was written before a crash stays a valid JSONL prefix.

One reader for every file rlaif takes (JSONL rows, gold sets, partial files, JSON results and
metrics, YAML rubrics and configs): `iter_jsonl`, `read_text`, `read_json`, `read_yaml`. Each one
handles, in this one place: a missing file or a folder given as a file; bytes that are not UTF-8
(the error names line and column); a UTF-8 byte order mark (dropped); lone UTF-16 surrogates
(`"\\ud800"`, valid JSON but not text: an error naming the field); NaN/Infinity and numbers that
overflow a float (not standard JSON: an error naming the field); a YAML key given twice (an error,
where PyYAML would keep the last value). The one writer policy (`dumps`): standard JSON only,
so a non-finite number is never written (see `dumps`).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import cast

from rlaif.errors import InputError
from rlaif.jsondata import dumps
from rlaif.jsondata import find_bad as _find_bad

BOM = b"\xef\xbb\xbf"      # a UTF-8 byte order mark (Windows editors write one): not part of the data

# The fields each judging mode needs from a row, and their types.
MODE_FIELDS: dict[str, dict[str, type]] = {
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


def _check_path(path: str) -> None:
    """A clear InputError for a path that is not a readable file (missing, a folder, unreadable)."""
    if not os.path.exists(path):
        raise InputError(path, None, None, "file not found")
    if os.path.isdir(path):
        raise InputError(path, None, None, "is a folder, not a file")
    if not os.access(path, os.R_OK):
        raise InputError(path, None, None, "cannot be read (permission denied)")


def _decode(raw: bytes, path: str, line: int | None) -> str:
    """UTF-8 text of `raw`; InputError naming the line and column of the first invalid byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        before = raw[:e.start]
        ln = (line or 1) + before.count(b"\n")
        col = e.start - (before.rfind(b"\n") + 1) + 1
        raise InputError(path, ln, None, f"not UTF-8 text: invalid byte 0x{raw[e.start]:02x} at column {col} "
                                         "(re-save the file as UTF-8)") from None


def _reject_constant(name: str):
    raise ValueError(name)


# A line that may hold a lone surrogate (an escape in the D800-DFFF range) or a number too large
# for a float (1e999 parses as inf): only such lines are walked, so ordinary rows cost nothing more.
_SUSPECT = re.compile(r"\\u[dD][89a-fA-F]|[eE]\+?\d{3}|\d{309}")


def loads(text: str, path: str, line: int | None = None):
    """Parse one JSON value strictly: NaN/Infinity (Python's non-standard extension), numbers that
    overflow a float and lone surrogates are InputErrors naming the field, not values that crash
    a later stage or get written back as invalid JSON."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise InputError(path, line if line is not None else e.lineno, None,
                         f"invalid JSON: {e.msg} (column {e.colno})") from None
    except ValueError as e:        # NaN, Infinity, -Infinity
        raise InputError(path, line, None, f"{e} is not valid JSON (standard JSON has no NaN or Infinity; "
                                           "write null)") from None
    if _SUSPECT.search(text):
        hit = _find_bad(value)
        if hit:
            raise InputError(path, line, hit[0] or None, hit[1])
    return value


def iter_jsonl(path: str | Path) -> Iterable[tuple[int, object]]:
    """(line number, parsed value) for each non-blank line; an InputError in place of the value for
    a line that is not valid UTF-8 JSON (so `skip_invalid` can skip just that line). A UTF-8 byte
    order mark is ignored; a missing file or a folder raises at once."""
    path = str(path)
    _check_path(path)
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if n == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            if not raw.strip():
                continue
            try:
                yield n, loads(_decode(raw, path, n), path, n)
            except InputError as e:
                yield n, e


def read_text(path: str | Path) -> str:
    """The whole text of a file rlaif reads (JSON, YAML, ...): UTF-8, byte order mark dropped;
    InputError for a missing file, a folder, or bytes that are not UTF-8 (naming line and column)."""
    path = str(path)
    _check_path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(BOM):
        raw = raw[len(BOM):]
    return _decode(raw, path, None)


def read_json(path: str | Path):
    """One JSON document (a result, metrics or state file, an example row), read like every other
    input: see read_text and loads."""
    path = str(path)
    return loads(read_text(path), path)


def read_yaml(path: str | Path):
    """One YAML document, read like every other input; a key given twice in one mapping is an error."""
    path = str(path)
    return parse_yaml(read_text(path), path)


def parse_yaml(text: str, source: str):
    """YAML text -> data with the safe loader. A duplicate key (which PyYAML silently resolves to the
    last value) and invalid YAML are InputErrors naming the line."""
    import yaml

    try:
        return yaml.load(text, Loader=_unique_key_loader())
    except _DuplicateKey as e:
        raise InputError(source, e.line, e.key, f"key given twice (first on line {e.first}); "
                                                "YAML would silently keep only the last one") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(source, mark.line + 1 if mark else None, None,
                         f"invalid YAML: {getattr(e, 'problem', None) or e}") from None


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int):
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


@lru_cache(maxsize=1)
def _unique_key_loader():
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    hash(key)
                except TypeError:
                    continue                # the base class reports unhashable keys
                if key in seen:
                    raise _DuplicateKey(str(key), key_node.start_mark.line + 1, seen[key])
                seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                    UniqueKeyLoader.construct_mapping)
    return UniqueKeyLoader


def iter_objects(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) for each JSON object of a JSONL file; the first invalid line, or a line that is
    not an object, raises its InputError (file, line). The reader of files whose rows must all be objects."""
    for n, value in iter_jsonl(path):
        if isinstance(value, InputError):
            raise value
        if not isinstance(value, dict):
            raise InputError(str(path), n, None, f"expected a JSON object, got {type(value).__name__}")
        yield n, value


def numbered_rows(path: str | Path) -> list[tuple[int, object]]:
    """Every (line number, value) of a JSONL file; the first invalid line raises its InputError."""
    items = []
    for n, value in iter_jsonl(path):
        if isinstance(value, InputError):
            raise value
        items.append((n, value))
    return items


def read_rows(path: str | Path, mode: str | None = None, *, needs_reference: bool = False,
              skip_invalid: bool = False, unique_ids: bool = True) -> tuple[ReadResult, str]:
    """Read and validate every row. Returns (result, mode); mode is inferred from the first valid row.

    Two rows with the same `id` are an error naming both lines (with `skip_invalid`, the later one is
    skipped), raised here, before any judging call: downstream, `pairs` and `merge` key rows by id,
    so a duplicate would silently merge two different responses or fail after every shard was paid."""
    path = str(path)
    result = ReadResult([], [])
    first_line: dict[str, int] = {}
    seen_any = False
    for n, value in iter_jsonl(path):
        seen_any = True
        try:
            if isinstance(value, InputError):
                raise value
            m = mode or (infer_mode(value) if isinstance(value, dict) else "absolute")
            check_row(value, path, n, m, needs_reference)
            value = cast(dict, value)               # check_row refused anything else
            if unique_ids and value.get("id") is not None:
                key = json.dumps(value["id"])
                if key in first_line:
                    raise duplicate_id(path, n, value["id"], first_line[key])
                first_line[key] = n
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


def duplicate_id(path: str, line: int | None, value, first: int | str) -> InputError:
    """The one error for an id given twice (judge input, pairs, merge)."""
    return InputError(path, line, "id", f"duplicate id {value!r} (first on line {first}); ids must be unique "
                                        "(give each row its own id, or drop the field)")


def check_unique_ids(rows: list, lines: list[int] | None = None, path: str = "<rows>") -> None:
    """InputError naming both lines if two rows share an `id` (for rows given as a list)."""
    first: dict[str, int] = {}
    for k, row in enumerate(rows):
        if isinstance(row, dict) and row.get("id") is not None:
            key, n = json.dumps(row["id"]), lines[k] if lines else k + 1
            if key in first:
                raise duplicate_id(path, n, row["id"], first[key])
            first[key] = n


class JsonlWriter:
    """Append JSON lines, each written whole and flushed, so a crash leaves a valid prefix."""

    def __init__(self, path: str | Path, mode: str = "w"):
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, mode, encoding="utf-8")

    def write(self, row: dict) -> None:
        self._f.write(dumps(row) + "\n")
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
