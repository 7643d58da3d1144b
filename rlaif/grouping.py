"""Candidates regrouped per prompt, for pairwise and rank judging of `rlaif sample` output.

Why: `rlaif sample` writes one row per candidate (absolute-mode rows: prompt, response,
prompt_id, candidate). Pairwise judging needs rows with response_a/response_b and rank judging
rows with `responses`, so `rlaif judge candidates.jsonl --mode pairwise|rank` regroups them here
first (the pipeline does the same for its rank stage). Pure functions: rows in, rows out.

Grouping key: `prompt_id` when the rows carry one (sample output does), else the prompt itself
(its messages, or its text). Candidates keep their file order inside a group.

Pairwise policies (which pairs of a prompt's candidates are judged):
- all_pairs: every unordered pair, n(n-1)/2 per prompt (the default: the most information; `pairs`
  then picks among the verdicts);
- vs_first: each candidate against the prompt's first one, n-1 per prompt (a cheap anchor);
- random: one seeded random pair per prompt (cheapest; a fresh preference per prompt).
Two candidates with identical text are never paired (a tie by definition, counted instead), and a
prompt with fewer than two distinct candidates yields no row (counted). Each pair is presented as
(earlier candidate, later candidate); judging in both orders (the default) removes position bias.
"""
from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from dataclasses import dataclass, field

PAIR_POLICIES = ("all_pairs", "vs_first", "random")


@dataclass
class Grouped:
    rows: list[dict]
    prompts: int = 0
    candidates: int = 0
    skipped: Counter = field(default_factory=Counter)     # reason -> count (single_candidate, identical_pair)


def is_candidate_rows(rows: list) -> bool:
    """True when the rows are one-candidate-per-row (sample output), not pairwise/rank rows."""
    return bool(rows) and all(isinstance(r, dict) and isinstance(r.get("response"), str)
                              and "response_a" not in r and "responses" not in r for r in rows)


def prompt_key(row: dict) -> str:
    if row.get("prompt_id") is not None:
        return str(row["prompt_id"])
    return json.dumps(row.get("messages") or row.get("prompt"), sort_keys=True, ensure_ascii=False)


def by_prompt(rows: list[dict]) -> dict[str, list[dict]]:
    """Candidate rows grouped per prompt, in first-seen order."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(prompt_key(r), []).append(r)
    return groups


def _cand_id(row: dict, k: int) -> str:
    return str(row["id"]) if row.get("id") is not None else str(row.get("candidate", k))


def _base(key: str, first: dict) -> dict:
    out = {"prompt_id": first.get("prompt_id", key) if first.get("prompt_id") is not None else key,
           "prompt": first["prompt"]}
    if first.get("messages") is not None:
        out["messages"] = first["messages"]
    if first.get("reference") is not None:
        out["reference"] = first["reference"]
    return out


def group_candidates(rows: list[dict], mode: str, policy: str = "all_pairs", seed: int = 0) -> Grouped:
    """Candidate rows -> rank rows (one per prompt) or pairwise rows (per `policy`)."""
    if mode not in ("pairwise", "rank"):
        raise ValueError(f"group_candidates: mode must be pairwise or rank, not {mode!r}")
    if policy not in PAIR_POLICIES:
        raise ValueError(f"unknown pair policy {policy!r}; choose one of {', '.join(PAIR_POLICIES)}")
    out = Grouped([], candidates=len(rows))
    for key, group in by_prompt(rows).items():
        out.prompts += 1
        seen: dict[str, int] = {}
        distinct = []
        for k, r in enumerate(group):                 # identical texts are one candidate
            if r["response"] in seen:
                out.skipped["identical_pair"] += 1
                continue
            seen[r["response"]] = k
            distinct.append((k, r))
        if len(distinct) < 2:
            out.skipped["single_candidate"] += 1
            continue
        base = _base(key, group[0])
        if mode == "rank":
            out.rows.append({"id": str(base["prompt_id"]), **base, "responses": [r["response"] for _, r in distinct],
                             "models": [r.get("model") for _, r in distinct],
                             "candidate_ids": [_cand_id(r, k) for k, r in distinct]})
            continue
        if policy == "all_pairs":
            chosen = list(itertools.combinations(distinct, 2))
        elif policy == "vs_first":
            chosen = [(distinct[0], x) for x in distinct[1:]]
        else:
            rng = random.Random(f"{seed}:{key}")
            i, j = sorted(rng.sample(range(len(distinct)), 2))
            chosen = [(distinct[i], distinct[j])]
        for (ka, a), (kb, b) in chosen:
            ida, idb = _cand_id(a, ka), _cand_id(b, kb)
            out.rows.append({"id": f"{ida}~{idb}", **base, "response_a": a["response"], "response_b": b["response"],
                             "model_a": a.get("model"), "model_b": b.get("model"),
                             "candidate_a": ida, "candidate_b": idb})
    return out


def group_if_candidates(input, mode: str | None, policy: str = "all_pairs", seed: int = 0):
    """The judge entry's hook: for mode pairwise/rank, a candidates file (or list) becomes the
    grouped rows; anything else is returned unchanged (and validated by the judge as before)."""
    from pathlib import Path

    from rlaif.io import iter_jsonl

    if mode not in ("pairwise", "rank"):
        return input
    if isinstance(input, (str, Path)):
        try:
            rows = [v for _n, v in iter_jsonl(input)]
        except (OSError, UnicodeDecodeError):
            return input                               # the judge's reader reports it properly
        if any(not isinstance(v, dict) for v in rows):
            return input
    else:
        rows = list(input)
    if not is_candidate_rows(rows):
        return input
    return group_candidates([r for r in rows if isinstance(r, dict)], mode, policy, seed).rows
