"""The κ floor of `rlaif rubric test --min-kappa K`: pass or fail, with the reason in one line.

With `--output` the saved result goes through the same export gate `rlaif pairs` uses
(rlaif.gate.check_gate: rubric hash, headline κ); without a file, the headline κ is compared.
"""
from __future__ import annotations


def kappa_floor(res: dict, min_kappa: float, output) -> tuple[bool, str]:
    """(passed, message) for the result `res` of rlaif.gold.rubric_test against `min_kappa`."""
    from rlaif.gate import GateError, check_gate

    if not output:
        k = res["metrics"][res["headline"]]["value"]
        ok = k is not None and k >= min_kappa
        return ok, f"{res['headline']} = {k} {'>=' if ok else '<'} --min-kappa {min_kappa}"
    try:
        check_gate(output, min_kappa, res["rubric"]["id"])
        return True, f"{res['headline']} passes --min-kappa {min_kappa}"
    except GateError as e:
        return False, str(e)
