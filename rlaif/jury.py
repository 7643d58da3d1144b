"""Juries: moved to rlaif/judging/jury.py (aggregation math in rlaif/judging/aggregate.py).

Kept so `from rlaif.jury import aggregate, agreement_weight, jury` keeps working.
"""
from __future__ import annotations

from rlaif.judging.aggregate import AGGREGATES, GOLD_FIELDS, aggregate, agreement_weight, gold_label
from rlaif.judging.jury import jury

__all__ = ["aggregate", "agreement_weight", "gold_label", "jury", "AGGREGATES", "GOLD_FIELDS"]
