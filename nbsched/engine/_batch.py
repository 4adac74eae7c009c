"""Batches of runs for logical times: backfills and catch-ups.

A batch holds fire times (oldest first) and runs them with at most ``max_active`` at a time, each run
standing for its fire time (``scheduled_at``, data interval, results rows).  Runs of plain functions
finish inline, so the batch starts them in slices (like a burst of fires) and gives the loop back.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Callable

from ..clock import perf_counter

__all__ = ["RunBatch", "MAX_BATCH"]

#: A backfill or catch-up may hold at most this many fire times.
MAX_BATCH = 100_000
_SLICE = 0.002


class RunBatch:
    """Fire times to run for one job (see the module docstring).  Owned by the scheduler."""

    def __init__(self, scheduler: Any, job: Any, times: "list[tuple[float, str]]", max_active: int,
                 deliver: bool):
        self._sched = scheduler
        self.job = job
        self.queue: deque = deque(times)  # (nominal, reason)
        self.total = len(times)
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
        self.queue.append((nominal, reason))
        self.total += 1
        self.pump()

    def on_progress(self, callback: Callable[["RunBatch"], None]) -> None:
        self._listeners.append(callback)

    def pump(self) -> None:
        """Start runs while there is room, for at most a slice; then continue on the loop."""
        if self._pumping or self.finished:
            return
        self._pumping = True
        deadline = perf_counter() + _SLICE
        try:
            job, runs = self.job, self._sched._runs
            while self.queue and len(self.active) < self.max_active and not self.cancelled:
                if job._removed:
                    self.queue.clear()
                    break
                nominal, reason = self.queue.popleft()
                run_id = runs.run_ids + 1
                self.active.add(run_id)
                self.run_ids.append(run_id)
                self._sched._batch_runs[run_id] = self
                job._batch_running += 1
                runs.start_run(job, nominal, reason, None, self.deliver)
                if perf_counter() > deadline and self.queue:
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
        for callback in self._listeners:
            try:
                callback(self)
            except Exception:  # a progress display must not break the batch
                import logging

                logging.getLogger("nbsched").exception("nbsched: a batch progress listener failed")
        if not self._pumping:
            self.pump()

    def cancel(self) -> int:
        """Stop: fire times not started are dropped, runs in progress are cancelled (recorded
        ``cancelled``).  Returns how many runs were cancelled."""
        self.cancelled = True
        self.queue.clear()
        tasks = [t for t in (self.job._run_tasks or ()) if _run_id_of(t) in self.active]
        for task in tasks:
            task.cancel()
        self._check_done()
        return len(tasks)

    def _check_done(self) -> None:
        if not self.queue and not self.active and self.finished_at is None:
            self.finished_at = self._sched.clock.time()
            self._sched._batch_finished(self)
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
    every run (on the loop).
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
