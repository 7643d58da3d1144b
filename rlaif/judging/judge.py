"""The Judge: one backend and one rubric judge one row: render → call → read → a Judgment.

Judging: render the rubric's template → call the judge → parse → a Judgment.

Three modes:
- absolute: one response, one score on the rubric's scale. With a logprob-capable judge the score
  is the probability-weighted expectation over the scale's tokens from one forward pass (G-Eval),
  and the distribution is kept. Otherwise (or with generative=True) the judge writes a rationale
  and a final "Score: N" line, which is parsed.
- pairwise: P(A is better), read from the A/B token probabilities, in *both* presentation orders
  and averaged (the RLAIF paper's position-debiased soft label); `consistent` says whether both
  orders pick the same winner.
- rank: N responses. Default method "tournament": every pair judged pairwise (both orders) and the
  soft wins aggregated with a Bradley-Terry fit; works with any judge, costs n(n-1) calls.
  "listwise": one generative call per permutation of the list (identity and reversed by default),
  aggregated by mean Borda position; n_permutations calls, needs a judge that can write a ranking.

Generative verdicts are read in three steps: (1) structured output where the provider has it
(OpenAI json_schema, Anthropic tool use, LiteLLM where listed), else the "Score: N" line; (2) if
that fails, the judge is re-asked ONCE with the parse error appended; (3) if the second reply is
unreadable too, tolerant patterns ("4/5", "Response B is better", "[[A]]") are tried on both
replies. Each row records how its verdict was read in `parse` (json | text | repaired | tolerant).
A judge's refusal is not re-asked (`refused`). Without log-probabilities (Anthropic), `samples=k`
estimates the distribution / P(A) from k samples at temperature 1 (opt-in: it costs k calls).

A verdict that cannot be parsed is unscored with a reason code in `error`, never a made-up number.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from rlaif.backends import as_backend
from rlaif.backends.base import Backend
from rlaif.engine import Engine
from rlaif.errors import BackendError, RlaifError
from rlaif.judging.aggregate import borda, bradley_terry
from rlaif.judging.verdicts import (
    Parsed,
    distribution,
    expected_score,
    parse_json_verdict,
    parse_verdict,
    repair_prompt,
    tolerant_parse,
    verdict_schema,
    weakest,
)
from rlaif.options import JudgeOptions
from rlaif.records import GenParams, Judgment
from rlaif.render import build_messages
from rlaif.rubrics import Rubric, load_rubric
from rlaif.ties import preference as tie_preference

TOP_LOGPROBS = 20               # OpenAI's maximum; enough to find every score token in practice
METHODS = ("logprobs", "generative", "samples")


def resolve_method(options: JudgeOptions, backend) -> str:
    """How verdicts will be read, decided up front and recorded in every row (never a silent
    fallback): "samples" (k > 1 sampled verdicts), "generative" (asked for, or a judge without
    log-probabilities), else "logprobs"."""
    if getattr(backend, "judge_method", None):     # rm/: a reward model scores whole rows itself
        return backend.judge_method
    if options.samples and options.samples > 1:
        return "samples"
    if options.generative or not getattr(backend, "supports_logprobs", False):
        return "generative"
    return "logprobs"


def effective_options(options: JudgeOptions, backend) -> JudgeOptions:
    """A copy of `options` with `generative` as `resolve_method` settles it (what fingerprints hash)."""
    return options.model_copy(update={"generative": resolve_method(options, backend) != "logprobs"})


@dataclass
class Reading:
    """One criterion (absolute) or one presentation order (pairwise) read from the judge:
    `value` is the score or P(the response shown first is better); or an error with its reason."""

    value: float | None = None
    probs: dict | None = None
    rationale: str | None = None
    error: str | None = None
    detail: str | None = None
    parse: str | None = None
    n_samples: int | None = None


def _unscored(mode, judge, rubric, code, detail, **kw) -> Judgment:
    return Judgment(mode=mode, judge=judge, rubric=rubric, error=code, detail=detail, **kw)


def error_code(e: BackendError) -> str:
    return f"api_error:{e.status}" if e.status else e.code


def _min(xs) -> int | None:
    xs = [x for x in xs if x is not None]
    return min(xs) if xs else None


class Judge:
    """Judges rows with one backend and one rubric. Use `rlaif.judge()` unless you need the parts.
    The options are read, never changed: the method they resolve to is `self.method`."""

    def __init__(self, rubric: Rubric, backend: Backend, engine: Engine | None = None,
                 config: JudgeOptions | None = None, prompts_dirs: list | None = None):
        self.rubric, self.backend = rubric, backend
        self.engine = engine or Engine(backend)
        self.cfg = config if config is not None else JudgeOptions()
        self.prompts_dirs = prompts_dirs if prompts_dirs is not None else getattr(self.cfg, "prompts_dirs", None)
        self.method = resolve_method(self.cfg, backend)
        self.generative = self.method != "logprobs"
        structured = self.cfg.structured
        self.structured = bool(getattr(backend, "supports_json_schema", False)) if structured is None else structured
        self.options_scale = [str(p) for p in rubric.scale.points]

    def _messages(self, mode: str, row: dict, **kw) -> list[dict]:
        return build_messages(self.rubric, mode, row, generative=kw.pop("generative", self.generative),
                              prompts_dirs=self.prompts_dirs, **kw)

    async def _logprobs(self, msgs, options: list[str]):
        params = GenParams(max_tokens=1, temperature=0.0, top_logprobs=TOP_LOGPROBS, options=options)
        c = await self.engine.complete(msgs, params)
        return distribution(c.option_logprobs or {}, options)

    # -- generative verdicts: structured → parse → re-ask once → tolerant ------------------------
    async def _verdict(self, msgs: list[dict], kind: str, n: int = 0, seed: int | None = None) -> Parsed:
        lo, hi = self.rubric.scale.min, self.rubric.scale.max
        schema = verdict_schema(kind, lo, hi, n) if self.structured else None
        temperature = self.cfg.sample_temperature if seed is not None else 0.0
        # `seed` also makes each sample its own request-ledger entry (the key includes params).
        params = GenParams(max_tokens=self.cfg.max_tokens, temperature=temperature, seed=seed, json_schema=schema)
        if schema is not None:
            field = {"score": f'"score" (an integer from {lo} to {hi})', "preference": '"better" ("A" or "B")',
                     "ranking": f'"ranking" (the response numbers 1..{n}, best first)'}[kind]
            ask = f'\n\nAnswer as a JSON object with "rationale" (two or three sentences) and {field}.'
            msgs = msgs[:-1] + [dict(msgs[-1], content=msgs[-1]["content"] + ask)]
        c = await self.engine.complete(msgs, params)
        if c.finish_reason in ("refusal", "content_filter"):
            return Parsed(None, c.text or None, "refused", f"the judge declined ({c.finish_reason}): {c.text[:200]!r}")
        first = parse_verdict(c.text, kind, lo, hi, n)
        if first.error is None:
            how = "json" if parse_json_verdict(c.text, kind, lo, hi, n) is not None else "text"
            return Parsed(first.value, first.rationale, parse=how)
        if first.error == "refused" or not self.cfg.repair:
            t = tolerant_parse(c.text, kind, lo, hi, n) if first.error != "refused" else first
            if t.error is None:
                return Parsed(t.value, c.text.strip() or None, parse="tolerant")
            return Parsed(None, first.rationale, first.error, first.detail)
        fix = repair_prompt(kind, first.detail or first.error or "", lo, hi, n, self.structured)
        retry = msgs + [{"role": "assistant", "content": c.text}, {"role": "user", "content": fix}]
        c2 = await self.engine.complete(retry, params)
        second = parse_verdict(c2.text, kind, lo, hi, n)
        refused = c2.finish_reason in ("refusal", "content_filter")
        if second.error is None and not refused:
            return Parsed(second.value, second.rationale or first.rationale, parse="repaired")
        for text in (c2.text, c.text):
            t = tolerant_parse(text, kind, lo, hi, n)
            if t.error is None:
                return Parsed(t.value, text.strip() or None, parse="tolerant")
        code = "refused" if (second.error == "refused" or refused) else "parse_error"
        return Parsed(None, first.rationale, code, f"after one re-ask: {second.detail or second.error}")

    async def _sampled(self, msgs, kind: str, values: list[str]) -> Reading:
        """k sampled verdicts -> a Reading whose `probs` are the verdicts' frequencies. Needs at
        least half of them readable: a distribution from a few survivors of many failures would
        be a guess dressed as a number."""
        k = self.cfg.samples
        vs = await asyncio.gather(*(self._verdict(msgs, kind, seed=i) for i in range(k)))
        ok = [v for v in vs if v.error is None]
        if len(ok) * 2 < k:
            errs = Counter(v.error for v in vs if v.error)
            code = errs.most_common(1)[0][0]
            return Reading(error=code, detail=f"only {len(ok)} of {k} samples readable; "
                           + "; ".join(f"{c}: {n}" for c, n in errs.items()))
        counts = Counter(str(v.value) for v in ok)
        freq = {o: counts.get(o, 0) / len(ok) for o in values}
        return Reading(probs=freq, rationale=next((v.rationale for v in ok if v.rationale), None),
                       parse=weakest(v.parse for v in ok), n_samples=len(ok))

    # -- absolute ----------------------------------------------------------------------------
    async def _absolute_criterion(self, row, ci) -> Reading:
        msgs = self._messages("absolute", row, criterion=ci)
        if self.method == "samples":
            r = await self._sampled(msgs, "score", self.options_scale)
            if r.error is None:
                r.value = expected_score(r.probs or {})
            return r
        if self.generative:
            v = await self._verdict(msgs, "score")
            if v.error:
                return Reading(rationale=v.rationale, error=v.error, detail=v.detail)
            return Reading(float(v.value), {str(v.value): 1.0}, v.rationale, parse=v.parse)     # type: ignore[arg-type]
        probs = await self._logprobs(msgs, self.options_scale)
        if probs is None:
            return Reading(error="no_logprobs", detail=f"the judge returned no log-probabilities for "
                           f"{self.options_scale} (a server that ignores `logprobs`? judge with --generative)")
        return Reading(expected_score(probs), probs)

    async def absolute(self, row: dict) -> Judgment:
        r = self.rubric
        res = await asyncio.gather(*(self._absolute_criterion(row, i) for i in range(len(r.criteria))))
        for x in res:
            if x.error:
                return _unscored("absolute", self.backend.name, r.id, x.error, x.detail, rationale=x.rationale)
        weights = [c.weight for c in r.criteria]
        total = sum(weights)
        score = sum(w * (x.value or 0.0) for w, x in zip(weights, res)) / total
        probs = {o: sum(w * (x.probs or {}).get(o, 0.0) for w, x in zip(weights, res)) / total
                 for o in self.options_scale}
        rationale = "\n\n".join(f"[{c.name}] {x.rationale}" if len(res) > 1 else x.rationale
                                for c, x in zip(r.criteria, res) if x.rationale) or None
        j = Judgment("absolute", self.backend.name, r.id, score=score, probs=probs, rationale=rationale,
                     parse=weakest(x.parse for x in res), n_samples=_min(x.n_samples for x in res))
        if len(res) > 1:
            j.orders = [{"criterion": c.name, "score": x.value} for c, x in zip(r.criteria, res)]
        return j

    # -- pairwise ----------------------------------------------------------------------------
    async def _p_first(self, row, ci, swap) -> Reading:
        """P(the response shown first is better) for one criterion and presentation order."""
        msgs = self._messages("pairwise", row, criterion=ci, swap=swap)
        if self.method == "samples":
            r = await self._sampled(msgs, "preference", ["A", "B"])
            if r.error is None:
                r.value = (r.probs or {})["A"]
            return r
        if self.generative:
            v = await self._verdict(msgs, "preference")
            if v.error:
                return Reading(rationale=v.rationale, error=v.error, detail=v.detail)
            return Reading(1.0 if v.value == "A" else 0.0, rationale=v.rationale, parse=v.parse)
        probs = await self._logprobs(msgs, ["A", "B"])
        if probs is None:
            return Reading(error="no_logprobs", detail="the judge returned no log-probabilities for A/B"
                           " (a server that ignores `logprobs`? judge with --generative)")
        return Reading(probs["A"])

    async def _pairwise_criterion(self, row, ci) -> tuple[Reading, list[dict], bool | None]:
        """(the criterion's Reading with value = P(A), its per-order records, consistency)."""
        swaps = [False, True] if self.cfg.both_orders else [False]
        res = await asyncio.gather(*(self._p_first(row, ci, s) for s in swaps))
        for x in res:
            if x.error:
                return x, [], None
        orders = [{"order": "ab", "p_first": res[0].value, "p_a": res[0].value}]
        p_a_values = [res[0].value or 0.0]
        if self.cfg.both_orders:
            p_ba = res[1].value or 0.0
            orders.append({"order": "ba", "p_first": p_ba, "p_a": 1.0 - p_ba})
            p_a_values.append(1.0 - p_ba)
        rationale = "\n\n".join(f"[{o['order']}] {x.rationale}" for o, x in zip(orders, res) if x.rationale) or None
        consistent = None if len(p_a_values) < 2 else (p_a_values[0] - 0.5) * (p_a_values[1] - 0.5) > 0
        reading = Reading(sum(p_a_values) / len(p_a_values), rationale=rationale,
                          parse=weakest(x.parse for x in res), n_samples=_min(x.n_samples for x in res))
        return reading, orders, consistent

    async def pairwise(self, row: dict) -> Judgment:
        r = self.rubric
        res = await asyncio.gather(*(self._pairwise_criterion(row, i) for i in range(len(r.criteria))))
        for x, _, _ in res:
            if x.error:
                return _unscored("pairwise", self.backend.name, r.id, x.error, x.detail, rationale=x.rationale)
        weights = [c.weight for c in r.criteria]
        p_a = sum(w * (x.value or 0.0) for w, (x, _, _) in zip(weights, res)) / sum(weights)
        orders = res[0][1] if len(res) == 1 else [dict(o, criterion=c.name) for c, (_, os_, _) in zip(r.criteria, res)
                                                  for o in os_]
        consistent = None if res[0][2] is None else all(c for _, _, c in res)
        pref = tie_preference(p_a, self.cfg.tie_margin)       # the one shared rule (rlaif/ties.py)
        rationale = "\n\n".join(x.rationale for x, _, _ in res if x.rationale) or None
        return Judgment("pairwise", self.backend.name, r.id, p_a=p_a, preference=pref, consistent=consistent,
                        orders=orders, rationale=rationale, parse=weakest(x.parse for x, _, _ in res),
                        n_samples=_min(x.n_samples for x, _, _ in res))

    # -- rank --------------------------------------------------------------------------------
    async def rank(self, row: dict) -> Judgment:
        n = len(row["responses"])
        if self.cfg.rank_method == "listwise":
            return await self._rank_listwise(row, n)
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        subs = [dict(row, response_a=row["responses"][i], response_b=row["responses"][j]) for i, j in pairs]
        verdicts = await asyncio.gather(*(self.pairwise(s) for s in subs))
        wins = [[0.0] * n for _ in range(n)]
        consistent = True
        for (i, j), v in zip(pairs, verdicts):
            if v.error:
                return _unscored("rank", self.backend.name, self.rubric.id, v.error,
                                 f"comparing responses {i} and {j}: {v.detail}")
            wins[i][j] += v.p_a or 0.0
            wins[j][i] += 1 - (v.p_a or 0.0)
            consistent = consistent and bool(v.consistent) if v.consistent is not None else consistent
        strengths = bradley_terry(wins)
        ranking = sorted(range(n), key=lambda k: -strengths[k])
        return Judgment("rank", self.backend.name, self.rubric.id, ranking=ranking, scores=strengths,
                        consistent=consistent if self.cfg.both_orders else None,
                        orders=[{"a": i, "b": j, "p_a": v.p_a} for (i, j), v in zip(pairs, verdicts)],
                        parse=weakest(v.parse for v in verdicts))

    async def _rank_listwise(self, row, n) -> Judgment:
        perms = [list(range(n)), list(reversed(range(n)))][: max(1, self.cfg.n_permutations)]
        k = 2
        while len(perms) < self.cfg.n_permutations:       # further permutations: rotations
            perms.append([(i + k) % n for i in range(n)])
            k += 1
        msgs = [self._messages("rank", row, generative=True, order=p) for p in perms]
        outs = await asyncio.gather(*(self._verdict(m, "ranking", n=n) for m in msgs))
        orders = []
        for perm, v in zip(perms, outs):
            if v.error:
                return _unscored("rank", self.backend.name, self.rubric.id, v.error, v.detail, rationale=v.rationale)
            orders.append({"permutation": perm, "ranking": [perm[x] for x in v.value]})  # type: ignore[attr-defined]
        points = borda([o["ranking"] for o in orders], n)        # shown position -> original index, above
        final = sorted(range(n), key=lambda i: -points[i])
        consistent = all(o["ranking"] == orders[0]["ranking"] for o in orders) if len(orders) > 1 else None
        return Judgment("rank", self.backend.name, self.rubric.id, ranking=final, scores=points,
                        consistent=consistent, orders=orders, parse=weakest(v.parse for v in outs))

    async def judge_row(self, row: dict, mode: str) -> Judgment:
        try:
            if hasattr(self.backend, "judge_row"):           # rm/: whole rows, no judge prompt
                return await self.backend.judge_row(self.rubric, row, mode, self.cfg.tie_margin)
            return await getattr(self, mode)(row)
        except BackendError as e:
            return _unscored(mode, self.backend.name, self.rubric.id, error_code(e), str(e))


async def judge_rows_async(rows: list[dict], rubric: Rubric | str, mode: str | None = None, *,
                           judge: str | Backend | None = None, config: JudgeOptions | None = None,
                           engine: Engine | None = None, on_result=None, progress: bool = False,
                           prompts_dirs: list | None = None) -> list[Judgment]:
    """Judge rows concurrently; results in input order. `on_result(index, judgment)` is called in
    input order as soon as each prefix of rows is finished (for streaming output)."""
    from rlaif.io import infer_mode
    from rlaif.progress import progress_bar

    rubric = load_rubric(rubric) if not isinstance(rubric, Rubric) else rubric
    backend = as_backend(judge)
    j = Judge(rubric, backend, engine, config, prompts_dirs)
    mode = mode or (infer_mode(rows[0]) if rows else "absolute")
    if mode not in rubric.modes:
        raise RlaifError(f"rubric '{rubric.name}' does not support mode '{mode}' "
                         f"(it supports {', '.join(rubric.modes)})")
    results: list[Judgment | None] = [None] * len(rows)
    next_out = 0
    bar = progress_bar(progress, len(rows), f"judging with {backend.name}")

    async def one(i, row):
        nonlocal next_out
        results[i] = await j.judge_row(row, mode)
        if bar:
            bar.advance()
        while next_out < len(rows) and results[next_out] is not None:
            if on_result:
                on_result(next_out, results[next_out])
            next_out += 1

    try:
        await asyncio.gather(*(one(i, r) for i, r in enumerate(rows)))
    finally:
        if bar:
            bar.stop()
    return [r for r in results if r is not None]
