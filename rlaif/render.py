"""The exact chat messages a judge receives: a rubric's template rendered with one input row.

Why its own module, beside the rubrics rather than inside judging: `rubric lint` and `rubric
render` show the very messages a judge would get, so rubrics and judging share this one
definition of the template context, and it depends on nothing but the sandboxed templates.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from rlaif.errors import RlaifError
from rlaif.templates import render_messages

if TYPE_CHECKING:
    from rlaif.rubrics import Rubric


def build_messages(rubric: Rubric, mode: str, row: dict, *, generative: bool = False,
                   criterion: int = 0, swap: bool = False, order: list[int] | None = None,
                   prompts_dirs: list | None = None) -> list[dict]:
    """The exact chat messages a judge receives for `row`. `swap` exchanges A and B (pairwise);
    `order` permutes the responses (rank)."""
    if mode not in rubric.modes:
        raise RlaifError(f"rubric '{rubric.name}' does not support mode '{mode}' "
                         f"(it supports {', '.join(rubric.modes)})")
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
