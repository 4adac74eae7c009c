"""A backfill's progress in its cell: a bar with done / total, failures, rate and time left.

In a frontend that renders widgets it is an ``ipywidgets`` bar updated at most ten times a second;
everywhere else (``jupyter console``, a saved notebook) the text form shows, and it ends as a summary.
"""
from __future__ import annotations

from typing import Any

from .._durations import format_duration

__all__ = ["BackfillProgress"]

_MIN_INTERVAL = 0.1  # seconds between widget updates


class BackfillProgress:
    """Shows a :class:`~nbsched.engine.Backfill`; ``display()`` it (the magic returns it)."""

    def __init__(self, backfill: Any, clock: Any):
        import ipywidgets as w

        self.backfill = backfill
        self._clock = clock
        self._shown_at = 0.0
        self.bar = w.IntProgress(value=0, min=0, max=max(1, backfill.total), bar_style="info",
                                 layout=w.Layout(width="40%"))
        self.label = w.HTML(self.text())
        self.widget = w.HBox([self.bar, self.label])
        backfill.on_progress(self._update)
        self._update(backfill, force=True)

    def text(self) -> str:
        b = self.backfill
        if b.finished:
            verb = "cancelled" if b.cancelled else "done"
            return (f"backfill of {b.job!r} {verb}: {b.done} of {b.total} runs, {b.failed} failed"
                    + (f", {b.rate:.1f} runs/s" if b.rate else ""))
        eta = b.eta
        left = "" if eta is None else f", about {format_duration(max(1, round(eta)))} left"
        return f"backfill of {b.job!r}: {b.done}/{b.total} runs, {b.failed} failed, {b.rate:.1f} runs/s{left}"

    def _update(self, backfill: Any, force: bool = False) -> None:
        now = self._clock.time()
        if not force and not backfill.finished and now - self._shown_at < _MIN_INTERVAL:
            return
        self._shown_at = now
        self.bar.value = backfill.done
        if backfill.finished:
            self.bar.bar_style = "danger" if backfill.failed else ("warning" if backfill.cancelled else "success")
        self.label.value = self.text()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        bundle = dict(bundle)
        bundle["text/plain"] = self.text()
        return bundle

    def __repr__(self) -> str:
        return self.text()
