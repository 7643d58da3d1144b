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
`human` or `label` (the first present): "a"/"b" for pairwise ("tie" rows are skipped), a number
for absolute.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from rlaif.errors import ConfigError, RlaifError
from rlaif.records import Judgment

AGGREGATES = ("mean", "majority", "weighted")
GOLD_FIELDS = ("gold", "human", "label")


# ---------------------------------------------------------------------------------------------
# Pure aggregation
# ---------------------------------------------------------------------------------------------
def _member_row(v: Judgment, weight: float) -> dict:
    d = {"judge": v.judge, "rubric": v.rubric, "weight": weight}
    for k in ("score", "p_a", "preference", "ranking", "error"):
        if getattr(v, k) is not None:
            d[k] = getattr(v, k)
    return d


def aggregate(mode: str, verdicts: list[Judgment], how: str = "mean", weights: list[float] | None = None,
              name: str = "jury") -> Judgment:
    """One Judgment from the members' verdicts on one row (see the module docstring for the rules)."""
    if how not in AGGREGATES:
        raise RlaifError(f"unknown aggregate '{how}'; choose one of {', '.join(AGGREGATES)}")
    weights = list(weights) if weights is not None else [1.0] * len(verdicts)
    if how != "weighted":
        weights = [1.0] * len(verdicts)
    rubric = "+".join(dict.fromkeys(v.rubric for v in verdicts))
    members = [_member_row(v, w) for v, w in zip(verdicts, weights)]
    ok = [(v, w) for v, w in zip(verdicts, weights) if v.error is None and w > 0]
    if not ok:
        errs = Counter(v.error for v in verdicts if v.error)
        code = errs.most_common(1)[0][0] if errs else "no_weight"
        detail = "; ".join(f"{v.judge} {v.rubric}: {v.error}" for v in verdicts if v.error) or "every member has weight 0"
        return Judgment(mode, name, rubric, error=code, detail=f"no jury member scored this row ({detail})",
                        members=members)
    total = sum(w for _, w in ok)
    j = Judgment(mode, name, rubric, members=members)
    if mode == "absolute":
        if how == "majority":
            votes = Counter(round(v.score) for v, _ in ok)
            top = max(votes.values())
            tied = [s for s, c in votes.items() if c == top]
            j.score = sum(tied) / len(tied)
            j.probs = {str(s): c / len(ok) for s, c in sorted(votes.items())}
        else:
            j.score = sum(w * v.score for v, w in ok) / total
            keys = sorted({k for v, _ in ok for k in (v.probs or {})}, key=lambda k: float(k))
            if keys and all(v.probs for v, _ in ok):
                j.probs = {k: sum(w * v.probs.get(k, 0.0) for v, w in ok) / total for k in keys}
    elif mode == "pairwise":
        if how == "majority":
            votes = Counter(v.preference for v, _ in ok if v.preference in ("a", "b"))
            n = votes["a"] + votes["b"]
            j.p_a = votes["a"] / n if n else 0.5
        else:
            j.p_a = sum(w * v.p_a for v, w in ok) / total
        j.preference = "tie" if abs(j.p_a - 0.5) < 1e-9 else ("a" if j.p_a > 0.5 else "b")
        checked = [v.consistent for v, _ in ok if v.consistent is not None]
        j.consistent = all(checked) if checked else None
    else:
        n = len(ok[0][0].ranking)
        points = [0.0] * n
        for v, w in ok:
            for pos, idx in enumerate(v.ranking):
                points[idx] += w * (n - 1 - pos) / total
        j.scores = points
        j.ranking = sorted(range(n), key=lambda i: -points[i])
    return j


def gold_label(row: dict):
    for f in GOLD_FIELDS:
        if row.get(f) is not None:
            return row[f]
    return None


def agreement_weight(mode: str, verdicts: list[Judgment], labels: list) -> float:
    """How much better than chance one member agrees with the gold labels (0 = chance or worse)."""
    if mode == "pairwise":
        pairs = [(v.preference, str(g).lower()) for v, g in zip(verdicts, labels)
                 if v.error is None and str(g).lower() in ("a", "b")]
        if not pairs:
            return 0.0
        acc = sum(p == g for p, g in pairs) / len(pairs)
        return max(0.0, 2 * acc - 1)
    if mode == "absolute":
        from sklearn.metrics import cohen_kappa_score

        pairs = [(round(v.score), round(float(g))) for v, g in zip(verdicts, labels) if v.error is None and g is not None]
        if len(pairs) < 2:
            return 0.0
        pred, gold = zip(*pairs)
        if len(set(pred) | set(gold)) < 2:            # kappa undefined: both constant and equal
            return 1.0 if pred == gold else 0.0
        k = cohen_kappa_score(gold, pred, weights="quadratic")
        return max(0.0, float(k)) if k == k else 0.0
    raise RlaifError("weighted juries need gold labels, which rlaif supports for absolute and pairwise modes only")


# ---------------------------------------------------------------------------------------------
# Running a jury
# ---------------------------------------------------------------------------------------------
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


def jury(input, rubrics: list, *, judges: list, aggregate_by: str = "mean", gold=None, mode: str | None = None,
         output=None, concurrency: int = 16, judge_options: dict | None = None, skip_invalid: bool = False,
         prompts_dirs: list | None = None, rubrics_dirs: list | None = None, progress: bool = False,
         shard=None, dry_run: bool = False, fresh: bool = False, max_cost: float | None = None,
         run_options: dict | None = None, **config) -> tuple[list[dict], object]:
    """Judge `input` with every (judge, rubric) member and aggregate per row. `config` holds the
    JudgeConfig fields (generative, both_orders, rank_method, samples, ...); `run_options` the
    engine options passed to every member (cache, ledger, rpm, tpm, timeout, max_retries, prices,
    batch). Returns (output rows, JudgeSummary) like `rlaif.judge`, which calls this for several
    judges/rubrics.

    Each member is judged by `rlaif.judge` itself, so a jury has what a single judge has: the
    request ledger (a re-run makes no API calls), resume after a kill (each member's work file is
    OUT.members/<fingerprint>.jsonl.partial, and a member that finished keeps its complete file
    until the jury's OUT is written), one `max_cost` budget shared by all members, a progress bar
    per member, and a dry-run estimate summed over members. Members on the same backend run one
    after another (they share its concurrency and rate limits); different backends run at once.
    """
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    from rlaif.backends import DEFAULT_MODEL, get_backend
    from rlaif.engine import Budget
    from rlaif.ledger import Ledger
    from rlaif.io import check_row, infer_mode, read_rows
    from rlaif.judge import (URL_PROVIDERS, Judge, JudgeConfig, JudgeSummary, _job_fingerprint, _write_atomic,
                             default_cache, judge, progress_display)
    from rlaif.rubrics import Rubric, load_rubric
    from rlaif.shards import parse_shard, select_shard

    if aggregate_by not in AGGREGATES:
        raise RlaifError(f"unknown aggregate '{aggregate_by}'; choose one of {', '.join(AGGREGATES)}")
    if aggregate_by == "weighted" and gold is None:
        raise RlaifError("--aggregate weighted needs --gold FILE: rows with a gold label to weigh each judge by")
    rubs = [r if isinstance(r, Rubric) else load_rubric(r, rubrics_dirs=rubrics_dirs, prompts_dirs=prompts_dirs)
            for r in rubrics]
    needs_ref = any(r.reference == "required" for r in rubs)
    summary = JudgeSummary()
    if isinstance(input, (str, Path)):
        read, mode = read_rows(input, mode, needs_reference=needs_ref, skip_invalid=skip_invalid)
        rows, summary.skipped = read.rows, read.skipped
    else:
        rows = list(input)
        mode = mode or (infer_mode(rows[0]) if rows else "absolute")
        for n, row in enumerate(rows, 1):
            check_row(row, "<rows>", n, mode, needs_ref)
    problems = [f"rubric '{r.name}' does not support mode '{mode}'" for r in rubs if mode not in r.modes]
    if mode == "absolute" and len({(r.scale.min, r.scale.max) for r in rubs}) > 1:
        problems.append("absolute juries need rubrics on one scale: "
                        + ", ".join(f"{r.name} {r.scale.min}..{r.scale.max}" for r in rubs))
    if problems:
        raise ConfigError(problems, source="jury")
    if shard is not None:
        si, sn = parse_shard(shard) if isinstance(shard, str) else shard
        rows = [rows[k] for k in select_shard(rows, si, sn)]

    backends: dict[str, object] = {}
    for name in judges:
        key = (name or DEFAULT_MODEL) if isinstance(name, str) or name is None else name.name
        if key not in backends:
            opts = dict(judge_options or {})
            if isinstance(name, str) and name.split("/", 1)[0] not in URL_PROVIDERS:
                opts.pop("base_url", None)        # a jury's --base-url is for its openai/ and litellm/ members
            if isinstance(name, str) and name.split("/", 1)[0] != "openai":
                opts.pop("reasoning_effort", None)
            backends[key] = name if (name is not None and not isinstance(name, str)) else get_backend(
                name or DEFAULT_MODEL, **opts)
    members = [(key, r) for key in backends for r in rubs]           # member m = (backend key, rubric)
    name = f"jury({aggregate_by}):" + "+".join(backends)
    budget = Budget(max_cost) if (max_cost is not None and not dry_run) else None
    run_options = dict(run_options or {})
    # One ledger connection for every member that caches (each member's own would race to open
    # the same file); members whose cache is off (local/, fake/ by default) get none, as alone.
    cache, led_arg = run_options.pop("cache", None), run_options.pop("ledger", None)
    caches = {k: cache if cache is not None else default_cache(backends[k]) for k in backends}
    shared = (led_arg if isinstance(led_arg, Ledger) else Ledger(led_arg)) if any(caches.values()) else None
    common = dict(mode=mode, concurrency=concurrency, prompts_dirs=prompts_dirs, dry_run=dry_run,
                  _budget=budget, **run_options, **config)
    group = progress_display() if progress else None

    def member_file(folder: Path, m: int, rs: list[dict]) -> Path:
        # named by the member's job fingerprint: a finished file is reused only for the same
        # backend, rubric (and its templates), mode, options and rows
        key, rub = members[m]
        cfg = JudgeConfig(prompts_dirs=prompts_dirs, **config)
        Judge(rub, backends[key], None, cfg)          # settles cfg.generative the way the member will
        return folder / f"{m:02d}-{_job_fingerprint(rs, rub, backends[key], mode, cfg)}.jsonl"

    def run_members(rs: list[dict], folder: Path | None, tag: str) -> list[tuple[list[dict], object]]:
        """results[m] = (member m's output rows, its summary); one thread per backend."""
        results: list = [None] * len(members)

        def run_backend(key):
            for m, (k, rub) in enumerate(members):
                if k != key:
                    continue
                out = member_file(folder, m, rs) if folder is not None else None
                if out is not None and out.exists():       # finished before a kill: read it back
                    done = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines() if x.strip()]
                    if len(done) == len(rs):
                        results[m] = (done, None)
                        continue
                results[m] = judge(rs, rub, judge=backends[key], output=out, progress=progress,
                                   cache=caches[key], ledger=shared if caches[key] else None,
                                   _progress_group=group, _label=f"{tag}{key} {rub.name}", **common)

        if group is not None:
            group.start()
        try:
            with ThreadPoolExecutor(max_workers=len(backends)) as ex:
                for f in [ex.submit(run_backend, key) for key in backends]:
                    f.result()                              # a member's exception stops the jury, state kept
        finally:
            if group is not None:
                group.stop()
        return results

    try:
        folder = None
        if output and not dry_run:
            folder = Path(output).with_name(Path(output).name + ".members")
            if fresh and folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True, exist_ok=True)

        weights = [1.0] * len(members)
        runs, ests = [], []
        if aggregate_by == "weighted":
            gread, _ = read_rows(gold, mode, needs_reference=needs_ref) if isinstance(gold, (str, Path)) else (None, None)
            grows = gread.rows if gread is not None else list(gold)
            labels = [gold_label(r) for r in grows]
            if not any(lab is not None for lab in labels):
                raise RlaifError(f"gold set {gold}: no row has a label in any of the fields {', '.join(GOLD_FIELDS)}")
            gres = run_members(grows, None, "gold: ")
            if dry_run:
                ests += [s.estimate for _, s in gres]
            else:
                runs += [s.run for _, s in gres if s is not None]
                weights = [agreement_weight(mode, [Judgment.from_row(r, mode) for r in out], labels) for out, _ in gres]
                if not any(w > 0 for w in weights):
                    raise RlaifError("no jury member agrees with the gold set better than chance; weights: "
                                     + ", ".join(f"{k} {r.id}: 0" for k, r in members))
                summary.jury_weights = {f"{backends[k].name} {r.id}": w for (k, r), w in zip(members, weights)}

        results = run_members(rows, folder, "")
        if dry_run:
            summary.estimate = _sum_estimates(ests + [s.estimate for _, s in results])
            summary.estimate["rows"] = len(rows)
            summary.estimate["members"] = len(members)
            return [], summary
        runs += [s.run for _, s in results if s is not None]
        summary.run = _sum_runs(runs)
        out_rows: list[dict] = []
        for i, row in enumerate(rows):
            j = aggregate(mode, [Judgment.from_row(out[i], mode) for out, _ in results], aggregate_by, weights, name)
            out_rows.append({**row, **j.to_row(), "method": "jury", "aggregate": aggregate_by})
            summary.add(j)
        if output:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(Path(output), out_rows)
            shutil.rmtree(folder, ignore_errors=True)         # the members' files are in each row's `members`
        return out_rows, summary
    finally:
        if shared is not None and not isinstance(led_arg, Ledger):
            shared.close()


__all__ = ["aggregate", "agreement_weight", "gold_label", "jury", "AGGREGATES"]
