"""A jury: several judges and/or rubrics per item, one aggregated verdict.

Why: single LLM judges have idiosyncratic biases; a panel of diverse judges agrees better with
humans than one large judge (Verga et al. 2024, "Replacing Judges with Juries"). A jury member is
one (judge, rubric) pair; `rlaif judge --judge A --judge B --rubric r1 --rubric r2` makes four.

Every member judges every row exactly as `rlaif judge` would (same Judge, same engine per backend,
so each provider keeps its own concurrency limit). Then, per row:

- mean      absolute: mean score (and mean distribution); pairwise: mean P(A); rank: mean Borda points.
- majority  absolute: the most common integer score (a tie: the mean of the tied scores);
            pairwise: a vote on the preferred response, P(A) = share of votes for A, "tie" when split;
            rank: Borda count (positional voting; a rank majority is not defined for n > 2).
- weighted  like mean, with each member weighted by its agreement with a gold set above chance:
            pairwise 2*accuracy-1 over gold rows labelled a/b (0 = coin flip); absolute the quadratic
            weighted kappa (scikit-learn). Negative agreement counts as 0; if every weight is 0 the
            jury refuses to run rather than average judges no better than chance.

Members that could not score a row are left out of that row's aggregate (each row lists every
member's verdict in `members`); a row is unscored only when no member scored it, with the most
common member reason as its `error`. Gold rows are ordinary input rows plus a label in `gold`,
`human` or `label` (the first present), read exactly as `rlaif rubric test` reads it
(aggregate.human_label): a/b/tie for pairwise ("tie" rows are skipped), an integer score on the scale
or a name in the rubric's `labels:` map for absolute; a row without a label is skipped, a bad label
is an error naming file, line and field.
"""
from __future__ import annotations

import json
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlaif.errors import ConfigError, RlaifError
from rlaif.journal import write_jsonl_atomic
from rlaif.judging.aggregate import (
    AGGREGATES,
    GOLD_FIELDS,
    aggregate,
    agreement_weight,
    gold_field,
    gold_label,
    human_label,
)
from rlaif.judging.job import Job, JudgeSummary, default_cache, job_fingerprint, load_rows
from rlaif.options import EngineOptions, JobOptions, JudgeOptions
from rlaif.records import Judgment

URL_PROVIDERS = ("openai", "litellm")   # the providers a --base-url (an OpenAI-compatible server) applies to


def _sum_runs(runs: list[dict]) -> dict:
    """One engine summary for the jury: members' counts added up (cost None if any is unknown)."""
    out: dict = {}
    for r in runs:
        for k, v in (r or {}).items():
            if k == "failed":
                out[k] = dict(Counter(out.get(k, {})) + Counter(v))
            elif k == "cost":
                out[k] = None if (v is None or out.get(k, 0.0) is None) else out.get(k, 0.0) + v
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
    return out


def _sum_estimates(ests: list[dict]) -> dict:
    out: dict = {"requests": 0, "cached": 0, "prompt_tokens": 0, "max_completion_tokens": 0, "cost": 0.0}
    for e in ests:
        for k in ("requests", "cached", "prompt_tokens", "max_completion_tokens"):
            out[k] += e.get(k) or 0
        out["cost"] = None if (out["cost"] is None or e.get("cost") is None) else out["cost"] + e["cost"]
        out.setdefault("count_method", e.get("count_method"))
        out.setdefault("price_source", e.get("price_source"))
    return out


def check_rubrics(rubs: list, mode: str) -> None:
    """ConfigError listing every reason these rubrics cannot sit on one jury in `mode`."""
    problems = [f"rubric '{r.name}' does not support mode '{mode}'" for r in rubs if mode not in r.modes]
    if mode == "absolute" and len({(r.scale.min, r.scale.max) for r in rubs}) > 1:
        problems.append("absolute juries need rubrics on one scale: "
                        + ", ".join(f"{r.name} {r.scale.min}..{r.scale.max}" for r in rubs))
    if problems:
        raise ConfigError(problems, source="jury")


def member_backends(judges: list, eng: EngineOptions) -> dict:
    """{key: Backend} for each distinct judge; --base-url and --reasoning-effort go only to the
    providers that take them."""
    from rlaif.backends import DEFAULT_MODEL, as_backend, provider_of

    backends: dict[str, object] = {}
    for name in judges:
        key = (name or DEFAULT_MODEL) if isinstance(name, str) or name is None else name.name
        if key in backends:
            continue
        opts = dict(eng.judge_options, **({"base_url": eng.base_url} if eng.base_url else {}))
        provider = provider_of(name)
        if provider not in URL_PROVIDERS:
            opts.pop("base_url", None)        # a jury's --base-url is for its openai/ and litellm/ members
        if provider != "openai":
            opts.pop("reasoning_effort", None)
        backends[key] = as_backend(name or DEFAULT_MODEL, **opts)
    return backends


def jury(input, rubrics: list, *, judges: list, mode: str | None = None, output=None,
         opts: JudgeOptions | None = None, eng: EngineOptions | None = None,
         job: JobOptions | None = None) -> tuple[list[dict], JudgeSummary]:
    """Judge `input` with every (judge, rubric) member and aggregate per row (`job.aggregate`,
    default mean). Returns (output rows, JudgeSummary) like `rlaif.judge`, which calls this for
    several judges/rubrics.

    Each member runs as the same `Job` a single judge runs, so a jury has what a single judge has:
    the request ledger (a re-run makes no API calls), resume after a kill (each member's work file
    is OUT.members/<fingerprint>.jsonl.partial, and a member that finished keeps its complete file
    until the jury's OUT is written), one `max_cost` budget shared by all members, a progress bar
    per member, and a dry-run estimate summed over members. Members on the same backend run one
    after another (they share its concurrency and rate limits); different backends run at once.
    """
    from rlaif.engine import Budget
    from rlaif.ledger import Ledger
    from rlaif.progress import display
    from rlaif.rubrics import Rubric, load_rubric

    opts, eng, job = opts or JudgeOptions(), eng or EngineOptions(), job or JobOptions()
    how = job.aggregate or "mean"
    if how not in AGGREGATES:
        raise RlaifError(f"unknown aggregate '{how}'; choose one of {', '.join(AGGREGATES)}")
    if how == "weighted" and job.gold is None:
        raise RlaifError("--aggregate weighted needs --gold FILE: rows with a gold label to weigh each judge by")
    rubs = [r if isinstance(r, Rubric) else load_rubric(r, rubrics_dirs=job.rubrics_dirs, prompts_dirs=job.prompts_dirs)
            for r in rubrics]
    needs_ref = any(r.reference == "required" for r in rubs)
    summary = JudgeSummary()
    rows, mode, summary.skipped = load_rows(input, mode, needs_ref, job)
    check_rubrics(rubs, mode)

    backends = member_backends(judges, eng)
    members = [(key, r) for key in backends for r in rubs]           # member m = (backend key, rubric)
    name = f"jury({how}):" + "+".join(backends)
    budget = Budget(eng.max_cost) if (eng.max_cost is not None and not job.dry_run) else None
    # One ledger connection for every member that caches (each member's own would race to open
    # the same file); members whose cache is off (local/, fake/ by default) get none, as alone.
    caches = {k: eng.cache if eng.cache is not None else default_cache(backends[k]) for k in backends}
    led_arg = eng.ledger
    shared = (led_arg if isinstance(led_arg, Ledger) else Ledger(led_arg)) if any(caches.values()) else None
    group = display() if job.progress else None
    member_job = job.model_copy(update={"shard": None, "skip_invalid": False, "fresh": False})

    panel = Panel(members, backends, mode, opts, member_eng_base(eng), member_job, caches, shared, budget, group)
    try:
        folder = None
        if output and not job.dry_run:
            folder = Path(output).with_name(Path(output).name + ".members")
            if job.fresh and folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True, exist_ok=True)

        weights = [1.0] * len(members)
        runs: list = []
        ests: list = []
        if how == "weighted":
            weights = _gold_weights(job, mode, needs_ref, members, backends, panel.run, runs, ests, summary)
        results = panel.run(rows, folder, "")
        if job.dry_run:
            summary.estimate = _sum_estimates(ests + [s.estimate for _, s in results])
            summary.estimate["rows"] = len(rows)
            summary.estimate["members"] = len(members)
            return [], summary
        runs += [s.run for _, s in results if s is not None]
        summary.run = _sum_runs(runs)
        out_rows: list[dict] = []
        for i, row in enumerate(rows):
            j = aggregate(mode, [Judgment.from_row(out[i], mode) for out, _ in results], how, weights, name)
            out_rows.append({**row, **j.to_row(), "method": "jury", "aggregate": how})
            summary.add(j)
        if output:
            write_jsonl_atomic(output, out_rows)
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)         # the members' files are in each row's `members`
        return out_rows, summary
    finally:
        if shared is not None and not isinstance(led_arg, Ledger):
            shared.close()


def member_eng_base(eng: EngineOptions) -> EngineOptions:
    """Members' engine options: the jury's, with the budget held by the jury (shared), not each member."""
    return eng.model_copy(update={"max_cost": None})


@dataclass
class Panel:
    """A jury's members (member m = (backend key, rubric)) and what they share: backends, the
    ledger connection, the budget and the progress display."""

    members: list[tuple[str, Any]]
    backends: dict
    mode: str
    opts: JudgeOptions
    eng: EngineOptions
    job: JobOptions
    caches: dict
    shared: Any
    budget: Any
    group: Any

    def member_file(self, folder: Path, m: int, rs: list[dict]) -> Path:
        # named by the member's job fingerprint: a finished file is reused only for the same
        # backend, rubric (and its templates), mode, options and rows
        key, rub = self.members[m]
        return folder / f"{m:02d}-{job_fingerprint(rs, rub, self.backends[key], self.mode, self.opts)}.jsonl"

    def run(self, rs: list[dict], folder: Path | None, tag: str) -> list:
        """results[m] = (member m's output rows, its summary); one thread per backend."""
        results: list = [None] * len(self.members)

        def run_backend(key):
            for m, (k, rub) in enumerate(self.members):
                if k != key:
                    continue
                out = self.member_file(folder, m, rs) if folder is not None else None
                if out is not None and out.exists():       # finished before a kill: read it back
                    done = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines() if x.strip()]
                    if len(done) == len(rs):
                        results[m] = (done, None)
                        continue
                eng = self.eng.model_copy(update={"cache": self.caches[key],
                                                  "ledger": self.shared if self.caches[key] else None})
                results[m] = Job(rs, rub, self.backends[key], self.mode, self.opts, eng, self.job, output=out,
                                 budget=self.budget, group=self.group, label=f"{tag}{key} {rub.name}").run()

        if self.group is not None:
            self.group.start()
        try:
            with ThreadPoolExecutor(max_workers=len(self.backends)) as ex:
                for f in [ex.submit(run_backend, key) for key in self.backends]:
                    f.result()                              # a member's exception stops the jury, state kept
        finally:
            if self.group is not None:
                self.group.stop()
        return results


def _gold_weights(job, mode, needs_ref, members, backends, run_members, runs, ests, summary) -> list[float]:
    """Each member's agreement with the gold set above chance (a dry run: 1.0 each, and the estimate)."""
    from rlaif.io import read_rows

    gold = job.gold
    gread, _ = read_rows(gold, mode, needs_reference=needs_ref) if isinstance(gold, (str, Path)) else (None, None)
    grows = gread.rows if gread is not None else list(gold or [])
    where = str(gold) if gread is not None else "gold rows"
    lines = gread.lines if gread is not None else list(range(1, len(grows) + 1))
    if not any(gold_field(r) is not None for r in grows):
        raise RlaifError(f"gold set {where}: no row has a label in any of the fields {', '.join(GOLD_FIELDS)}")
    # labels read as `rlaif rubric test` reads them, through each member's rubric (its labels: map, its scale)
    labels = {id(rub): [human_label(r, mode, rub, where, n) for r, n in zip(grows, lines, strict=True)]
              for _, rub in members}
    gres = run_members(grows, None, "gold: ")
    if job.dry_run:
        ests += [s.estimate for _, s in gres]
        return [1.0] * len(members)
    runs += [s.run for _, s in gres if s is not None]
    weights = [agreement_weight(mode, [Judgment.from_row(r, mode) for r in out], labels[id(rub)])
               for (out, _), (_, rub) in zip(gres, members, strict=True)]
    if not any(w > 0 for w in weights):
        raise RlaifError("no jury member agrees with the gold set better than chance; weights: "
                         + ", ".join(f"{k} {r.id}: 0" for k, r in members))
    summary.jury_weights = {f"{backends[k].name} {r.id}": w for (k, r), w in zip(members, weights)}
    return weights


__all__ = ["aggregate", "agreement_weight", "gold_label", "jury", "AGGREGATES"]
