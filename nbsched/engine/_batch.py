"""Batches of runs for logical times: backfills and catch-ups.

A batch holds fire times (oldest first) and runs them with at most ``max_active`` at a time, each run
standing for its fire time (``scheduled_at``, data interval, results rows).  Runs of plain functions
finish inline, so the batch starts them in slices (like a burst of fires) and gives the loop back.
"""
from __future__ import annotations

import asyncio
from collections import deque
from itertools import islice
from typing import Any, Callable, Iterable, Iterator

from ..clock import perf_counter

__all__ = ["RunBatch", "MAX_BATCH"]

#: A backfill or catch-up may hold at most this many fire times.
MAX_BATCH = 100_000
_SLICE = 0.002


class RunBatch:
    """Fire times to run for one job (see the module docstring).  Owned by the scheduler."""

    def __init__(self, scheduler: Any, job: Any, times: "Iterable[tuple[float, str]]", total: int,
                 max_active: int, deliver: bool):
        self._sched = scheduler
        self.job = job
        # (nominal, reason) pairs, drawn lazily from `times` (a backfill of 100,000 fire times is not
        # built up front: that would block the loop); fire times added later run after them
        self._source: Iterator | None = iter(times)
        self.queue: deque = deque()
        self._later: deque = deque()
        self.total = total
        self.max_active = max_active
        self.deliver = deliver
        self.active: set[int] = set()
        self.run_ids: list[int] = []
        self.done = 0
        self.failed = 0
        self.cancelled = False
        self.started_at = scheduler.clock.time()
        self.finished_at: float | None = None
        self._pumping = False
        self._listeners: list[Callable[["RunBatch"], None]] = []
        self.future: asyncio.Future = scheduler._binding.require("a backfill").create_future()

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def add(self, nominal: float, reason: str) -> None:
        """Queue one more fire time (a live fire arriving while a catch-up runs waits its turn)."""
        self._later.append((nominal, reason))
        self.total += 1
        self.pump()

    def _refill(self) -> bool:
        """Anything left to start?  Draws the next fire times from the source when the queue is empty."""
        if self.queue:
            return True
        if self._source is not None:
            self.queue.extend(islice(self._source, 256))
            if len(self.queue) < 256:
                self._source = None
            if self.queue:
                return True
        if self._later:
            self.queue.extend(self._later)
            self._later.clear()
        return bool(self.queue)

    def on_progress(self, callback: Callable[["RunBatch"], None]) -> None:
        self._listeners.append(callback)

    def pump(self) -> None:
        """Start runs while there is room, for at most a slice; then continue on the loop."""
        if self._pumping or self.finished:
            return
        self._pumping = True
        deadline = perf_counter() + _SLICE
        try:
            job, runs, queue, active = self.job, self._sched._runs, self.queue, self.active
            by_run, ids, start, deliver = self._sched._batch_runs, self.run_ids, runs.start_run, self.deliver
            count = 0
            while len(active) < self.max_active and not self.cancelled and (queue or self._refill()):
                if job._removed:
                    self._drop()
                    break
                nominal, reason = queue.popleft()
                run_id = runs.run_ids + 1
                active.add(run_id)
                ids.append(run_id)
                by_run[run_id] = self
                job._batch_running += 1
                start(job, nominal, reason, None, deliver)
                count += 1
                if count == 8:  # plain functions finish inline: look at the clock every few runs
                    count = 0
                    if perf_counter() > deadline and (queue or self._refill()):
                        self._sched._binding.loop.call_soon(self.pump)
                        break
        finally:
            self._pumping = False
        self._check_done()

    def ended(self, run_id: int, outcome: str) -> None:
        """A run of this batch reached its final outcome."""
        self.active.discard(run_id)
        self.job._batch_running -= 1
        self.done += 1
        if outcome not in ("success", "skipped"):
            self.failed += 1
        if self._listeners:
            self._tell()
        if not self._pumping:
            self.pump()

    def _drop(self) -> None:
        self.queue.clear()
        self._later.clear()
        self._source = None

    def _tell(self) -> None:
        for callback in self._listeners:
            try:
                callback(self)
            except Exception:  # a progress display must not break the batch
                import logging

                logging.getLogger("nbsched").exception("nbsched: a batch progress listener failed")

    def cancel(self) -> int:
        """Stop: fire times not started are dropped, runs in progress are cancelled (recorded
        ``cancelled``).  Returns how many runs were cancelled."""
        self.cancelled = True
        self._drop()
        tasks = [t for t in (self.job._run_tasks or ()) if _run_id_of(t) in self.active]
        for task in tasks:
            task.cancel()
        self._check_done()
        return len(tasks)

    def _check_done(self) -> None:
        if not self.active and self.finished_at is None and not self._refill():
            self.finished_at = self._sched.clock.time()
            self._sched._batch_finished(self)
            if self._listeners:
                self._tell()  # the last call sees the batch finished (a progress bar draws its end state)
            if not self.future.done():
                self.future.set_result(None)


def _run_id_of(task: asyncio.Task) -> int:
    try:
        return int(task.get_name().rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return -1


class Backfill:
    """A backfill in progress (from :meth:`Scheduler.backfill`).

    ``await backfill`` gives the history frame of its runs (every attempt, oldest first);
    :meth:`cancel` stops it.  ``total``, ``done``, ``failed``, ``running``, ``rate`` (runs per second)
    and ``eta`` (seconds left, or None) describe its progress; :meth:`on_progress` calls back after
    every run (on the loop), and once more when the backfill has finished (``finished`` is then True).
    """

    __slots__ = ("_batch", "job")

    def __init__(self, batch: RunBatch):
        self._batch = batch
        self.job = batch.job.name

    total = property(lambda self: self._batch.total)
    done = property(lambda self: self._batch.done)
    failed = property(lambda self: self._batch.failed)
    running = property(lambda self: len(self._batch.active))
    finished = property(lambda self: self._batch.finished)
    cancelled = property(lambda self: self._batch.cancelled)

    @property
    def rate(self) -> float:
        batch = self._batch
        elapsed = (batch.finished_at or batch._sched.clock.time()) - batch.started_at
        return batch.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        rate = self.rate
        left = self._batch.total - self._batch.done
        return None if rate <= 0 else left / rate

    def cancel(self) -> int:
        """Stop the backfill (runs in progress are recorded ``cancelled``); returns how many were running."""
        return self._batch._sched._binding.call("Backfill.cancel", self._batch.cancel)

    def on_progress(self, callback: Callable[["Backfill"], None]) -> None:
        self._batch.on_progress(lambda _batch: callback(self))

    def frame(self):
        """The history rows of this backfill's runs so far."""
        history = self._batch._sched.history(self.job)
        return history[history["run_id"].isin(self._batch.run_ids)].reset_index(drop=True)

    def __await__(self):
        yield from asyncio.shield(self._batch.future).__await__()
        return self.frame()

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "finished" if self.finished else "running"
        return f"<Backfill {self.job!r} {state} {self.done}/{self.total} failed={self.failed}>"
