"""A store that keeps everything in this process's memory: the unit tests' store, and a template.

It implements :class:`nbsched.store.Store` from the protocol alone.  What it keeps survives a
scheduler (shut one down, attach the same store to a new one, ``restore()``), not the process.
Functions are kept as the objects themselves, so nothing needs importing or compiling back.

    store = MemoryStore()
    sched = nbsched.Scheduler(store=store)
    sched.add(job, "every 5m")
    ...
    sched.shutdown()
    again = nbsched.Scheduler(store=store)
    again.restore()      # the jobs, their history, results and run counts
"""
from __future__ import annotations

from typing import Any

from ..history import unpack_row
from ..job import Job, StoredJob

__all__ = ["MemoryStore"]


class MemoryStore:
    """Job definitions, state, history and results in dictionaries (see the module docstring)."""

    def __init__(self) -> None:
        self.persist_all = True
        self.claims_free_until = float("inf")  # one process: claim() is always True, never asked
        self.definitions: dict[str, tuple] = {}  # name -> (func, trigger, policy, meta)
        self.states: dict[str, tuple] = {}  # name -> (paused, finished, next fire time, runs)
        self.rows: dict[str, list[tuple]] = {}  # name -> history rows, oldest first
        self.results: dict[str, list[tuple]] = {}  # name -> (run_id, scheduled, value)
        self.closed = False
        self._scheduler: Any = None
        self._live: dict[str, Job] = {}

    # -- the Store protocol ------------------------------------------------------------------
    def attach(self, scheduler: Any) -> None:
        self._scheduler = scheduler
        self.closed = False

    def on_job_saved(self, job: Job) -> None:
        self._live[job.name] = job
        self.definitions[job.name] = (job.func, job.trigger, job.policy, dict(job.meta))
        self._checkpoint(job)

    def on_job_removed(self, name: str) -> None:
        self._live.pop(name, None)
        self.definitions.pop(name, None)
        self.states.pop(name, None)

    def row_key(self, job_name: str) -> str:
        return job_name

    def on_row(self, job_name: str, packed: bytes, aside: tuple | None) -> None:
        self.rows.setdefault(job_name, []).append(unpack_row(packed, aside))

    def on_result(self, job_name: str, run_id: int, scheduled: float, value: Any) -> None:
        self.results.setdefault(job_name, []).append((run_id, scheduled, value))

    def claim(self, job_name: str, scheduled: float) -> bool:
        return True  # one process: every fire time is ours

    def restore(self, scheduler: Any, namespace: dict | None = None) -> list[Job]:
        if self._scheduler is not scheduler:
            self.attach(scheduler)
        stored, max_run_id = [], 0
        for name, (func, trigger, policy, meta) in self.definitions.items():
            paused, finished, next_ts, runs = self.states.get(name, (False, False, None, 0))
            rows = tuple(self.rows.get(name, ()))
            last = max((row[1] for row in rows), default=None)
            if next_ts is None or (last is not None and last >= next_ts):
                after = last if last is not None else scheduler.clock.time()
                next_ts = trigger.next_timestamp(after)
            stored.append(StoredJob(name, func, trigger, policy, meta, paused, finished, next_ts, runs,
                                    rows, tuple(self.results.get(name, ()))))
        for rows in self.rows.values():
            max_run_id = max([max_run_id, *(row[0] for row in rows)])
        others = {name: rows for name, rows in self.rows.items() if name not in self.definitions}
        return scheduler.load(stored, history=others, run_ids_above=max_run_id)

    def close(self) -> None:
        for job in self._live.values():
            self._checkpoint(job)
        self._live.clear()
        self.closed = True

    # -- internals -----------------------------------------------------------------------------
    def _checkpoint(self, job: Job) -> None:
        self.states[job.name] = (job.paused, job.finished, job.next_fire_timestamp, job.runs)

    def __repr__(self) -> str:
        return f"<MemoryStore jobs={len(self.definitions)} rows={sum(map(len, self.rows.values()))}>"
