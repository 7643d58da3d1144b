"""Judging: render the rubric's template → call the judge → parse → a Judgment.

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
Rubrics with several criteria are judged per criterion and combined with the criteria's weights.
"""
from __future__ import annotations

import asyncio
import json
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rlaif.backends import get_backend
from rlaif.backends.base import Backend
from rlaif.engine import Engine, run_sync
from rlaif.errors import BackendError, RlaifError, TemplateError
from rlaif.records import GenParams, Judgment
from rlaif.rubrics import Rubric, load_rubric
from rlaif.templates import render_messages

GENERATIVE_MAX_TOKENS = 512     # room for a short rationale and the verdict line
TOP_LOGPROBS = 20               # OpenAI's maximum; enough to find every score token in practice
URL_PROVIDERS = ("openai", "litellm")   # the providers a --base-url (an OpenAI-compatible server) applies to


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
def build_messages(rubric: Rubric, mode: str, row: dict, *, generative: bool = False,
                   criterion: int = 0, swap: bool = False, order: list[int] | None = None,
                   prompts_dirs: list | None = None) -> list[dict]:
    """The exact chat messages a judge receives for `row`. `swap` exchanges A and B (pairwise);
    `order` permutes the responses (rank)."""
    if mode not in rubric.modes:
        raise RlaifError(f"rubric '{rubric.name}' does not support mode '{mode}' (it supports {', '.join(rubric.modes)})")
    rc = rubric.context()
    ctx = {
        "rubric": rc,
        "criterion": rc["criteria"][criterion],
        "criteria": rc["criteria"],
        "scale": rc["scale"],
        "examples": rc["examples"],
        "reference": row.get("reference") if rubric.reference != "none" else None,
        "generative": generative,
        "prompt": row["prompt"],
    }
    if mode == "absolute":
        ctx["response"] = row["response"]
    elif mode == "pairwise":
        a, b = (row["response_b"], row["response_a"]) if swap else (row["response_a"], row["response_b"])
        ctx.update(response_a=a, response_b=b)
    else:
        rs = list(row["responses"])
        ctx["responses"] = [rs[i] for i in order] if order is not None else rs
    return render_messages(rubric.templates[mode], ctx, prompts_dirs)


# ---------------------------------------------------------------------------------------------
# Small pure functions: probabilities and parsing
# ---------------------------------------------------------------------------------------------
def distribution(option_logprobs: dict[str, float], options: list[str]) -> dict[str, float] | None:
    """Softmax restricted to `options` (renormalised). None if no option has a log-probability."""
    present = {o: option_logprobs[o] for o in options if o in option_logprobs and option_logprobs[o] > -math.inf}
    if not present:
        return None
    m = max(present.values())
    z = sum(math.exp(v - m) for v in present.values())
    return {o: (math.exp(present[o] - m) / z if o in present else 0.0) for o in options}


def expected_score(probs: dict[str, float]) -> float:
    return sum(int(k) * p for k, p in probs.items())


_SCORE_RE = re.compile(r"score\s*(?:is|=|:)?\s*\**\s*(-?\d+(?:\.\d+)?)", re.I)
_BETTER_RE = re.compile(r"better\s*(?:response)?\s*(?:is|=|:)?\s*\**\s*(?:response\s*)?\(?\b([AB])\b", re.I)
_RANK_RE = re.compile(r"(\d+(?:\s*>\s*\d+)+)")
# A refusal by the judge itself: only at the start of its reply (the graded text may contain refusals).
_REFUSAL_RE = re.compile(r"\s*(?:I can(?:'|no)t|I cannot|I'm sorry|I am sorry|I won't|I'm unable|I am unable)", re.I)


@dataclass
class Parsed:
    value: object | None
    rationale: str | None = None
    error: str | None = None
    detail: str | None = None


def parse_score(text: str, lo: int, hi: int) -> Parsed:
    """The score from a judge's reply: the last "Score: N", or a reply that is only a number."""
    text = (text or "").strip()
    matches = _SCORE_RE.findall(text)
    raw = matches[-1] if matches else (text if re.fullmatch(r"-?\d+(?:\.\d+)?", text) else None)
    if raw is None:
        code = "refused" if _REFUSAL_RE.match(text) else "parse_error"
        return Parsed(None, text or None, code, f"no score found in reply: {text[:200]!r}")
    value = float(raw)
    if not lo <= value <= hi or value != int(value):
        return Parsed(None, text, "parse_error", f"score {raw} is not an integer in {lo}..{hi}")
    rationale = text[: text.lower().rfind("score")].strip() if matches else None
    return Parsed(int(value), rationale or None)


def parse_preference(text: str) -> Parsed:
    """'A' or 'B' from a judge's reply: the last "Better: X", or a reply that is only the letter."""
    text = (text or "").strip()
    matches = _BETTER_RE.findall(text)
    if matches:
        letter = matches[-1].upper()
        return Parsed(letter, text[: text.lower().rfind("better")].strip() or None)
    bare = re.fullmatch(r"\W*(?:response\s*)?([AB])\W*", text, re.I)
    if bare:
        return Parsed(bare.group(1).upper())
    code = "refused" if _REFUSAL_RE.match(text) else "parse_error"
    return Parsed(None, text or None, code, f"no A/B verdict found in reply: {text[:200]!r}")


def parse_ranking(text: str, n: int) -> Parsed:
    """A permutation of 1..n from "Ranking: 2 > 1 > 3" (the last such chain in the reply)."""
    text = (text or "").strip()
    chains = _RANK_RE.findall(text)
    if not chains:
        return Parsed(None, text or None, "parse_error", f"no ranking like '2 > 1 > 3' found in reply: {text[:200]!r}")
    nums = [int(x) for x in re.findall(r"\d+", chains[-1])]
    if sorted(nums) != list(range(1, n + 1)):
        return Parsed(None, text, "parse_error", f"ranking {nums} is not a permutation of 1..{n}")
    cut = text.lower().rfind("ranking")
    return Parsed([x - 1 for x in nums], text[:cut].strip() if cut > 0 else None)


PARSE_STRENGTH = ["json", "text", "repaired", "tolerant"]     # weakest last: a row reports its weakest read


def verdict_schema(kind: str, lo: int = 1, hi: int = 5, n: int = 0) -> dict:
    """The JSON schema a structured-output judge must fill (OpenAI strict mode compatible:
    every property required, no additional properties; enums instead of min/max)."""
    if kind == "score":
        field = {"score": {"type": "integer", "enum": list(range(lo, hi + 1))}}
    elif kind == "preference":
        field = {"better": {"type": "string", "enum": ["A", "B"]}}
    else:
        field = {"ranking": {"type": "array", "items": {"type": "integer", "enum": list(range(1, n + 1))},
                             "description": "response numbers from best to worst"}}
    return {"type": "object", "properties": {"rationale": {"type": "string"}, **field},
            "required": ["rationale", *field], "additionalProperties": False}


_JSON_RE = re.compile(r"\{.*\}", re.S)


def parse_json_verdict(text: str, kind: str, lo: int = 1, hi: int = 5, n: int = 0) -> Parsed | None:
    """The verdict from a JSON object in `text` (bare, or inside ``` fences). None if `text` holds
    no JSON object at all (the caller then reads it as prose); a Parsed with an error if it holds
    one with a missing or invalid field."""
    m = _JSON_RE.search(text or "")
    if not m:
        return None
    try:
        obj = json.loads(m.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    rationale = obj.get("rationale") if isinstance(obj.get("rationale"), str) else None
    key = {"score": "score", "preference": "better", "ranking": "ranking"}[kind]
    if key not in obj:
        return Parsed(None, rationale, "parse_error", f"JSON verdict has no '{key}' field: {text[:200]!r}")
    v = obj[key]
    if kind == "score":
        if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or not lo <= v <= hi:
            return Parsed(None, rationale, "parse_error", f"JSON score {v!r} is not an integer in {lo}..{hi}")
        return Parsed(int(v), rationale)
    if kind == "preference":
        letter = str(v).strip().strip("[]()*").upper().replace("RESPONSE", "").strip()
        if letter not in ("A", "B"):
            return Parsed(None, rationale, "parse_error", f"JSON 'better' {v!r} is not A or B")
        return Parsed(letter, rationale)
    if not isinstance(v, list) or sorted(int(x) for x in v if str(x).lstrip("-").isdigit()) != list(range(1, n + 1)) \
            or len(v) != n:
        return Parsed(None, rationale, "parse_error", f"JSON ranking {v!r} is not a permutation of 1..{n}")
    return Parsed([int(x) - 1 for x in v], rationale)


def parse_verdict(text: str, kind: str, lo: int = 1, hi: int = 5, n: int = 0) -> Parsed:
    """Step 1 of reading a generative verdict: a JSON object if there is one, else the prose format."""
    j = parse_json_verdict(text, kind, lo, hi, n)
    if j is not None:
        return j
    if kind == "score":
        return parse_score(text, lo, hi)
    if kind == "preference":
        return parse_preference(text)
    return parse_ranking(text, n)


_TOLERANT_SCORE = [
    r"(-?\d+(?:\.\d+)?)\s*(?:/|out\s+of)\s*{hi}\b",                       # "4/5", "4 out of 5"
    r"\b(?:score|rating|grade|verdict)\s*(?:is|of|would be|:|=)?\s*(?:an?\s+)?\**\s*(-?\d+(?:\.\d+)?)",  # "rating of 4"
    r"\b(?:rate|give|grade|score)\s+(?:it|this|this response|the response)\s+(?:an?\s+|as\s+)?\**\s*(-?\d+(?:\.\d+)?)",
    r"\*\*\s*(-?\d+(?:\.\d+)?)\s*\*\*",                                     # "**4**"
    r"\[\[\s*(-?\d+(?:\.\d+)?)\s*\]\]",                                     # "[[4]]" (MT-bench style)
]
_TOLERANT_PREF = [
    r"\[\[\s*([AB])\s*\]\]",
    r"\b(?:response|assistant|answer|output|option)\s*\(?([AB])\)?\s+(?:is|was|seems|appears)\s+(?:\w+\s+){0,2}?"
    r"(?:better|superior|preferred|stronger|more\s+\w+)",
    r"\bprefer(?:red|able)?\s*(?:is\s*)?:?\s*\**\s*(?:response\s*)?\(?([AB])\b",
    r"\b(?:winner|choice|verdict|answer)\s*(?:is|:)\s*\**\s*(?:response\s*)?\(?([AB])\b",
]


def tolerant_parse(text: str, kind: str, lo: int = 1, hi: int = 5, n: int = 0) -> Parsed:
    """Step 3, the last resort: looser patterns a judge's prose commonly uses. The last match in
    the text wins (judges conclude at the end); a value outside the scale never counts."""
    text = (text or "").strip()
    if kind == "score":
        found = []
        for pat in _TOLERANT_SCORE:
            for m in re.finditer(pat.format(hi=hi), text, re.I):
                found.append((m.start(), m.group(1)))
        last_line = text.splitlines()[-1].strip() if text else ""
        if not found and len(last_line.split()) <= 3:   # weakest: a short last line ("So: 4"), not an echoed level text
            found = [(0, x) for x in re.findall(r"(?<![\d.])(\d+)(?![\d.])", last_line)[-1:]]
        for _, raw in sorted(found, reverse=True):
            v = float(raw)
            if v == int(v) and lo <= v <= hi:
                return Parsed(int(v))
    elif kind == "preference":
        found = [(m.start(), m.group(1).upper()) for pat in _TOLERANT_PREF for m in re.finditer(pat, text, re.I)]
        if found:
            return Parsed(max(found)[1])
    else:
        sep = r"\s*(?:>>?|,|->|→)\s*"
        for m in reversed(list(re.finditer(r"\d+(?:" + sep + r"\d+)+", text))):
            nums = [int(x) for x in re.findall(r"\d+", m.group(0))]
            if sorted(nums) == list(range(1, n + 1)):
                return Parsed([x - 1 for x in nums])
    return Parsed(None, text or None, "parse_error", f"no {kind} found in reply, even loosely: {text[:200]!r}")


def repair_prompt(kind: str, detail: str, lo: int, hi: int, n: int, structured: bool) -> str:
    """The one follow-up message sent when a verdict could not be read."""
    if structured:
        want = {"score": f'a JSON object {{"rationale": "...", "score": N}} with N an integer from {lo} to {hi}',
                "preference": 'a JSON object {"rationale": "...", "better": "A" or "B"}',
                "ranking": f'a JSON object {{"rationale": "...", "ranking": [...]}} listing 1..{n} best first'}[kind]
    else:
        want = {"score": f'the final line exactly as "Score: N", N an integer from {lo} to {hi}',
                "preference": 'the final line exactly as "Better: A" or "Better: B"',
                "ranking": f'the final line exactly as "Ranking: " and the numbers 1..{n} best first, joined by " > "'}[kind]
    return f"Your reply could not be read ({detail}). Reply again with {want}."


def bradley_terry(wins: list[list[float]], iters: int = 200, tol: float = 1e-9) -> list[float]:
    """Bradley-Terry strengths from a (soft) win matrix, wins[i][j] = how often i beat j.
    Minorise-maximise updates (Hunter 2004); returns log-strengths centred on 0. A small prior
    (0.1 pseudo-wins each way) keeps strengths finite when one response wins every comparison."""
    n = len(wins)
    w = [[wins[i][j] + (0.1 if i != j else 0.0) for j in range(n)] for i in range(n)]
    s = [1.0] * n
    for _ in range(iters):
        new = []
        for i in range(n):
            num = sum(w[i][j] for j in range(n) if j != i)
            den = sum((w[i][j] + w[j][i]) / (s[i] + s[j]) for j in range(n) if j != i)
            new.append(num / den if den > 0 else s[i])
        g = math.exp(sum(math.log(x) for x in new) / n)
        new = [x / g for x in new]
        done = max(abs(a - b) for a, b in zip(new, s)) < tol
        s = new
        if done:
            break
    return [math.log(x) for x in s]


# ---------------------------------------------------------------------------------------------
# One row
# ---------------------------------------------------------------------------------------------
def _unscored(mode, judge, rubric, code, detail, **kw) -> Judgment:
    return Judgment(mode=mode, judge=judge, rubric=rubric, error=code, detail=detail, **kw)


def _error_code(e: BackendError) -> str:
    return f"api_error:{e.status}" if e.status else e.code


@dataclass
class JudgeConfig:
    generative: bool = False
    both_orders: bool = True            # pairwise: judge both presentation orders (position debiasing)
    rank_method: str = "tournament"     # or "listwise"
    n_permutations: int = 2             # listwise: identity and reversed
    prompts_dirs: list | None = None
    max_tokens: int = GENERATIVE_MAX_TOKENS
    # pairwise: |P(A) - 0.5| below this is a tie. 0.05 because a judge whose two orders nearly
    # cancel (P(A)=0.502) has not expressed a preference; the soft label p_a is kept either way.
    tie_margin: float = 0.05
    # None = use structured output (JSON schema / tool use) wherever the backend supports it.
    structured: bool | None = None
    repair: bool = True                 # re-ask once when a verdict cannot be read
    samples: int = 0                    # k > 1: estimate probabilities from k sampled verdicts (opt-in)
    sample_temperature: float = 1.0     # the provider's default sampling; 0 would make k samples identical


@dataclass
class _Verdict:
    """One judge call's reading: a value (score, "A"/"B", ranking) or an error; how it was read."""
    value: object | None = None
    rationale: str | None = None
    error: str | None = None
    detail: str | None = None
    parse: str | None = None


def _weakest(parses) -> str | None:
    ps = [p for p in parses if p]
    return max(ps, key=PARSE_STRENGTH.index) if ps else None


class Judge:
    """Judges rows with one backend and one rubric. Use `judge()` below unless you need the parts."""

    def __init__(self, rubric: Rubric, backend: Backend, engine: Engine | None = None,
                 config: JudgeConfig | None = None):
        self.rubric, self.backend = rubric, backend
        self.engine = engine or Engine(backend)
        self.cfg = config or JudgeConfig()
        if self.cfg.samples and self.cfg.samples > 1:
            self.cfg.generative = True     # sampling reads generated verdicts
        if not self.cfg.generative and not getattr(backend, "supports_logprobs", False):
            self.cfg.generative = True     # decided up front and recorded in every row, not a silent fallback
        structured = self.cfg.structured
        self.structured = bool(getattr(backend, "supports_json_schema", False)) if structured is None else structured
        self.options_scale = [str(p) for p in rubric.scale.points]

    @property
    def method(self) -> str:
        if getattr(self.backend, "judge_method", None):     # rm/: a reward model scores rows itself
            return self.backend.judge_method
        if not self.cfg.generative:
            return "logprobs"
        return "samples" if self.cfg.samples and self.cfg.samples > 1 else "generative"

    def _params(self, options: list[str]) -> GenParams:
        if self.cfg.generative:
            return GenParams(max_tokens=self.cfg.max_tokens, temperature=0.0)
        return GenParams(max_tokens=1, temperature=0.0, top_logprobs=TOP_LOGPROBS, options=options)

    async def _call(self, messages, options):
        return await self.engine.complete(messages, self._params(options))

    # -- generative verdicts: structured → parse → re-ask once → tolerant ------------------------
    async def _verdict(self, msgs: list[dict], kind: str, n: int = 0, seed: int | None = None) -> _Verdict:
        lo, hi = self.rubric.scale.min, self.rubric.scale.max
        schema = verdict_schema(kind, lo, hi, n) if self.structured else None
        temperature = self.cfg.sample_temperature if seed is not None else 0.0
        # `seed` also makes each sample its own request-ledger entry (the key includes params).
        params = GenParams(max_tokens=self.cfg.max_tokens, temperature=temperature, seed=seed, json_schema=schema)
        if schema is not None:
            field = {"score": f'"score" (an integer from {lo} to {hi})', "preference": '"better" ("A" or "B")',
                     "ranking": f'"ranking" (the response numbers 1..{n}, best first)'}[kind]
            msgs = msgs[:-1] + [dict(msgs[-1], content=msgs[-1]["content"] +
                                     f'\n\nAnswer as a JSON object with "rationale" (two or three sentences) and {field}.')]
        c = await self.engine.complete(msgs, params)
        if c.finish_reason in ("refusal", "content_filter"):
            return _Verdict(None, c.text or None, "refused", f"the judge declined ({c.finish_reason}): {c.text[:200]!r}")
        first = parse_verdict(c.text, kind, lo, hi, n)
        if first.error is None:
            how = "json" if parse_json_verdict(c.text, kind, lo, hi, n) is not None else "text"
            return _Verdict(first.value, first.rationale, parse=how)
        if first.error == "refused" or not self.cfg.repair:
            t = tolerant_parse(c.text, kind, lo, hi, n) if first.error != "refused" else first
            if t.error is None:
                return _Verdict(t.value, c.text.strip() or None, parse="tolerant")
            return _Verdict(None, first.rationale, first.error, first.detail)
        retry = msgs + [{"role": "assistant", "content": c.text},
                        {"role": "user", "content": repair_prompt(kind, first.detail or first.error, lo, hi, n, self.structured)}]
        c2 = await self.engine.complete(retry, params)
        second = parse_verdict(c2.text, kind, lo, hi, n)
        if second.error is None and c2.finish_reason not in ("refusal", "content_filter"):
            return _Verdict(second.value, second.rationale or first.rationale, parse="repaired")
        for text in (c2.text, c.text):
            t = tolerant_parse(text, kind, lo, hi, n)
            if t.error is None:
                return _Verdict(t.value, text.strip() or None, parse="tolerant")
        code = "refused" if (second.error == "refused" or c2.finish_reason in ("refusal", "content_filter")) else "parse_error"
        return _Verdict(None, first.rationale, code, f"after one re-ask: {second.detail or second.error}")

    async def _sampled(self, msgs, kind: str, values: list[str]) -> tuple[dict | None, _Verdict]:
        """k sampled verdicts -> ({value: frequency}, summary). Needs at least half of them readable:
        a distribution from a few survivors of many failures would be a guess dressed as a number."""
        k = self.cfg.samples
        vs = await asyncio.gather(*(self._verdict(msgs, kind, seed=i) for i in range(k)))
        ok = [v for v in vs if v.error is None]
        if len(ok) * 2 < k:
            errs = Counter(v.error for v in vs if v.error)
            code = errs.most_common(1)[0][0]
            return None, _Verdict(None, None, code, f"only {len(ok)} of {k} samples readable; "
                                  + "; ".join(f"{c}: {n}" for c, n in errs.items()))
        counts = Counter(str(v.value) for v in ok)
        freq = {o: counts.get(o, 0) / len(ok) for o in values}
        return freq, _Verdict(freq, next((v.rationale for v in ok if v.rationale), None),
                              parse=_weakest(v.parse for v in ok), detail=str(len(ok)))

    # -- absolute ----------------------------------------------------------------------------
    async def _absolute_criterion(self, row, ci) -> tuple:
        """(score, probs, rationale, error, detail, parse, n_samples) for one criterion."""
        msgs = build_messages(self.rubric, "absolute", row, generative=self.cfg.generative, criterion=ci,
                              prompts_dirs=self.cfg.prompts_dirs)
        if self.method == "samples":
            freq, v = await self._sampled(msgs, "score", self.options_scale)
            if v.error:
                return None, None, None, v.error, v.detail, None, None
            return expected_score(freq), freq, v.rationale, None, None, v.parse, int(v.detail)
        if self.cfg.generative:
            v = await self._verdict(msgs, "score")
            if v.error:
                return None, None, v.rationale, v.error, v.detail, None, None
            return float(v.value), {str(v.value): 1.0}, v.rationale, None, None, v.parse, None
        c = await self._call(msgs, self.options_scale)
        probs = distribution(c.option_logprobs or {}, self.options_scale)
        if probs is None:
            return None, None, None, "no_logprobs", (f"the judge returned no log-probabilities for {self.options_scale}"
                                                     " (a server that ignores `logprobs`? judge with --generative)"), None, None
        return expected_score(probs), probs, None, None, None, None, None

    async def absolute(self, row: dict) -> Judgment:
        r = self.rubric
        results = await asyncio.gather(*(self._absolute_criterion(row, i) for i in range(len(r.criteria))))
        for score, probs, rationale, err, detail, *_ in results:
            if err:
                return _unscored("absolute", self.backend.name, r.id, err, detail, rationale=rationale)
        weights = [c.weight for c in r.criteria]
        total = sum(weights)
        score = sum(w * s for w, (s, *_rest) in zip(weights, results)) / total
        probs = {o: sum(w * res[1].get(o, 0.0) for w, res in zip(weights, results)) / total for o in self.options_scale}
        rationale = "\n\n".join(f"[{c.name}] {res[2]}" if len(results) > 1 else res[2]
                                for c, res in zip(r.criteria, results) if res[2]) or None
        n_samples = [res[6] for res in results if res[6] is not None]
        j = Judgment("absolute", self.backend.name, r.id, score=score, probs=probs, rationale=rationale,
                     parse=_weakest(res[5] for res in results), n_samples=min(n_samples) if n_samples else None)
        if len(results) > 1:
            j.orders = [{"criterion": c.name, "score": res[0]} for c, res in zip(r.criteria, results)]
        return j

    # -- pairwise ----------------------------------------------------------------------------
    async def _p_first(self, row, ci, swap) -> tuple:
        """(P(the response shown first is better), rationale, error, detail, parse, n_samples) for one order."""
        msgs = build_messages(self.rubric, "pairwise", row, generative=self.cfg.generative, criterion=ci,
                              swap=swap, prompts_dirs=self.cfg.prompts_dirs)
        if self.method == "samples":
            freq, v = await self._sampled(msgs, "preference", ["A", "B"])
            if v.error:
                return None, None, v.error, v.detail, None, None
            return freq["A"], v.rationale, None, None, v.parse, int(v.detail)
        if self.cfg.generative:
            v = await self._verdict(msgs, "preference")
            if v.error:
                return None, v.rationale, v.error, v.detail, None, None
            return (1.0 if v.value == "A" else 0.0), v.rationale, None, None, v.parse, None
        c = await self._call(msgs, ["A", "B"])
        probs = distribution(c.option_logprobs or {}, ["A", "B"])
        if probs is None:
            return None, None, "no_logprobs", ("the judge returned no log-probabilities for A/B"
                                               " (a server that ignores `logprobs`? judge with --generative)"), None, None
        return probs["A"], None, None, None, None, None

    async def _pairwise_criterion(self, row, ci) -> dict:
        swaps = [False, True] if self.cfg.both_orders else [False]
        res = await asyncio.gather(*(self._p_first(row, ci, s) for s in swaps))
        for p, rationale, err, detail, *_ in res:
            if err:
                return {"error": err, "detail": detail, "rationale": rationale}
        p_ab = res[0][0]
        orders = [{"order": "ab", "p_first": p_ab, "p_a": p_ab}]
        p_a_values = [p_ab]
        if self.cfg.both_orders:
            p_ba = res[1][0]
            orders.append({"order": "ba", "p_first": p_ba, "p_a": 1.0 - p_ba})
            p_a_values.append(1.0 - p_ba)
        rationale = "\n\n".join(f"[{o['order']}] {r[1]}" for o, r in zip(orders, res) if r[1]) or None
        n_samples = [r[5] for r in res if r[5] is not None]
        return {"p_a": sum(p_a_values) / len(p_a_values), "orders": orders, "rationale": rationale,
                "parse": _weakest(r[4] for r in res), "n_samples": min(n_samples) if n_samples else None,
                "consistent": (None if len(p_a_values) < 2 else
                               (p_a_values[0] - 0.5) * (p_a_values[1] - 0.5) > 0)}

    async def pairwise(self, row: dict) -> Judgment:
        r = self.rubric
        res = await asyncio.gather(*(self._pairwise_criterion(row, i) for i in range(len(r.criteria))))
        for x in res:
            if "error" in x:
                return _unscored("pairwise", self.backend.name, r.id, x["error"], x["detail"], rationale=x["rationale"])
        weights = [c.weight for c in r.criteria]
        p_a = sum(w * x["p_a"] for w, x in zip(weights, res)) / sum(weights)
        orders = res[0]["orders"] if len(res) == 1 else [dict(o, criterion=c.name) for c, x in zip(r.criteria, res) for o in x["orders"]]
        consistent = None if res[0]["consistent"] is None else all(x["consistent"] for x in res)
        pref = "tie" if abs(p_a - 0.5) <= self.cfg.tie_margin else ("a" if p_a > 0.5 else "b")
        rationale = "\n\n".join(x["rationale"] for x in res if x["rationale"]) or None
        n_samples = [x["n_samples"] for x in res if x["n_samples"] is not None]
        return Judgment("pairwise", self.backend.name, r.id, p_a=p_a, preference=pref, consistent=consistent,
                        orders=orders, rationale=rationale, parse=_weakest(x["parse"] for x in res),
                        n_samples=min(n_samples) if n_samples else None)

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
            wins[i][j] += v.p_a
            wins[j][i] += 1 - v.p_a
            consistent = consistent and bool(v.consistent) if v.consistent is not None else consistent
        strengths = bradley_terry(wins)
        ranking = sorted(range(n), key=lambda k: -strengths[k])
        return Judgment("rank", self.backend.name, self.rubric.id, ranking=ranking, scores=strengths,
                        consistent=consistent if self.cfg.both_orders else None,
                        orders=[{"a": i, "b": j, "p_a": v.p_a} for (i, j), v in zip(pairs, verdicts)],
                        parse=_weakest(v.parse for v in verdicts))

    async def _rank_listwise(self, row, n) -> Judgment:
        perms = [list(range(n)), list(reversed(range(n)))][: max(1, self.cfg.n_permutations)]
        k = 2
        while len(perms) < self.cfg.n_permutations:       # further permutations: rotations
            perms.append([(i + k) % n for i in range(n)])
            k += 1
        msgs = [build_messages(self.rubric, "rank", row, generative=True, order=p, prompts_dirs=self.cfg.prompts_dirs)
                for p in perms]
        outs = await asyncio.gather(*(self._verdict(m, "ranking", n=n) for m in msgs))
        borda = [0.0] * n
        orders = []
        for perm, v in zip(perms, outs):
            if v.error:
                return _unscored("rank", self.backend.name, self.rubric.id, v.error, v.detail, rationale=v.rationale)
            ranking = [perm[x] for x in v.value]          # shown position -> original index
            orders.append({"permutation": perm, "ranking": ranking})
            for pos, idx in enumerate(ranking):
                borda[idx] += (n - 1 - pos) / len(perms)
        final = sorted(range(n), key=lambda i: -borda[i])
        consistent = all(o["ranking"] == orders[0]["ranking"] for o in orders) if len(orders) > 1 else None
        return Judgment("rank", self.backend.name, self.rubric.id, ranking=final, scores=borda,
                        consistent=consistent, orders=orders, parse=_weakest(v.parse for v in outs))

    async def judge_row(self, row: dict, mode: str) -> Judgment:
        try:
            if hasattr(self.backend, "judge_row"):           # rm/: whole rows, no judge prompt
                return await self.backend.judge_row(self.rubric, row, mode, self.cfg.tie_margin)
            return await getattr(self, mode)(row)
        except BackendError as e:
            return _unscored(mode, self.backend.name, self.rubric.id, _error_code(e), str(e))


# ---------------------------------------------------------------------------------------------
# Many rows: the public API
# ---------------------------------------------------------------------------------------------
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


async def judge_rows_async(rows: list[dict], rubric: Rubric | str, mode: str | None = None, *,
                           judge: str | Backend | None = None, config: JudgeConfig | None = None,
                           engine: Engine | None = None, on_result=None, progress: bool = False) -> list[Judgment]:
    """Judge rows concurrently; results in input order. `on_result(index, judgment)` is called in
    input order as soon as each prefix of rows is finished (for streaming output)."""
    from rlaif.io import infer_mode

    rubric = load_rubric(rubric) if not isinstance(rubric, Rubric) else rubric
    backend = judge if (judge is not None and not isinstance(judge, str)) else get_backend(judge)
    j = Judge(rubric, backend, engine, config)
    mode = mode or (infer_mode(rows[0]) if rows else "absolute")
    if mode not in rubric.modes:
        raise RlaifError(f"rubric '{rubric.name}' does not support mode '{mode}' (it supports {', '.join(rubric.modes)})")
    results: list[Judgment | None] = [None] * len(rows)
    next_out = 0
    bar = progress_bar(progress, len(rows), f"judging with {backend.name}")

    async def one(i, row):
        nonlocal next_out
        results[i] = await j.judge_row(row, mode)
        if bar:
            bar[0].advance(bar[1])
        while next_out < len(rows) and results[next_out] is not None:
            if on_result:
                on_result(next_out, results[next_out])
            next_out += 1

    try:
        await asyncio.gather(*(one(i, r) for i, r in enumerate(rows)))
    finally:
        if bar:
            bar[0].stop()
    return results  # type: ignore[return-value]


def progress_bar(enabled: bool, total: int, description: str):
    """A rich progress bar on stderr, started; returns (progress, task id) or None when disabled.
    Shared by judging, sampling and eval so every stage looks the same."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    p = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                 TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=False)
    p.start()
    return p, p.add_task(description, total=total)


# ---------------------------------------------------------------------------------------------
# judge(): the public function behind `rlaif judge` — files, resume, cache, cost, shards, batch
# ---------------------------------------------------------------------------------------------
PARTIAL_SUFFIX = ".partial"     # OUT.partial: the resumable work file; OUT appears only when complete
INDEX_FIELD = "_rlaif_index"    # row position inside OUT.partial (removed from the final OUT)
# Rows unscored for these reasons are judged again when a job resumes; any other verdict (a score,
# parse_error, refused...) is final and kept.
_TRANSIENT = ("budget", "timeout", "connection_error", "bad_response")


def _is_transient(error: str | None) -> bool:
    return bool(error) and (error in _TRANSIENT or error.startswith("api_error"))


def _cfg_key(cfg) -> dict:
    """Every judging option that can change a verdict (all of JudgeConfig but where templates are
    looked up: the templates themselves are hashed into the rubric id)."""
    import dataclasses

    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "prompts_dirs"}


def _canonical(rows) -> list[bytes]:
    import json

    return [json.dumps(r, sort_keys=True, ensure_ascii=False).encode() for r in rows]


def _job_fingerprint(rows, rub, backend, mode, cfg, canon: list[bytes] | None = None) -> str:
    import hashlib
    import json

    h = hashlib.sha256()
    h.update(json.dumps([rub.id, backend.name, getattr(backend, "base_url", None) or "", mode, _cfg_key(cfg)]).encode())
    for c in canon if canon is not None else _canonical(rows):
        h.update(c)
    return h.hexdigest()[:32]


def _verdict_keys(rows, rub, backend, mode, cfg, canon: list[bytes] | None = None) -> list[str]:
    """One ledger key per row for its finished verdict (see rlaif.ledger, table `verdicts`)."""
    import hashlib
    import json

    from rlaif import __version__

    head = json.dumps([__version__, rub.id, backend.name, getattr(backend, "base_url", None) or "", mode,
                       _cfg_key(cfg)]).encode()
    return [hashlib.sha256(head + c).hexdigest() for c in (canon if canon is not None else _canonical(rows))]


def _read_partial(path: Path, fingerprint: str, n_rows: int) -> dict[int, dict]:
    """Finished rows from OUT.partial: {index: output row}. A torn last line (the process died
    mid-write) is cut off, so appending resumes from a valid prefix."""
    import json
    import os

    done: dict[int, dict] = {}
    with open(path, "rb") as f:
        data = f.read()
    good = 0
    for n, raw in enumerate(data.splitlines(keepends=True)):
        if not raw.endswith(b"\n"):
            break                                   # torn write at the end
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            break
        if n == 0:
            if obj.get("_rlaif_job") != fingerprint:
                raise RlaifError(f"{path} is the unfinished output of a different job (other input, rubric, judge "
                                 "or options); delete it, or pass --fresh to start over")
        else:
            idx = obj.pop(INDEX_FIELD, None)
            if not isinstance(idx, int) or not 0 <= idx < n_rows:
                break
            done[idx] = obj
        good += len(raw)
    if good == 0:       # died before even the header was whole: start the file again
        _write_header(path, fingerprint)
    elif good < len(data):
        with open(path, "r+b") as f:
            f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
    return done


def _write_atomic(path: Path, rows: list[dict]) -> None:
    """All rows to a temp file in one buffered write, fsync, then rename over `path`: readers see
    the old file or the complete new one, never a half-written one."""
    import json
    import os

    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_header(path: Path, fingerprint: str) -> None:
    import json
    import os

    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"_rlaif_job": fingerprint}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def default_cache(backend) -> bool:
    """Whether a judge uses the request ledger unless told: API judges do; local/ and fake/ do not
    (their answers are free, and a local model's weights may change under the same name)."""
    return backend.name.split("/", 1)[0] not in ("local", "fake", "rm")


def progress_display():
    """The rich display judging progress is drawn on (one task per judge; a jury shares one)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[cost]}"),
                    TextColumn("{task.fields[unscored]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=False)


class _Progress:
    """A rich progress bar with the live rate, spend and unscored count."""

    def __init__(self, total: int, done: int, label: str, engine: Engine, group=None):
        self.engine = engine
        self.own = group is None           # a jury shows its members as tasks of one shared display
        self.p = group or progress_display()
        if self.own:
            self.p.start()
        self.t0 = __import__("time").monotonic()
        self.done0 = done
        self.unscored = 0
        self.task = self.p.add_task(f"judging with {label}", total=total, completed=done, rate="", cost="",
                                    unscored="")
        self._update()

    def _update(self):
        from rlaif.cost import fmt_usd

        st = self.engine.stats
        el = max(1e-9, __import__("time").monotonic() - self.t0)
        n = next(t.completed for t in self.p.tasks if t.id == self.task) - self.done0
        self.p.update(self.task, rate=f"{n / el:,.1f} rows/s",
                      cost=f"spent {fmt_usd(st.cost if st.cost_known else None)} ({st.cached} cached)",
                      unscored=f"unscored {self.unscored}")

    def advance(self, j: Judgment):
        self.unscored += bool(j.error)
        self.p.advance(self.task)
        self._update()

    def stop(self):
        if self.own:
            self.p.stop()


def judge(input: str | Path | list[dict], rubric: str | Rubric | list, *, judge: str | Backend | list | None = None,
          mode: str | None = None, output: str | Path | None = None, generative: bool = False,
          both_orders: bool = True, rank_method: str = "tournament", tie_margin: float = 0.05,
          skip_invalid: bool = False,
          concurrency: int = 16, prompts_dirs: list | None = None, rubrics_dirs: list | None = None,
          progress: bool = False, samples: int = 0, structured: bool | None = None, repair: bool = True,
          base_url: str | None = None, judge_options: dict | None = None, aggregate: str | None = None,
          gold: str | Path | list | None = None, max_tokens: int = GENERATIVE_MAX_TOKENS,
          cache: bool | None = None, ledger: "Ledger | str | Path | None" = None,
          rpm: float | None = None, tpm: float | None = None, timeout: float | None = None,
          max_retries: int | None = None, max_cost: float | None = None, prices: str | Path | dict | None = None,
          dry_run: bool = False, shard: str | tuple[int, int] | None = None, batch: bool = False,
          batch_poll: float = 30.0, fresh: bool = False, engine: Engine | None = None,
          _budget=None, _progress_group=None, _label: str | None = None) -> tuple[list[dict], JudgeSummary]:
    """Judge a JSONL file (or a list of rows) with a rubric; the CLI's `rlaif judge` calls this.

    Returns (output rows, summary). Each output row is the input row plus the verdict fields
    (score/probs, or p_a/preference/consistent, or ranking), judge, rubric@hash, method, and
    `error` (a reason code) for unscored rows. Works inside a running event loop too.

    With `output`, finished rows go to OUT.partial as they finish and OUT is written atomically at
    the end: a job killed at any moment (SIGKILL included) and started again with the same
    arguments resumes where it stopped; rows unscored for a transient reason (budget, api_error,
    timeout) are judged again. Every successful API answer is kept in the request ledger, so
    re-asking is free (`cache=None`: on for API judges, off for local/ and fake/ whose answers are
    free and whose weights may change under the same name).

    `max_cost` (USD) stops spending cleanly: the rest are unscored with error `budget`.
    `dry_run` sends nothing and returns ([], summary) with `summary.estimate`.
    `shard="i/n"` judges only that deterministic partition (see rlaif.shards).
    `batch` sends the uncached requests through the provider's batch API (half price; see rlaif.batch).

    API judges: `base_url` (an OpenAI-compatible server) and `judge_options` go to the backend.
    `samples=k` estimates probabilities from k sampled verdicts where there are no logprobs;
    `structured=False` turns JSON-schema/tool-use verdicts off, `repair=False` the one re-ask.
    Several judges and/or rubrics (lists), `aggregate` or `gold` make a jury (rlaif/jury.py): each
    member is judged through this same function (ledger, resume, shared budget, progress), then
    the verdicts are aggregated per row.
    """
    import json
    import os

    from rlaif.cost import load_price_file
    from rlaif.engine import DEFAULT_RETRIES, DEFAULT_TIMEOUT
    from rlaif.io import check_row, infer_mode, read_rows
    from rlaif.ledger import Ledger
    from rlaif.shards import parse_shard, select_shard

    opts = dict(judge_options or {}, **({"base_url": base_url} if base_url else {}))
    judges = list(judge) if isinstance(judge, (list, tuple)) else [judge]
    rubrics = list(rubric) if isinstance(rubric, (list, tuple)) else [rubric]
    if len(judges) > 1 or len(rubrics) > 1 or aggregate is not None or gold is not None:
        from rlaif.jury import jury

        return jury(input, rubrics, judges=judges, aggregate_by=aggregate or "mean", gold=gold, mode=mode,
                    output=output, concurrency=concurrency, judge_options=opts, skip_invalid=skip_invalid,
                    prompts_dirs=prompts_dirs, rubrics_dirs=rubrics_dirs, progress=progress, shard=shard,
                    dry_run=dry_run, fresh=fresh, max_cost=max_cost,
                    run_options=dict(cache=cache, ledger=ledger, rpm=rpm, tpm=tpm, timeout=timeout,
                                     max_retries=max_retries, prices=prices, batch=batch, batch_poll=batch_poll),
                    generative=generative, both_orders=both_orders, rank_method=rank_method, samples=samples,
                    structured=structured, repair=repair, max_tokens=max_tokens, tie_margin=tie_margin)
    judge, rubric = judges[0], rubrics[0]
    if opts.get("reasoning_effort") and not (isinstance(judge, str) and judge.split("/", 1)[0] == "openai"):
        raise RlaifError(f"--reasoning-effort applies to openai/ judges, not to {getattr(judge, 'name', judge) or 'local/default'}")
    if base_url and not (isinstance(judge, str) and judge.split("/", 1)[0] in URL_PROVIDERS):
        raise RlaifError(f"--base-url applies to {'/, '.join(URL_PROVIDERS)}/ judges, not to {getattr(judge, 'name', judge) or 'local/default'}")

    rub = load_rubric(rubric, rubrics_dirs=rubrics_dirs, prompts_dirs=prompts_dirs)
    needs_ref = rub.reference == "required"
    summary = JudgeSummary()
    if isinstance(input, (str, Path)):
        read, mode = read_rows(input, mode, needs_reference=needs_ref, skip_invalid=skip_invalid)
        rows = read.rows
        summary.skipped = read.skipped
    else:
        rows = list(input)
        mode = mode or (infer_mode(rows[0]) if rows else "absolute")
        for n, row in enumerate(rows, 1):
            check_row(row, "<rows>", n, mode, needs_ref)
    if shard is not None:
        si, sn = parse_shard(shard) if isinstance(shard, str) else shard
        rows = [rows[k] for k in select_shard(rows, si, sn)]
    backend = judge if (judge is not None and not isinstance(judge, str)) else get_backend(judge, **opts)
    cfg = JudgeConfig(generative=generative, both_orders=both_orders, rank_method=rank_method, prompts_dirs=prompts_dirs,
                      tie_margin=tie_margin,
                      samples=samples, structured=structured, repair=repair, max_tokens=max_tokens)
    method = Judge(rub, backend, Engine(backend), cfg).method      # also settles cfg.generative up front

    # The engine: ledger, limits, retries, budget.
    if cache is None:
        cache = default_cache(backend)
    led = ledger if isinstance(ledger, Ledger) else (Ledger(ledger) if cache else None)
    price_table = prices if isinstance(prices, dict) or prices is None else load_price_file(prices)

    def make_engine(dry=False):
        return Engine(backend, concurrency=concurrency, rpm=rpm, tpm=tpm,
                      timeout=timeout or DEFAULT_TIMEOUT, max_retries=DEFAULT_RETRIES if max_retries is None else max_retries,
                      ledger=led, max_cost=None if dry else max_cost, prices=price_table, dry_run=dry,
                      budget=None if dry else _budget)

    try:
        if dry_run:
            eng = make_engine(dry=True)
            run_sync(judge_rows_async(rows, rub, mode, judge=backend, config=cfg, engine=eng))
            summary.estimate = eng.estimate.to_dict()
            summary.estimate["rows"] = len(rows)
            return [], summary

        # Resume: rows already finished in OUT.partial are kept; only the rest are judged.
        done: dict[int, dict] = {}
        partial = None
        canon = _canonical(rows) if (output or (led is not None and engine is None)) else None
        if output:
            out_path = Path(output)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            partial = out_path.with_name(out_path.name + PARTIAL_SUFFIX)
            fp = _job_fingerprint(rows, rub, backend, mode, cfg, canon)
            if partial.exists() and not fresh:
                done = _read_partial(partial, fp, len(rows))
            else:
                _write_header(partial, fp)
        todo = [k for k in range(len(rows)) if k not in done or _is_transient(done[k].get("error"))]
        from_ledger = 0
        batch_report = None
        vkeys = _verdict_keys(rows, rub, backend, mode, cfg, canon) if (led is not None and engine is None) else None
        if vkeys and todo:           # rows answered by an earlier run: no rendering, no calls
            # (not copied into OUT.partial: after a kill they are read back from the ledger again)
            known = led.get_verdicts([vkeys[k] for k in todo])
            for k in todo:
                if vkeys[k] in known:
                    done[k] = {**rows[k], **known[vkeys[k]]}
                    from_ledger += 1
            todo = [k for k in todo if vkeys[k] not in known]

        if batch and todo:
            from rlaif.batch import run_batch

            batch_report = run_batch([rows[k] for k in todo], rub, mode, backend, cfg, led, make_engine, poll=batch_poll)

        eng = engine or make_engine()
        bar = (_Progress(len(rows), len(rows) - len(todo), _label or backend.name, eng, group=_progress_group)
               if progress else None)
        pf = open(partial, "a", encoding="utf-8") if partial else None

        def emit(pos, j: Judgment):
            k = todo[pos]
            row = {**rows[k], **j.to_row(), "method": method}
            done[k] = row
            if pf:   # one whole line per write, flushed: a kill leaves at most a torn last line
                pf.write(json.dumps({INDEX_FIELD: k, **row}, ensure_ascii=False) + "\n")
                pf.flush()
            if bar:
                bar.advance(j)

        async def run_and_close():
            try:
                await judge_rows_async([rows[k] for k in todo], rub, mode, judge=backend, config=cfg, engine=eng,
                                       on_result=emit)
            finally:   # an HTTP client's pool belongs to this event loop: close it before the loop ends
                if hasattr(backend, "aclose"):
                    await backend.aclose()

        try:
            run_sync(run_and_close())
        finally:
            if pf:
                pf.close()
            if bar:
                bar.stop()
        out_rows = [done[k] for k in range(len(rows))]
        if vkeys:
            verdict_fields = lambda k: {f: v for f, v in done[k].items() if f not in rows[k] or v != rows[k][f]}
            led.put_verdicts([(vkeys[k], verdict_fields(k)) for k in todo
                              if k in done and not _is_transient(done[k].get("error"))])
        for row in out_rows:
            summary.add(Judgment.from_row(row, mode))
        summary.run = {**eng.stats.to_dict(), "rows_resumed": len(rows) - len(todo) - from_ledger,
                       "rows_from_ledger": from_ledger}
        if batch_report:
            summary.run["batch"] = batch_report
        if output:
            _write_atomic(Path(output), out_rows)
            partial.unlink(missing_ok=True)
        return out_rows, summary
    finally:
        if led is not None and not isinstance(ledger, Ledger):
            led.close()
