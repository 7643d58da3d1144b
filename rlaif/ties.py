"""The one tie rule for pairwise verdicts, shared by `judge`, `pairs` and `rubric test`.

Why one rule: `rubric test` measures how well a judge agrees with people, and `pairs --min-kappa`
trusts that κ to gate a dataset. If `rubric test` labelled ties differently from the labels the
judge writes and `pairs` builds from, the κ would describe labels nobody trains on.

The rule: P(A better) averaged over the presentation orders; a tie when |p_a - 0.5| <= tie_margin
(default 0.05: a judge whose orders nearly cancel, p_a = 0.502, has expressed no preference; an
exact 0.5 is always a tie). With both orders judged, a verdict that flips when A and B swap is
not a preference either: `rubric test` labels it a tie (MT-Bench's convention) and `pairs` drops
it by default (`--inconsistent drop`; `keep`/`downweight` are explicit opt-ins).
"""
from __future__ import annotations

TIE_MARGIN = 0.05


def check_tie_margin(tie_margin: float) -> None:
    from rlaif.errors import RlaifError

    if not 0 <= tie_margin < 0.5:
        raise RlaifError(f"tie_margin must be in [0, 0.5), got {tie_margin}")


def preference(p_a: float, tie_margin: float = TIE_MARGIN) -> str:
    """The judge's written preference: a | b | tie (margin rule only; consistency is its own field)."""
    return "tie" if abs(p_a - 0.5) <= tie_margin or p_a == 0.5 else ("a" if p_a > 0.5 else "b")


def pair_label(p_a: float, consistent: bool | None, tie_margin: float = TIE_MARGIN) -> str:
    """The label agreement is measured on: the preference, with order flips counted as ties."""
    return "tie" if consistent is False else preference(p_a, tie_margin)


def describe(tie_margin: float = TIE_MARGIN, both_orders: bool = True) -> str:
    """The rule in words, recorded in judge rows and rubric-test results."""
    rule = f"|p_a-0.5| <= {tie_margin:g} -> tie"
    return rule + ("; orders disagree -> not a preference (tie in rubric test, dropped by pairs)"
                   if both_orders else "")
