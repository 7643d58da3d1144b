"""What each shipped judge is known to be worth: one line for `rlaif judge` / `rlaif eval` to print.

Why: a verdict from the embedded 135M model looks exactly like one from a frontier judge, and on the
project's human gold sets it agrees at chance. Saying so next to every run (and pointing to
`--judge`) keeps near-random numbers from being read as findings. Reward models (`rm/PATH`) carry
their own held-out metrics in `reward_model.json`, written by `rlaif train rm` (or by the bench
script that measured a shipped one); those are printed instead.
"""
from __future__ import annotations

# Measured with `rlaif rubric test RUBRIC --gold FILE` (examples/gold/), embedded SmolLM2-135M judge.
RECORDED = {
    ("local/default", "helpfulness"): "κ 0.00 on the MT-Bench human pairs (examples/gold/human_pairs_dev.jsonl)",
    ("local/default", "over_refusal"): "κ 0.00 on the XSTest human labels (examples/gold/refusal_labels_dev.jsonl)",
}


def agreement_line(judge: str | None, rubric: str) -> str | None:
    """One line on the judge's recorded agreement with human labels for `rubric`, or None if unknown."""
    name = judge or "local/default"
    if name.startswith("rm/"):
        from rlaif.errors import RlaifError
        from rlaif.train.rm_model import read_info

        try:
            info = read_info(name[3:])
        except RlaifError:
            return None
        m = info.metrics or {}
        parts = [f"{k.split('/', 1)[-1]} {v:.3f}" for k, v in m.items()
                 if isinstance(v, (int, float)) and k.split("/", 1)[-1] in
                 ("accuracy", "binary_accuracy", "accuracy_3way", "kappa", "ece")]
        if not parts:
            return f"judge {name}: no held-out metrics recorded in its reward_model.json"
        rows = m.get("eval/rows") or m.get("rows")
        return (f"judge {name} ({info.rubric or 'pairwise'}): held-out " + ", ".join(parts)
                + (f" on {int(rows)} rows" if rows else "") + (f" [{m['note']}]" if m.get("note") else ""))
    known = RECORDED.get((name, rubric))
    if known:
        return f"judge {name} on {rubric}: {known}, near chance: use --judge for real verdicts"
    return None


def default_refusal_judge(refusal_rubric: str = "over_refusal") -> str | None:
    """`rm/<shipped over-refusal classifier>` for the refusal part of `rlaif eval` when no judge is
    given (the embedded 135M LLM judge calls almost every answer a refusal), else None."""
    from rlaif.train.rm_model import shipped_model_dir

    d = shipped_model_dir("over_refusal") if refusal_rubric == "over_refusal" else None
    return f"rm/{d}" if d else None
