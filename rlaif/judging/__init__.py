"""Judging, in layers (each file one concern; imports point down this list):

    verdicts.py   reading a judge's answer (pure)         aggregate.py  BT, Borda, jury math (pure)
    judge.py      the Judge: one row, one backend, one rubric
    job.py        a run over a file: journal, ledger, engine, batch, progress, summary
    jury.py       several judges/rubrics per row, aggregated

Message rendering lives one layer down in rlaif/render.py (rubric lint shares it). The public
entry is `rlaif.judge(...)` in rlaif/judge.py. This __init__ imports nothing on purpose.
"""
