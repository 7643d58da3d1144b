"""A judging job: one judge and one rubric over a file of rows, with everything a long paid run
needs around the Judge: the output journal (resume after a kill), verdicts read back from the
ledger, the engine (limits, retries, budget), the batch API, progress and the summary.

`run_job` is what `rlaif.judge` runs for one judge and what each jury member runs.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlaif.engine import Engine, run_sync
from rlaif.journal import Journal, canonical, fingerprint
from rlaif.judging.judge import effective_options, judge_rows_async, resolve_method
from rlaif.options import EngineOptions, JobOptions, JudgeOptions
from rlaif.records import Judgment
from rlaif.ties import describe as describe_tie_rule

# Rows unscored for these reasons are judged again when a job resumes; any other verdict (a score,
# parse_error, refused...) is final and kept.
TRANSIENT = ("budget", "timeout", "connection_error", "bad_response")


def is_transient(error: str | None) -> bool:
    return bool(error) and (error in TRANSIENT or str(error).startswith("api_error"))


def default_cache(backend) -> bool:
    """Whether a judge uses the request ledger unless told: API judges do; local/, fake/ and rm/ do
    not (their answers are free, and a local model's weights may change under the same name)."""
    from rlaif.backends import provider_of

    return provider_of(backend) not in ("local", "fake", "rm")


def _head(rub, backend, mode, opts: JudgeOptions) -> list:
    return [rub.id, backend.name, getattr(backend, "base_url", None) or "", mode,
            effective_options(opts, backend).verdict_key()]


def job_fingerprint(rows, rub, backend, mode, opts: JudgeOptions, canon: list[bytes] | None = None) -> str:
    """The identity of a job's OUT.partial: rubric (and templates), judge, mode, options, rows."""
    return fingerprint(_head(rub, backend, mode, opts), canon if canon is not None else canonical(rows))


def verdict_keys(rows, rub, backend, mode, opts: JudgeOptions, canon: list[bytes] | None = None) -> list[str]:
    """One ledger key per row for its finished verdict (see rlaif.ledger, table `verdicts`)."""
    from rlaif.version import __version__

    head = json.dumps([__version__, *_head(rub, backend, mode, opts)]).encode()
    return [hashlib.sha256(head + c).hexdigest() for c in (canon if canon is not None else canonical(rows))]


@dataclass
class JudgeSummary:
    total: int = 0
    scored: int = 0
    unscored: Counter = field(default_factory=Counter)
    histogram: Counter = field(default_factory=Counter)
    consistent: int = 0
    consistency_checked: int = 0
    skipped: list = field(default_factory=list)      # InputErrors of rows skipped with skip_invalid
    run: dict | None = None                          # engine totals: requests, cached, retries, tokens, cost
    estimate: dict | None = None                     # dry run: requests, tokens, cost upper bound
    jury_weights: dict | None = None                 # weighted jury: each member's weight from the gold set

    def add(self, j: Judgment) -> None:
        self.total += 1
        if j.error:
            self.unscored[j.error] += 1
            return
        self.scored += 1
        if j.score is not None:
            self.histogram[str(round(j.score))] += 1
        if j.preference is not None:
            self.histogram[j.preference] += 1
        if j.ranking is not None:
            self.histogram[f"best={j.ranking[0]}"] += 1
        if j.consistent is not None:
            self.consistency_checked += 1
            self.consistent += int(j.consistent)

    @property
    def consistency(self) -> float | None:
        return self.consistent / self.consistency_checked if self.consistency_checked else None

    def to_dict(self) -> dict:
        return {"total": self.total, "scored": self.scored, "unscored": dict(self.unscored),
                "histogram": dict(sorted(self.histogram.items())), "position_consistency": self.consistency,
                "skipped_rows": [str(e) for e in self.skipped], "jury_weights": self.jury_weights,
                "run": self.run, "estimate": self.estimate}

    def render(self) -> str:
        lines = [f"judged {self.total} rows: {self.scored} scored, {self.total - self.scored} unscored"]
        for code, n in self.unscored.most_common():
            lines.append(f"  unscored {code}: {n}")
        if self.histogram:
            width = max(self.histogram.values())
            lines.append("  distribution:")
            for k, n in sorted(self.histogram.items()):
                lines.append(f"    {k:>8} {'#' * max(1, round(30 * n / width))} {n}")
        if self.consistency is not None:
            lines.append(f"  position consistency: {self.consistency:.1%} of {self.consistency_checked}")
        if self.jury_weights:
            lines.append("  jury weights (agreement with the gold set above chance):")
            lines.extend(f"    {k}: {w:.3f}" for k, w in self.jury_weights.items())
        if self.run:
            from rlaif.cost import fmt_usd

            r = self.run
            if r.get("rows_resumed") or r.get("rows_from_ledger"):
                lines.append(f"  rows: {r.get('rows_resumed', 0)} resumed from the unfinished output, "
                             f"{r.get('rows_from_ledger', 0)} verdicts read back from the ledger")
            lines.append(f"  requests: {r['requests']} ({r['cached']} from the ledger, {r['api_calls']} API calls, "
                         f"{r['retries']} retries); tokens: {r['prompt_tokens']:,} in, {r['completion_tokens']:,} out; "
                         f"cost: {fmt_usd(r['cost'])} (saved {fmt_usd(r['saved_by_cache'])} by the ledger)")
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} invalid input rows:")
            lines.extend(f"    {e}" for e in self.skipped[:20])
        return "\n".join(lines)


def load_rows(input, mode: str | None, needs_reference: bool, job: JobOptions) -> tuple[list[dict], str, list]:
    """(rows, mode, skipped InputErrors) from a JSONL path or a list of rows, checked, and cut to
    the job's shard."""
    from rlaif.io import check_row, check_unique_ids, infer_mode, read_rows
    from rlaif.shards import parse_shard, select_shard

    skipped: list = []
    lines: list[int] | None = None
    if isinstance(input, (str, Path)):       # read_rows already refused duplicate ids, naming both lines
        read, mode = read_rows(input, mode, needs_reference=needs_reference, skip_invalid=job.skip_invalid)
        rows, skipped, lines = read.rows, read.skipped, read.lines
    else:
        rows = list(input)
        mode = mode or (infer_mode(rows[0]) if rows else "absolute")
        for n, row in enumerate(rows, 1):
            check_row(row, "<rows>", n, mode, needs_reference)
        check_unique_ids(rows)
    if job.shard is not None:
        si, sn = parse_shard(job.shard) if isinstance(job.shard, str) else job.shard
        where = str(input) if isinstance(input, (str, Path)) else "<rows>"
        rows = [rows[k] for k in select_shard(rows, si, sn, lines=lines, path=where)]
    return rows, mode or "absolute", skipped


def make_engine(backend, eng: EngineOptions, ledger, *, dry: bool = False, budget=None) -> Engine:
    from rlaif.cost import load_price_file
    from rlaif.engine import DEFAULT_RETRIES, DEFAULT_TIMEOUT

    prices = eng.prices if isinstance(eng.prices, dict) or eng.prices is None else load_price_file(eng.prices)
    return Engine(backend, concurrency=eng.concurrency, rpm=eng.rpm, tpm=eng.tpm,
                  timeout=eng.timeout or DEFAULT_TIMEOUT,
                  max_retries=DEFAULT_RETRIES if eng.max_retries is None else eng.max_retries,
                  ledger=ledger, max_cost=None if dry else eng.max_cost, prices=prices, dry_run=dry,
                  budget=None if dry else budget)


@dataclass
class Job:
    """One judge and one rubric over `rows`. `budget` (shared by a jury's members), `group` (a
    shared progress display) and `label` are how a jury runs its members through this same code."""

    rows: list[dict]
    rubric: Any                # a Rubric
    backend: Any               # a Backend
    mode: str
    opts: JudgeOptions = field(default_factory=JudgeOptions)
    eng: EngineOptions = field(default_factory=EngineOptions)
    job: JobOptions = field(default_factory=JobOptions)
    output: str | Path | None = None
    engine: Engine | None = None
    budget: Any = None
    group: Any = None
    label: str | None = None

    def run(self) -> tuple[list[dict], JudgeSummary]:
        from rlaif.cost import load_price_file
        from rlaif.ledger import Ledger

        if isinstance(self.eng.prices, (str, Path)):   # read once, before the ledger or OUT.partial is opened
            self.eng = self.eng.model_copy(update={"prices": load_price_file(self.eng.prices)})
        cache = self.eng.cache if self.eng.cache is not None else default_cache(self.backend)
        given = self.eng.ledger
        led = given if isinstance(given, Ledger) else (Ledger(given) if cache else None)
        try:
            if self.job.dry_run:
                return [], self._estimate(led)
            return self._run(led)
        finally:
            if led is not None and not isinstance(given, Ledger):
                led.close()

    def _estimate(self, led) -> JudgeSummary:
        eng = make_engine(self.backend, self.eng, led, dry=True)
        run_sync(judge_rows_async(self.rows, self.rubric, self.mode, judge=self.backend, config=self.opts,
                                  engine=eng, prompts_dirs=self.job.prompts_dirs))
        summary = JudgeSummary(estimate={**eng.estimate.to_dict(), "rows": len(self.rows)})
        return summary

    def _announce_wait(self, eng: Engine, rows: list[dict], led) -> None:
        """With --rpm/--tpm, say before the first request how long the limits alone will make the
        job wait (a dry pass renders and counts what would be sent; no request is made)."""
        dry = make_engine(self.backend, self.eng, led, dry=True)
        run_sync(judge_rows_async(rows, self.rubric, self.mode, judge=self.backend, config=self.opts,
                                  engine=dry, prompts_dirs=self.job.prompts_dirs))
        e = dry.estimate
        sent = e.requests - e.cached
        if sent > 0:
            eng.announce_expected_wait(sent, (e.prompt_tokens + e.max_completion_tokens) / sent)

    def _run(self, led) -> tuple[list[dict], JudgeSummary]:
        rows, method = self.rows, resolve_method(self.opts, self.backend)
        use_keys = led is not None and self.engine is None
        canon = canonical(rows) if (self.output or use_keys) else None
        journal = (Journal(self.output, job_fingerprint(rows, self.rubric, self.backend, self.mode, self.opts, canon),
                           rows=rows, fresh=self.job.fresh) if self.output else None)
        with journal if journal is not None else contextlib.nullcontext():
            done: dict[int, dict] = {k: v for k, v in (journal.done if journal else {}).items() if k < len(rows)}
            todo = [k for k in range(len(rows)) if k not in done or is_transient(done[k].get("error"))]
            resumed = len(rows) - len(todo)
            vkeys = verdict_keys(rows, self.rubric, self.backend, self.mode, self.opts, canon) if use_keys else None
            from_ledger = 0
            if vkeys and todo:       # rows answered by an earlier run: no rendering, no calls
                # (not copied into OUT.partial: after a kill they are read back from the ledger again)
                known = led.get_verdicts([vkeys[k] for k in todo])
                for k in todo:
                    if vkeys[k] in known:
                        done[k] = {**rows[k], **known[vkeys[k]]}
                        from_ledger += 1
                todo = [k for k in todo if vkeys[k] not in known]
            batch_report = self._batch([rows[k] for k in todo], led) if (self.eng.batch and todo) else None
            eng = self.engine or make_engine(self.backend, self.eng, led, budget=self.budget)
            if (eng.rpm or eng.tpm) and todo:
                self._announce_wait(eng, [rows[k] for k in todo], led)
            self._judge(todo, done, method, eng, journal)
            out_rows = [done[k] for k in range(len(rows))]
            if vkeys:
                led.put_verdicts([(vkeys[k], _verdict_fields(done[k], rows[k])) for k in todo
                                  if k in done and not is_transient(done[k].get("error"))])
            summary = JudgeSummary()
            for row in out_rows:
                summary.add(Judgment.from_row(row, self.mode))
            summary.run = {**eng.stats.to_dict(), "rows_resumed": resumed, "rows_from_ledger": from_ledger}
            if batch_report:
                summary.run["batch"] = batch_report
            if journal is not None:
                journal.finish(out_rows)
        return out_rows, summary

    def _batch(self, rows, led) -> dict:
        from rlaif.judging.batch import run_batch

        return run_batch(rows, self.rubric, self.mode, self.backend, self.opts, led,
                         lambda dry=False: make_engine(self.backend, self.eng, led, dry=dry),
                         poll=self.eng.batch_poll, prompts_dirs=self.job.prompts_dirs)

    def _judge(self, todo: list[int], done: dict, method: str, eng: Engine, journal: Journal | None) -> None:
        from rlaif.progress import Bar

        rows = self.rows
        # the tie rule each pairwise row was labelled by (rlaif/ties.py; `rubric test` records the same)
        tie_field = ({"tie_rule": describe_tie_rule(self.opts.tie_margin, self.opts.both_orders)}
                     if self.mode == "pairwise" else {})
        bar = (Bar(len(rows), f"judging with {self.label or self.backend.name}", done=len(rows) - len(todo),
                   stats=eng.stats, group=self.group) if self.job.progress else None)

        def emit(pos, j: Judgment):
            k = todo[pos]
            row = {**rows[k], **j.to_row(), "method": method, **tie_field}
            done[k] = row
            if journal is not None:      # one whole line per write, flushed: a kill leaves at most a torn line
                journal.append(k, row)
            if bar:
                bar.advance(failed=bool(j.error))

        async def run_and_close():
            try:
                await judge_rows_async([rows[k] for k in todo], self.rubric, self.mode, judge=self.backend,
                                       config=self.opts, engine=eng, on_result=emit,
                                       prompts_dirs=self.job.prompts_dirs)
            finally:   # an HTTP client's pool belongs to this event loop: close it before the loop ends
                if hasattr(self.backend, "aclose"):
                    await self.backend.aclose()

        try:
            run_sync(run_and_close())
        finally:
            if bar:
                bar.stop()


def _verdict_fields(out: dict, row: dict) -> dict:
    """The fields judging added or changed: what the ledger keeps of a finished verdict."""
    return {f: v for f, v in out.items() if f not in row or v != row[f]}
