"""Full garbage collections out of the loop's way: freeze what a bulk add made long-lived.

A full (generation 2) collection walks every object the collector tracks.  100,000 jobs are a few
hundred thousand such objects (each job's Job, function, trigger, log...), so a full collection
holds the loop for tens of milliseconds: a widget click, a cell, and every job due meanwhile wait.
The hot path itself allocates nothing that survives (history rows are packed bytes, see
:class:`nbsched.history.RunLog`), so firing jobs does not bring collections on; but the user's own
code does, and each full collection would still walk all the jobs.

**What the scheduler does** (:class:`GcFreezer`): once at least :data:`BULK` jobs have been added
since the last freeze, at the next turn of the loop (after the cell's loop of ``add`` calls), it runs
one full collection (the garbage of that moment goes) and calls :func:`gc.freeze`: every object
alive then moves to the permanent generation, which collections skip.  Later full collections walk
only objects created since, so their pause no longer grows with the number of jobs.  A bulk add that
goes on within one turn of the loop is frozen in steps of :data:`STEP` x ``threshold`` adds (5,000
jobs at the default) as it goes - one full collection, then :func:`gc.freeze`, right in the
``add`` call - so neither Python's own full collections meanwhile nor the collection at the next
turn walk the jobs added before the last step (without the steps, adding 100,000 jobs in one cell
spent about half its time in full collections, each walking every job added so far).  Removing
:data:`BULK` jobs (or shutting down) calls :func:`gc.unfreeze`, so removed jobs' objects can be
collected again; the next bulk add freezes again.

**What it does not do**: disable the collector or change its thresholds - the user's code runs
with the collector exactly as Python runs it.  The trade-off: a reference *cycle* among objects
that were alive at the freeze and die later is not collected until the next unfreeze (objects freed
by reference counting - most - are freed as usual).  ``Scheduler.gc_freeze_after = None`` turns
freezing off.
"""
from __future__ import annotations

import gc
import logging
from typing import Any, Callable

__all__ = ["GcFreezer", "BULK", "STEP"]

log = logging.getLogger("nbsched")

#: Jobs added (or removed) since the last freeze (unfreeze) that make a bulk change.
BULK = 1000
#: During one long bulk add (no loop turn yet), freeze in steps of this many bulks (5,000 jobs at the
#: default threshold): a step's collection walks only the objects created since the previous step.
STEP = 5


class GcFreezer:
    """Counts a scheduler's adds and removes; freezes after bulk adds, unfreezes after bulk removes."""

    __slots__ = ("threshold", "_added", "_removed", "_pending", "_post", "frozen")

    def __init__(self, post: Callable[[Callable[[], None]], Any], threshold: int | None = BULK):
        self.threshold = threshold
        self._post = post  # runs a callable at the loop's next turn
        self._added = 0
        self._removed = 0
        self._pending = False
        self.frozen = False  # this scheduler has frozen the heap (and not unfrozen it since)

    def added(self) -> None:
        added = self._added = self._added + 1
        threshold = self.threshold
        if threshold is not None and added >= threshold:
            if not self._pending:
                self._pending = True
                self._post(self._settle)
            elif added % (STEP * threshold) == 0:  # a long bulk add in one loop turn: a step
                self._freeze()

    def removed(self) -> None:
        self._removed += 1
        if self.frozen and self.threshold is not None and self._removed >= self.threshold and not self._pending:
            self._pending = True
            self._post(self._settle)

    def _settle(self) -> None:
        self._pending = False
        if self.frozen and self._removed >= (self.threshold or 0):
            self.unfreeze()
        if self.threshold is not None and self._added >= self.threshold:
            self._added = self._removed = 0
            self._freeze()
            log.debug("nbsched: froze %d long-lived objects after a bulk add", gc.get_freeze_count())

    def _freeze(self) -> None:
        """One full collection (the garbage of this moment goes), then freeze what is alive."""
        gc.collect()
        gc.freeze()
        self.frozen = True

    def unfreeze(self) -> None:
        """Give frozen objects back to the collector (bulk removal, shutdown)."""
        if self.frozen:
            self.frozen = False
            self._removed = 0
            gc.unfreeze()
