"""Moved: the batch runner is rlaif/judging/batch.py; the provider clients are
rlaif/backends/openai_batch.py and rlaif/backends/anthropic_batch.py. Kept for old imports."""
from __future__ import annotations

from rlaif.judging.batch import MAX_ROUNDS, batch_client, option_logprobs, run_batch

__all__ = ["run_batch", "batch_client", "option_logprobs", "MAX_ROUNDS"]
