"""The export gate: no dataset from a rubric that does not agree with people.

`rlaif pairs` and `rlaif run` take `--min-kappa K --rubric-test RESULT.json` and call
`check_gate` before building anything. It refuses (GateError, exit 2) when
- the result is not a rubric-test result, or unreadable;
- the result was measured with a different rubric, or a different version of it: the rubric hash
  covers the YAML *and* its templates, so an edited rubric needs a fresh `rlaif rubric test`;
- the judge differs (when the caller says which judge made the verdicts);
- the headline κ (Cohen's κ for pairwise gold, quadratic-weighted κ for absolute gold) is below K
  or undefined.
On success it returns a small record worth copying into the dataset card.
"""
from __future__ import annotations

from pathlib import Path

from rlaif.errors import RlaifError


class GateError(RlaifError):
    """A dataset was refused by the agreement gate."""


def _rubric_name_hash(rubric) -> tuple[str, str | None]:
    """(name, hash) from a Rubric, a `name@hash` id as recorded in judged rows, or a name/path."""
    from rlaif.rubrics import Rubric, load_rubric

    if isinstance(rubric, Rubric):
        return rubric.name, rubric.hash
    s = str(rubric)
    if "@" in s and not Path(s).exists():
        name, h = s.rsplit("@", 1)
        return name, h
    r = load_rubric(s)
    return r.name, r.hash


def check_gate(result_json_path: str | Path, min_kappa: float, rubric, *, judge: str | None = None) -> dict:
    """Raise GateError unless the rubric-test result at `result_json_path` is for `rubric` (a
    Rubric, a rubric name/path, or a `name@hash` id) and its headline κ is at least `min_kappa`.
    Returns {"rubric", "judge", "metric", "kappa", "ci", "min_kappa", "gold", "result"}."""
    from rlaif.errors import InputError
    from rlaif.gold import load_result

    if result_json_path is None:
        raise GateError("--min-kappa needs --rubric-test RESULT.json "
                        "(made by `rlaif rubric test RUBRIC --gold GOLD.jsonl -o RESULT.json`)")
    try:
        res = load_result(result_json_path)
    except InputError as e:
        raise GateError(f"--min-kappa needs a rubric-test result: {e}") from e
    name, h = _rubric_name_hash(rubric)
    tested = res.get("rubric", {})
    if tested.get("hash") != h:
        raise GateError(
            f"{result_json_path} was measured with rubric {tested.get('id')}, but this dataset is judged with "
            f"{name}@{h}; the rubric or its templates changed since it was tested. "
            f"Re-run: rlaif rubric test {name} --gold GOLD.jsonl -o {result_json_path}")
    if judge is not None and res.get("judge") != judge:
        raise GateError(f"{result_json_path} measured judge {res.get('judge')}, but the verdicts come from {judge}; "
                        "agreement does not carry over between judges. Re-run rlaif rubric test with --judge " + judge)
    metric = res.get("headline", "kappa")
    m = res.get("metrics", {}).get(metric, {})
    kappa = m.get("value")
    if kappa is None:
        raise GateError(f"{result_json_path}: {metric} is undefined (too few scored items?); cannot pass the gate")
    if kappa < min_kappa:
        ci = m.get("ci")
        raise GateError(f"rubric {tested.get('id')} agrees with humans at {metric} = {kappa:.3f}"
                        + (f" (95% CI {ci[0]:.3f}..{ci[1]:.3f})" if ci else "")
                        + f" on {res.get('gold', {}).get('path')}, below the floor --min-kappa {min_kappa}; "
                          "refusing to build a dataset from it")
    return {"rubric": tested.get("id"), "judge": res.get("judge"), "metric": metric, "kappa": kappa,
            "ci": m.get("ci"), "min_kappa": min_kappa, "gold": res.get("gold", {}).get("path"),
            "result": str(result_json_path)}


def check_gate_rows(result_json_path: str | Path | None, min_kappa: float, rows: list[dict]) -> dict:
    """The gate for judged rows (what `rlaif pairs` reads): every row's `rubric` (name@hash) must be
    the tested one, and when all rows name one judge it must be the tested judge. Returns the
    record of check_gate, for the dataset card."""
    rubrics = sorted({str(r.get("rubric")) for r in rows if r.get("rubric")})
    if not rubrics:
        raise GateError("the judged rows carry no `rubric` field, so the gate cannot tell which rubric made them")
    if len(rubrics) > 1:
        raise GateError(f"the judged rows come from {len(rubrics)} rubrics ({', '.join(rubrics)}); one rubric-test "
                        "result can vouch for one rubric")
    judges = {r.get("judge") for r in rows if r.get("judge")}
    judge = judges.pop() if len(judges) == 1 else None
    return check_gate(result_json_path, min_kappa, rubrics[0], judge=judge)  # type: ignore[arg-type]  # None: refused there
