"""The request ledger: every successful answer a judge ever gave, in one SQLite file.

Why: judging 100k rows against a paid API must never pay twice for the same answer. Each request
is keyed by a hash of (model, rendered messages, generation parameters); a request whose key is
already here is answered from disk, so re-running a job (after a crash, a SIGKILL, a budget stop,
or just to change the output file) makes zero API calls for the rows already answered.

A second table, `verdicts`, keeps each finished output row under a hash of (rlaif version, rubric
id with its templates' hash, judge, mode, judging options, input row): a verdict is a pure function
of those and of the cached answers, so a fully answered re-run reads rows back in one batched query
instead of rendering every prompt again (rendering in the Jinja sandbox costs ~0.3 ms a prompt).
Rows unscored for a transient reason (budget, api_error, timeout) are not kept there.

What is stored: the answer's text, option log-probabilities, top log-probabilities, token usage
and cost. Not stored: failures (a 429 or a timeout must be retried next time, not replayed), and
anything about credentials: the key hashes only model + messages + params, and backends never
put an API key in those.

Where: `<cache_dir>/ledger.sqlite` (`RLAIF_CACHE_DIR` moves it; see rlaif.models.cache_dir()), or
the file `RLAIF_LEDGER` names.
Concurrency: WAL mode, so several shards/processes can read and write the same ledger at once;
a 30 s busy timeout rides out another writer's commit. Each live answer is committed before the
engine returns it, hence before its row is written anywhere (the crash-cost guarantee in
docs/engine.md); answers that arrive in the same event-loop turn share one commit (put_many), and a
cached re-run writes nothing, so the commits cost it nothing.
A damaged or non-standard entry reads back as a miss (asked again), never as a crash.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from rlaif.records import Completion, GenParams, Message, Usage

# put(commit=False) (bulk imports only) commits after this many buffered answers. A live answer
# is committed at once: in WAL mode with synchronous=NORMAL a commit is a write to the WAL, no
# fsync (~20-50 us), so a 1,000 answers/s run spends a few percent of one core on it; in exchange
# a SIGKILL never costs an answer that was already received.
FLUSH_EVERY = 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    option_logprobs TEXT,
    top_logprobs TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL,
    finish_reason TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    row TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def request_key(model: str, messages: list[Message], params: GenParams | dict) -> str:
    """A stable hash of one request. Canonical JSON (sorted keys, no whitespace) so the same
    request hashes the same in every process and Python version."""
    # Same as params.key(), without dataclasses.asdict's deep copy (this runs once per request).
    p = {k: v for k, v in vars(params).items() if v is not None} if isinstance(params, GenParams) else params
    blob = json.dumps({"model": model, "messages": messages, "params": p}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def default_path() -> Path:
    """`$RLAIF_LEDGER` if set (a file path; the test suite gives each test its own), else
    `<cache_dir>/ledger.sqlite`."""
    import os

    from rlaif.models import cache_dir

    return Path(os.environ["RLAIF_LEDGER"]) if os.environ.get("RLAIF_LEDGER") else cache_dir() / "ledger.sqlite"


class Ledger:
    """`get(key) -> Completion | None`, `put(key, model, completion)`, `get_many(keys)`."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection, used from whichever thread runs the event loop (run_sync may use a helper
        # thread); the lock keeps the buffered writes and reads consistent.
        self._db = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None)
        # Several openers at once (a jury's members, shards on one machine): switching a new file to
        # WAL and creating the tables take an exclusive lock that SQLite may refuse at once, without
        # waiting out the busy timeout; so wait here, up to the same 30 s.
        deadline = time.monotonic() + 30.0
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL: durable across process kills
                self._db.executescript(_SCHEMA)
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._lock = threading.Lock()
        self._pending: dict[str, tuple] = {}

    # -- reads ---------------------------------------------------------------------------------
    def get(self, key: str) -> Completion | None:
        with self._lock:
            if key in self._pending:
                return _to_completion(self._pending[key][1:])
            row = self._db.execute("SELECT model, text, option_logprobs, top_logprobs, prompt_tokens, "
                                   "completion_tokens, cost, finish_reason FROM responses WHERE key=?",
                                   (key,)).fetchone()
        return _to_completion(row) if row else None

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        """Batch lookup (chunks of 500 keys per query)."""
        out: dict[str, Completion] = {}
        with self._lock:
            for k in keys:
                if k in self._pending and (pc := _to_completion(self._pending[k][1:])) is not None:
                    out[k] = pc
            rest = [k for k in keys if k not in out]
            for i in range(0, len(rest), 500):
                chunk = rest[i:i + 500]
                q = ("SELECT key, model, text, option_logprobs, top_logprobs, prompt_tokens, completion_tokens, "
                     f"cost, finish_reason FROM responses WHERE key IN ({','.join('?' * len(chunk))})")
                for row in self._db.execute(q, chunk):
                    if (c := _to_completion(row[1:])) is not None:
                        out[row[0]] = c
        return out

    def __contains__(self, key: str) -> bool:
        with self._lock:
            if key in self._pending:
                return True
            return self._db.execute("SELECT 1 FROM responses WHERE key=?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        self.flush()
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    # -- writes --------------------------------------------------------------------------------
    def put(self, key: str, model: str, c: Completion, *, commit: bool = True) -> None:
        """Record a successful answer. Committed before this returns (the engine hands the answer on
        only after that, so an answer whose row reached the output is always in the ledger: after a
        SIGKILL only requests still in flight are paid again). `commit=False` buffers it until
        flush() or FLUSH_EVERY buffered answers (bulk imports, e.g. a batch API's results)."""
        row = (key, model, c.text, _dumps(c.option_logprobs), _dumps(c.top_logprobs), c.usage.prompt_tokens,
               c.usage.completion_tokens, c.cost, c.finish_reason, time.time())
        with self._lock:
            self._pending[key] = row
            due = commit or len(self._pending) >= FLUSH_EVERY
        if due:
            self.flush()

    def put_many(self, items: list[tuple[str, str, Completion]]) -> None:
        """Record several answers (key, model, completion) in one committed transaction: the engine's
        group commit (answers that arrive together share one commit)."""
        with self._lock:
            for key, model, c in items:
                self._pending[key] = (key, model, c.text, _dumps(c.option_logprobs), _dumps(c.top_logprobs),
                                      c.usage.prompt_tokens, c.usage.completion_tokens, c.cost, c.finish_reason,
                                      time.time())
        self.flush()

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._write_all("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?,?,?)",
                                list(self._pending.values()))
                self._pending.clear()

    def _write_all(self, sql: str, rows: list[tuple]) -> None:
        """All rows in one write transaction, or none of them (the caller holds the lock)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(sql, rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # -- verdicts: finished output rows, so a fully answered re-run skips rendering too ------------
    def get_verdicts(self, keys: list[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                q = f"SELECT key, row FROM verdicts WHERE key IN ({','.join('?' * len(chunk))})"
                for k, row in self._db.execute(q, chunk):
                    v = _load_entry(row)
                    if isinstance(v, dict):         # a bad entry is a miss (judged again), not a crash
                        out[k] = v
        return out

    def put_verdicts(self, items: list[tuple[str, dict]]) -> None:
        """One transaction for all of them (called once per run, not per row)."""
        if not items:
            return
        now = time.time()
        rows = []
        for k, r in items:
            try:   # standard JSON only: a verdict with NaN/inf in it is not kept (it would come back as one)
                rows.append((k, json.dumps(r, ensure_ascii=False, allow_nan=False), now))
            except ValueError:
                continue
        with self._lock:
            self._write_all("INSERT OR REPLACE INTO verdicts VALUES (?,?,?)", rows)

    def close(self) -> None:
        self.flush()
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _dumps(v) -> str | None:
    return None if v is None else json.dumps(v, separators=(",", ":"))


def _reject_nan(name: str):
    raise ValueError(name)


def _load_entry(blob):
    """A stored verdict row, or None when it cannot be read back as standard JSON (written by an
    older version, or damaged): one bad entry must not crash every later run."""
    try:
        return json.loads(blob, parse_constant=_reject_nan)
    except (ValueError, TypeError):
        return None


def _to_completion(row) -> Completion | None:
    """The stored answer, or None (a miss: asked again) for an entry that cannot be read."""
    _model, text, olp, tlp, pt, ct, cost, finish = row[:8]
    try:     # log-probabilities may be -inf (an impossible option): allowed here, unlike in verdicts
        option_logprobs = json.loads(olp) if olp else None
        top_logprobs = json.loads(tlp) if tlp else None
    except (ValueError, TypeError):
        return None
    if not isinstance(text, str):
        return None
    return Completion(text=text, option_logprobs=option_logprobs, top_logprobs=top_logprobs,
                      usage=Usage(pt or 0, ct or 0), cost=cost, finish_reason=finish, cached=True)
