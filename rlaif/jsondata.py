"""What rlaif writes as JSON: standard JSON only, real text only.

Python's json module writes NaN and Infinity as bare tokens most JSON readers reject, and accepts
strings holding lone UTF-16 surrogates that are not text. The reader (rlaif.io) refuses both on the
way in; this module is the one writer policy on the way out (`dumps`), shared by the journal and
every JSONL writer, and `find_bad` names the field that breaks it. It sits at the bottom layer so
both the readers and the crash-safe writers can use it without importing each other.
"""
from __future__ import annotations

import json
import math
import re

from rlaif.errors import RlaifError


def find_bad(value, where: str = ""):
    """(field, what) of the first string with a lone surrogate or number that is not finite, else None."""
    if isinstance(value, str):
        if SURROGATE.search(value):
            return where, "contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (where, f"{value} is not a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and SURROGATE.search(k):
                return (where + "." if where else "") + repr(k), "key contains a lone UTF-16 surrogate"
            hit = find_bad(v, f"{where}.{k}" if where else str(k))
            if hit:
                return hit
    elif isinstance(value, list):
        for i, v in enumerate(value):
            hit = find_bad(v, f"{where}[{i}]")
            if hit:
                return hit
    return None


SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(row, where: str = "output row") -> str:
    """The one JSON writer policy: standard JSON only. Python's json writes NaN and Infinity as bare
    tokens most JSON readers reject; rlaif refuses to write them (RlaifError naming the field) instead
    of passing invalid data on. Inputs never carry them in (see rlaif.io.loads), so this fires only on
    a bug."""
    try:
        return json.dumps(row, ensure_ascii=False, allow_nan=False)
    except ValueError as e:
        hit = find_bad(row)
        raise RlaifError(f"refusing to write {where} with a non-finite number"
                         + (f" in field '{hit[0]}'" if hit else "") + f" (standard JSON has no NaN/Infinity): {e}"
                         ) from None
