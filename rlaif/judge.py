"""`rlaif.judge(...)`: the public entry behind `rlaif judge`; the machinery lives in rlaif/judging/.

Judging renders the rubric's template, calls the judge, reads its verdict and writes a Judgment per
row (rlaif/judging/judge.py has the three modes and how verdicts are read). This module routes
the caller's options to the typed option sets (rlaif.options), checks the output path, and runs
one job (rlaif/judging/job.py) or a jury (rlaif/judging/jury.py).

The names older code imported from here (`build_messages`, `Judge`, the parsers, `JudgeConfig`
...) are re-exported; `JudgeConfig` is deprecated in favour of `rlaif.options.JudgeOptions`.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from pydantic import Field

from rlaif.backends import get_backend, provider_of
from rlaif.errors import RlaifError
from rlaif.grouping import group_if_candidates
from rlaif.journal import INDEX_FIELD, PARTIAL_SUFFIX, check_output
from rlaif.judging.aggregate import bradley_terry
from rlaif.judging.job import Job, JudgeSummary, default_cache, job_fingerprint, load_rows
from rlaif.judging.judge import TOP_LOGPROBS, Judge, judge_rows_async, resolve_method
from rlaif.judging.jury import URL_PROVIDERS, jury
from rlaif.judging.verdicts import (
    PARSE_STRENGTH,
    Parsed,
    distribution,
    expected_score,
    parse_json_verdict,
    parse_preference,
    parse_ranking,
    parse_score,
    parse_verdict,
    repair_prompt,
    tolerant_parse,
    verdict_schema,
)
from rlaif.options import GENERATIVE_MAX_TOKENS, EngineOptions, JobOptions, JudgeOptions, split_options
from rlaif.render import build_messages
from rlaif.rubrics import load_rubric


class JudgeConfig(JudgeOptions):
    """Deprecated: use rlaif.options.JudgeOptions (and pass prompts_dirs to Judge/judge())."""

    prompts_dirs: list | None = Field(None, exclude=True)

    def __init__(self, **kw):
        warnings.warn("rlaif.judge.JudgeConfig is deprecated; use rlaif.options.JudgeOptions",
                      DeprecationWarning, stacklevel=2)
        super().__init__(**kw)

    def verdict_key(self) -> dict:
        return {name: getattr(self, name) for name in JudgeOptions.model_fields}


def judge(input: str | Path | list[dict], rubric, *, judge=None, mode: str | None = None,
          output: str | Path | None = None, options: JudgeOptions | None = None,
          engine_options: EngineOptions | None = None, job: JobOptions | None = None, engine=None,
          **flat) -> tuple[list[dict], JudgeSummary]:
    """Judge a JSONL file (or a list of rows) with a rubric; the CLI's `rlaif judge` calls this.

    Returns (output rows, summary). Each output row is the input row plus the verdict fields
    (score/probs, or p_a/preference/consistent, or ranking), judge, rubric@hash, method, and
    `error` (a reason code) for unscored rows. Works inside a running event loop too.

    Options come as typed sets (`options`, `engine_options`, `job`; see rlaif.options) and/or as
    flat keywords (`generative=True, concurrency=8, max_cost=5, shard="0/4"` ...), each routed to
    the set that owns it. Every option is checked before any request is sent or file opened, and
    every problem is reported at once (ConfigError).

    With `output`, finished rows go to OUT.partial as they finish and OUT is written atomically at
    the end: a job killed at any moment (SIGKILL included) and started again with the same
    arguments resumes where it stopped; rows unscored for a transient reason (budget, api_error,
    timeout) are judged again. Every successful API answer is kept in the request ledger, so
    re-asking is free (`cache=None`: on for API judges, off for local/ and fake/). `max_cost` (USD)
    stops spending cleanly; `dry_run` sends nothing and returns ([], summary) with an estimate;
    `shard="i/n"` judges one partition; `batch` uses the provider's batch API (half price).
    Several judges and/or rubrics (lists), `aggregate` or `gold` make a jury (rlaif/judging/jury.py).
    """
    opts, eng, jo = split_options(flat, given=tuple(x for x in (options, engine_options, job) if x is not None))
    if output is not None:
        check_output(output, inputs=[input])
    input = group_if_candidates(input, mode)    # `rlaif sample` output judged pairwise/rank: regrouped per prompt
    judges = list(judge) if isinstance(judge, (list, tuple)) else [judge]
    rubrics = list(rubric) if isinstance(rubric, (list, tuple)) else [rubric]
    if len(judges) > 1 or len(rubrics) > 1 or jo.aggregate is not None or jo.gold is not None:
        return jury(input, rubrics, judges=judges, mode=mode, output=output, opts=opts, eng=eng, job=jo)
    backend = _backend(judges[0], eng)
    rub = load_rubric(rubrics[0], rubrics_dirs=jo.rubrics_dirs, prompts_dirs=jo.prompts_dirs)
    rows, mode, skipped = load_rows(input, mode, rub.reference == "required", jo)
    rows_out, summary = Job(rows, rub, backend, mode, opts, eng, jo, output=output, engine=engine).run()
    summary.skipped = skipped
    return rows_out, summary


def _backend(judge, eng: EngineOptions):
    """The Backend for one judge name (or the Backend given); provider-only options refused early."""
    name = getattr(judge, "name", judge) or "local/default"
    provider = provider_of(judge) if isinstance(judge, str) else None
    if eng.judge_options.get("reasoning_effort") and provider != "openai":
        raise RlaifError(f"--reasoning-effort applies to openai/ judges, not to {name}")
    if eng.base_url and provider not in URL_PROVIDERS:
        raise RlaifError(f"--base-url applies to {'/, '.join(URL_PROVIDERS)}/ judges, not to {name}")
    if judge is not None and not isinstance(judge, str):
        return judge
    return get_backend(judge, **dict(eng.judge_options, **({"base_url": eng.base_url} if eng.base_url else {})))


__all__ = ["judge", "Judge", "JudgeOptions", "JudgeConfig", "JudgeSummary", "build_messages", "judge_rows_async",
           "bradley_terry", "distribution", "expected_score", "parse_score", "parse_preference", "parse_ranking",
           "parse_verdict", "parse_json_verdict", "tolerant_parse", "repair_prompt", "verdict_schema", "Parsed",
           "PARSE_STRENGTH", "TOP_LOGPROBS", "GENERATIVE_MAX_TOKENS", "PARTIAL_SUFFIX", "INDEX_FIELD",
           "default_cache", "job_fingerprint", "resolve_method"]
