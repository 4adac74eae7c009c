"""The scheduler: one timer on the asyncio loop, a timing wheel of due jobs, policies, history.

Design notes (why it looks like this):

* **One timer.**  Jobs wait in 1 ms buckets (``dict[int, list]``) whose keys sit in a heap; a single
  loop timer is armed for the earliest bucket.  Adding, removing (lazy: a generation counter makes
  old entries stale) and firing cost O(1) amortised per job, plus O(log buckets) for a new bucket.
* **Slices.**  When thousands of jobs fall due at once they are worked through in slices of
  :data:`SLICE_SECONDS` and the loop is given back between slices, so a kernel's cells, widget
  clicks and comms are never held up by bookkeeping.
* **Plain functions run inline** on the ``loop`` executor (no Task per fire); coroutines, retries,
  timeouts and other executors get a Task.
* **Nothing escapes.**  Every outcome - success, error, timeout, cancelled, interrupted, and every
  missed or skipped fire time - becomes a history row and (when someone listens) an event.
* **Time is injected**: all time comes from ``self.clock``; see :mod:`nbsched.clock`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import inspect
import logging
import math
import os
import random
import threading
import traceback as _tb
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Callable, Iterable

from .. import events as ev
from ..clock import Clock, SystemClock, perf_counter, resolve_zone
from ..errors import JobLookupError, NbschedError, NoEventLoopError, PolicyError, SchedulerShutdownError, TriggerError
from ..executors import Executor, default_executors
from ..history import ErrorInfo, Outcome, RunLog, RunRecord, history_frame
from ..job import Job, JobPolicy
from ..triggers import Trigger, parse_trigger

__all__ = ["Scheduler", "RunHandle", "SchedulerStatistics", "get_scheduler", "MaxInstancesReachedError"]

log = logging.getLogger("nbsched")

#: How long one slice of due-job processing may hold the loop before yielding.
SLICE_SECONDS = 0.002
_CHECK_EVERY = 16  # entries between budget checks
#: How early the loop timer is armed before a fire time (then the scheduler spins to the instant).
EARLY_WAKE = 0.001
#: The share of one core that spinning to exact fire times may use (tokens refill at this rate).
SPIN_BUDGET = 0.03

SUCCESS, ERROR, MISSED, SKIPPED = Outcome.SUCCESS, Outcome.ERROR, Outcome.MISSED, Outcome.SKIPPED
TIMEOUT, CANCELLED, INTERRUPTED = Outcome.TIMEOUT, Outcome.CANCELLED, Outcome.INTERRUPTED
# History rows hold the outcome as its plain string: a row of only numbers, strings and None is
# untracked by the garbage collector (an enum member would keep millions of rows tracked, and full
# collections would then pause the loop for hundreds of milliseconds).
_SUCCESS_S, _MISSED_S, _SKIPPED_S = SUCCESS.value, MISSED.value, SKIPPED.value


class MaxInstancesReachedError(NbschedError):
    """``run_now`` found ``max_instances`` runs of the job already going; the run was skipped."""


@dataclass(frozen=True)
class SchedulerStatistics:
    jobs: int
    running: int
    paused: bool
    fires: int
    missed: int
    skipped: int
    errors: int
    due_backlog: int
    next_fire: datetime | None


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _format_user_traceback(exc: BaseException) -> str:
    """The traceback from the job's own code on (nbsched's calling frames are noise to the user)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return "".join(_tb.format_exception(type(exc), exc, tb))


def _check_resources(policy: JobPolicy, executor: Any) -> None:
    if policy.resources and not getattr(executor, "supports_resources", False):
        raise PolicyError(
            f"resources={policy.resource_dict()!r} needs an executor that places work on workers (e.g. 'dask'), "
            f"but the job runs on {policy.executor!r}: register one with sched.add_executor('dask', "
            "nbsched.DaskExecutor(client)) and pass executor='dask'"
        )


def _key(ts: float) -> int:
    return math.ceil(ts * 1000.0 - 1e-6)


class RunHandle:
    """A run started by :meth:`Scheduler.run_now`.  ``await handle`` returns the job's value or
    re-raises its exception (``TimeoutError`` for a timeout, :class:`MaxInstancesReachedError` when
    the run was skipped)."""

    __slots__ = ("job", "run_id", "_scheduler")

    def __init__(self, scheduler: "Scheduler", job: str, run_id: int):
        self._scheduler = scheduler
        self.job = job
        self.run_id = run_id

    def __await__(self):
        return self._scheduler._run_future(self.run_id).__await__()

    def __repr__(self) -> str:
        return f"<RunHandle job={self.job!r} run_id={self.run_id}>"


class Scheduler:
    """Schedules jobs on the running asyncio event loop (in Jupyter: the kernel's loop).

    ``Scheduler(clock=None, tz=None, executors=None, **defaults)`` - ``clock`` defaults to the system
    clock (tests pass :class:`nbsched.testing.FakeClock`), ``tz`` is the default zone for cron and
    ``at`` triggers (default: local), ``defaults`` are :class:`~nbsched.job.JobPolicy` options every job
    starts from (``retries=2``, ``coalesce="all"``, ...).

    The scheduler binds to the event loop running when it is first used; from other threads (an
    ipykernel subshell, a worker) calls are handed to that loop thread-safely.
    """

    def __init__(self, *, clock: Clock | None = None, tz: str | tzinfo | None = None,
                 executors: dict[str, Executor] | None = None, random_seed: int | None = None,
                 loop: asyncio.AbstractEventLoop | None = None, store: Any = None, **defaults: Any):
        self.clock: Clock = clock or SystemClock()
        self.tz: tzinfo = resolve_zone(tz)
        self.defaults = JobPolicy.build(**defaults)
        self._executors: dict[str, Any] = default_executors()
        if executors:
            self._executors.update(executors)
        self._random = random.Random(random_seed)
        self._jobs: dict[str, Job] = {}
        self._trigger_cache: dict[tuple, Trigger] = {}
        self._logs: dict[str, RunLog] = {}  # by job name; outlives the job (history carries on)
        self._buckets: dict[int, list] = {}
        self._keys: list[int] = []
        self._timer = None
        self._timer_key: int | None = None
        self._spin_tokens = 0.0
        self._spin_refilled = self.clock.time()
        self._due: list[tuple[int, list]] = []  # (bucket key, jobs) waiting to be processed
        self._due_chunk = 0
        self._due_pos = 0
        self._draining = False
        self._paused = False
        self._shutdown = False
        self._started = False
        self._run_ids = 0
        self._tasks: set[asyncio.Task] = set()
        self._run_futures: dict[int, asyncio.Future] = {}
        self._finished_runs: dict[int, tuple] = {}  # recent run outcomes, for handles awaited late
        self._skipped_runs: set[int] = set()
        self._interrupted: set[asyncio.Task] = set()
        self._idle_waiters: list[asyncio.Future] = []
        self._history_cache = None
        self._version = 0  # bumps on every recorded row or job change (cheap change detection)
        self._fires = self._missed = self._skipped = self._errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.events = ev.EventBus(spawn=self._spawn_listener)
        self._time = self.clock.time
        self._store: Any = None
        if store is not None:
            self.attach_store(store)
        if loop is not None:
            self._bind(loop, None)
        else:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not None:
                self._bind(running, threading.get_ident())

    # ======================================================================== loop binding
    def _bind(self, loop: asyncio.AbstractEventLoop, thread: int | None) -> None:
        self._loop = loop
        self._loop_thread = thread

    def _loop_or_raise(self, what: str) -> asyncio.AbstractEventLoop:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self._loop
        if loop is not None and loop.is_closed():
            loop = None  # e.g. a second asyncio.run() in a script: move to the new loop
            self._loop = None
            if running is not None:
                self._bind(running, threading.get_ident())
                self._rearm_all()
                return running
        if loop is None:
            if running is None:
                raise NoEventLoopError(
                    f"{what} needs a running asyncio event loop and there is none in this thread. "
                    "In Jupyter, call it from a cell (the kernel's loop is running there); in a script, "
                    "put your code in 'async def main(): ...' and run it with asyncio.run(main())."
                )
            self._bind(running, threading.get_ident())
            return running
        if self._loop_thread is None and running is loop:
            self._loop_thread = threading.get_ident()
        return loop

    def _in_loop_thread(self) -> bool:
        return self._loop_thread is None or self._loop_thread == threading.get_ident()

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the scheduler's loop: directly when we are on it, else hand it over and wait."""
        if self._shutdown:
            raise SchedulerShutdownError(
                f"{what}: this scheduler was shut down; create a new Scheduler() or call nbsched.get_scheduler()"
            )
        loop = self._loop
        if loop is not None and not loop.is_closed() and self._loop_thread is not None \
                and self._loop_thread != threading.get_ident():
            result: concurrent.futures.Future = concurrent.futures.Future()

            def run() -> None:
                try:
                    result.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # handed back to the calling thread
                    result.set_exception(exc)

            loop.call_soon_threadsafe(run)
            return result.result()
        self._loop_or_raise(what)
        return fn(*args, **kwargs)

    # ======================================================================== public API
    @property
    def jobs(self) -> list[Job]:
        """All jobs (including paused and finished ones), in the order they were added."""
        return list(self._jobs.values())

    def get(self, name: str) -> Job:
        """The job called ``name``; :class:`~nbsched.errors.JobLookupError` lists the names that exist."""
        job = self._jobs.get(name)
        if job is None:
            raise JobLookupError(self._unknown(name))
        return job

    def _unknown(self, name: str) -> str:
        names = list(self._jobs)
        if not names:
            return f"no job named {name!r}: there are no jobs yet (add one with sched.add(func, 'every 5m'))"
        shown = ", ".join(map(repr, names[:20])) + (" ..." if len(names) > 20 else "")
        return f"no job named {name!r}: the jobs are {shown}"

    def __contains__(self, name: str) -> bool:
        return name in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, func: Callable[[], Any], trigger: "str | Trigger", *, name: str | None = None,
            tz: str | tzinfo | None = None, now: bool = False, paused: bool = False,
            start: datetime | None = None, end: datetime | None = None,
            meta: dict[str, Any] | None = None, persist: bool | None = None, **options: Any) -> Job:
        """Schedule ``func`` (a plain or ``async`` function taking no arguments) on ``trigger``.

        ``trigger`` is a spec string (``"every 5m"``, ``"cron 0 9 * * mon-fri"``, ``"at ..."``,
        ``"in 10m"``, ``"daily at 09:30"``) or a :class:`~nbsched.triggers.Trigger`.  ``name`` defaults
        to the function's name; adding a job with an existing name **replaces** it and its history and
        results carry on.  ``now=True`` also runs it at once.  Other keywords are policy options (see
        :class:`~nbsched.job.JobPolicy`): ``retries``, ``timeout``, ``max_instances``, ``coalesce``,
        ``misfire_grace``, ``jitter``, ``max_runs``, ``until``, ``executor``, ``retry_delay``,
        ``backoff``, ``max_retry_delay``, ``history_rows``, ``history_age``, ``results_rows``, ``results_age``.
        ``persist`` (default: whether a store is attached) saves the job, its runs and results to the store.

        Everything is validated before anything changes: a bad spec or option raises and adds nothing.
        """
        if not callable(func):
            raise TypeError(f"add() needs a callable to run, got {func!r}; use sched.add(func, 'every 5m')")
        # validate everything first: nothing is half-registered
        policy = JobPolicy.build(self.defaults, **options)
        executor = self._executors.get(policy.executor)
        if executor is None:
            raise PolicyError(f"unknown executor {policy.executor!r}: choose one of {', '.join(map(repr, self._executors))}")
        _check_resources(policy, executor)
        executor.check(func)
        if name is None:
            name = getattr(func, "__name__", None) or repr(func)
        if not isinstance(name, str) or not name.strip():
            raise PolicyError(f"invalid job name {name!r}: use a non-empty string")
        zone = resolve_zone(tz) if tz is not None else self.tz
        t0 = self._time()
        trig = self._parse(trigger, zone, t0, start, end).anchored(t0)
        first = trig.next_timestamp(t0)
        if first is None and not now:
            raise TriggerError(
                f"trigger {trig.spec!r} never fires after now ({datetime.fromtimestamp(t0, zone):%Y-%m-%d %H:%M:%S %Z}): "
                "pick a future time, or pass now=True to run it once right away"
            )
        return self._call("Scheduler.add", self._add, func, name, trig, policy, now, paused, meta, persist)

    def _parse(self, trigger: "str | Trigger", zone: tzinfo, now: float, start: Any, end: Any) -> Trigger:
        # Absolute specs parse to the same frozen value every time: cache them (adding 100,000 jobs
        # 'every 1s' parses once).  Relative specs ('in 10m', 'at 09:00') depend on now: never cached.
        if isinstance(trigger, str) and start is None and end is None:
            key = (trigger, zone)
            cached = self._trigger_cache.get(key)
            if cached is not None:
                return cached
            parsed = parse_trigger(trigger, tz=zone, now=now)
            head = trigger.split(None, 1)[0].lower() if trigger.strip() else ""
            if head not in ("in", "at") and len(self._trigger_cache) < 1024:
                self._trigger_cache[key] = parsed
            return parsed
        return parse_trigger(trigger, tz=zone, now=now, start=start, end=end)

    def job(self, trigger: "str | Trigger", **kwargs: Any) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
        """Decorator form of :meth:`add`: ``@sched.job("every 10s")``.  Returns the function unchanged."""

        def decorate(func: Callable[[], Any]) -> Callable[[], Any]:
            self.add(func, trigger, **kwargs)
            return func

        return decorate

    def pause(self, name: str | None = None) -> "Job | None":
        """Pause one job (no fires until resumed), or - without a name - the whole scheduler."""
        if name is None:
            return self._call("Scheduler.pause", self._pause_all)
        return self._call("Scheduler.pause", self._pause, name, "paused")

    def resume(self, name: str | None = None) -> "Job | None":
        """Resume from *now*: fire times that passed while paused are neither run nor recorded as missed."""
        if name is None:
            return self._call("Scheduler.resume", self._resume_all)
        return self._call("Scheduler.resume", self._resume, name)

    def run_now(self, name: str) -> RunHandle:
        """Run the job once, now (also when paused or finished).  ``await`` the handle for its value."""
        return self._call("Scheduler.run_now", self._run_now, name)

    def remove(self, name: str) -> None:
        """Remove the job.  A run in progress finishes and is recorded; its history stays queryable."""
        self._call("Scheduler.remove", self._remove, name)

    def interrupt(self, name: str) -> int:
        """Stop the job's runs in progress (recorded ``interrupted``) and pause the job.

        Returns how many runs were stopped.  (The kernel integration calls this from the interrupt
        button; a plain function blocking the loop is interrupted by a KeyboardInterrupt instead.)
        """
        return self._call("Scheduler.interrupt", self._interrupt, name)

    def _interrupt(self, name: str) -> int:
        job = self.get(name)
        tasks = list(job._run_tasks or ())
        for task in tasks:
            self._interrupted.add(task)
            task.cancel()
        if not tasks:
            self._pause(name, "interrupted")
        return len(tasks)

    def remove_all(self) -> None:
        for name in list(self._jobs):
            self.remove(name)

    def reschedule(self, name: str, trigger: "str | Trigger", *, tz: str | tzinfo | None = None) -> Job:
        """Give a job a new trigger (from now), keeping everything else."""
        job = self.get(name)
        zone = resolve_zone(tz) if tz is not None else job.trigger.tz
        t0 = self._time()
        trig = parse_trigger(trigger, tz=zone, now=t0).anchored(t0)
        return self._call("Scheduler.reschedule", self._reschedule, job, trig)

    def modify(self, name: str, **options: Any) -> Job:
        """Change a job's policy options (validated like :meth:`add`)."""
        job = self.get(name)
        policy = JobPolicy.build(job.policy, **options)
        if policy.executor not in self._executors:
            raise PolicyError(f"unknown executor {policy.executor!r}: choose one of {', '.join(map(repr, self._executors))}")
        _check_resources(policy, self._executors[policy.executor])
        return self._call("Scheduler.modify", self._modify, job, policy)

    def history(self, name: str | None = None):
        """Run history as a DataFrame: one row per run attempt (and per missed/skipped fire time).

        Columns: job, run_id, scheduled_at, started_at, finished_at, duration, lateness, outcome
        (categorical), attempt, error, error_type, traceback.  Times are aware, in the scheduler's zone.
        """
        if name is not None:
            if name in self._logs:
                return self._logs[name].frame(self.tz)
            raise JobLookupError(self._unknown(name))
        cache = self._history_cache
        if cache is None or cache[0] != self._version:
            frame = history_frame(((n, log.rows) for n, log in self._logs.items()), self.tz)
            self._history_cache = cache = (self._version, frame)
        return cache[1]

    def results(self, name: str):
        """What the job returned, accumulated over runs, as a DataFrame (with run_id and scheduled_at)."""
        if name in self._logs:
            return self._logs[name].results.frame(self.tz)
        raise JobLookupError(self._unknown(name))

    def forget(self, name: str) -> None:
        """Drop the history and results of a removed job."""
        if name in self._jobs:
            raise PolicyError(f"job {name!r} still exists: remove it first, then forget its history")
        self._logs.pop(name, None)
        self._version += 1

    def subscribe(self, callback: Callable[[ev.Event], Any], kinds: Any = None) -> ev.Subscription:
        """Call ``callback(event)`` for events of ``kinds`` (classes from :mod:`nbsched.events`; default all)."""
        return self.events.subscribe(callback, kinds)

    def attach_store(self, store: Any = None, *, persist_all: bool = True) -> Any:
        """Attach a durable store (a path to an SQLite file, or a store object; ``None``: ``nbsched.db``
        in the working directory).  With ``persist_all`` every job added from now on is persisted."""
        if self._store is not None and store is None:
            self._store.persist_all = self._store.persist_all or persist_all
            return self._store
        from ..store import open_store

        opened = open_store(store)
        opened.persist_all = persist_all
        opened.attach(self)
        if self._store is not None and self._store is not opened:
            self._store.close()
        self._store = opened
        return opened

    @property
    def store(self) -> Any:
        return self._store

    def restore(self, path: Any = None, *, namespace: dict | None = None) -> list[Job]:
        """Re-register every job persisted in the store (the attached one, ``path``, or ``nbsched.db``)
        with its history and results.  Stored code runs only because you call this."""
        if path is not None or self._store is None:
            self.attach_store(path, persist_all=self._store.persist_all if self._store is not None else False)
        return self._store.restore(self, namespace=namespace)

    def add_executor(self, name: str, executor: Executor) -> None:
        """Register an executor (the seam for distributed engines)."""
        if not hasattr(executor, "submit"):
            raise TypeError(f"{executor!r} is not an executor: it needs submit(func) -> asyncio.Future")
        self._executors[name] = executor

    @property
    def executors(self) -> dict[str, Any]:
        return dict(self._executors)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def running(self) -> bool:
        return not self._shutdown

    @property
    def version(self) -> int:
        """Increases whenever a run is recorded or a job changes (for cheap change polling)."""
        return self._version

    def statistics(self) -> SchedulerStatistics:
        nxt = None
        if self._keys:
            nxt = datetime.fromtimestamp(self._keys[0] / 1000.0, self.tz)
        return SchedulerStatistics(
            jobs=len(self._jobs), running=sum(j.running for j in self._jobs.values()), paused=self._paused,
            fires=self._fires, missed=self._missed, skipped=self._skipped, errors=self._errors,
            due_backlog=sum(len(jobs) for _, jobs in self._due[self._due_chunk:]) - self._due_pos, next_fire=nxt,
        )

    async def wait_idle(self) -> None:
        """Wait until no run is in progress and no due job is waiting to be processed."""
        loop = self._loop_or_raise("Scheduler.wait_idle")
        while self._busy():
            fut = loop.create_future()
            self._idle_waiters.append(fut)
            await fut

    def _busy(self) -> bool:
        return bool(self._tasks) or self._due_chunk < len(self._due) or self._draining

    def shutdown(self, wait: bool = False) -> "asyncio.Future[None] | None":
        """Stop all timers.  ``wait=False`` cancels running jobs (recorded ``cancelled``);
        ``wait=True`` lets them finish - ``await sched.shutdown(wait=True)`` waits for that.
        Executors are shut down.  The scheduler cannot be used afterwards."""
        if self._shutdown:
            return None
        loop = self._loop
        if loop is not None and not loop.is_closed() and not self._in_loop_thread():
            fut: concurrent.futures.Future = concurrent.futures.Future()
            loop.call_soon_threadsafe(lambda: fut.set_result(self._shutdown_now(wait)))
            inner = fut.result()
            return inner
        return self._shutdown_now(wait)

    # ======================================================================== internals: jobs
    def _add(self, func, name, trig, policy, now, paused, meta, persist=None) -> Job:
        if self._shutdown:
            raise SchedulerShutdownError("this scheduler was shut down; create a new Scheduler()")
        log = self._logs.get(name)
        if log is None:
            log = RunLog(name, policy.history_rows, policy.history_age,
                         results_rows=policy.results_rows, results_age=policy.results_age)
            self._logs[name] = log
        else:
            log.set_retention(policy.history_rows, policy.history_age)
            log.set_results_retention(policy.results_rows, policy.results_age)
        old = self._jobs.pop(name, None)
        if old is not None:
            self._detach(old)
        job = Job(self, name, func, trig, policy, meta, log)
        if persist is None:
            persist = self._store is not None and getattr(self._store, "persist_all", True)
        if persist and self._store is None:
            self.attach_store(None, persist_all=False)  # the default file, for this job only
        job.persist = bool(persist)
        self._jobs[name] = job
        self._version += 1
        t0 = self._time()
        if paused:
            job._paused = True
        else:
            first = trig.next_timestamp(t0)
            if first is not None and (policy.until is None or first <= policy.until):
                self._schedule(job, first)
            elif not now:
                job._finished = True
        if not self._started:
            self._started = True
            self._emit_simple(ev.SchedulerStarted)
        if old is not None:
            self._emit_job(ev.JobModified, name)
        else:
            self._emit_job(ev.JobAdded, name)
        if job.persist:
            self._store.on_job_saved(job)
        if now:
            self._start_runs(job, [t0], t0, scheduled=True)
        return job

    def _detach(self, job: Job) -> None:
        job._removed = True
        job._key = None
        job._next_ts = job._planned = None
        for fut in job._waiters or ():
            if not fut.done():
                fut.cancel()
        job._waiters = None

    def _remove(self, name: str) -> None:
        job = self.get(name)
        del self._jobs[name]
        self._detach(job)
        self._version += 1
        if job.persist and self._store is not None:
            self._store.on_job_removed(name)
        self._emit_job(ev.JobRemoved, name)

    def _changed(self, job: Job) -> None:
        self._version += 1
        if job.persist and self._store is not None and not job._removed:
            self._store.on_job_saved(job)

    def _pause(self, name: str, reason: str) -> Job:
        job = self.get(name)
        if not job._paused:
            job._paused = True
            job._key = None
            job._next_ts = job._planned = None
            job._backlog = None
            self._changed(job)
            self._emit_job(ev.JobPaused, name, reason=reason)
        return job

    def _resume(self, name: str) -> Job:
        job = self.get(name)
        if job._paused:
            job._paused = False
            self._changed(job)
            if not job._finished:
                self._schedule_from_now(job)
            self._emit_job(ev.JobResumed, name)
        return job

    def _schedule_from_now(self, job: Job) -> None:
        t0 = self._time()
        nxt = job.trigger.next_timestamp(t0)
        if nxt is not None and (job.policy.until is None or nxt <= job.policy.until):
            self._schedule(job, nxt)
        else:
            self._finish(job)

    def _pause_all(self) -> None:
        if not self._paused:
            self._paused = True
            self._disarm()
            self._version += 1
            self._emit_simple(ev.SchedulerPaused)

    def _resume_all(self) -> None:
        if self._paused:
            self._paused = False
            self._version += 1
            self._rearm_all()
            self._emit_simple(ev.SchedulerResumed)

    def _rearm_all(self) -> None:
        """Reschedule every active job from now (after a scheduler pause or a move to a new loop)."""
        self._disarm()
        self._buckets.clear()
        self._keys.clear()
        self._due = []
        self._due_chunk = self._due_pos = 0
        for job in self._jobs.values():
            if not job._paused and not job._finished:
                job._key = None
                self._schedule_from_now(job)

    def _reschedule(self, job: Job, trig: Trigger) -> Job:
        job.trigger = trig
        job._finished = False
        job._key = None
        self._changed(job)
        if not job._paused:
            self._schedule_from_now(job)
        self._emit_job(ev.JobModified, job.name)
        return job

    def _modify(self, job: Job, policy: JobPolicy) -> Job:
        job.policy = policy
        job.log.set_retention(policy.history_rows, policy.history_age)
        job.log.set_results_retention(policy.results_rows, policy.results_age)
        self._changed(job)
        self._emit_job(ev.JobModified, job.name)
        return job

    def _finish(self, job: Job) -> None:
        job._key = None
        job._next_ts = job._planned = None
        if not job._finished:
            job._finished = True
            self._changed(job)
            self._emit_job(ev.JobFinished, job.name)

    def _run_now(self, name: str) -> RunHandle:
        job = self.get(name)
        t0 = self._time()
        fut = self._loop.create_future()
        # the handle may never be awaited: mark the exception as retrieved so asyncio does not complain
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._run_futures[self._run_ids + 1] = fut
        run_id = self._start_runs(job, [t0], t0, scheduled=False)
        return RunHandle(self, name, run_id)

    # ======================================================================== internals: timer
    def _schedule(self, job: Job, ts: float) -> None:
        """Put ``job`` in the wheel for nominal fire time ``ts`` (plus jitter)."""
        job._next_ts = ts
        jitter = job.policy.jitter
        planned = ts + self._random.uniform(0.0, jitter) if jitter else ts
        job._planned = planned
        key = _key(planned)
        job._key = key  # an entry in a bucket is live only while job._key equals the bucket's key
        bucket = self._buckets.get(key)
        if bucket is None:
            # jobs go in the buckets as they are: no per-fire (job, key) tuple for the GC to track
            self._buckets[key] = [job]
            heapq.heappush(self._keys, key)
            if not self._paused and (self._timer_key is None or key < self._timer_key) and not self._draining:
                self._arm(key)
        else:
            bucket.append(job)

    def _arm(self, key: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = self._loop
        self._timer_key = key
        clock = self.clock
        if isinstance(clock, SystemClock) and loop is not None:
            when = key / 1000.0
            if self._spin_tokens >= EARLY_WAKE:
                when = self._bucket_target(key)
                # The selector rounds timeouts up to whole milliseconds (and Linux adds slack), so a
                # timer armed for the instant fires ~1 ms late.  Wake a little early and spin to the
                # instant instead - within a small CPU budget (SPIN_BUDGET of a core), so dense
                # schedules fall back to plain timers.
                when -= EARLY_WAKE
            self._timer = clock.call_at_on(loop, when, self._on_timer)
        else:
            self._timer = clock.call_at(key / 1000.0, self._on_timer)

    def _bucket_target(self, key: int) -> float:
        """The earliest planned fire time in bucket ``key`` (small buckets; else the bucket's end)."""
        bucket = self._buckets.get(key)
        if not bucket or len(bucket) > 64:
            return key / 1000.0
        planned = [job._planned for job in bucket if job._key == key]
        return min(planned) if planned else key / 1000.0

    def _spin_to(self, key: int) -> bool:
        """Before processing bucket ``key``: spin to its instant if it is a hair away and the budget allows.
        Returns False if the timer fired too early to spin (the caller re-arms)."""
        target = self._bucket_target(key)
        time = self._time
        now = time()
        # refill the spin budget for the time that passed
        elapsed = now - self._spin_refilled
        self._spin_refilled = now
        self._spin_tokens = min(SPIN_BUDGET * 2.5, self._spin_tokens + elapsed * SPIN_BUDGET)
        remaining = target - now
        if remaining <= 0:
            return True
        if remaining <= EARLY_WAKE + 0.0015 and remaining <= self._spin_tokens:
            while time() < target:
                pass
            self._spin_tokens -= remaining
            return True
        # within the bucket's millisecond the bucket counts as due (see _collect_due)
        return remaining < 0.001

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_key = None

    def _on_timer(self) -> None:
        key = self._timer_key
        self._timer = None
        self._timer_key = None
        if self._shutdown or self._paused:
            return
        if key is not None and isinstance(self.clock, SystemClock) and not self._spin_to(key):
            self._arm(key)  # woke too early (long horizon, or no spin budget): wait for the instant
            return
        self._collect_due()
        self._drain()

    def _collect_due(self) -> None:
        now_key = _key(self._time())
        keys = self._keys
        buckets = self._buckets
        due = self._due
        if self._due_chunk and self._due_chunk >= len(due):
            due.clear()
            self._due_chunk = self._due_pos = 0
        while keys and keys[0] <= now_key:
            key = heapq.heappop(keys)
            due.append((key, buckets.pop(key)))

    def _drain(self) -> None:
        """Process due entries for at most SLICE_SECONDS, then yield to the loop."""
        self._draining = True
        due = self._due
        chunk = self._due_chunk
        pos = self._due_pos
        deadline = perf_counter() + SLICE_SECONDS
        fire = self._fire
        time = self._time
        count = 0
        out_of_time = False
        try:
            while chunk < len(due):
                key, jobs = due[chunk]
                end = len(jobs)
                while pos < end:
                    job = jobs[pos]
                    pos += 1
                    if job._key == key:
                        fire(job, time())
                    count += 1
                    if count == _CHECK_EVERY:
                        count = 0
                        if perf_counter() > deadline:
                            out_of_time = True
                            break
                if out_of_time and pos < end:
                    break
                chunk += 1
                pos = 0
                if out_of_time:
                    break
        finally:
            self._due_chunk = chunk
            self._due_pos = pos
        if chunk < len(due):
            self._loop.call_soon(self._drain)  # more to do: give the loop back first
            return
        due.clear()
        self._due_chunk = self._due_pos = 0
        self._draining = False
        if self._shutdown or self._paused:
            return
        # anything that fell due meanwhile?
        if self._keys and self._keys[0] <= _key(self._time()):
            self._collect_due()
            self._loop.call_soon(self._drain)
            self._draining = True
            return
        if self._keys:
            self._arm(self._keys[0])
        if not self._tasks:
            self._wake_idle()

    # ======================================================================== internals: firing
    def _fire(self, job: Job, now: float) -> None:
        """A job's (planned) fire time has come: decide what runs, record what does not, re-arm."""
        nominal = job._next_ts
        planned = job._planned
        trigger = job.trigger
        policy = job.policy
        nxt = trigger.next_timestamp(nominal)
        if nxt is not None and nxt <= now:
            due, nxt = self._overdue(job, nominal, nxt, now)
        else:
            due = None
        until = policy.until
        if nxt is not None and until is not None and nxt > until:
            nxt = None
        if due is None:
            # the common case: exactly one fire time is due
            if policy.max_runs is not None and job.runs + 1 >= policy.max_runs:
                nxt = None
            if nxt is None:
                self._finish(job)
            else:
                self._schedule(job, nxt)
            grace = policy.misfire_grace
            if grace is not None and now - planned > grace:
                self._record_missed(job, nominal, now - planned)
                return
            self._start_runs(job, (nominal,), planned, scheduled=True, now=now)
            return
        # several fire times were overdue (the loop was blocked): coalesce, record the rest as missed
        if until is not None:
            due = [t for t in due if t <= until]
        if policy.coalesce == "latest":
            run, missed = due[-1:], due[:-1]
        elif policy.coalesce == "earliest":
            run, missed = due[:1], due[1:]
        else:
            run, missed = due, []
        grace = policy.misfire_grace
        if grace is not None:
            missed = missed + [t for t in run if now - t > grace]
            run = [t for t in run if now - t <= grace]
            missed.sort()
        if policy.max_runs is not None:
            room = max(0, policy.max_runs - job.runs)
            run = run[:room]
            if job.runs + len(run) >= policy.max_runs:
                nxt = None
        if nxt is None:
            self._finish(job)
        else:
            self._schedule(job, nxt)
        for t in missed:
            self._record_missed(job, t, now - t)
        if run:
            self._start_runs(job, run, run[0], scheduled=True)

    def _overdue(self, job: Job, nominal: float, nxt: float, now: float) -> tuple[list[float], float | None]:
        """All fire times <= now starting at ``nominal`` (bounded by the job's history retention)."""
        cap = job.policy.history_rows or 100_000
        due = [nominal]
        trigger = job.trigger
        t: float | None = nxt
        while t is not None and t <= now and len(due) < cap:
            due.append(t)
            t = trigger.next_timestamp(t)
        if t is not None and t <= now:  # beyond what retention would keep: skip ahead, count only
            skipped_ahead = t
            t = trigger.next_timestamp(now)
            job.missed += 1  # at least one more; exact count not itemised
            log.warning("nbsched: job %r missed more fire times than its history keeps (from %s); "
                        "counted, not itemised", job.name, skipped_ahead)
        return due, t

    def _record_missed(self, job: Job, scheduled: float, lateness: float) -> None:
        store = self._store
        if store is not None and job.persist and not store.claim(job.name, scheduled):
            return  # another process sharing the store owns this fire time
        self._run_ids += 1
        self._append_row(job, (self._run_ids, scheduled, None, None, lateness, _MISSED_S, 0, None))
        job.missed += 1
        self._missed += 1
        self._version += 1
        if self.events.wants(ev.JobMissed):
            self.events.emit(ev.JobMissed(self.clock.now(), job.name, datetime.fromtimestamp(scheduled, self.tz),
                                          timedelta(seconds=lateness)))

    def _start_runs(self, job: Job, times: Iterable[float], planned: float, scheduled: bool,
                    now: float | None = None) -> int:
        """Start a run for each fire time (respecting max_instances).  Returns the last run id."""
        run_id = 0
        for i, nominal in enumerate(times):
            self._run_ids += 1
            run_id = self._run_ids
            if scheduled and self._store is not None and job.persist and not self._store.claim(job.name, nominal):
                continue  # another process sharing the store has this fire time: it runs and records it
            if job.running >= job.policy.max_instances:
                if i > 0 and job.policy.coalesce == "all":
                    if job._backlog is None:
                        job._backlog = []
                    job._backlog.append(nominal)  # catch-up run: start when an instance frees up
                    continue
                self._record_skipped(job, run_id, nominal)
                continue
            if scheduled:
                job.runs += 1
            self._start_one(job, run_id, nominal, planned if i == 0 else nominal, now if i == 0 else None)
        return run_id

    def _append_row(self, job: Job, row: tuple) -> None:
        job.log.append(row)
        if self._store is not None and job.persist:
            self._store.on_row(job.name, row)

    def _record_skipped(self, job: Job, run_id: int, nominal: float) -> None:
        now = self._time()
        self._append_row(job, (run_id, nominal, None, None, now - nominal, _SKIPPED_S, 0, None))
        job.skipped += 1
        self._skipped += 1
        self._version += 1
        fut = self._run_futures.pop(run_id, None)
        if fut is not None and not fut.done():
            fut.set_exception(MaxInstancesReachedError(
                f"job {job.name!r} already has {job.running} run(s) going (max_instances="
                f"{job.policy.max_instances}): this run was skipped; raise max_instances to allow overlap"))
        self._resolve_skipped_waiters(run_id)
        if self.events.wants(ev.JobMaxInstancesReached):
            self.events.emit(ev.JobMaxInstancesReached(self.clock.now(), job.name,
                                                       datetime.fromtimestamp(nominal, self.tz)))

    def _resolve_skipped_waiters(self, run_id: int) -> None:
        self._skipped_runs.add(run_id)
        if len(self._skipped_runs) > 1000:
            self._skipped_runs.clear()

    def _start_one(self, job: Job, run_id: int, nominal: float, planned: float, now: float | None = None) -> None:
        self._fires += 1
        policy = job.policy
        if self.events._subs and self.events.wants(ev.JobSubmitted):
            self.events.emit(ev.JobSubmitted(self.clock.now(), job.name, run_id,
                                             datetime.fromtimestamp(nominal, self.tz), 1))
        if policy.executor == "loop" and not job.is_coroutine and policy.timeout is None and not policy.retries:
            # fast path: a plain function, called right here on the loop
            time = self._time
            started = time() if now is None else now
            job.running += 1
            try:
                value = job.func()
            except BaseException as exc:  # noqa: BLE001 - every failure becomes a row, nothing escapes
                job.running -= 1
                finished = time()
                self._after_attempt(job, run_id, nominal, planned, started, finished, 1, exc, None,
                                    interrupted=isinstance(exc, KeyboardInterrupt))
                return
            if value is not None and inspect.isawaitable(value):  # e.g. a compiled cell with top-level await
                self._spawn_run(job, run_id, nominal, planned, first=value, started=started)
                return
            job.running -= 1
            finished = time()
            self._record_success(job, run_id, nominal, planned, started, finished, 1, value)
            return
        job.running += 1
        self._spawn_run(job, run_id, nominal, planned, first=None, started=None)

    def _spawn_run(self, job: Job, run_id: int, nominal: float, planned: float, first: Any, started: float | None) -> None:
        task = self._loop.create_task(self._run_task(job, run_id, nominal, planned, first, started),
                                      name=f"nbsched:{job.name}:{run_id}")
        self._tasks.add(task)
        if job._run_tasks is None:
            job._run_tasks = set()
        job._run_tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a bug in nbsched itself: never silent
            log.error("nbsched: internal error in %s", task.get_name(), exc_info=task.exception())
        if not self._tasks and not self._draining:
            self._wake_idle()

    def _wake_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _run_task(self, job: Job, run_id: int, nominal: float, planned: float, first: Any,
                        started: float | None) -> None:
        policy = job.policy
        attempt = 1
        time = self._time
        try:
            while True:
                if started is None:
                    started = time()
                outcome, value, exc = await self._attempt(job, first)
                first = None
                finished = time()
                if outcome is SUCCESS:
                    self._record_success(job, run_id, nominal, planned, started, finished, attempt, value, running=True)
                    return
                retry = (outcome in (ERROR, TIMEOUT) and attempt <= policy.retries and not self._shutdown
                         and not job._removed and not job._paused)
                self._after_attempt(job, run_id, nominal, planned, started, finished, attempt, exc, outcome,
                                    interrupted=outcome is INTERRUPTED, final=not retry, running=True)
                if not retry:
                    return
                delay = min(policy.retry_delay * policy.backoff ** (attempt - 1), policy.max_retry_delay)
                if self.events.wants(ev.JobRetried):
                    self.events.emit(ev.JobRetried(self.clock.now(), job.name, run_id, attempt + 1, timedelta(seconds=delay)))
                planned = finished + delay  # the retry's own lateness is measured from its planned start
                try:
                    await self.clock.sleep(delay)
                except asyncio.CancelledError:
                    self._finish_run(job, run_id, None, CANCELLED, asyncio.CancelledError())
                    return
                attempt += 1
                started = None
        finally:
            if job._run_tasks:
                job._run_tasks.discard(asyncio.current_task())

    async def _attempt(self, job: Job, first: Any) -> tuple[Outcome, Any, BaseException | None]:
        """One attempt: await/submit the function with the job's timeout.  Never raises."""
        policy = job.policy
        task = asyncio.current_task()
        timed_out = False
        handle = None
        if policy.timeout is not None:
            def on_timeout() -> None:
                nonlocal timed_out
                timed_out = True
                task.cancel()

            handle = self.clock.call_at(self._time() + policy.timeout, on_timeout)
        try:
            if first is not None:
                awaitable = first
            elif policy.executor == "loop":
                awaitable = job.func()
            elif policy.resources:
                awaitable = self._executors[policy.executor].submit(job.func, resources=policy.resource_dict())
            else:
                awaitable = self._executors[policy.executor].submit(job.func)
            value = await awaitable if inspect.isawaitable(awaitable) else awaitable
            return SUCCESS, value, None
        except asyncio.CancelledError as exc:
            if timed_out:
                task.uncancel()
                return TIMEOUT, None, TimeoutError(f"job {job.name!r} timed out after {policy.timeout:g}s")
            if task in self._interrupted:
                self._interrupted.discard(task)
                task.uncancel()
                return INTERRUPTED, None, KeyboardInterrupt()
            return CANCELLED, None, exc
        except KeyboardInterrupt as exc:
            return INTERRUPTED, None, exc
        except BaseException as exc:  # noqa: BLE001 - recorded, never escapes
            return ERROR, None, exc
        finally:
            if handle is not None:
                handle.cancel()

    # ======================================================================== internals: recording
    def _record_success(self, job: Job, run_id: int, nominal: float, planned: float, started: float,
                        finished: float, attempt: int, value: Any, running: bool = False) -> None:
        if running:
            job.running -= 1
        row = (run_id, nominal, started, finished, started - planned, _SUCCESS_S, attempt, None)
        job.log.append(row)
        store = self._store
        if store is not None and job.persist:
            store.on_row(job.name, row)
        if value is not None:
            try:
                job.results_log.append(run_id, nominal, value)
                if store is not None and job.persist:
                    store.on_result(job.name, run_id, nominal, value)
            except Exception:  # an odd return value must not break the scheduler
                log.exception("nbsched: could not record the value returned by job %r", job.name)
        job.successes += 1
        job.last_outcome = SUCCESS
        job.last_started = started
        job.last_finished = finished
        job.last_duration = finished - started
        self._version += 1
        listening = self.events._subs and self.events.wants(ev.JobExecuted)
        if job._waiters or self._run_futures or listening:
            record = RunRecord.from_row(job.name, row, self.tz)
            self._notify(job, run_id, record, value, None)
            if listening:
                self.events.emit(ev.JobExecuted(self.clock.now(), job.name, record))
        if running:
            self._after_run(job)

    def _after_attempt(self, job: Job, run_id: int, nominal: float, planned: float, started: float,
                       finished: float, attempt: int, exc: BaseException, outcome: Outcome | None,
                       interrupted: bool = False, final: bool = True, running: bool = False) -> None:
        if outcome is None:
            outcome = INTERRUPTED if interrupted else ERROR
        if outcome is CANCELLED:
            err = ErrorInfo("CancelledError", "the run was cancelled (scheduler shut down or task cancelled)", "")
        else:
            err = ErrorInfo(type(exc).__name__, str(exc), _format_user_traceback(exc))
        row = (run_id, nominal, started, finished, started - planned, outcome.value, attempt, err)
        self._append_row(job, row)
        job.last_outcome = outcome
        job.last_started = started
        job.last_finished = finished
        job.last_duration = finished - started
        job.last_error = f"{err.type}: {err.message}"
        if outcome in (ERROR, TIMEOUT):
            job.failures += 1
            self._errors += 1
        self._version += 1
        if outcome is ERROR:
            # INFO, not WARNING: in a kernel a stray stderr line lands in whatever cell ran last; the
            # failure is already a history row, an event, and red on the card and the dashboard.
            log.info("nbsched: job %r failed (attempt %d): %s: %s", job.name, attempt, err.type, err.message)
        kind = {ERROR: ev.JobFailed, TIMEOUT: ev.JobTimedOut, CANCELLED: ev.JobCancelled,
                INTERRUPTED: ev.JobInterrupted}[outcome]
        record = None
        if final and (job._waiters or self._run_futures) or self.events.wants(kind):
            record = RunRecord.from_row(job.name, row, self.tz)
        if interrupted:
            # a runaway job must not freeze the kernel again at its next fire: pause it
            if self._jobs.get(job.name) is job:
                self._pause(job.name, "interrupted")
        if record is not None and self.events.wants(kind):
            self.events.emit(kind(self.clock.now(), job.name, record))
        if final:
            if record is not None:
                self._notify(job, run_id, record, None, exc)
            if running:
                job.running -= 1
                self._after_run(job)

    def _finish_run(self, job: Job, run_id: int, started: float | None, outcome: Outcome, exc: BaseException) -> None:
        now = self._time()
        self._after_attempt(job, run_id, job._next_ts or now, now, started or now, now, 0, exc, outcome,
                            final=True, running=True)

    def _notify(self, job: Job, run_id: int, record: RunRecord, value: Any, exc: BaseException | None) -> None:
        waiters, job._waiters = job._waiters or (), None
        for fut in waiters:
            if not fut.done():
                fut.set_result(record)
        fut = self._run_futures.pop(run_id, None)
        if fut is not None and not fut.done():
            if exc is None:
                fut.set_result(value)
            elif record.outcome is TIMEOUT:
                fut.set_exception(TimeoutError(record.error))
            elif isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(exc)
        self._finished_runs[run_id] = (value, exc, record.outcome, record.error)
        if len(self._finished_runs) > 1000:
            for key in list(self._finished_runs)[:500]:
                del self._finished_runs[key]

    def _run_future(self, run_id: int) -> asyncio.Future:
        loop = self._loop_or_raise("awaiting a run")
        fut = self._run_futures.get(run_id)
        if fut is None:
            fut = loop.create_future()
            done = self._finished_runs.get(run_id)
            if done is not None:
                value, exc, outcome, error = done
                if exc is None:
                    fut.set_result(value)
                elif outcome is TIMEOUT:
                    fut.set_exception(TimeoutError(error))
                elif isinstance(exc, asyncio.CancelledError):
                    fut.cancel()
                else:
                    fut.set_exception(exc)
            elif run_id in self._skipped_runs:
                fut.set_exception(MaxInstancesReachedError(f"run {run_id} was skipped: max_instances reached"))
            else:
                self._run_futures[run_id] = fut
        return fut

    def _after_run(self, job: Job) -> None:
        if job._backlog and job.running < job.policy.max_instances and not job._removed and not job._paused:
            nominal = job._backlog.pop(0)
            self._run_ids += 1
            job.runs += 1
            self._start_one(job, self._run_ids, nominal, nominal)

    # ======================================================================== events, shutdown
    def _emit_simple(self, kind: type) -> None:
        if self.events.wants(kind):
            self.events.emit(kind(self.clock.now()))

    def _emit_job(self, kind: type, name: str, **extra: Any) -> None:
        if self.events.wants(kind):
            self.events.emit(kind(self.clock.now(), name, **extra))

    def _spawn_listener(self, awaitable: Any) -> None:
        async def run() -> None:
            try:
                await awaitable
            except Exception:
                log.exception("nbsched: async event listener failed (the scheduler carries on)")

        loop = self._loop
        if loop is not None:
            task = loop.create_task(run())
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _shutdown_now(self, wait: bool) -> "asyncio.Future[None] | None":
        self._shutdown = True
        self._disarm()
        self._buckets.clear()
        self._keys.clear()
        self._due = []
        self._due_chunk = self._due_pos = 0
        self._draining = False
        for job in self._jobs.values():
            job._key = None
            job._next_ts = job._planned = None
        tasks = list(self._tasks)
        if not wait:
            for task in tasks:
                task.cancel()
        for executor in self._executors.values():
            try:
                executor.shutdown(wait=False)
            except Exception:
                log.exception("nbsched: executor %r failed to shut down", executor)
        self._version += 1
        self._emit_simple(ev.SchedulerShutdown)
        if self._store is not None:
            try:
                self._store.close()
            except Exception:
                log.exception("nbsched: closing the store failed")
        global _default
        if _default is self:
            _default = None
        loop = self._loop
        if not tasks or loop is None or loop.is_closed():
            return None
        return asyncio.ensure_future(self._wait_tasks(tasks), loop=loop)

    async def _wait_tasks(self, tasks: list) -> None:
        await asyncio.gather(*tasks, return_exceptions=True)
        self._wake_idle()

    def __repr__(self) -> str:
        state = "shut down" if self._shutdown else ("paused" if self._paused else "running")
        return f"<nbsched.Scheduler {state} jobs={len(self._jobs)} tz={getattr(self.tz, 'key', self.tz)}>"


_default: Scheduler | None = None
_default_lock = threading.Lock()


def get_scheduler() -> Scheduler:
    """The process-wide default scheduler (the one the magics and the dashboard use).

    Created on first use; after it is shut down, the next call creates a fresh one.
    """
    global _default
    with _default_lock:
        if _default is None or _default._shutdown:
            _default = Scheduler()
        return _default
