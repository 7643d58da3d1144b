"""The one crash-safe output primitive every stage writes through.

Why one: judging, jury members, sampling, the rubric test, eval and the pipeline all promise the
same thing (a file is complete or absent, never half-written; a killed job resumes without paying
twice), and five hand-written copies of that promise had drifted apart (one resume scheme had no
fingerprint, one index field shared its namespace with the user's row fields).

- `write_jsonl_atomic` / `write_json_atomic`: temp file beside the target, fsync, rename.
- `content_hash`: sha256 of a file or of a folder's files (names and contents).
- `check_output`: an output path is refused before any request is sent or any file opened for
  writing: a directory, the input file itself, or a folder rlaif cannot write to.
- `Journal`: `OUT.partial`, a JSONL work file whose first line fingerprints the job. Each finished
  row is appended as itself plus its position under an index field the header names, chosen so
  that no row has a field of that name (`_rlaif_index`, else `_rlaif_index_1` ...): bookkeeping
  never shares a namespace with the user's fields. One whole flushed line per write, so a kill
  leaves at most a torn last line, which is cut off on resume. The file is locked (fcntl) while a
  job writes it: a second process on the same output fails at once instead of paying for
  everything again.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from rlaif.errors import RlaifError
from rlaif.jsondata import dumps

PARTIAL_SUFFIX = ".partial"     # OUT.partial: the resumable work file; OUT appears only when complete
JOB_FIELD = "_rlaif_job"        # the header line's fingerprint field
INDEX_FIELD = "_rlaif_index"    # the index field's name unless a row already has a field so named


# ---------------------------------------------------------------------------------------------
# Atomic writers and the content hash
# ---------------------------------------------------------------------------------------------
def _replace_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict]) -> None:
    """All rows to a temp file in one buffered write, fsync, then rename over `path`: readers see
    the old file or the complete new one, never a half-written one."""
    _replace_atomically(Path(path), "".join(dumps(r) + "\n" for r in rows))


def write_json_atomic(path: str | Path, obj: object, indent: int | None = 2) -> None:
    """One JSON document, written like `write_jsonl_atomic`."""
    _replace_atomically(Path(path), json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")


def content_hash(path: str | Path) -> str:
    """sha256 (hex) of a file, or of a folder's files (relative names and contents, sorted)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0")
            h.update(content_hash(f).encode())
        return h.hexdigest()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical(rows: Iterable[dict]) -> list[bytes]:
    """Each row as canonical JSON bytes (sorted keys): what fingerprints and ledger keys hash."""
    return [json.dumps(r, sort_keys=True, ensure_ascii=False).encode() for r in rows]


def fingerprint(head: object, items: Iterable[bytes]) -> str:
    """A job's identity: its settings (`head`, JSON-serialisable) and its canonical input rows."""
    h = hashlib.sha256()
    h.update(json.dumps(head).encode())
    for c in items:
        h.update(c)
    return h.hexdigest()[:32]


def free_field(base: str, rows: Iterable[dict]) -> str:
    """`base`, or `base_1`, `base_2` ...: the first name no row has as a field."""
    taken = {k for r in rows for k in r if k.startswith(base)}
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


# ---------------------------------------------------------------------------------------------
# Checking an output path before any work
# ---------------------------------------------------------------------------------------------
def check_output(output: str | Path, *, inputs: Iterable[object] = (), option: str = "-o") -> Path:
    """`output` as a Path, or RlaifError if writing it would fail or destroy an input. Called
    before the first request and before any file is opened for writing, so a bad `-o` costs
    nothing. Creates no file; the parent folder may be created later by the writer."""
    out = Path(output)
    if out.is_dir():
        raise RlaifError(f"{option} {out}: is a directory; give a file path (e.g. {out / 'out.jsonl'})")
    for src in inputs:
        if isinstance(src, (str, Path)) and Path(src).exists() and out.exists() and os.path.samefile(src, out):
            raise RlaifError(f"{option} {out}: is the input file; write the output to another file "
                             "(rlaif never overwrites its input)")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:     # the nearest folder that exists
        parent = parent.parent
    if not parent.is_dir():
        raise RlaifError(f"{option} {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RlaifError(f"{option} {out}: cannot write in {parent} (permission denied)")
    if out.exists() and not os.access(out, os.W_OK) and not os.access(out.parent, os.W_OK):
        raise RlaifError(f"{option} {out}: the file is not writable")
    return out


# ---------------------------------------------------------------------------------------------
# The resumable work file
# ---------------------------------------------------------------------------------------------
class Journal:
    """`OUT.partial` for one job. Use as a context manager:

        with Journal(out, fp, fresh=fresh) as jn:   # locks OUT.partial, reads what a killed run finished
            done = jn.done                          # {index: row}
            jn.append(k, row) ...                   # each finished item, one flushed line
            jn.finish(rows)                         # OUT written atomically, OUT.partial removed

    A job whose fingerprint differs from the file's header is refused (delete it or `fresh`); a
    file that is not an rlaif work file at all is refused with one line, never a traceback.

    `job=None` is a journal of self-describing rows (sampling: each candidate row carries its
    model, conversation and sampling parameters, and the caller reuses a row only on an exact
    match): no header, no index field, `done` keyed by line position.
    """

    def __init__(self, output: str | Path, job: str | None, *, rows: Iterable[dict] = (), fresh: bool = False,
                 option: str = "-o"):
        self.output = Path(output)
        self.index_field = free_field(INDEX_FIELD, rows)
        self.path = self.output.with_name(self.output.name + PARTIAL_SUFFIX)
        self.job, self.fresh, self.option = job, fresh, option
        self.done: dict[int, dict] = {}
        self._f: BinaryIO | None = None

    # -- opening: lock, then read back or start -----------------------------------------------
    def __enter__(self) -> Journal:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> dict[int, dict]:
        import fcntl

        self.output.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+b")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise RlaifError(f"{self.option} {self.output}: another rlaif process is writing this output "
                             f"({self.path} is locked); wait for it to finish or choose another output") from None
        self._f = f
        try:
            f.seek(0)
            data = f.read()
            if data and not self.fresh:
                self.done, good = self._read(data) if self.job is not None else self._read_rows(data)
            else:
                self.done, good = {}, 0
            if self.job is None:
                f.truncate(good)
            elif good == 0:             # new, fresh, or died before the header was whole: start again
                f.truncate(0)
                f.write((json.dumps({JOB_FIELD: self.job, "index_field": self.index_field}) + "\n").encode())
            elif good < len(data):
                f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            self.close()
            raise
        return self.done

    def _read_rows(self, data: bytes) -> tuple[dict[int, dict], int]:
        """A journal of self-describing rows: every whole JSON object line, up to the first torn one."""
        done: dict[int, dict] = {}
        good = 0
        for n, raw in enumerate(data.splitlines(keepends=True)):
            obj = self._line(raw) if raw.endswith(b"\n") else None
            if obj is None:
                break
            done[n] = obj
            good += len(raw)
        return done, good

    def _read(self, data: bytes) -> tuple[dict[int, dict], int]:
        """({index: row}, bytes of the valid prefix). Stops at the first torn or unreadable line:
        the items after it are simply done again."""
        lines = data.splitlines(keepends=True)
        header = self._line(lines[0]) if lines and lines[0].endswith(b"\n") else None
        if header is None:
            if len(lines) == 1 and not lines[0].endswith(b"\n") and lines[0].startswith(b'{"' + JOB_FIELD.encode()):
                return {}, 0            # the header itself was torn by a kill
            raise RlaifError(f"{self.path}: not an rlaif work file (its first line is not a job header); "
                             "delete it, or pass --fresh to start over")
        if header.get(JOB_FIELD) != self.job:
            raise RlaifError(f"{self.path} is the unfinished output of a different job (other input, rubric, judge "
                             "or options); delete it, or pass --fresh to start over")
        index_field = header.get("index_field") or INDEX_FIELD      # files written before it was named
        done: dict[int, dict] = {}
        good = len(lines[0])
        for n, raw in enumerate(lines[1:], 2):
            obj = self._line(raw) if raw.endswith(b"\n") else None
            item = self._item(obj, index_field)
            if item is None:
                if n < len(lines):      # not just a torn last line: say what is being redone
                    print(f"rlaif: {self.path}:{n}: unreadable line; it and the {len(lines) - n} after it "
                          "are done again", file=sys.stderr)
                break
            done[item[0]] = item[1]
            good += len(raw)
        return done, good

    @staticmethod
    def _line(raw: bytes) -> dict | None:
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        return obj if isinstance(obj, dict) else None

    @staticmethod
    def _item(obj: dict | None, index_field: str) -> tuple[int, dict] | None:
        if obj is None:
            return None
        idx = obj.pop(index_field, None)
        if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
            return None
        return idx, obj

    # -- writing -------------------------------------------------------------------------------
    def append(self, index: int, row: dict) -> None:
        """One finished item, as one whole flushed line: a kill leaves at most a torn last line."""
        if self._f is None:
            raise RlaifError(f"{self.path}: the journal is not open")
        if self.job is None:
            line = dumps(row) + "\n"
        elif self.index_field in row:
            raise RlaifError(f"{self.path}: a row has the journal's index field '{self.index_field}'")
        else:
            line = dumps({**row, self.index_field: index}) + "\n"
        self._f.write(line.encode("utf-8"))
        self._f.flush()
        self.done[index] = row

    def add(self, row: dict) -> None:
        """Append a self-describing row (a `job=None` journal) after those already there."""
        self.append(len(self.done), row)

    def finish(self, rows: Iterable[dict]) -> None:
        """The complete output, written atomically; then the work file is removed."""
        write_jsonl_atomic(self.output, rows)
        self.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._f is not None:
            try:
                self._f.flush()
                os.fsync(self._f.fileno())
            finally:
                self._f.close()          # closing releases the lock
                self._f = None
