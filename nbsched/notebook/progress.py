"""A backfill's progress in its cell: a bar with done / total, failures, rate and time left.

In a frontend that renders widgets it is an ``ipywidgets`` bar updated at most ten times a second,
ending as a summary; elsewhere (``jupyter console``, nbconvert HTML) its text form shows, as of when
the cell ran.  The updates are parented to the cell running at that moment (see
``kernel.in_latest_request``) and re-sent as each cell starts if they changed, so an executed notebook
(nbclient, papermill, nbconvert) saves the bar's last state in its widget state.
"""
from __future__ import annotations

import weakref
from typing import Any

from .._durations import format_duration

__all__ = ["BackfillProgress"]

_MIN_INTERVAL = 0.1  # seconds between widget updates
_LIVE: "weakref.WeakSet[BackfillProgress]" = weakref.WeakSet()  # shown bars, for resync_all()


def resync_all() -> None:
    """As a cell starts: re-send every bar whose state changed since the last cell start (an update
    sent between two cells is parented to neither, and a notebook executor drops it)."""
    for progress in list(_LIVE):
        progress.resync()


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
        self._synced: tuple | None = None  # what the last cell start saw
        _LIVE.add(self)
        backfill.on_progress(self._update)
        self._update(backfill, force=True)
        self._synced = self._state()
        # the last progress call can come before the backfill counts as finished: show the end
        # once it is over (``await backfill`` completes then, also when it is cancelled)
        self._follower = None
        if not backfill.finished:
            import asyncio

            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._follower = loop.create_task(self._follow(), name="nbsched-backfill-progress")

    async def _follow(self) -> None:
        try:
            await self.backfill
        finally:
            self._update(self.backfill, force=True)

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
        from .kernel import in_latest_request

        # parented to the cell running now, so a notebook executor keeps it (kernel.in_latest_request)
        in_latest_request(self._apply, backfill)

    def _apply(self, backfill: Any) -> None:
        self.bar.value = backfill.done
        if backfill.finished:
            self.bar.bar_style = "danger" if backfill.failed else ("warning" if backfill.cancelled else "success")
        self.label.value = self.text()

    def _state(self) -> tuple:
        return (self.bar.value, self.bar.bar_style, self.label.value)

    def resync(self) -> None:
        """Re-send the bar and its label in the cell running now if they changed since the last call."""
        state = self._state()
        if state != self._synced:
            self._synced = state
            from .kernel import in_latest_request

            in_latest_request(self._send_state)
        if self.backfill.finished:
            _LIVE.discard(self)  # (nothing changes any more once its last state is sent)

    def _send_state(self) -> None:
        self.bar.send_state()
        self.label.send_state()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        bundle = dict(bundle)
        bundle["text/plain"] = self.text()
        return bundle

    def __repr__(self) -> str:
        return self.text()
