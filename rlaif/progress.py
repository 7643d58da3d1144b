"""The one progress display every stage draws on (judging, jury members, sampling, eval).

Why one: three hand-made bars had drifted apart (different columns, different stop rules). A
`Bar` is one task on a rich display on stderr; a jury passes one shared `display()` so each
member is a line of the same display. `stats` (an engine's live totals) adds rate, spend and the
unscored count that judging shows. rich is imported only when a bar is actually drawn.
"""
from __future__ import annotations

import time


def display():
    """A rich display on stderr that several bars can share (not started)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[cost]}"),
                    TextColumn("{task.fields[unscored]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=False)


class Bar:
    """One task: `advance(failed=...)` per finished item, `stop()` at the end (idempotent)."""

    def __init__(self, total: int, description: str, *, done: int = 0, stats=None, group=None):
        self.stats = stats                 # an EngineStats-like object (cost, cost_known, cached) or None
        self.own = group is None           # a shared display is started and stopped by its owner
        self.p = group or display()
        if self.own:
            self.p.start()
        self.t0 = time.monotonic()
        self.done0 = self.completed = done
        self.unscored = 0
        self.task = self.p.add_task(description, total=total, completed=done, rate="", cost="", unscored="")
        self._update()

    def _update(self) -> None:
        if self.stats is None:
            return
        from rlaif.cost import fmt_usd

        st = self.stats
        el = max(1e-9, time.monotonic() - self.t0)
        self.p.update(self.task, rate=f"{(self.completed - self.done0) / el:,.1f} rows/s",
                      cost=f"spent {fmt_usd(st.cost if st.cost_known else None)} ({st.cached} cached)",
                      unscored=f"unscored {self.unscored}")

    def advance(self, failed: bool = False) -> None:
        self.unscored += bool(failed)
        self.completed += 1
        self.p.advance(self.task)
        self._update()

    def stop(self) -> None:
        if self.own and self.p is not None:
            self.p.stop()
        self.own = False


def progress_bar(enabled: bool, total: int, description: str, **kw) -> Bar | None:
    """A started Bar, or None when progress is off (callers write `if bar: bar.advance()`)."""
    return Bar(total, description, **kw) if enabled else None
