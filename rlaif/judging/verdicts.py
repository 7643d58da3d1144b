"""Reading a judge's answer: pure functions, no I/O.

Log-probabilities become a distribution over the scale (or A/B); generative replies become a
value through three readers of decreasing strictness: a JSON object (structured output), the
prose format ("Score: N", "Better: A", "Ranking: 2 > 1 > 3"), and tolerant patterns ("4/5",
"[[A]]"). `repair_prompt` is the one follow-up sent when a reply cannot be read. A reply that
cannot be read is a `Parsed` with an error code, never a made-up value.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass


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
    """One reading of a reply: a value (score, "A"/"B", ranking) or an error; how it was read
    (`parse`: json | text | repaired | tolerant, set by the judge that reads it)."""

    value: object | None
    rationale: str | None = None
    error: str | None = None
    detail: str | None = None
    parse: str | None = None


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
    field: dict[str, dict]
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
                "ranking": f'the final line exactly as "Ranking: " and the numbers 1..{n} best first, '
                           'joined by " > "'}[kind]
    return f"Your reply could not be read ({detail}). Reply again with {want}."


def weakest(parses) -> str | None:
    """The weakest of several readings' `parse` (a row reports how its least certain part was read)."""
    ps = [p for p in parses if p]
    return max(ps, key=PARSE_STRENGTH.index) if ps else None
