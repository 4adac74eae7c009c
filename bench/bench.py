#!/usr/bin/env python
"""nbsched benchmark: raw asyncio (the floor) vs APScheduler 3.11 vs nbsched, side by side, one run.

    .venv/bin/python bench/bench.py                  # everything (~3-5 min), writes bench/results.md
    .venv/bin/python bench/bench.py --quick          # smaller scales (~1 min)
    .venv/bin/python bench/bench.py --only nbsched,asyncio --scenarios a_10x100ms,d_burst
    .venv/bin/python bench/bench.py --one nbsched b_10k   # one cell, prints its JSON (what the parent runs)

Every (scheduler, scenario) cell runs in a FRESH child process (``--one SCHED SCENARIO``) so that peak
RSS and CPU time belong to one scheduler, and so that a scheduler that livelocks can be cut off (a
watchdog thread in the child reports what it measured so far; the parent kills the child after a
wall-clock cap and reports ``livelock/timeout``).

Measurement conventions (identical for all schedulers):

* Jobs are trivial: they append their start time (and their job number) to ``array.array`` buffers
  (8 bytes per record, so the recording itself hardly shows in RSS).  The children run with
  ``MALLOC_MMAP_THRESHOLD_`` fixed at glibc's default 128 KiB (:data:`CHILD_ENV`): otherwise glibc
  raises the threshold as big blocks are freed, the buffers (megabytes at 100,000 jobs a second) end
  up on the heap, and a growth that cannot extend in place copies them *inside one job's call* -
  3-8 ms seen in a single ``append``, a loop block charged to whichever scheduler was running
  (raw asyncio's longest block at 100,000 jobs went from 15-22 ms to 2-4 ms with it fixed).  Above
  the threshold a growth is an ``mremap``, no copy.  Every scheduler runs with the same setting.
* Lateness = actual start - intended fire time.  raw asyncio: the callback knows its intended loop
  time.  APScheduler: intended = the job's trigger ``start_date`` + k * interval (the latest due fire
  time, which is what APScheduler itself runs when it coalesces).  nbsched: ``sched.history()``
  (``lateness`` = started_at - scheduled_at, what nbsched records), cross-checked against the job's
  own clock reading.
* Steady scenarios: job i first fires at B + i/n * interval (phases spread evenly over one interval,
  identical for every scheduler whatever its add speed), then a warm-up of one interval, then a
  measurement window [W0, W1) whose edges sit half a phase step from any intended fire time.  A
  sampler *thread* reads process CPU time (all threads, idle polling included) and peak RSS at W0
  and W1, so a blocked loop cannot delay the samples.  Fires achieved = runs whose intended time is in the
  window and that started before W1 + one interval, / (jobs * window / interval) - so a backlog from
  before the window cannot push it over 100%.  Lateness percentiles are over those runs; CPU per
  fire divides the window's CPU time by the runs that *started* in it.  Peak RSS = VmHWM at W1 (before any post-processing such
  as building nbsched's history DataFrame).
* Loop blocking: the loop's selector is wrapped (bench side) to time every iteration from the return
  of ``select()`` to the next call - the busy time during which nothing else on the loop (a comm
  message, a widget click, a cell) could run.  Also recorded: GC pauses (``gc.callbacks``), and
  ``select()`` returning > 3 ms later than asked (the process was not scheduled: OS/VM noise).
* Burst: all jobs share one phase.  Besides the iteration monitor, a coroutine doing
  ``await asyncio.sleep(0.001)`` in a loop records its largest gap between wake-ups.
* Noise: the parent records the load average and, per cell, the CPU other processes used; both
  are printed, since concurrent work on a 2-core machine disturbs lateness and wall times.  The CPU
  per fire at 10,000 jobs is also measured *side by side* (:func:`run_paired`: raw asyncio's and
  nbsched's children at the same time, a few rounds): one after the other its two figures move by
  more between runs than they differ.

Scenarios live in the ``SCENARIOS`` registry (see :func:`scenario`); schedulers in ``ADAPTERS``.  To add
a scenario write ``async def my_scenario(ad, ctx, **params) -> dict`` and register it with rows (and
targets) for the table.  A variant of a scheduler (e.g. nbsched with a SQLite store) is one more
adapter class registered under its own key, with its own column.
"""
from __future__ import annotations

import argparse
import array
import asyncio
import gc
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))

RESULT_TAG = "@@RESULT "


# ----------------------------------------------------------------------------------------- helpers
def maxrss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    VmHWM (this address space's high-water mark), not ru_maxrss: on Linux ru_maxrss survives
    fork + exec, so a child would inherit the parent's peak as a floor.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


async def settle(turns: int = 3) -> None:
    """Let the loop run work that an add/remove deferred with call_soon(_threadsafe)/call_later(0)."""
    for _ in range(turns):
        await asyncio.sleep(0)


def snapshot(buf: array.array):
    """A numpy copy of an array.array that another thread may be appending to (copy first, under the GIL)."""
    import numpy as np

    return np.frombuffer(buf[:], dtype=np.float64 if buf.typecode == "d" else np.int64).copy()


def pct(values, qs=(50, 99)) -> dict:
    """Percentiles (ms) of lateness values given in seconds."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    out: dict[str, Any] = {"n": int(v.size)}
    if v.size == 0:
        return out
    for q in qs:
        out[f"p{q}_ms"] = float(np.percentile(v, q) * 1e3)
    out["max_ms"] = float(v.max() * 1e3)
    out["mean_ms"] = float(v.mean() * 1e3)
    return out


def fmt_every(seconds: float) -> str:
    if seconds < 1 and abs(seconds * 1000 - round(seconds * 1000)) < 1e-9:
        return f"every {round(seconds * 1000)}ms"
    if float(seconds).is_integer():
        return f"every {int(seconds)}s"
    return f"every {seconds}s"


class Sampler(threading.Thread):
    """Reads (wall time, process CPU time, peak RSS) at given wall-clock instants, off the loop thread."""

    def __init__(self, instants: list[float], extra: Callable[[], Any] | None = None):
        super().__init__(daemon=True, name="bench-sampler")
        self.instants = instants
        self.extra = extra or (lambda: None)
        self.samples: list[tuple[float, float, float] | None] = [None] * len(instants)
        self.extras: list[Any] = [None] * len(instants)

    def run(self) -> None:
        for k, when in enumerate(self.instants):
            delay = when - time.time()
            if delay > 0:
                time.sleep(delay)
            self.samples[k] = (time.time(), time.process_time(), maxrss_mb())
            self.extras[k] = self.extra()


class Watchdog(threading.Thread):
    """If the child overruns its deadline (a livelocked loop), emit a partial result and exit."""

    def __init__(self, base: dict):
        super().__init__(daemon=True, name="bench-watchdog")
        self.base = base
        self.deadline = math.inf
        self.status = "timeout"
        self.partial: Callable[[], dict] | None = None
        self.lock = threading.Lock()

    def arm(self, deadline: float, status: str, partial: Callable[[], dict] | None = None) -> None:
        with self.lock:
            self.deadline, self.status, self.partial = deadline, status, partial

    def disarm(self) -> None:
        self.arm(math.inf, "timeout", None)

    def run(self) -> None:
        while True:
            time.sleep(0.1)
            with self.lock:
                if time.time() < self.deadline:
                    continue
                status, partial = self.status, self.partial
            res = dict(self.base)
            if partial is not None:
                try:
                    res.update(partial())
                except Exception as exc:  # pragma: no cover - best effort
                    res["partial_error"] = repr(exc)
            res["status"] = status
            emit(res)
            os._exit(0)


def emit(res: dict) -> None:
    sys.stdout.write(RESULT_TAG + json.dumps(res, default=str) + "\n")
    sys.stdout.flush()


class LoopMonitor:
    """Busy time of every event-loop iteration: from the moment ``select()`` returns to the next call.

    That is the time during which nothing else on the loop (a comm message, a widget click, the next
    cell) could run: timer bookkeeping + every callback the iteration ran.  Installed by wrapping the
    loop's selector (bench-side only; schedulers are not touched).  Iterations busier than ``thr``
    are recorded as (end wall time, busy seconds).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, thr: float = 2e-4):
        self.loop, self.thr = loop, thr
        self.rec = array.array("d")
        self.late = array.array("d")  # (wake time, how much later than asked) when > 3 ms: OS/VM stalls
        self.total = [0.0, 0]

    def install(self) -> "LoopMonitor":
        sel = self.loop._selector  # type: ignore[attr-defined]
        orig = sel.select
        rec_append, now, thr = self.rec.append, time.time, self.thr
        state = [now()]

        total = self.total = [0.0, 0]  # cumulative busy seconds, iterations
        late_append = self.late.append

        def select(timeout=None):
            t = now()
            busy = t - state[0]
            if busy > thr:
                rec_append(t)
                rec_append(busy)
            total[0] += busy
            total[1] += 1
            events = orig(timeout)
            t2 = state[0] = now()
            if timeout is not None and t2 - t - timeout > 0.003:  # the OS woke us > 3 ms late
                late_append(t2)
                late_append(t2 - t - timeout)
            return events

        self._orig = orig
        sel.select = select
        return self

    def uninstall(self) -> None:
        self.loop._selector.select = self._orig  # type: ignore[attr-defined]

    def max_ms(self, a: float, b: float) -> float:
        """Longest iteration that ended in [a, b)."""
        return window_max(self.rec, a, b)


class GcMonitor:
    """Every garbage-collector pass as (end wall time, seconds, generation): GC pauses block the loop too."""

    def __init__(self):
        self.rec = array.array("d")
        self._t0 = 0.0

    def _cb(self, phase, info):
        if phase == "start":
            self._t0 = time.time()
        else:
            t = time.time()
            self.rec.extend((t, t - self._t0, info["generation"]))

    def install(self) -> "GcMonitor":
        gc.callbacks.append(self._cb)
        return self

    def summary(self, a: float, b: float) -> dict:
        import numpy as np

        v = np.frombuffer(self.rec[:], dtype=np.float64).reshape(-1, 3)
        v = v[(v[:, 0] >= a) & (v[:, 0] < b)]
        out = {"gc_passes": int(len(v)), "gc_total_ms": float(v[:, 1].sum() * 1e3),
               "gc_max_ms": float(v[:, 1].max() * 1e3) if len(v) else 0.0,
               "gc_gen2_passes": int((v[:, 2] == 2).sum())}
        return out


def window_max(buf: array.array, a: float, b: float) -> float:
    """Max of the values of (time, value) pairs whose time is in [a, b), in ms (0.0 if none)."""
    import numpy as np

    v = np.frombuffer(buf[:], dtype=np.float64).reshape(-1, 2)
    m = (v[:, 0] >= a) & (v[:, 0] < b)
    return float(v[m, 1].max() * 1e3) if m.any() else 0.0


@dataclass
class Ctx:
    watchdog: Watchdog
    quick: bool
    gc: GcMonitor
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- adapters
class Adapter:
    """One scheduler, driven the same way by every scenario.  Job i is named f"j{i}"."""

    key = "?"
    label = "?"

    async def start(self) -> None: ...

    def add(self, i: int, interval: float, first_at: float | None = None) -> None:
        """Add job i every ``interval`` s; first fire one interval from now, or at wall time ``first_at``."""
        raise NotImplementedError

    def add_cron(self, i: int, expr: str) -> None:
        """Add job i on the cron expression ``expr`` (UTC; 6 fields: seconds first)."""
        raise NotImplementedError

    def remove(self, i: int) -> None:
        raise NotImplementedError

    async def stop(self) -> None: ...

    def starts(self):
        """numpy array: wall-clock start time of every run so far (recorded by the job itself)."""
        raise NotImplementedError

    def runs(self, partial: bool = False):
        """(intended, started): numpy arrays of wall times, one entry per run so far; None if unavailable
        (``partial``: called from the watchdog thread while the loop may still be running)."""
        raise NotImplementedError

    def lateness(self, w0: float, w1: float, partial: bool = False, by: str = "started"):
        """numpy array: lateness (s) of the runs that started (or were intended, ``by="intended"``) in [w0, w1)."""
        r = self.runs(partial)
        if r is None:
            return None
        intended, started = r
        key = started if by == "started" else intended
        m = (key >= w0) & (key < w1)
        return started[m] - intended[m]

    def extra(self, w0: float, w1: float) -> dict:
        return {}

    @staticmethod
    def version() -> str:
        return ""


class RawAsyncio(Adapter):
    """The floor: one ``loop.call_at`` per job, re-armed from the intended time (no drift)."""

    key = "asyncio"
    label = "raw asyncio"

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.offset = time.time() - self.loop.time()  # wall = loop time + offset
        self.handles: dict[int, asyncio.TimerHandle] = {}
        self.st = array.array("d")
        self.lat = array.array("d")

    def _parts(self):
        """What a job's fire callback closes over (bound once per job, not looked up per fire)."""
        loop = self.loop
        return loop.time, loop.call_at, self.handles, self.st.append, self.lat.append

    def add(self, i, interval, first_at=None):
        now, call_at, handles, st_append, lat_append = self._parts()

        def fire(when):
            t = now()
            st_append(t)
            lat_append(t - when)
            when += interval
            handles[i] = call_at(when, fire, when)

        when = now() + interval if first_at is None else first_at - self.offset
        handles[i] = call_at(when, fire, when)

    def add_cron(self, i, expr):
        """Each fire computes the job's next fire time with its own croniter, as a hand-rolled loop would."""
        from croniter import croniter

        now, call_at, handles, st_append, lat_append = self._parts()
        offset = self.offset
        it = croniter(expr, time.time(), second_at_beginning=True)
        get_next = it.get_next

        def fire(when):
            t = now()
            st_append(t)
            lat_append(t - when)
            when = get_next(float) - offset
            handles[i] = call_at(when, fire, when)

        when = get_next(float) - offset
        handles[i] = call_at(when, fire, when)

    def remove(self, i):
        self.handles.pop(i).cancel()

    async def stop(self):
        for h in self.handles.values():
            h.cancel()
        self.handles.clear()

    def starts(self):
        return snapshot(self.st) + self.offset

    def runs(self, partial=False):
        st, lat = self.starts(), snapshot(self.lat)
        n = min(len(st), len(lat))
        return st[:n] - lat[:n], st[:n]

    @staticmethod
    def version():
        return f"Python {platform.python_version()} asyncio"


class APScheduler3(Adapter):
    """APScheduler 3.x AsyncIOScheduler at its defaults (misfire_grace_time=1, coalesce, max_instances=1).

    Jobs are coroutine functions: AsyncIOExecutor runs plain functions in a thread pool, coroutine
    functions as tasks on the loop (the like-for-like choice).
    """

    key = "apscheduler"
    label = "APScheduler 3.11"

    async def start(self):
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.st = array.array("d")
        self.ids = array.array("q")
        self.anchor: dict[int, float] = {}
        self.every: dict[int, float] = {}
        st_append, ids_append, now = self.st.append, self.ids.append, time.time

        async def job(i):
            st_append(now())
            ids_append(i)

        self.job = job
        self.s = AsyncIOScheduler()
        self.s.start()

    def add(self, i, interval, first_at=None):
        kw = {} if first_at is None else {"start_date": datetime.fromtimestamp(first_at, timezone.utc)}
        j = self.s.add_job(self.job, "interval", seconds=interval, args=(i,), id=f"j{i}", **kw)
        self.anchor[i] = j.trigger.start_date.timestamp()
        self.every[i] = interval

    def add_cron(self, i, expr):
        from apscheduler.triggers.cron import CronTrigger

        sec, minute, hour, day, month, dow = expr.split()
        trig = CronTrigger(second=sec, minute=minute, hour=hour, day=day, month=month, day_of_week=dow,
                           timezone="UTC")
        self.s.add_job(self.job, trig, args=(i,), id=f"j{i}")
        self.anchor[i] = 0.0  # every second on the second: the latest due fire time is the start's second
        self.every[i] = 1.0

    def remove(self, i):
        self.s.remove_job(f"j{i}")

    async def stop(self):
        self.s.shutdown(wait=False)
        await settle()

    def starts(self):
        return snapshot(self.st)

    def runs(self, partial=False):
        import numpy as np

        st, ids = snapshot(self.st), snapshot(self.ids)
        n = min(len(st), len(ids))
        st, ids = st[:n], ids[:n]
        if not len(st):
            return st, st
        anchors = dict(self.anchor)
        keys = np.arange(max(anchors) + 1)
        anchor = np.array([anchors.get(k, np.nan) for k in keys])[ids]
        every = np.array([self.every.get(k, np.nan) for k in keys])[ids]
        k = np.floor((st - anchor) / every + 1e-6)  # the latest due fire time: what APScheduler runs
        return anchor + k * every, st

    @staticmethod
    def version():
        from importlib.metadata import version

        return f"APScheduler {version('apscheduler')}"


class Nbsched(Adapter):
    """nbsched at its defaults (history recording on, default retention); plain-function jobs on the loop.

    Jobs are added with the spec string a user writes (``"every 60s"``) unless the scenario imposes a
    phase, then with ``nbsched.Interval(seconds, start=...)``.
    """

    key = "nbsched"
    label = "nbsched"

    async def start(self):
        import nbsched

        self.nb = nbsched
        self.st = array.array("d")
        self.ids = array.array("q")
        self.s = nbsched.Scheduler()
        self._specs: dict[float, str] = {}

    def add(self, i, interval, first_at=None):
        st_append, ids_append, now = self.st.append, self.ids.append, time.time

        def job():
            st_append(now())
            ids_append(i)

        if first_at is None:
            spec = self._specs.get(interval)
            if spec is None:
                spec = self._specs[interval] = fmt_every(interval)
            trig = spec  # the string form, as a user writes it
        else:
            trig = self.nb.Interval(interval, start=datetime.fromtimestamp(first_at, timezone.utc))
        self.s.add(job, trig, name=f"j{i}")

    def add_cron(self, i, expr):
        st_append, ids_append, now = self.st.append, self.ids.append, time.time

        def job():
            st_append(now())
            ids_append(i)

        self.s.add(job, f"cron {expr}", name=f"j{i}")  # the spec string a user writes

    def remove(self, i):
        self.s.remove(f"j{i}")

    async def stop(self):
        res = self.s.shutdown()
        if asyncio.iscoroutine(res):
            await res
        await settle()

    def starts(self):
        return snapshot(self.st)

    def _history(self):
        if getattr(self, "_hist", None) is None:
            t = time.perf_counter()
            self._hist = self.s.history()
            self._hist_s = time.perf_counter() - t
        return self._hist

    def runs(self, partial=False):
        """From ``sched.history()``: successful runs, intended = started_at - lateness (nbsched's record)."""
        if partial:  # history() from another thread while the loop runs: not safe
            return None
        import numpy as np
        import pandas as pd

        h = self._history()
        h = h[(h["outcome"].astype(str) == "success").to_numpy()]
        epoch = pd.Timestamp(0, tz="UTC")
        started = (h["started_at"] - epoch).dt.total_seconds().to_numpy(dtype=np.float64)
        return started - h["lateness"].dt.total_seconds().to_numpy(dtype=np.float64), started

    def extra(self, w0, w1):
        """Cross-checks of nbsched's own records against what the jobs saw."""
        import numpy as np
        import pandas as pd

        h = self._history()
        out: dict[str, Any] = {"history_rows": int(len(h)), "history_build_s": round(self._hist_s, 3),
                               "outcomes": {str(k): int(v) for k, v in h["outcome"].value_counts().items() if v}}
        epoch = pd.Timestamp(0, tz="UTC")
        sched = (h["scheduled_at"] - epoch).dt.total_seconds().to_numpy(dtype=np.float64)
        started = (h["started_at"] - epoch).dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan)
        jobno = h["job"].str.slice(1).astype("int64").to_numpy()
        # 1. drift: consecutive scheduled_at of one job must be exactly one interval apart
        order = np.lexsort((sched, jobno))
        js, ss = jobno[order], sched[order]
        same = js[1:] == js[:-1]
        if same.any():
            d = np.diff(ss)[same]
            out["scheduled_step_s"] = [round(float(d.min()), 6), round(float(d.max()), 6)]
        # 2. the jobs' own clock vs nbsched's started_at / scheduled_at (match run k of job j)
        ok = (h["outcome"].astype(str) == "success").to_numpy()
        st_job, id_job = snapshot(self.st), snapshot(self.ids)
        n = min(len(st_job), len(id_job))
        st_job, id_job = st_job[:n], id_job[:n]
        if ok.sum() == n:
            o1 = np.lexsort((started[ok], jobno[ok]))
            o2 = np.lexsort((st_job, id_job))
            if (jobno[ok][o1] == id_job[o2]).all():
                in_job = st_job[o2] - sched[ok][o1]
                call_gap = st_job[o2] - started[ok][o1]
                m = (st_job[o2] >= w0) & (st_job[o2] < w1)
                out["lateness_seen_by_job"] = pct(in_job[m])
                out["started_at_to_job_call_us_p50"] = float(np.median(call_gap[m]) * 1e6) if m.any() else None
        else:
            out["history_vs_job_runs"] = [int(ok.sum()), int(n)]
        return out

    @staticmethod
    def version():
        from importlib.metadata import version

        try:
            return f"nbsched {version('nbsched')}"
        except Exception:
            return "nbsched"


ADAPTERS: dict[str, type[Adapter]] = {a.key: a for a in (RawAsyncio, APScheduler3, Nbsched)}
ALIASES = {"raw": "asyncio", "aps": "apscheduler", "apscheduler3": "apscheduler", "nb": "nbsched"}


# --------------------------------------------------------------------------------------- scenarios
@dataclass
class Target:
    text: str
    check: Callable[[float, float | None], bool]  # (nbsched value, raw asyncio value) -> met?


@dataclass
class Metric:
    key: str  # key in the cell's result JSON
    label: str
    fmt: str = "{:.2f}"
    target: Target | None = None


@dataclass
class Scenario:
    name: str
    title: str  # may use {params}
    func: Callable
    full: dict
    quick: dict
    metrics: list[Metric]
    timeout: Callable[[dict], float]  # parent's wall-clock cap for one child (s)
    schedulers: tuple[str, ...] = ("asyncio", "apscheduler", "nbsched")

    def params(self, quick: bool, overrides: dict | None = None) -> dict:
        p = dict(self.quick if quick else self.full)
        for k, v in (overrides or {}).items():
            if k in p or k in ("warmup",):
                p[k] = v
        return p


SCENARIOS: dict[str, Scenario] = {}


def scenario(name, *, title, full, quick, metrics, timeout, schedulers=("asyncio", "apscheduler", "nbsched")):
    def deco(func):
        SCENARIOS[name] = Scenario(name, title, func, full, quick, metrics, timeout, tuple(schedulers))
        return func

    return deco


async def run_steady(ad: Adapter, ctx: Ctx, *, n: int, interval: float, window: float,
                     warmup: float | None = None, add_budget: float = 30.0, grace: float = 6.0,
                     cron: str | None = None) -> dict:
    """n jobs every `interval` with phases spread evenly over one interval (job i first fires at
    B + i/n * interval, whatever the scheduler's add speed); measure a `window` after a warm-up.
    With ``cron`` (an expression firing every `interval` on whole seconds) the n jobs are cron jobs
    that all share one phase.

    The window's edges sit half a phase step away from every intended fire time, so a scheduler that
    keeps up has exactly n * window / interval fires in it.
    """
    await ad.start()
    mon = LoopMonitor(asyncio.get_running_loop()).install()
    rss_base = maxrss_mb()
    gc.collect()
    a0 = time.time()
    prog: dict[str, Any] = {}

    def during_add() -> dict:
        done = prog.get("add_loop_s")
        return {"phase": "adding jobs" if done is None else "loop turns after adding (deferred work, due runs)",
                "add_loop_s": done, "add_s": done, "fires_so_far": len(ad.starts()), "rss_peak_mb": maxrss_mb()}

    ctx.watchdog.arm(a0 + add_budget, "livelock/timeout (setup)", during_add)
    c0, t0 = time.process_time(), time.perf_counter()
    if cron is None:
        base = a0 + interval + min(0.5, interval / 2)
        step = interval / n
        for i in range(n):
            ad.add(i, interval, first_at=base + i * step)
    else:  # all on the whole second: the window's edges sit half an interval from the fire times
        base = float(math.floor(a0) + 1)
        step = interval
        for i in range(n):
            ad.add_cron(i, cron)
    prog["add_loop_s"] = time.perf_counter() - t0
    await settle()
    add_s, add_cpu = time.perf_counter() - t0, time.process_time() - c0
    ready = max(base, time.time()) + (interval if warmup is None else warmup)
    w0 = base + step / 2 + math.ceil((ready - base) / interval) * interval
    w1 = w0 + window
    sampler = Sampler([w0, w1], extra=lambda: tuple(mon.total))
    sampler.start()

    def summarize(partial: bool = False) -> dict:
        sampler.join(timeout=2.0 if partial else 30.0)
        (s0, cpu0, _), (s1, cpu1, rss1) = sampler.samples
        st = ad.starts()
        expected = round(n * window / interval)  # each job has exactly window/interval fire times in it
        fires_cpu = int(((st >= s0) & (st < s1)).sum())  # the runs the sampled CPU time paid for
        cpu = cpu1 - cpu0
        res = {
            "n_jobs": n, "interval_s": interval, "window_s": window, "sample_lag_ms": [
                round((s0 - w0) * 1e3, 2), round((s1 - w1) * 1e3, 2)],
            "add_s": round(add_s, 4), "add_loop_s": round(prog["add_loop_s"], 4), "add_cpu_s": round(add_cpu, 4),
            "expected": expected, "fires_started_in_window": int(((st >= w0) & (st < w1)).sum()),
            "cpu_s": cpu, "cpu_pct_core": 100.0 * cpu / (s1 - s0),
            "cpu_ms_per_1000": (cpu * 1e3) / (fires_cpu / 1000.0) if fires_cpu else None,
            "rss_base_mb": rss_base, "rss_peak_mb": rss1,
            "block_ms": mon.max_ms(w0, w1), "os_wake_late_max_ms": window_max(mon.late, w0, w1),
            **ctx.gc.summary(w0, w1),
        }
        (b0, i0), (b1, i1) = sampler.extras
        res["loop_busy_ms_per_1000"] = (b1 - b0) * 1e3 / (fires_cpu / 1000.0) if fires_cpu else None
        res["loop_iterations_per_s"] = (i1 - i0) / (s1 - s0)
        runs = ad.runs(partial=partial)
        if runs is None:  # no intended times (partial nbsched): count runs that started in the window
            res["fires"] = res["fires_started_in_window"]
            res["fires_basis"] = "started in window"
        else:
            intended, started = runs
            m = (intended >= w0) & (intended < w1) & (started < w1 + tail)
            res["fires"] = int(m.sum())
            res["fires_basis"] = f"intended in window, started before W1 + {tail:g} s"
            res["lateness"] = pct(started[m] - intended[m])
            res["lat_p50_ms"] = res["lateness"].get("p50_ms")
            res["lat_p99_ms"] = res["lateness"].get("p99_ms")
        res["achieved_pct"] = 100.0 * res["fires"] / expected
        return res

    tail = interval  # a run intended in the window counts if it started less than this after W1
    ctx.watchdog.arm(w1 + tail + grace, "livelock", lambda: summarize(partial=True))
    await asyncio.sleep(max(0.0, w1 + tail - time.time()) + 0.005)
    ctx.watchdog.arm(time.time() + 120, "timeout (post-processing)")
    res = summarize()
    res.update(ad.extra(w0, w1))
    await ad.stop()
    res["rss_end_mb"] = maxrss_mb()
    return res


LAT_METRICS = lambda p50t=None, p99t=None: [  # noqa: E731
    Metric("lat_p50_ms", "lateness p50 (ms)", "{:.2f}", p50t),
    Metric("lat_p99_ms", "lateness p99 (ms)", "{:.2f}", p99t),
]


@scenario(
    "a_10x100ms",
    title="(a) {n} jobs every {interval} s, {window} s",
    full=dict(n=10, interval=0.1, window=5.0, warmup=0.3),
    quick=dict(n=10, interval=0.1, window=2.0, warmup=0.3),
    metrics=[
        *LAT_METRICS(Target("<= 1 ms", lambda v, r: v <= 1.0), Target("<= 3 ms", lambda v, r: v <= 3.0)),
        Metric("achieved_pct", "fires achieved (%)", "{:.1f}"),
    ],
    timeout=lambda p: p["window"] + 30,
)
async def sc_small(ad, ctx, **p):
    return await run_steady(ad, ctx, **p)


#: Rounds of the side-by-side measurement (:func:`run_paired`): odd, so that its median is one pair.
PAIRED_ROUNDS = 5
#: The scenario measured side by side, and the figure compared.
PAIRED_SCENARIO, PAIRED_KEY = "b_10k", "cpu_ms_per_1000"


def _within(ratio: float) -> Target:
    """At most ``ratio`` times raw asyncio's figure in the same run."""
    return Target(f"<= {ratio:.1f}x raw asyncio", lambda v, r: r is not None and v <= ratio * r)


#: The targets of the performance issue ("a kernel that never stutters"), checked in every run: the
#: CPU and lateness at 10,000 jobs a second against raw asyncio's, no loop block over 5 ms at any
#: size, peak memory at 100,000 jobs; (b) 100,000 also has this benchmark's own floor (keeping up).
_BLOCK_5MS = Target("<= 5 ms", lambda v, r: v <= 5.0)


def _steady_metrics(big: bool) -> list[Metric]:
    ach_t = Target(">= 99%", lambda v, r: v >= 99.0) if big else None
    p99_t = Target("<= 20 ms", lambda v, r: v <= 20.0) if big else _within(1.0)
    return [
        Metric("achieved_pct", "fires achieved / expected (%)", "{:.1f}", ach_t),
        Metric("cpu_ms_per_1000", "CPU ms per 1,000 fires", "{:.2f}", None if big else _within(1.0)),
        Metric("loop_busy_ms_per_1000", "… of which loop busy (ms per 1,000 fires)", "{:.2f}"),
        *([] if big else [Metric("paired_cpu_ms_per_1000", f"CPU ms per 1,000 fires side by side: the median of "
                                 f"{PAIRED_ROUNDS} pairs run at the same time", "{:.2f}", _within(1.0))]),
        Metric("cpu_pct_core", "CPU (% of one core)", "{:.1f}"),
        *LAT_METRICS(None, p99_t),
        Metric("block_ms", "longest loop block (ms)", "{:.1f}", _BLOCK_5MS),
        Metric("gc_max_ms", "… longest GC pause (ms)", "{:.1f}"),
        Metric("rss_peak_mb", "peak RSS (MB)", "{:.0f}", _within(1.5) if big else None),
        Metric("add_s", "time to add the jobs (s)", "{:.2f}"),
    ]


@scenario(
    "b_10k",
    title="(b) {n:,} jobs every {interval} s, {window} s",
    full=dict(n=10_000, interval=1.0, window=10.0),
    quick=dict(n=2_000, interval=1.0, window=3.0),
    metrics=_steady_metrics(False),
    timeout=lambda p: p["window"] + 40,
)
async def sc_10k(ad, ctx, **p):
    return await run_steady(ad, ctx, **p)


@scenario(
    "b_100k",
    title="(b) {n:,} jobs every {interval} s, {window} s",
    full=dict(n=100_000, interval=1.0, window=8.0, add_budget=25.0, grace=5.0),
    quick=dict(n=20_000, interval=1.0, window=3.0, add_budget=15.0, grace=4.0),
    metrics=_steady_metrics(True),
    timeout=lambda p: p["window"] + 32,
    # APScheduler 3.11 livelocks at this size (in every run so far it was cut off while adding the jobs
    # or right after): left out so that `make bench` stays under 10 minutes.  bench_kernel.py still
    # runs it at 100,000 jobs (cut off at its cap); `bench.py --one apscheduler b_100k` runs this cell.
    schedulers=("asyncio", "nbsched"),
)
async def sc_100k(ad, ctx, **p):
    return await run_steady(ad, ctx, **p)


@scenario(
    "e_cron_1k",
    title="(e) {n:,} cron jobs every second, all on the second ('cron {cron}'), {window} s",
    full=dict(n=1_000, interval=1.0, window=10.0, cron="* * * * * *"),
    quick=dict(n=1_000, interval=1.0, window=3.0, cron="* * * * * *"),
    metrics=[
        Metric("cpu_us_per_fire", "CPU per fire (us)", "{:.1f}",
               Target("<= 1.0x raw asyncio", lambda v, r: r is not None and v <= r)),
        *LAT_METRICS(None, Target("<= 5 ms", lambda v, r: v <= 5.0)),
        Metric("block_ms", "longest loop block (ms)", "{:.1f}"),
        Metric("achieved_pct", "fires achieved (%)", "{:.1f}"),
    ],
    timeout=lambda p: p["window"] + 40,
)
async def sc_cron(ad, ctx, **p):
    res = await run_steady(ad, ctx, **p)
    if res.get("cpu_ms_per_1000") is not None:
        res["cpu_us_per_fire"] = res["cpu_ms_per_1000"]
    return res


@scenario(
    "c_add_remove",
    title="(c) add / remove {n:,} jobs",
    full=dict(n=100_000, interval=60.0),
    quick=dict(n=20_000, interval=60.0),
    metrics=[
        Metric("add_s", "add: total (s)", "{:.3f}", _within(1.0)),
        Metric("add_us", "add: per job (us)", "{:.1f}"),
        Metric("add_cpu_s", "add: CPU time (s)", "{:.3f}"),
        Metric("remove_s", "remove: total (s)", "{:.3f}", _within(1.5)),
        Metric("remove_us", "remove: per job (us)", "{:.1f}"),
        Metric("rss_peak_mb", "peak RSS with all jobs added (MB)", "{:.0f}"),
    ],
    timeout=lambda p: 60,
)
async def sc_add_remove(ad, ctx, *, n, interval):
    """Time to add n jobs (due in `interval`, so none fires) and to remove them, incl. deferred loop work."""
    await ad.start()
    rss_base = maxrss_mb()
    gc.collect()
    ctx.watchdog.arm(time.time() + 50, "timeout")
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        ad.add(i, interval)
    await settle()
    c1, t1 = time.process_time(), time.perf_counter()
    rss_added = maxrss_mb()
    for i in range(n):
        ad.remove(i)
    await settle()
    c2, t2 = time.process_time(), time.perf_counter()
    fired = len(ad.starts())
    await ad.stop()
    return {
        "n_jobs": n, "add_s": t1 - t0, "add_us": (t1 - t0) / n * 1e6, "add_cpu_s": c1 - c0,
        "remove_s": t2 - t1, "remove_us": (t2 - t1) / n * 1e6, "remove_cpu_s": c2 - c1,
        "rss_base_mb": rss_base, "rss_peak_mb": rss_added, "fired_during": fired,
    }


@scenario(
    "d_burst",
    title="(d) burst: {n:,} same-phase jobs every {interval} s, {bursts} bursts",
    full=dict(n=10_000, interval=1.0, bursts=2, lead=2.0),
    quick=dict(n=10_000, interval=1.0, bursts=1, lead=2.0),
    metrics=[
        Metric("block_ms", "longest loop block: busiest single iteration (ms)", "{:.1f}", _BLOCK_5MS),
        Metric("quiet_block_ms", "same, quiet loop before the burst (ms)", "{:.2f}"),
        Metric("sleep_gap_ms", "sleep(1 ms) probe: longest wake-up gap (ms)", "{:.1f}"),
        Metric("quiet_sleep_gap_ms", "same, quiet loop before the burst (ms)", "{:.2f}"),
        Metric("gc_max_ms", "longest GC pause during the bursts (ms)", "{:.1f}"),
        Metric("drain_ms", "burst start -> last job started (ms)", "{:.1f}", _within(1.2)),
        Metric("lat_p99_ms", "lateness p99 of burst fires (ms)", "{:.1f}"),
        Metric("achieved_pct", "burst fires achieved (%)", "{:.1f}"),
    ],
    timeout=lambda p: p["lead"] + p["bursts"] * p["interval"] + 30,
)
async def sc_burst(ad, ctx, *, n, interval, bursts, lead):
    loop = asyncio.get_running_loop()
    await ad.start()
    sleepg = array.array("d")  # (wake time, gap since previous wake) pairs
    running = True
    now = time.time

    async def sleeper():
        last = now()
        while running:
            await asyncio.sleep(0.001)
            t = now()
            sleepg.append(t)
            sleepg.append(t - last)
            last = t

    T = time.time() + lead
    ctx.watchdog.arm(T + bursts * interval + 20, "livelock/timeout")
    for i in range(n):
        ad.add(i, interval, first_at=T)
    await settle()
    setup_done = time.time()
    mon = LoopMonitor(loop).install()
    probe = asyncio.ensure_future(sleeper())
    end = T + (bursts - 1) * interval + 0.9 * interval
    await asyncio.sleep(max(0.0, end - time.time()))
    running = False
    await probe
    mon.uninstall()

    q0, q1 = setup_done + 0.1, T - 0.01
    st = ad.starts()
    drain = []
    for k in range(bursts):
        tk = T + k * interval
        sel = st[(st >= tk - 0.001) & (st < tk + 0.9 * interval)]
        drain.append(float((sel.max() - tk) * 1e3) if len(sel) else None)
    fires = int(((st >= T - 0.001) & (st < end)).sum())
    lat = ad.lateness(T - 0.001, end)
    res = {
        "n_jobs": n, "bursts": bursts, "setup_s": setup_done - (T - lead), "setup_late": setup_done > T - 0.2,
        "block_ms": mon.max_ms(T - 0.01, end), "sleep_gap_ms": window_max(sleepg, T - 0.01, end),
        "quiet_block_ms": mon.max_ms(q0, q1), "os_wake_late_max_ms": window_max(mon.late, T - 0.01, end), "quiet_sleep_gap_ms": window_max(sleepg, q0, q1),
        "drain_ms": max((d for d in drain if d is not None), default=None), "drain_per_burst_ms": drain,
        "fires": fires, "expected": n * bursts, "achieved_pct": 100.0 * fires / (n * bursts),
        "rss_peak_mb": maxrss_mb(), **ctx.gc.summary(T - 0.01, end),
    }
    if lat is not None:
        res["lateness"] = pct(lat)
        res["lat_p50_ms"], res["lat_p99_ms"] = res["lateness"].get("p50_ms"), res["lateness"].get("p99_ms")
    res.update(ad.extra(T - 0.001, end))
    await ad.stop()
    return res


# ------------------------------------------------------------------------------------------- child
def parse_overrides(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        k, _, v = item.partition("=")
        out[k.strip()] = json.loads(v)
    return out


def child(sched: str, scen_name: str, quick: bool, overrides: dict | None = None) -> int:
    sc = SCENARIOS[scen_name]
    params = sc.params(quick, overrides)
    base = {"sched": sched, "scenario": scen_name, "params": params, "quick": quick}
    wd = Watchdog(base)
    wd.start()
    ctx = Ctx(watchdog=wd, quick=quick, gc=GcMonitor().install())
    ad = ADAPTERS[sched]()
    t0 = time.perf_counter()
    res = dict(base)
    try:
        res["version"] = ad.version()
        res.update(asyncio.run(sc.func(ad, ctx, **params)))
        res["status"] = "ok"
    except Exception as exc:
        import traceback

        traceback.print_exc()
        res["status"] = "error"
        res["error"] = f"{type(exc).__name__}: {exc}"
    wd.disarm()
    res["child_wall_s"] = time.perf_counter() - t0
    emit(res)
    sys.stdout.flush()
    os._exit(0)  # do not wait for a scheduler's leftover threads


# ------------------------------------------------------------------------------------------ parent
LOG_DIR = Path(tempfile.gettempdir()) / "nbsched-bench"


#: The children's environment: the measuring harness's own buffers must not block the loop (see the
#: module docstring); a value set by the caller is kept.
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", **os.environ}


def run_cell(sched: str, sc: Scenario, quick: bool, sets: list[str] | None = None, tag: str = "") -> dict:
    LOG_DIR.mkdir(exist_ok=True)
    log = LOG_DIR / f"{sc.name}.{sched}{'.' + tag if tag else ''}.stderr"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", sched, sc.name] + (["--quick"] if quick else [])
    for item in sets or []:
        cmd += ["--set", item]
    cap = sc.timeout(sc.params(quick, parse_overrides(sets)))
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0 = machine_busy_s()
    t0 = time.perf_counter()
    with open(log, "w") as err:
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, timeout=cap, text=True, cwd=str(REPO),
                                  env=CHILD_ENV)
            out, rc = proc.stdout, proc.returncode
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            rc = None
    res = None
    for line in out.splitlines():
        if line.startswith(RESULT_TAG):
            res = json.loads(line[len(RESULT_TAG):])
    if res is None:
        res = {"sched": sched, "scenario": sc.name,
               "status": "timeout" if rc is None else "error",
               "error": f"killed after {cap:.0f} s" if rc is None else f"exit code {rc}, no result"}
    res["cell_wall_s"] = wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    if busy0 is not None:
        # CPU used on this machine by anything other than this cell's child, as % of one core
        res["other_load_pct_core"] = round(100.0 * max(0.0, machine_busy_s() - busy0 - child_cpu) / wall, 1)
    res["stderr_log"] = str(log)
    try:  # stream the log: APScheduler can write hundreds of thousands of warnings
        misses = maxinst = 0
        tail: list[str] = []
        with open(log, errors="replace") as fh:
            for line in fh:
                if "was missed by" in line:
                    misses += 1
                elif "maximum number of running instances reached" in line:
                    maxinst += 1
                tail = (tail + [line.rstrip()])[-6:]
        if misses or maxinst:
            res["aps_missed_warnings"], res["aps_max_instances_warnings"] = misses, maxinst
        if res.get("status") == "error":
            res["stderr_tail"] = tail
    except OSError:
        pass
    return res


def run_paired(quick: bool, sets: list[str] | None) -> list[tuple[float | None, float | None]]:
    """The CPU per fire of raw asyncio and nbsched at 10,000 jobs a second, measured with both children
    running *at the same time*, :data:`PAIRED_ROUNDS` rounds: (raw, nbsched) per round.

    One after the other, the two figures of this cell moved by 10-30% between runs on this VM (the
    host's other work comes and goes), more than the difference being measured; side by side both
    children see the same machine, and each uses about a tenth of one of the two cores, so they
    hardly compete.  The sequential cells stay the table's main figures; this is the steadier ratio.
    """
    from concurrent.futures import ThreadPoolExecutor

    sc = SCENARIOS[PAIRED_SCENARIO]
    pairs = []
    with ThreadPoolExecutor(2) as pool:
        for k in range(1, PAIRED_ROUNDS + 1):
            print(f"[pair {k}/{PAIRED_ROUNDS}] {sc.name} asyncio + nbsched side by side ...", end=" ",
                  file=sys.stderr, flush=True)
            raw, nb = pool.map(lambda sched: run_cell(sched, sc, quick, sets, tag=f"pair{k}"), ("asyncio", "nbsched"))
            pairs.append(tuple(r.get(PAIRED_KEY) if r.get("status") == "ok" else None for r in (raw, nb)))
            print(" / ".join("-" if v is None else f"{v:.2f}" for v in pairs[-1]), file=sys.stderr, flush=True)
    return pairs


def paired_summary(pairs: list[tuple[float | None, float | None]]) -> tuple[float, float] | None:
    """(raw, nbsched) of the median pair by ratio, or None if no pair has both figures."""
    whole = sorted((pair for pair in pairs if pair[0] and pair[1] is not None), key=lambda pair: pair[1] / pair[0])
    if not whole:
        return None
    return whole[(len(whole) - 1) // 2]  # a real pair, not an average (the lower one of an even count)


def machine_busy_s() -> float | None:
    """Non-idle CPU seconds of the whole machine so far (all cores), from /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
        tick = os.sysconf("SC_CLK_TCK")
        return (sum(f[:8]) - f[3] - f[4]) / tick  # minus idle and iowait
    except (OSError, ValueError, IndexError):
        return None


COLUMNS = ["asyncio", "apscheduler", "nbsched"]


def cell_text(res: dict | None, m: Metric) -> str:
    if res is None:
        return "—"
    status = res.get("status")
    v = res.get(m.key)
    if status == "error":
        return "error"
    if v is None:
        return "livelock/timeout" if status != "ok" else "—"
    s = m.fmt.format(v)
    return s if status == "ok" else f"{s} †"


def build_table(results: dict, scen_names: list[str], quick: bool, overrides: dict | None = None) -> tuple[str, list[str]]:
    lines = [
        "| metric | raw asyncio | APScheduler 3.11 | nbsched | nbsched / raw asyncio | nbsched target | PASS/MISS |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    verdicts = []
    for name in scen_names:
        sc = SCENARIOS[name]
        title = sc.title.format(**sc.params(quick, overrides))
        lines.append(f"| **{title}** | | | | | | |")
        for m in sc.metrics:
            cells = [results.get((name, c)) for c in COLUMNS]
            texts = [cell_text(r, m) for r in cells]
            raw, nb = cells[0], cells[2]
            rv = raw.get(m.key) if raw and raw.get("status") == "ok" else None
            nv = nb.get(m.key) if nb and nb.get("status") == "ok" else None
            ratio = f"{nv / rv:.2f}x" if isinstance(nv, (int, float)) and isinstance(rv, (int, float)) and rv else ""
            tgt, verdict = "", ""
            if m.target is not None:
                tgt = m.target.text
                if nb is None:
                    verdict = "—"
                elif nv is None:
                    verdict = "MISS"
                else:
                    ok = m.target.check(nv, rv)
                    verdict = ("PASS" if ok else "MISS") + ("*" if quick else "")
                verdicts.append(f"{title}: {m.label} {tgt} -> {verdict}")
            lines.append(f"| {m.label} | {' | '.join(texts)} | {ratio} | {tgt} | {verdict} |")
    return "\n".join(lines), verdicts


def machine_info() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}"


def versions() -> str:
    from importlib.metadata import version

    out = []
    for pkg in ("apscheduler", "nbsched", "pandas"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except Exception:
            out.append(f"{pkg} (not installed)")
    return ", ".join(out)


def parent(args) -> int:
    scheds = [ALIASES.get(s.strip(), s.strip()) for s in args.only.split(",")] if args.only else list(COLUMNS)
    unknown = [s for s in scheds if s not in ADAPTERS]
    if unknown:
        sys.exit(f"unknown scheduler(s) {unknown}: choose from {sorted(ADAPTERS)}")
    scen_names = [s.strip() for s in args.scenarios.split(",")] if args.scenarios else list(SCENARIOS)
    bad = [s for s in scen_names if s not in SCENARIOS]
    if bad:
        sys.exit(f"unknown scenario(s) {bad}: choose from {list(SCENARIOS)}")
    cells = [(n, s) for n in scen_names for s in COLUMNS if s in scheds and s in SCENARIOS[n].schedulers]
    results: dict[tuple[str, str], dict] = {}
    try:
        load0 = open("/proc/loadavg").read().split()[0]
    except OSError:
        load0 = "?"
    if load0 != "?" and float(load0) > 0.8 * (os.cpu_count() or 1) / 2:
        print(f"warning: load average {load0} - other processes compete for the CPU; numbers will be noisy",
              file=sys.stderr)
    t_all = time.perf_counter()
    for k, (name, sched) in enumerate(cells, 1):
        print(f"[{k}/{len(cells)}] {name:14s} {sched:12s} ...", end=" ", file=sys.stderr, flush=True)
        res = run_cell(sched, SCENARIOS[name], args.quick, args.set)
        results[(name, sched)] = res
        print(f"{res['status']:8s} {res['cell_wall_s']:6.1f} s", file=sys.stderr, flush=True)
    pairs = []
    if PAIRED_SCENARIO in scen_names and {"asyncio", "nbsched"} <= set(scheds):
        pairs = run_paired(args.quick, args.set)
        summary = paired_summary(pairs)
        if summary is not None:
            for sched, value in zip(("asyncio", "nbsched"), summary):
                cell = results.get((PAIRED_SCENARIO, sched))
                if cell is not None:
                    cell["paired_" + PAIRED_KEY] = value
                    cell["paired_rounds"] = [list(pair) for pair in pairs]  # (raw, nbsched) per round
    total = time.perf_counter() - t_all
    table, verdicts = build_table(results, scen_names, args.quick, parse_overrides(args.set))

    notes = []
    for (name, sched), r in results.items():
        if r.get("status") != "ok":
            notes.append(f"- {name} / {sched}: **{r.get('status')}** {r.get('error', '')} (log: {r.get('stderr_log')})")
        if r.get("aps_missed_warnings") or r.get("aps_max_instances_warnings"):
            notes.append(f"- {name} / {sched}: APScheduler logged {r.get('aps_missed_warnings', 0):,} "
                         f"'was missed by' and {r.get('aps_max_instances_warnings', 0):,} 'max instances' warnings")
        if (r.get("other_load_pct_core") or 0) > 15:
            notes.append(f"- {name} / {sched}: other processes used {r['other_load_pct_core']:.0f}% of a core "
                         "during this cell (numbers may be disturbed)")
        if (r.get("os_wake_late_max_ms") or 0) > 10:
            notes.append(f"- {name} / {sched}: the OS woke the loop up to {r['os_wake_late_max_ms']:.0f} ms late "
                         "in the window (process not scheduled: lateness from outside the scheduler)")
        if r.get("setup_late"):
            notes.append(f"- {name} / {sched}: adding the jobs finished less than 0.2 s before the burst")
    if pairs:
        notes.append(f"- {PAIRED_SCENARIO} side by side (raw asyncio and nbsched children at the same time), CPU ms "
                     "per 1,000 fires raw / nbsched (ratio) per round: " + "; ".join(
                         f"{raw:.2f} / {nb:.2f} ({nb / raw:.2f}x)" if raw and nb is not None else "no figure"
                         for raw, nb in pairs))
    for (name, sched), r in results.items():
        if sched == "nbsched" and r.get("status") == "ok":
            chk = {k: r[k] for k in ("history_rows", "history_build_s", "outcomes", "scheduled_step_s",
                                      "lateness_seen_by_job", "started_at_to_job_call_us_p50",
                                      "history_vs_job_runs") if k in r}
            notes.append(f"- {name} / nbsched cross-checks: `{json.dumps(chk, default=str)}`")

    stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load = f" · load average at start {load0} · children with MALLOC_MMAP_THRESHOLD_={CHILD_ENV['MALLOC_MMAP_THRESHOLD_']}"
    header = (f"# nbsched benchmark results\n\n{stamp} · {machine_info()} · {versions()} · "
              f"{'--quick' if args.quick else 'full'} run, {total:.0f} s{load}"
              + (f" · only {','.join(scheds)}" if args.only else "") + "\n")
    legend = (
        "\nEach cell ran in a fresh child process. Lateness = actual start - intended fire time. "
        "CPU = process CPU time (all threads, idle polling included) over the measurement window. "
        "Peak RSS = VmHWM at the end of the window (child interpreter + imports included; nbsched "
        "imports pandas lazily, only when history() is called, i.e. after the window). "
        "† = partial numbers from a child that overran its deadline (livelock); "
        "'livelock/timeout' = no number (child killed at its wall-clock cap)."
        + (" * = evaluated at --quick scale, not at the target's scale." if args.quick else "") + "\n"
    )
    md = header + "\n" + table + "\n" + legend
    if notes:
        md += "\nNotes:\n\n" + "\n".join(notes) + "\n"
    md += ("\n<details><summary>raw results (JSON per cell)</summary>\n\n```json\n"
           + json.dumps({f"{n}/{s}": r for (n, s), r in results.items()}, indent=1, default=str)
           + "\n```\n</details>\n")
    print("\n" + header + "\n" + table + "\n" + legend)
    if notes:
        print("Notes:\n" + "\n".join(notes))
    partial = args.quick or args.only or args.scenarios or args.set
    # a quick or filtered run must not overwrite the full run's table
    out = Path(args.out) if args.out else HERE / ("results-partial.md" if partial else "results.md")
    out.write_text(md)
    print(f"\nwrote {out} ({total:.0f} s)", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller scales and shorter windows")
    ap.add_argument("--only", help="comma-separated schedulers: " + ",".join(ADAPTERS))
    ap.add_argument("--scenarios", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    ap.add_argument("--out", help="where to write the Markdown table (default bench/results.md; "
                    "bench/results-partial.md for --quick/--only/--scenarios/--set runs)")
    ap.add_argument("--set", action="append", metavar="KEY=JSON",
                    help="override a scenario parameter, e.g. --set n=50000 --set window=5 (exploration only)")
    ap.add_argument("--one", nargs=2, metavar=("SCHED", "SCENARIO"), help="run one cell in this process, print JSON")
    args = ap.parse_args(argv)
    if args.one:
        sched, name = ALIASES.get(args.one[0], args.one[0]), args.one[1]
        if sched not in ADAPTERS or name not in SCENARIOS:
            sys.exit(f"--one: schedulers {sorted(ADAPTERS)}, scenarios {list(SCENARIOS)}")
        return child(sched, name, args.quick, parse_overrides(args.set))
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
