"""The Scheduler: the public API, a facade over the engine's parts.

* :mod:`._handover` - which loop the scheduler lives on; calls from other threads are handed to it;
* :mod:`._wheel` - the timing wheel: jobs wait in millisecond buckets behind one loop timer;
* :mod:`._planner` - a pure function deciding what a fire does (misfire, coalesce, until, max_runs);
* :mod:`._lifecycle` - runs: attempts, retries, timeouts, interrupts, and the one place that records.

The scheduler owns the jobs table and the logs; everything else (the store, the notebook front end)
uses the public methods below.  Time comes only from ``self.clock`` (see :mod:`nbsched.clock`).
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
import threading
from collections import Counter, deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .. import events as ev
from .._durations import format_duration
from ..clock import Clock, SystemClock, resolve_zone
from ..errors import JobLookupError, PolicyError, SchedulerShutdownError, TriggerError
from ..executors import Executor, default_executors
from ..clock import perf_counter
from ..graph import GraphEdge, GraphNode, JobGraph
from ..history import BACKFILL, CATCHUP, OUTCOME, REASON, SCHEDULE, Outcome, PackedRows, RunLog, history_frame_of
from ..job import Job, JobPolicy, StoredJob
from ..context import RunInputs
from ..notebook_files import notebook_job
from ..triggers import SPEC_HELP, After, Interval, OnFile, Trigger, parse_trigger
from ._handover import LoopBinding
from ._batch import MAX_BATCH, Backfill, RunBatch
from ._flow import FAILED, MAX_PENDING, RUN, Delivery, Gate
from ._lifecycle import MaxInstancesReachedError, RunLifecycle
from ._gc import BULK as GC_BULK, GcFreezer
from ._planner import plan_fire
from ._gil import SwitchInterval
from ._wheel import SLICE_SECONDS, TimingWheel

if TYPE_CHECKING:  # the engine talks to a store only through the protocol's methods
    from ..store.protocol import Store

__all__ = ["Scheduler", "RunHandle", "SchedulerStatistics", "get_scheduler", "MaxInstancesReachedError"]

log = logging.getLogger("nbsched")
_get_ident = threading.get_ident

#: A change of the wall clock against elapsed time larger than this (seconds) is a step (NTP, a VM
#: resumed), not drift: interval jobs are moved with it and it is recorded (see Scheduler.clock_jumps).
CLOCK_STEP_THRESHOLD = 1.0

_NOT_RUNS = (Outcome.MISSED.value, Outcome.SKIPPED.value)


#: Overdue fire times a job's fire handles without the planner (coalesce 'latest', no bounds).
_FEW_OVERDUE = 8


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


def _check_resources(policy: JobPolicy, executor: Any) -> None:
    if policy.resources and not getattr(executor, "supports_resources", False):
        raise PolicyError(
            f"resources={policy.resource_dict()!r} needs an executor that places work on workers (e.g. 'dask'), "
            f"but the job runs on {policy.executor!r}: register one with sched.add_executor('dask', "
            "nbsched.DaskExecutor(client)) and pass executor='dask'"
        )


def _fmt(ts: float, zone: tzinfo) -> str:
    try:
        return f"{datetime.fromtimestamp(ts, zone):%Y-%m-%d %H:%M:%S %Z}"
    except (OverflowError, OSError, ValueError):
        return f"{ts!r} (POSIX seconds)"


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
        return self._scheduler.run_result(self.run_id).__await__()

    def __repr__(self) -> str:
        return f"<RunHandle job={self.job!r} run_id={self.run_id}>"


class Scheduler:
    """Schedules jobs on the running asyncio event loop (in Jupyter: the kernel's loop).

    ``Scheduler(clock=None, tz=None, executors=None, **defaults)`` - ``clock`` defaults to the system
    clock (tests pass :class:`nbsched.testing.FakeClock`), ``tz`` is the default zone for cron and
    ``at`` triggers (default: local), ``defaults`` are :class:`~nbsched.job.JobPolicy` options every job
    starts from (``retries=2``, ``coalesce="all"``, ...).  ``store`` attaches a durable store (a path
    or an object satisfying :class:`nbsched.store.Store`).

    The scheduler binds to the event loop running when it is first used (or ``loop``, run by
    ``loop_thread``); from other threads (an ipykernel subshell, a worker) calls are handed over.
    ``background=True`` gives it a loop of its own in a daemon thread, for places with no running
    loop (terminal IPython, the python REPL, a plain script): jobs run while the prompt or the script
    goes on; :meth:`shutdown` (or interpreter exit) stops the thread.

    After a bulk add (``gc_freeze_after`` jobs, default 1,000) the scheduler freezes the objects
    alive at that moment out of the garbage collector's full collections (:func:`gc.freeze`), so a
    full collection's pause does not grow with the number of jobs (a longer bulk add is frozen in
    steps as it goes); removing as many jobs unfreezes them.  The collector itself stays on.  Set
    ``Scheduler.gc_freeze_after = None`` (before creating the scheduler) to never freeze - see
    ``nbsched/engine/_gc.py`` for the trade-off.

    While firing jobs takes a quarter or more of the loop's time (100,000 jobs a second), the
    scheduler shortens the interpreter's thread switch interval (:func:`sys.setswitchinterval`) from
    Python's default 5 ms to ``switch_interval`` (0.5 ms), so a kernel's other threads (the ones that
    receive a cell or a widget click and send output) get their turn within half a millisecond; it
    restores the interval when the load drops and at shutdown, and never replaces a value the user
    set.  ``Scheduler.switch_interval = None`` leaves it alone - see ``nbsched/engine/_gil.py``.
    """

    #: Jobs added since the last freeze that make a bulk add (None: never freeze; see the class doc).
    gc_freeze_after: int | None = GC_BULK
    #: The thread switch interval while jobs keep the loop busy (None: never change it; see the class doc).
    switch_interval: float | None = 0.0005

    def __init__(self, *, clock: Clock | None = None, tz: str | tzinfo | None = None,
                 executors: dict[str, Executor] | None = None, random_seed: int | None = None,
                 loop: asyncio.AbstractEventLoop | None = None, loop_thread: int | None = None,
                 store: Any = None, background: bool = False, **defaults: Any):
        self.clock: Clock = clock or SystemClock()
        self.tz: tzinfo = resolve_zone(tz)
        self.defaults = JobPolicy.build(**defaults)
        self._executors: dict[str, Any] = default_executors()
        if executors:
            self._executors.update(executors)
        self._random = random.Random(random_seed)
        self._jobs: dict[str, Job] = {}
        self._trigger_cache: dict[tuple, Trigger] = {}
        self._policy_cache: dict[Any, JobPolicy] = {}  # see _policy (key None: the defaults it was built on)
        self._logs: dict[str, RunLog] = {}  # by job name; outlives the job (history carries on)
        self._downstream: dict[str, list[str]] = {}  # upstream name -> names of the jobs after it
        self._gates: dict[str, Gate] = {}  # after-job name -> its deliveries
        self._batch_runs: dict[int, RunBatch] = {}  # run id -> the backfill or catch-up it belongs to
        self._watches: dict[str, Any] = {}  # 'on file' job name -> its nbsched.watch.FileWatch
        self._landed: dict[str, set] = {}  # 'on file' job name -> files that landed while it was busy
        self._catchups: dict[str, RunBatch] = {}
        self._backfills: dict[str, list[RunBatch]] = {}
        self._flow: deque = deque()  # finished runs (with the jobs after them) still being handed down
        self._flowing = False
        self._paused = False
        self._closed = False
        self._started = False
        self._idle_waiters: list[asyncio.Future] = []
        self._history_cache = None
        self._version = 0  # bumps on every recorded row or job change (cheap change detection)
        self._time = self.clock.time
        self._store: Any = None
        self.events = ev.EventBus(spawn=self._spawn_listener)
        self._listener_tasks: set[asyncio.Task] = set()  # async listener calls (not work in progress)
        self._binding = LoopBinding(on_move=self._rearm_all)
        self._switch = SwitchInterval(self.switch_interval)
        self._runs = RunLifecycle(self)
        runs = self._runs
        self._wheel = TimingWheel(self.clock, lambda: self._binding.loop, self._fire, self._maybe_idle,
                                  self._check_clock, self._switch.report, hold=runs.hold, park=runs.park,
                                  release=runs.release)
        elapsed = getattr(self.clock, "elapsed", None)  # clocks without it cannot tell a step from time
        self._elapsed: Callable[[], float] | None = elapsed
        self._clock_offset = self._time() - elapsed() if elapsed is not None else 0.0
        self._clock_jumps: list[tuple[float, float]] = []  # (wall time noticed, step in seconds)
        self._gc = GcFreezer(self._post_soon, self.gc_freeze_after)
        self._background = None
        if background:  # a loop of its own in a daemon thread (terminal IPython, REPL, plain script)
            if loop is not None:
                raise PolicyError("give either loop= or background=True, not both")
            from ._background import LoopThread

            self._background = LoopThread()
            loop, loop_thread = self._background.loop, self._background.ident
            self._background.on_exit(self.shutdown)
        if loop is not None:
            self._binding.bind(loop, loop_thread)
        else:
            self._binding.bind_running()
        if store is not None:
            self.attach_store(store)

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

    def find(self, name: str) -> Job | None:
        """The job called ``name``, or None."""
        return self._jobs.get(name)

    def history_names(self) -> list[str]:
        """Every name with history: the jobs, then removed jobs whose history is still kept."""
        return list(dict.fromkeys([*self._jobs, *self._logs]))

    def _unknown(self, name: str, history: bool = False) -> str:
        """The lookup error's text: the names that exist (with ``history``: also removed jobs' names)."""
        names = self.history_names() if history else list(self._jobs)
        if not names:
            if self._logs:
                return f"no job named {name!r}: every job was removed (add one with sched.add(func, 'every 5m'))"
            return f"no job named {name!r}: there are no jobs yet (add one with sched.add(func, 'every 5m'))"
        shown = ", ".join(map(repr, names[:20])) + (" ..." if len(names) > 20 else "")
        if history:
            return f"no job named {name!r}: the jobs with history are {shown}"
        return f"no job named {name!r}: the jobs are {shown}"

    def __contains__(self, name: str) -> bool:
        return name in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, func: Callable[[], Any], trigger: "str | Trigger | None" = None, *, name: str | None = None,
            tz: str | tzinfo | None = None, now: bool = False, paused: bool = False,
            start: datetime | None = None, end: datetime | None = None, after: "str | Iterable[str] | None" = None,
            debounce: Any = None, meta: dict[str, Any] | None = None, persist: bool | None = None,
            **options: Any) -> Job:
        """Schedule ``func`` (a plain or ``async`` function taking no arguments) on ``trigger``.

        ``trigger`` is a spec string (``"every 5m"``, ``"cron 0 9 * * mon-fri"``, ``"at ..."``,
        ``"in 10m"``, ``"daily at 09:30"``, ``"after prices, weather"``) or a
        :class:`~nbsched.triggers.Trigger`; ``after="prices"`` (or a list of names) is the same as
        ``"after prices"``.  A job runs on a time trigger or after other jobs, never both; after-jobs
        take ``trigger_rule`` (Airflow's rules, default ``all_success``).  ``name`` defaults
        to the function's name; adding a job with an existing name **replaces** it and its history and
        results carry on.  ``now=True`` also runs it at once.  Other keywords are policy options (see
        :class:`~nbsched.job.JobPolicy`): ``retries``, ``timeout``, ``max_instances``, ``coalesce``,
        ``misfire_grace``, ``jitter``, ``max_runs``, ``until``, ``executor``, ``retry_delay``,
        ``backoff``, ``max_retry_delay``, ``history_rows``, ``history_age``, ``results_rows``, ``results_age``,
        ``catchup``, ``max_active_runs``.
        ``persist`` (default: whether a store is attached) saves the job, its runs and results to the store.

        ``start``/``end`` (datetimes or ISO strings; naive ones in the job's zone) bound the fire times:
        an interval is anchored at ``start``; a cron or shorthand trigger fires from ``start`` on.  With
        ``catchup=True`` and a past ``start``, every fire time from ``start`` to now runs first (reason
        ``catchup``), oldest first, ``max_active_runs`` at a time; without it a past start only anchors.

        Everything is validated before anything changes: a bad spec or option raises and adds nothing.
        """
        if not callable(func):
            raise TypeError(f"add() needs a callable to run, got {func!r}; use sched.add(func, 'every 5m')")
        # validate everything first: nothing is half-registered
        policy = self._policy(options) if options else self.defaults
        executor = self._executors.get(policy.executor)
        if executor is None:
            raise PolicyError(f"unknown executor {policy.executor!r}: choose one of {', '.join(map(repr, self._executors))}")
        if policy.resources:
            _check_resources(policy, executor)
        executor.check(func)
        if name is None:
            name = getattr(func, "__name__", None) or repr(func)
        if not isinstance(name, str) or not name or name.isspace():  # isspace: what strip() would remove
            raise PolicyError(f"invalid job name {name!r}: use a non-empty string")
        zone = self.tz if tz is None else resolve_zone(tz)
        t0 = self._time()
        if after is not None:
            if trigger is not None:
                raise TriggerError(f"give either a trigger ({trigger!r}) or after={after!r}, not both: a job runs on a "
                                   "time trigger or after other jobs")
            trigger = After((after,) if isinstance(after, str) else tuple(after))
        elif trigger is None:
            raise TriggerError(f"add() needs a trigger: e.g. sched.add(func, 'every 5m') or after='upstream'; {SPEC_HELP}")
        if start is None and end is None:  # the common case: no bounds, so interval or not parses alike
            start_ts = end_ts = None
            interval = False  # (only bounds and not_before depend on it)
            parsed = self._trigger_cache.get((trigger, zone)) if trigger.__class__ is str else None
            trig = (parsed or self._parse(trigger, zone, t0, None, None)).anchored(t0)
        else:
            start_ts = None if start is None else _instant(start, zone, "start")
            end_ts = None if end is None else _instant(end, zone, "end")
            if start_ts is not None and end_ts is not None and end_ts < start_ts:
                raise PolicyError(f"end {end!r} is before start {start!r}: swap them")
            interval = isinstance(trigger, Interval) or (isinstance(trigger, str) and trigger.split()[:1] == ["every"]
                                                         and self._parse(trigger, zone, t0, None, None).kind == "interval")
            if interval:
                trig = self._parse(trigger, zone, t0, None if start is None else datetime.fromtimestamp(start_ts, zone),
                                   None if end is None else datetime.fromtimestamp(end_ts, zone)).anchored(t0)
            else:
                trig = self._parse(trigger, zone, t0, None, None).anchored(t0)
                if end_ts is not None and policy.until is None:
                    policy = replace(policy, until=end_ts)  # a cron or date trigger ends at `end`
        if debounce is not None:
            if not isinstance(trig, OnFile):
                raise PolicyError(f"debounce={debounce!r} applies to 'on file PATTERN' triggers, not to {trig.spec!r}")
            trig = OnFile(trig.pattern, debounce, tz=trig.tz)
        if isinstance(trig, (After, OnFile)) and (start is not None or end is not None or policy.catchup):
            raise PolicyError(f"start/end/catchup apply to time triggers, not to {trig.spec!r}"
                              + (": backfill or catch up its root job instead" if isinstance(trig, After) else ""))
        if isinstance(trig, After):
            if start is not None or end is not None or policy.catchup:
                raise PolicyError(f"start/end/catchup apply to time triggers, not to {trig.spec!r}: backfill or "
                                  "catch up its root job instead")
            self._check_upstreams(name, trig)
        elif "trigger_rule" in options:
            raise PolicyError(f"trigger_rule={options['trigger_rule']!r} applies to jobs that run after other jobs "
                              f"('after NAME'), not to {trig.spec!r}")
        catchup: list[float] = []
        if policy.catchup:
            if start_ts is None:
                raise PolicyError("catchup=True needs a start (e.g. start='2026-11-01'): the first fire time to run")
            catchup = list(self._fire_times(trig, start_ts, min(t0, policy.until or t0), f"catch-up of {name!r}")[0])
        not_before = None if start_ts is None or interval else start_ts
        first = trig.next_timestamp(t0 if not_before is None else max(t0, not_before - 1e-6))
        until = policy.until
        if until is not None and not catchup and (until <= t0 or (first is not None and first > until and not now)):
            when = "is in the past" if until <= t0 else f"comes before the first fire time ({_fmt(first, zone)})"
            raise PolicyError(f"invalid until {_fmt(until, zone)}: it {when}, so the job would never run "
                              f"(now: {_fmt(t0, zone)}); pick a later time or drop until")
        if first is None and not now and not isinstance(trig, (After, OnFile)) and not catchup:
            raise TriggerError(
                f"trigger {trig.spec!r} never fires after now ({datetime.fromtimestamp(t0, zone):%Y-%m-%d %H:%M:%S %Z}): "
                "pick a future time, or pass now=True to run it once right away"
            )
        if self._binding.here():  # on the loop's thread (the common case, e.g. adding 100,000 jobs in a cell)
            return self._add(func, name, trig, policy, now, paused, meta, persist, not_before, catchup)
        return self._binding.call("Scheduler.add", self._add, func, name, trig, policy, now, paused, meta, persist,
                                  not_before, catchup)

    def _fire_times(self, trig: Trigger, start: float, end: float, what: str) -> tuple[Iterable[float], int]:
        """Fire times of ``trig`` in ``[start, end]``, oldest first (lazily), and how many there are;
        more than MAX_BATCH is refused.  Intervals are counted by arithmetic, other triggers by walking."""
        first = trig.next_timestamp(start - 1e-6)
        if isinstance(trig, Interval) and trig._start is not None:
            every, anchor, last = trig.seconds, trig._start, trig._end
            if first is not None and first > start:  # the grid reaches back before its anchor
                first = anchor - math.floor((anchor - start) / every + 1e-9) * every
            stop = end if last is None else min(end, last)
            count = 0 if first is None or first > stop + 1e-6 else math.floor((stop - first) / every + 1e-9) + 1
            self._check_batch(count, trig, start, end, what)
            return (first + k * every for k in range(count)), count
        times: list[float] = []
        t = first
        while t is not None and t <= end + 1e-6:
            times.append(t)
            self._check_batch(len(times), trig, start, end, what)
            t = trig.next_timestamp(t)
        return times, len(times)

    def _check_batch(self, count: int, trig: Trigger, start: float, end: float, what: str) -> None:
        if count > MAX_BATCH:
            raise PolicyError(f"{what} from {datetime.fromtimestamp(start, self.tz):%Y-%m-%d %H:%M} to "
                              f"{datetime.fromtimestamp(end, self.tz):%Y-%m-%d %H:%M} would run more than "
                              f"{MAX_BATCH:,} fire times of {trig.spec!r}: pick a shorter range")

    def backfill(self, name: str, start: Any, end: Any, *, max_active: int = 1, downstream: bool = True) -> Backfill:
        """Run job ``name`` once for every fire time of its trigger in ``[start, end]`` (both inclusive;
        naive times in the job's zone), oldest first, ``max_active`` at a time, reason ``backfill``.

        Each run stands for its fire time: ``scheduled_at``, data interval and results rows carry it,
        and (``downstream=True``) its downstream chain runs with the same logical time.  The job keeps
        running on its schedule meanwhile.  Returns a :class:`~nbsched.engine.Backfill`: ``await`` it for
        the history frame of the backfill's runs, ``cancel()`` to stop it.
        """
        job = self.get(name)
        if isinstance(job.trigger, After):
            roots = self._roots_of(name)
            raise PolicyError(f"job {name!r} runs after other jobs: backfill its root instead "
                              f"({', '.join(map(repr, roots))}); its runs bring {name!r} along")
        if isinstance(max_active, bool) or not isinstance(max_active, int) or max_active < 1:
            raise PolicyError(f"invalid max_active {max_active!r}: a whole number >= 1")
        zone = job.trigger.tz
        start_ts, end_ts = _instant(start, zone, "start"), _instant(end, zone, "end", end_of_day=True)
        if end_ts < start_ts:
            raise PolicyError(f"backfill end {end!r} is before its start {start!r}: swap them")
        times, count = self._fire_times(job.trigger, start_ts, end_ts, f"backfill of {name!r}")
        return self._binding.call("Scheduler.backfill", self._start_backfill, job, times, count, max_active,
                                  downstream)

    def backfills(self, name: str | None = None) -> list[Backfill]:
        """Backfills in progress (of one job, or all)."""
        return [Backfill(b) for key, batches in self._backfills.items() if name in (None, key) for b in batches]

    def _roots_of(self, name: str) -> list[str]:
        roots, seen, stack = [], set(), [name]
        while stack:
            current = stack.pop()
            job = self._jobs.get(current)
            ups = job.upstreams if job is not None else ()
            if not ups and current != name:
                roots.append(current)
            for up in ups:
                if up not in seen:
                    seen.add(up)
                    stack.append(up)
        return sorted(roots)

    def add_notebook(self, path: Any, trigger: "str | Trigger | None" = None, *, name: str | None = None,
                     parameters: dict[str, Any] | None = None, output_dir: Any = None, kernel_name: str | None = None,
                     after: "str | Iterable[str] | None" = None, **options: Any) -> Job:
        """Schedule a notebook file: each run executes it top to bottom in a fresh kernel.

        ``sched.add_notebook("etl.ipynb", "daily at 02:00", parameters={"region": "eu"})``;
        ``sched.add_notebook("report.ipynb", "after etl")``.  ``parameters`` are injected as a cell
        after the cell tagged ``parameters`` (as papermill does; at the top if none is tagged), the
        executed notebook of every run is kept in ``output_dir`` (default: ``nbsched-runs/`` next to
        the file) and its path is the run's value (the results frame lists them); a failing cell fails
        the run (:class:`~nbsched.notebook_files.NotebookCellError`, with the kernel's traceback in
        history).  ``name`` defaults to the file's stem; ``kernel_name`` to the notebook's own kernel.
        Other keywords are :meth:`add`'s (``retries``, ``timeout`` - which kills the kernel -,
        ``max_instances``, ``trigger_rule``, ...).  A missing file, a file that is not a notebook or a
        parameter that is not JSON-able raises :class:`~nbsched.notebook_files.NotebookFileError`
        and adds nothing.  See :mod:`nbsched.notebook_files`.
        """
        executor = options.get("executor", "loop")
        if executor != "loop":
            raise PolicyError(f"executor={executor!r}: a notebook job runs its notebook in a kernel of its own and "
                              "awaits it on the scheduler's loop, so it takes no executor (drop executor=)")
        func = notebook_job(path, name=name, parameters=parameters, output_dir=output_dir, kernel_name=kernel_name)
        return self.add(func, trigger, name=func.__name__, after=after, **options)

    def _policy(self, options: dict[str, Any]) -> JobPolicy:
        """``JobPolicy.build(self.defaults, **options)``, shared by the jobs added with the same options
        (100,000 jobs with ``retries=2`` hold one policy, validated once).  Options are keyed with their
        types (``True == 1`` but ``max_instances=True`` is an error); unhashable values are not cached."""
        defaults = self.defaults
        cache = self._policy_cache
        if cache and cache.get(None) is not defaults:  # the defaults were replaced: start over
            cache.clear()
        try:
            key = tuple([(k, v.__class__, v) for k, v in options.items()])
            policy = cache.get(key)
        except TypeError:  # an unhashable value (resources={'GPU': 1})
            return JobPolicy.build(defaults, **options)
        if policy is None:
            policy = JobPolicy.build(defaults, **options)
            if len(cache) < 256:
                cache[None] = defaults
                cache[key] = policy
        return policy

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
            return self._binding.call("Scheduler.pause", self._pause_all)
        return self._binding.call("Scheduler.pause", self._pause, name, "paused")

    def resume(self, name: str | None = None) -> "Job | None":
        """Resume from *now*: fire times that passed while paused are neither run nor recorded as missed."""
        if name is None:
            return self._binding.call("Scheduler.resume", self._resume_all)
        return self._binding.call("Scheduler.resume", self._resume, name)

    def run_now(self, name: str, *, downstream: bool = True) -> RunHandle:
        """Run the job once, now (also when paused or finished).  ``await`` the handle for its value.

        The jobs after it run as well (reason ``upstream``); ``downstream=False`` runs this job alone."""
        return self._binding.call("Scheduler.run_now", self._run_now, name, downstream)

    def remove(self, name: str, *, cascade: bool = False) -> None:
        """Remove the job.  A run in progress finishes and is recorded; its history stays queryable.

        A job that others run after cannot be removed alone (the error names them): ``cascade=True``
        removes them too."""
        binding = self._binding
        loop = binding.loop
        if not cascade and binding.thread == _get_ident() and loop is not None and not binding.closed \
                and not loop.is_closed():  # (binding.here(), written out: removing 100,000 jobs in a cell)
            self._remove(name)
        else:
            self._binding.call("Scheduler.remove", self._remove_cascade if cascade else self._remove, name)

    def downstream_of(self, name: str) -> list[str]:
        """The jobs that run after ``name`` (directly), in the order they were added."""
        return list(self._downstream.get(name, ()))

    def graph(self, name: str | None = None) -> JobGraph:
        """The dependency graph as a picture (an SVG that JupyterLab and nbconvert's HTML show).

        Every job is a node coloured by its last outcome; an edge runs from each upstream to the job
        after it, labelled with the trigger rule when it is not ``all_success``.  With ``name``, only
        the jobs connected to that job (everything above and below it).  A snapshot: call again to
        see later runs.  See :class:`nbsched.graph.JobGraph`."""
        jobs = self._jobs
        names: Iterable[str] = jobs
        if name is not None:
            self.get(name)
            seen, stack = {name}, [name]
            while stack:  # walk both directions, iteratively (chains may be long)
                current = stack.pop()
                job = jobs.get(current)
                for other in (*(job.upstreams if job is not None else ()), *self._downstream.get(current, ())):
                    if other not in seen and other in jobs:
                        seen.add(other)
                        stack.append(other)
            names = [n for n in jobs if n in seen]
        nodes, edges = [], []
        for n in names:
            job = jobs[n]
            nodes.append(GraphNode(n, job.describe(), job.state.value, self._shown_outcome(job)))
            for up in job.upstreams:
                edges.append(GraphEdge(up, n, job.policy.trigger_rule))
        return JobGraph(nodes, edges)

    def _shown_outcome(self, job: Job) -> str | None:
        """The graph's colour: the last outcome, or ``skipped`` when the job's latest row is a run its
        upstreams did not let happen (a branch not taken, a skip propagated down)."""
        log_ = self._logs.get(job.name)
        last_row = log_.last_row() if log_ is not None else None
        if last_row is not None and last_row[REASON] == "upstream" and last_row[OUTCOME] == Outcome.SKIPPED.value:
            return Outcome.SKIPPED.value
        last = job.last_outcome
        return None if last is None else last.value

    def interrupt(self, name: str) -> int:
        """Stop the job's runs in progress (recorded ``interrupted``) and pause the job.

        Returns how many runs were stopped.  (The kernel integration calls this from the interrupt
        button; a plain function blocking the loop is interrupted by a KeyboardInterrupt instead.)
        """
        return self._binding.call("Scheduler.interrupt", self._interrupt, name)

    def remove_all(self) -> None:
        for name in list(self._jobs):
            self.remove(name)

    def reschedule(self, name: str, trigger: "str | Trigger", *, tz: str | tzinfo | None = None) -> Job:
        """Give a job a new trigger (from now), keeping everything else."""
        job = self.get(name)
        zone = resolve_zone(tz) if tz is not None else job.trigger.tz
        t0 = self._time()
        trig = parse_trigger(trigger, tz=zone, now=t0).anchored(t0)
        if isinstance(trig, After):
            self._check_upstreams(name, trig)
        return self._binding.call("Scheduler.reschedule", self._reschedule, job, trig)

    def modify(self, name: str, **options: Any) -> Job:
        """Change a job's policy options (validated like :meth:`add`)."""
        job = self.get(name)
        policy = JobPolicy.build(job.policy, **options)
        if policy.executor not in self._executors:
            raise PolicyError(f"unknown executor {policy.executor!r}: choose one of {', '.join(map(repr, self._executors))}")
        _check_resources(policy, self._executors[policy.executor])
        return self._binding.call("Scheduler.modify", self._modify, job, policy)

    def history(self, name: str | None = None):
        """Run history as a DataFrame: one row per run attempt (and per missed/skipped fire time).

        Columns: job (categorical), run_id, scheduled_at, started_at, finished_at, duration, lateness,
        outcome (categorical), attempt, reason (categorical), worker (the cluster worker's address; empty
        for runs on this machine), error, error_type, traceback.  Times are aware, in the scheduler's
        zone.  Built from the jobs' packed logs without a loop per row.
        """
        self._runs.flush()  # runs that started in a burst still being recorded: their rows first
        if name is not None:
            if name in self._logs:
                return self._logs[name].frame(self.tz)
            raise JobLookupError(self._unknown(name, history=True))
        cache = self._history_cache
        if cache is None or cache[0] != self._version:
            version = self._version  # before building: a row recorded meanwhile (another thread) is not hidden
            frame = history_frame_of(list(self._logs.values()), self.tz)
            self._history_cache = cache = (version, frame)
        return cache[1]

    def results(self, name: str):
        """What the job returned, accumulated over runs, as a DataFrame (with run_id and scheduled_at)."""
        self._runs.flush()
        if name in self._logs:
            return self._logs[name].results.frame(self.tz)
        raise JobLookupError(self._unknown(name, history=True))

    def timeline(self, name: str | None = None):
        """Runs of one job (or all) as pictures: a time axis coloured by outcome, retries grouped with
        their run, lateness and duration histograms.  Displays as inline SVG (also in nbconvert HTML
        and on GitHub) and as text in a terminal; see :class:`nbsched.timeline.Timeline`."""
        from ..timeline import Timeline

        return Timeline(self, name)

    def forget(self, name: str) -> None:
        """Drop the history and results of a removed job."""
        if name in self._jobs:
            raise PolicyError(f"job {name!r} still exists: remove it first, then forget its history")
        self._logs.pop(name, None)
        self._version += 1

    def subscribe(self, callback: Callable[[ev.Event], Any], kinds: Any = None,
                  jobs: Any = None) -> ev.Subscription:
        """Call ``callback(event)`` for events of ``kinds`` (classes from :mod:`nbsched.events`; default all).

        ``jobs``: only the events of these job names (any container supporting ``in``, looked up at each
        event, so a set or dict you keep changing works).  A listener for a few jobs then costs nothing on
        the fires of the other jobs: events are built only for someone who listens."""
        return self.events.subscribe(callback, kinds, jobs)

    def attach_store(self, store: "Store | str | None" = None, *, persist_all: bool = True) -> "Store":
        """Attach a durable store (a path to an SQLite file, or a store object; ``None``: ``nbsched.db``
        in the working directory).  With ``persist_all`` every job added from now on is persisted.
        Attached in place of another store, it takes over the jobs that store persisted."""
        if self._store is not None and store is None:
            self._store.persist_all = self._store.persist_all or persist_all
            return self._store
        from ..store import open_store

        opened = open_store(store)
        opened.persist_all = persist_all
        opened.attach(self)
        previous = self._store
        if previous is not opened:
            if previous is not None:
                previous.close()
            self._store = opened
            for job in self._jobs.values():
                job._row_key = None  # the old store's: ask the new one
                if job._persist and previous is not None:
                    opened.on_job_saved(job)  # persisted jobs move to the new store, fire times and all
        return opened

    @property
    def store(self) -> "Store | None":
        """The attached store (see :class:`nbsched.store.Store`), or None."""
        return self._store

    def restore(self, path: Any = None, *, namespace: dict | None = None) -> list[Job]:
        """Re-register every job persisted in the store (the attached one, ``path``, or ``nbsched.db``)
        with its history and results.  Stored code runs only because you call this.  A stored job
        whose name runs already is left alone; with ``path`` another store, the running persisted
        jobs go on in that one (see :meth:`attach_store`)."""
        if path is not None or self._store is None:
            self.attach_store(path, persist_all=self._store.persist_all if self._store is not None else False)
        return self._store.restore(self, namespace=namespace)

    def load(self, jobs: "Iterable[StoredJob]", *, history: dict[str, list] | None = None,
             run_ids_above: int = 0) -> list[Job]:
        """Bring stored jobs back in one step (what a store's ``restore()`` calls; rarely called directly).

        Each :class:`~nbsched.job.StoredJob` is registered with its history, results and counters,
        then left paused/finished or scheduled at its ``resume_at`` (overdue fire times then go
        through its misfire/coalesce policy).  ``history`` holds older rows of other names (removed
        jobs, or jobs added before this call), put before this session's rows.  Run ids continue
        above ``run_ids_above``.  Jobs whose name exists already are left alone.
        """
        return self._binding.call("Scheduler.load", self._load, list(jobs), history or {}, run_ids_above)

    def merge_history(self, rows: "Iterable[tuple[str, tuple]]", done: Callable[[], None] | None = None) -> bool:
        """Append rows another process recorded (``(job name, row)`` pairs) to the jobs' history, then
        call ``done()``, on the loop.  Safe from any thread: the rows are handed over without waiting.
        Returns False when the loop is gone (nothing merged, ``done`` not called)."""
        return self._binding.post(self._merge, list(rows), done)

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
        """False once the scheduler was shut down."""
        return not self._closed

    @property
    def version(self) -> int:
        """Increases whenever a run is recorded or a job changes (for cheap change polling)."""
        return self._version

    def statistics(self) -> SchedulerStatistics:
        key = self._wheel.next_key
        nxt = None if key is None else datetime.fromtimestamp(key / 1000.0, self.tz)
        runs = self._runs
        return SchedulerStatistics(
            jobs=len(self._jobs), running=sum(j.running for j in self._jobs.values()), paused=self._paused,
            fires=runs.fires, missed=runs.missed, skipped=runs.skipped, errors=runs.errors,
            due_backlog=self._wheel.backlog, next_fire=nxt,
        )

    async def wait_idle(self) -> None:
        """Wait until no run is in progress and no due job is waiting to be processed."""
        loop = self._binding.require("Scheduler.wait_idle")
        while self._busy():
            fut = loop.create_future()
            self._idle_waiters.append(fut)
            await fut

    async def wait_next_run(self, name: str):
        """Wait for the next run of job ``name`` to finish; returns its :class:`~nbsched.history.RunRecord`."""
        job = self.get(name)
        fut = self._binding.require("Scheduler.wait_next_run").create_future()
        if job._waiters is None:
            job._waiters = []
        job._waiters.append(fut)
        return await fut

    def run_result(self, run_id: int) -> "asyncio.Future[Any]":
        """A future of run ``run_id``'s value (what ``await RunHandle`` waits on)."""
        return self._runs.future(run_id, self._binding.require("awaiting a run"))

    def _busy(self) -> bool:
        return (bool(self._runs.tasks) or self._wheel.busy or bool(self._flow) or self._flowing
                or bool(self._catchups) or bool(self._backfills))

    def shutdown(self, wait: bool = False) -> "asyncio.Future[None] | None":
        """Stop all timers.  ``wait=False`` cancels running jobs (recorded ``cancelled``);
        ``wait=True`` lets them finish - ``await sched.shutdown(wait=True)`` waits for that.
        Executors are shut down.  The scheduler cannot be used afterwards."""
        if self._closed:
            return None
        loop = self._binding.elsewhere()
        if loop is not None:  # not _binding.call(): that refuses calls once closed
            pending = LoopBinding.hand_over(loop, self._shutdown_now, wait)
            if self._background is None:
                return pending
            if pending is not None:  # wait=True: block until the running jobs have finished
                _wait_from_thread(loop, pending)
            self._background.stop()
            return None
        pending = self._shutdown_now(wait)
        if self._background is not None:  # called on the loop thread (e.g. from a job): stop after it
            self._background.stop()
        return pending

    # ======================================================================== internals: jobs
    def _add(self, func, name, trig, policy, now, paused, meta, persist=None, not_before=None, catchup=()) -> Job:
        # (hot when a cell adds 100,000 jobs: the common steps are written out here rather than called)
        if self._closed:
            raise SchedulerShutdownError("this scheduler was shut down; create a new Scheduler()")
        wheel = self._wheel
        if not wheel.draining:
            self._check_clock()  # a step not noticed yet must not move the new job's fire times
        log_ = self._logs.get(name)
        if log_ is None:  # a new name (else _log_for applies the policy's retention to the kept log)
            log_ = self._logs[name] = RunLog(name, policy.history_rows, policy.history_age,
                                             results_rows=policy.results_rows, results_age=policy.results_age)
        else:
            log_ = self._log_for(name, policy)
        jobs = self._jobs
        old = jobs.pop(name, None)
        if old is not None:
            self._detach(old)
        job = Job(self, name, func, trig, policy, meta, log_)
        self._gc.added()
        after = isinstance(trig, After)
        if after:
            self._link(job)
        store = self._store
        if persist is None:
            persist = store is not None and getattr(store, "persist_all", True)
        if persist:
            if store is None:
                self.attach_store(None, persist_all=False)  # the default file, for this job only
            job._persist = True
        jobs[name] = job
        self._version += 1
        t0 = self._time()
        if paused:
            job._paused = True
        elif after:
            pass  # runs when its upstreams deliver
        elif isinstance(trig, OnFile):
            self._watch(job)
        else:
            first = trig.next_timestamp(t0 if not_before is None else max(t0, not_before - 1e-6))
            until = policy.until
            if first is not None and (until is None or first <= until):
                job._next_ts = first  # (self._schedule, written out)
                jitter = policy.jitter
                wheel.put(job, first + self._random.uniform(0.0, jitter) if jitter else first)
            elif not now:
                job._finished = True
        if self._started:  # (self._announce, written out)
            events = self.events
            if events._subs:
                kind = ev.JobAdded if old is None else ev.JobModified
                if events.wants(kind, name):
                    events.emit(kind(self.clock.now(), name))
        else:
            self._announce(job, replaced=old is not None)
        if job._persist:
            self._store.on_job_saved(job)
        if now:
            self._runs.start_runs(job, [t0], t0, scheduled=True)
        if catchup and not paused:
            self._start_catchup(job, catchup)
        return job

    def _log_for(self, name: str, policy: JobPolicy) -> RunLog:
        log_ = self._logs.get(name)
        if log_ is None:
            log_ = self._logs[name] = RunLog(name, policy.history_rows, policy.history_age,
                                             results_rows=policy.results_rows, results_age=policy.results_age)
        else:
            log_.set_retention(policy.history_rows, policy.history_age)
            log_.set_results_retention(policy.results_rows, policy.results_age)
        return log_

    def _announce(self, job: Job, replaced: bool) -> None:
        if not self._started:
            self._started = True
            self._emit_simple(ev.SchedulerStarted)
        self._emit_job(ev.JobModified if replaced else ev.JobAdded, job.name)

    def _link(self, job: Job) -> None:
        """Wire an after-job to its upstreams (a fresh gate: a new definition starts a new round)."""
        trig = job.trigger
        if isinstance(trig, After):
            self._gates[job.name] = Gate(trig.upstreams, job.policy.trigger_rule)
            for up in trig.upstreams:
                downs = self._downstream.setdefault(up, [])
                if job.name not in downs:
                    downs.append(job.name)

    def _unlink(self, job: Job) -> None:
        if self._gates.pop(job.name, None) is not None:
            for up in job.trigger.upstreams:
                downs = self._downstream.get(up)
                if downs and job.name in downs:
                    downs.remove(job.name)
                    if not downs:
                        del self._downstream[up]

    def _check_upstreams(self, name: str | None, trig: After) -> None:
        """Unknown upstreams, a job after itself, or a cycle: refused with the names."""
        for up in trig.upstreams:
            if up == name:
                raise TriggerError(f"job {name!r} cannot run after itself: name other jobs in 'after ...'")
            if up not in self._jobs:
                raise TriggerError(f"unknown upstream job {up!r} in {trig.spec!r}: " + self._unknown(up).split(": ", 1)[1])
        if name is None:
            return
        # Would `name` be reachable from its own upstreams?  Walk the upstream links (iteratively: a
        # chain may be thousands of jobs long), remembering how each job was reached.
        came_from: dict[str, str] = {up: name for up in trig.upstreams}
        stack = list(trig.upstreams)
        while stack:
            current = stack.pop()
            if current == name:
                back, step = [], came_from[name]  # the jobs between, walked back towards the new job
                while step != name:
                    back.append(step)
                    step = came_from[step]
                cycle = " -> ".join([name, *reversed(back), name])
                raise TriggerError(f"'after' would make a cycle: {cycle}; a job cannot (indirectly) run after itself")
            job = self._jobs.get(current)
            for up in (job.upstreams if job is not None else ()):
                if up not in came_from:
                    came_from[up] = current
                    stack.append(up)

    def _detach(self, job: Job) -> None:
        job._removed = True
        if self._gates:
            self._unlink(job)
        if self._watches or self._landed:
            self._unwatch(job.name)
        self._wheel.take(job)
        if job._waiters:
            for fut in job._waiters:
                if not fut.done():
                    fut.cancel()
            job._waiters = None

    def _remove_cascade(self, name: str) -> None:
        self.get(name)
        order, seen, stack = [], {name}, [name]  # every job below, removed deepest first
        while stack:
            current = stack.pop()
            order.append(current)
            for down in self._downstream.get(current, ()):
                if down not in seen and down in self._jobs:
                    seen.add(down)
                    stack.append(down)
        for current in self._bottom_up(order):
            self._remove(current)

    def _bottom_up(self, names: list[str]) -> list[str]:
        """``names`` ordered so every job comes after all the jobs that run after it."""
        members, placed, out = set(names), set(), []
        pending = list(names)
        while pending:
            rest = []
            for n in pending:
                if all(d in placed or d not in members for d in self._downstream.get(n, ())):
                    placed.add(n)
                    out.append(n)
                else:
                    rest.append(n)
            if len(rest) == len(pending):  # cannot happen without a cycle; never loop forever
                out.extend(rest)
                break
            pending = rest
        return out

    def _remove(self, name: str) -> None:
        # (hot when a cell removes 100,000 jobs: get, _detach's common case and _emit_job written out)
        jobs = self._jobs
        job = jobs.get(name)
        if job is None:
            raise JobLookupError(self._unknown(name))
        if self._downstream:
            downs = self._downstream.get(name)
            if downs:
                downs = [d for d in downs if d in jobs]
            if downs:
                raise PolicyError(f"cannot remove {name!r}: {', '.join(map(repr, downs))} run(s) after it; remove "
                                  f"those first, or remove({name!r}, cascade=True) (%schedule remove {name} --cascade) "
                                  "for all")
        del jobs[name]
        if self._gates or self._watches or self._landed or job._waiters:
            self._detach(job)
        else:  # (_detach's common case, with TimingWheel.take written out: its bucket entry goes stale)
            job._removed = True
            job._key = job._next_ts = job._planned = None
        self._gc.removed()
        self._version += 1
        if job._persist and self._store is not None:
            self._store.on_job_removed(name)
        events = self.events
        if events._subs and events.wants(ev.JobRemoved, name):
            events.emit(ev.JobRemoved(self.clock.now(), name))

    def _changed(self, job: Job) -> None:
        self._version += 1
        if job._persist and self._store is not None and not job._removed:
            self._store.on_job_saved(job)

    def _pause(self, name: str, reason: str) -> Job:
        job = self.get(name)
        if not job._paused:
            job._paused = True
            self._wheel.take(job)
            self._unwatch(name)  # a paused job consumes nothing
            job._backlog = None
            self._changed(job)
            self._emit_job(ev.JobPaused, name, reason=reason)
        return job

    def _pause_interrupted(self, job: Job) -> None:
        """An interrupted run pauses its job (a runaway job must not freeze the kernel again)."""
        if self._jobs.get(job.name) is job:
            self._pause(job.name, "interrupted")

    def _resume(self, name: str) -> Job:
        job = self.get(name)
        if job._paused:
            job._paused = False
            self._changed(job)
            if name in self._gates:  # an after-job resumes from now: a new round
                self._gates[name] = Gate(job.trigger.upstreams, job.policy.trigger_rule)
            if not job._finished:
                self._schedule_from_now(job)
            self._emit_job(ev.JobResumed, name)
        return job

    def _interrupt(self, name: str) -> int:
        job = self.get(name)
        stopped = self._runs.interrupt(job)
        if not stopped:
            self._pause(name, "interrupted")
        return stopped

    def _schedule_from_now(self, job: Job) -> None:
        if isinstance(job.trigger, After):
            return  # after-jobs have no fire times: they wait for deliveries
        if isinstance(job.trigger, OnFile):
            self._watch(job)  # from now: files present now do not fire
            return
        nxt = job.trigger.next_timestamp(self._time())
        if nxt is not None and (job.policy.until is None or nxt <= job.policy.until):
            self._schedule(job, nxt)
        else:
            self._mark_finished(job)

    def _pause_all(self) -> None:
        if not self._paused:
            self._paused = True
            self._wheel.stopped = True
            self._wheel.disarm()
            self._version += 1
            self._emit_simple(ev.SchedulerPaused)

    def _resume_all(self) -> None:
        if self._paused:
            self._paused = False
            self._wheel.stopped = False
            self._version += 1
            self._rearm_all()
            self._emit_simple(ev.SchedulerResumed)

    def _check_clock(self) -> bool:
        """Has the wall clock been stepped since the last look (every timer wake, at most a second
        apart while jobs wait)?  Then keep intervals in elapsed time and record the step.  Returns True
        when it rebuilt the timing wheel."""
        elapsed = self._elapsed
        if elapsed is None:
            return False
        offset = self._time() - elapsed()
        step = offset - self._clock_offset
        self._clock_offset = offset  # slow drift (NTP slewing) is absorbed look by look
        if -CLOCK_STEP_THRESHOLD < step < CLOCK_STEP_THRESHOLD:
            return False
        self._on_clock_step(step)
        return True

    def _on_clock_step(self, step: float) -> None:
        now = self._time()
        self._clock_jumps.append((now, step))
        moved = 0
        wheel = self._wheel
        waiting = [job for job in self._jobs.values() if job._key is not None and job._next_ts is not None]
        wheel.clear()
        direction = "back" if step < 0 else "forward"
        for job in waiting:
            nominal, planned = job._next_ts, job._planned
            if isinstance(job.trigger, Interval):  # elapsed time: the rhythm moves with the wall clock
                job.trigger = job.trigger.shifted(step)
                nominal += step
                planned += step
                moved += 1
                note = "interval jobs keep their rhythm in elapsed time: the next fire time moved with the clock"
            else:
                note = "cron and 'at' jobs follow the wall clock: the next fire time stays where it was"
            job._next_ts = nominal
            wheel.put(job, planned)
            self._runs.record_clock_step(job, nominal, step, f"the wall clock was stepped {direction} by "
                                                             f"{format_duration(abs(step))}; {note}")
        self._version += 1
        log.warning("nbsched: the wall clock was stepped %s by %s; %d interval job(s) keep their rhythm in elapsed "
                    "time, cron and 'at' jobs follow the wall clock", direction, format_duration(abs(step)), moved)
        if self.events.wants(ev.ClockJumped):
            self.events.emit(ev.ClockJumped(self.clock.now(), timedelta(seconds=step)))

    def clock_jumps(self) -> list[tuple[datetime, timedelta]]:
        """Steps of the wall clock this scheduler noticed: (when it noticed, by how much; negative: back)."""
        return [(datetime.fromtimestamp(t, self.tz), timedelta(seconds=d)) for t, d in self._clock_jumps]

    def _rearm_all(self) -> None:
        """Reschedule every active job from now (after a scheduler pause or a move to a new loop)."""
        self._wheel.clear()
        for job in self._jobs.values():
            if not job._paused and not job._finished:
                job._key = None
                self._schedule_from_now(job)

    def _reschedule(self, job: Job, trig: Trigger) -> Job:
        self._unlink(job)
        self._unwatch(job.name)
        job.trigger = trig
        self._link(job)
        job._finished = False
        job._key = None
        self._changed(job)
        if not job._paused:
            self._schedule_from_now(job)
        self._emit_job(ev.JobModified, job.name)
        return job

    def _modify(self, job: Job, policy: JobPolicy) -> Job:
        job.policy = policy
        gate = self._gates.get(job.name)
        if gate is not None:
            gate.rule = policy.trigger_rule
        job.log.set_retention(policy.history_rows, policy.history_age)
        job.log.set_results_retention(policy.results_rows, policy.results_age)
        self._changed(job)
        self._emit_job(ev.JobModified, job.name)
        return job

    def _mark_finished(self, job: Job) -> None:
        self._wheel.take(job)
        if not job._finished:
            job._finished = True
            self._changed(job)
            self._emit_job(ev.JobFinished, job.name)

    def _run_now(self, name: str, downstream: bool = True) -> RunHandle:
        job = self.get(name)
        t0 = self._time()
        runs = self._runs
        runs.expect(runs.run_ids + 1)
        run_id = runs.start_runs(job, [t0], t0, scheduled=False, deliver=downstream)
        return RunHandle(self, name, run_id)

    # ======================================================================== internals: time
    def _schedule(self, job: Job, ts: float) -> None:
        """Wait ``job`` for nominal fire time ``ts`` (plus jitter)."""
        job._next_ts = ts
        jitter = job.policy.jitter
        self._wheel.put(job, ts + self._random.uniform(0.0, jitter) if jitter else ts)

    def _fire(self, job: Job, now: float) -> None:
        """A job's (planned) fire time has come: carry out the planner's decision."""
        nominal = job._next_ts
        planned = job._planned
        policy = job.policy
        if policy.unbounded and not self._catchups:
            # The common case, without building a plan: no bounds, no grace, the next fire time is
            # still ahead, so the planner's answer is "run this one, wait for the next" (tests check
            # both paths agree).  Anything else goes through plan_fire.
            trigger = job.trigger
            nxt = trigger.next_timestamp(nominal)
            if nxt is not None and nxt > now:
                job._next_ts = nxt
                jitter = policy.jitter
                self._wheel.put(job, nxt + self._random.uniform(0.0, jitter) if jitter else nxt)
                self._runs.start_scheduled(job, nominal, planned, now)
                return
            if nxt is not None and policy.coalesce == "latest":
                # A few fire times overdue (the loop fell behind, e.g. 100,000 jobs a second on a busy
                # machine): run the newest, record the others missed - the planner's answer, without
                # its lists, so that a scheduler behind its schedule is not slower per fire than one
                # on time and can catch up.  More overdue than that: the planner (it counts them).
                missed = [nominal]
                for _ in range(_FEW_OVERDUE):
                    following = trigger.next_timestamp(nxt)
                    if following is None:
                        break
                    if following > now:
                        job._next_ts = following
                        jitter = policy.jitter
                        self._wheel.put(job, following + self._random.uniform(0.0, jitter) if jitter else following)
                        runs = self._runs
                        for t in missed:
                            runs.record_missed(job, t, now - t)
                        runs.start_scheduled(job, nxt, nxt, now)
                        return
                    missed.append(nxt)
                    nxt = following
        plan = plan_fire(job.trigger, policy, job._runs, nominal, planned, now)
        if plan.next is None:
            self._mark_finished(job)
        else:
            self._schedule(job, plan.next)
        runs = self._runs
        for t in plan.missed:
            runs.record_missed(job, t, now - t)
        if plan.uncounted:  # more than retention keeps: one summary row carries the exact count
            first = job.trigger.next_timestamp(nominal)
            runs.record_missed_summary(job, first, now - first, plan.uncounted)
        catching_up = self._catchups.get(job.name) if self._catchups else None
        if catching_up is not None and plan.run:  # live fires wait their turn behind the catch-up
            for t in plan.run:
                job._runs += 1
                catching_up.add(t, SCHEDULE)
            return
        if plan.run:
            if len(plan.run) == 1 and not plan.missed:
                runs.start_runs(job, plan.run, planned, scheduled=True, now=now)
            else:
                runs.start_runs(job, plan.run, plan.run[0], scheduled=True)

    # ======================================================================== internals: data triggers
    def _watch(self, job: Job) -> None:
        from ..watch import FileWatch  # bottom layer; watchfiles itself is imported by it, lazily

        self._unwatch(job.name)
        name = job.name
        trig = job.trigger
        watch = FileWatch(trig.pattern, debounce=trig.debounce, on_batch=lambda paths: self._files_landed(name, paths),
                          clock=self.clock, loop=self._binding.require("an 'on file' job"))
        watch.start()
        self._watches[name] = watch

    def _unwatch(self, name: str) -> None:
        watch = self._watches.pop(name, None)
        self._landed.pop(name, None)
        if watch is not None:
            watch.stop()

    def _files_landed(self, name: str, paths: list[str]) -> None:
        """A batch of files settled: run the job with them (``current_run().changed``), or keep them for
        its next run if it is busy (nothing that landed is lost)."""
        job = self._jobs.get(name)
        if job is None or job._paused or self._closed:
            return
        if job._running - job._batch_running >= job.policy.max_instances:
            self._landed.setdefault(name, set()).update(paths)
            return
        job._runs += 1
        self._runs.start_run(job, self._time(), SCHEDULE, RunInputs(changed=tuple(paths)), True)

    def watch_backend(self, name: str) -> str | None:
        """How an 'on file' job watches: ``"native"`` or ``"polling"`` (None when it is not watching)."""
        watch = self._watches.get(name)
        return None if watch is None else watch.backend

    # ======================================================================== internals: batches
    def _start_catchup(self, job: Job, times: list[float]) -> None:
        job._runs += len(times)
        batch = RunBatch(self, job, [(t, CATCHUP) for t in times], len(times), job.policy.max_active_runs, True)
        self._catchups[job.name] = batch
        batch.pump()

    def _start_backfill(self, job: Job, times: Iterable[float], count: int, max_active: int,
                        downstream: bool) -> Backfill:
        batch = RunBatch(self, job, ((t, BACKFILL) for t in times), count, max_active, downstream)
        self._backfills.setdefault(job.name, []).append(batch)
        self._version += 1
        batch.pump()
        return Backfill(batch)

    def _batch_finished(self, batch: RunBatch) -> None:
        name = batch.job.name
        if self._catchups.get(name) is batch:
            del self._catchups[name]
        batches = self._backfills.get(name)
        if batches and batch in batches:
            batches.remove(batch)
            if not batches:
                del self._backfills[name]
        self._version += 1
        self._maybe_idle()

    # ======================================================================== internals: workflows
    def _delivered(self, job: Job, run_id: int, nominal: float, outcome: str, value: Any,
                   branch: tuple | None, inputs: RunInputs | None = None) -> None:
        """A run of ``job`` reached its final outcome: hand it to the jobs after it (see ._flow).

        One item per finished run (with a snapshot of the jobs after it), not one per downstream job:
        a fan-out of 10,000 is expanded inside the sliced drain, so no loop turn pays for all of it."""
        downs = self._downstream.get(job.name)
        if not downs:
            return
        if inputs is not None and (inputs.trigger is not None or inputs.interval_start is not None):
            source, start = inputs.trigger, inputs.interval_start  # inherited further down the chain
        else:
            source, start = job.trigger, None
        self._flow.append((job.name, tuple(downs), 0, run_id, nominal, outcome, value, branch, source, start))
        if not self._flowing:
            self._drain_flow()

    def _drain_flow(self) -> None:
        """Hand deliveries to downstream gates for at most a slice, then give the loop back.

        One loop, not recursion: a chain of 1,000 plain functions runs inline here without growing
        the stack, and a fan-out of 10,000 is worked through in slices like a burst of fires (the rest
        of a fan-out goes back to the front of the queue, so deliveries keep their order)."""
        self._flowing = True
        flow = self._flow
        deadline = perf_counter() + SLICE_SECONDS
        while flow:
            upstream, downs, i, run_id, nominal, outcome, value, branch, source, start = flow.popleft()
            n = len(downs)
            # one delivery for all the jobs after this run (it is immutable), one for the branches not taken
            taken = Delivery(upstream, run_id, nominal, outcome, value if outcome == "success" else None, None,
                             source, start)
            not_taken = None if branch is None else Delivery(
                upstream, run_id, nominal, "skipped", None, f"branch taken at {upstream!r}: {', '.join(branch)}",
                source, start)
            while i < n:
                name = downs[i]
                i += 1
                try:
                    self._deliver_one(name, taken if branch is None or name in branch else not_taken)
                except BaseException:  # one bad delivery must not stop the others
                    log.exception("nbsched: internal error while handing a run of %r to %r", upstream, name)
                if perf_counter() > deadline:
                    if i < n:
                        flow.appendleft((upstream, downs, i, run_id, nominal, outcome, value, branch, source, start))
                    if flow:
                        self._binding.loop.call_soon(self._drain_flow)
                        return
        self._flowing = False
        self._maybe_idle()

    def _deliver_one(self, name: str, delivery: Delivery) -> None:
        job = self._jobs.get(name)
        gate = self._gates.get(name)
        if job is None or gate is None or job._paused or gate.upstreams != job.trigger.upstreams:
            return  # gone, paused (a paused downstream consumes nothing), or no longer after this upstream
        what = gate.direct(delivery)
        if what is not None:  # one upstream, nothing waiting (the common case): no round, no search
            up = delivery.upstream
            inputs = RunInputs({up: delivery.value}, delivery.trigger, delivery.interval_start)
            self._decided(job, gate, what, delivery.scheduled, inputs, {up: delivery} if what != RUN else None)
            return
        decisions, overflow = gate.offer(delivery)
        for lost in overflow:
            self._runs.record_not_run(job, lost.scheduled, Outcome.MISSED, f"more than {MAX_PENDING} runs of "
                                      f"{lost.upstream!r} waited for {name!r}: the oldest was dropped", deliver=False)
        for what, scheduled, consumed in decisions:
            latest = max(consumed.values(), key=lambda d: d.scheduled)  # the data interval comes from it
            inputs = RunInputs({up: d.value for up, d in consumed.items()}, latest.trigger, latest.interval_start)
            self._decided(job, gate, what, scheduled, inputs, consumed)

    def _decided(self, job: Job, gate: Gate, what: str, scheduled: float, inputs: RunInputs,
                 consumed: dict | None) -> None:
        """Carry out a gate's decision for ``job``: start the run (or queue it for a free instance), or
        record why it does not run (``consumed``: the deliveries that decided it)."""
        runs = self._runs
        if what == RUN:
            if job._running - job._batch_running < job.policy.max_instances and not gate.ready:
                runs.start_upstream_run(job, scheduled, inputs)
            else:
                gate.ready.append((scheduled, inputs))  # waits for a free instance, in order
                if len(gate.ready) > MAX_PENDING:
                    lost_at = gate.ready.popleft()[0]
                    runs.record_not_run(job, lost_at, Outcome.MISSED, f"more than {MAX_PENDING} runs of "
                                        f"{job.name!r} waited for a free instance", deliver=False)
        else:
            runs.record_not_run(job, scheduled, Outcome(what), _why(what, consumed), inputs=inputs)

    def _start_ready(self, job: Job) -> None:
        """A downstream job has a free instance: start the oldest run waiting for one."""
        if job.name in self._landed:  # files that landed while the job was busy: one run for all of them
            self._files_landed(job.name, sorted(self._landed.pop(job.name)))
            return
        gate = self._gates.get(job.name)
        if gate is not None and gate.ready and job._running - job._batch_running < job.policy.max_instances:
            scheduled, inputs = gate.ready.popleft()
            self._runs.start_upstream_run(job, scheduled, inputs)

    def _check_branch(self, job: Job, branch: Any) -> Exception | None:
        """A Branch naming jobs that do not run after ``job`` is the run's error (never ignored)."""
        downs = self._downstream.get(job.name, [])
        unknown = [t for t in branch.targets if t not in downs]
        if not unknown:
            return None
        return ValueError(f"{branch!r} from job {job.name!r} names {', '.join(map(repr, unknown))}, which do not run "
                          f"after it; its downstream jobs are {', '.join(map(repr, downs)) or 'none'}")

    def _maybe_idle(self) -> None:
        """Wake ``wait_idle()`` callers once nothing runs and nothing is due."""
        if self._idle_waiters and not self._busy():
            waiters, self._idle_waiters = self._idle_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    # ======================================================================== internals: stores
    def _load(self, stored: list[StoredJob], history: dict[str, list], run_ids_above: int) -> list[Job]:
        if self._closed:
            raise SchedulerShutdownError("this scheduler was shut down; create a new Scheduler()")
        loaded = []
        for item in stored:
            if item.name in self._jobs:
                continue
            if item.policy.executor not in self._executors:
                raise PolicyError(f"unknown executor {item.policy.executor!r} for job {item.name!r} (this scheduler "
                                  f"has {', '.join(map(repr, self._executors))}): add it before restoring")
            job = Job(self, item.name, item.func, item.trigger, item.policy, item.meta,
                      self._log_for(item.name, item.policy))
            job._persist = True
            self._jobs[item.name] = job
            self._gc.added()
            if item.history:
                rows = PackedRows.of(item.history)
                job.log.prepend(rows)
                self._count(job, rows)
            for run_id, scheduled, value in item.results:
                job.results_log.append(run_id, scheduled, value)
            job._runs = item.runs
            job._paused = item.paused
            policy = item.policy
            ts = item.resume_at
            if isinstance(item.trigger, After):
                self._link(job)
                job._finished = item.finished
            elif isinstance(item.trigger, OnFile):
                if not item.paused:
                    self._watch(job)
            elif item.finished or ts is None or (policy.until is not None and ts > policy.until) or \
                    (policy.max_runs is not None and item.runs >= policy.max_runs):
                job._finished = True
            elif not item.paused:
                now = self._time()
                if policy.catchup and ts <= now:  # fire times missed while down: run them, in order
                    times = []
                    t: float | None = ts
                    while t is not None and t <= now and len(times) < MAX_BATCH:
                        times.append(t)
                        t = item.trigger.next_timestamp(t)
                    if t is not None and (policy.until is None or t <= policy.until):
                        self._schedule(job, t)
                    else:
                        job._finished = True
                    self._start_catchup(job, times)
                else:
                    self._schedule(job, ts)
            self._announce(job, replaced=False)
            loaded.append(job)
        for name, rows in history.items():
            if rows:
                log_ = self._logs.get(name)
                if log_ is None:
                    log_ = self._logs[name] = RunLog(name)
                log_.prepend(rows)
        self._runs.run_ids = max(self._runs.run_ids, run_ids_above)
        self._version += 1
        return loaded

    @staticmethod
    def _count(job: Job, rows: PackedRows) -> None:
        """Counters and last outcome of a loaded job, from its stored rows."""
        outcomes = rows.column("outcome")
        counts = Counter(outcomes)
        job._successes = counts["success"]
        job._failures = counts["error"] + counts["timeout"]
        job._missed = counts["missed"]
        job._skipped = counts["skipped"]
        for i in range(len(outcomes) - 1, -1, -1):
            if outcomes[i] not in _NOT_RUNS:
                row = rows.row(i)
                job._last_outcome, job._last_started, job._last_finished = Outcome(row[OUTCOME]), row[2], row[3]
                err = row[7]
                job._last_error = None if err is None else f"{err.type}: {err.message}"
                break

    def _merge(self, rows: list, done: Callable[[], None] | None) -> None:
        logs = self._logs
        for name, row in rows:
            log_ = logs.get(name)
            if log_ is not None:
                log_.append(row)
        if rows:
            self._version += 1
        if done is not None:
            done()

    # ======================================================================== events, shutdown
    def _emit_simple(self, kind: type) -> None:
        if self.events.wants(kind):
            self.events.emit(kind(self.clock.now()))

    def _emit_job(self, kind: type, name: str, **extra: Any) -> None:
        if self.events.wants(kind, name):
            self.events.emit(kind(self.clock.now(), name, **extra))

    def _spawn_listener(self, awaitable: Any, sub: ev.Subscription) -> None:
        """An async listener's call as a task of its own: not work in progress (wait_idle and
        shutdown(wait=True) do not wait for it), cancelled after LISTENER_TIMEOUT (see nbsched.events)."""
        loop = self._binding.loop
        if loop is None or loop.is_closed():
            sub.pending -= 1
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            return
        task = loop.create_task(ev.run_listener(sub, awaitable), name=f"nbsched:listener:{sub.callback!r:.60}")
        tasks = self._listener_tasks
        tasks.add(task)
        timeout = ev.LISTENER_TIMEOUT

        def expire() -> None:
            if not task.done():
                sub.timed_out += 1
                log.error("nbsched: async event listener %r took longer than %gs: cancelled", sub.callback, timeout)
                task.cancel()

        timer = self.clock.call_at(self._time() + timeout, expire, loop)
        task.add_done_callback(lambda t: (tasks.discard(t), timer.cancel()))

    def _post_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` at the loop's next turn (after the caller's current work, e.g. a cell's adds)."""
        loop = self._binding.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon(fn)

    def _shutdown_now(self, wait: bool) -> "asyncio.Future[None] | None":
        self._runs.flush()  # runs of a burst not recorded yet: their rows reach the store first
        self._gc.unfreeze()
        self._switch.release()
        self._closed = True
        self._binding.closed = True
        self._wheel.stopped = True
        self._wheel.clear()
        for job in self._jobs.values():
            self._wheel.take(job)
        for name in list(self._watches):
            self._unwatch(name)
        for batch in [*self._catchups.values(), *(b for bs in self._backfills.values() for b in bs)]:
            batch.cancelled = True  # nothing more starts; runs in progress end below like any other
            batch.queue.clear()
        tasks = list(self._runs.tasks) if wait else self._runs.cancel_all()
        for task in list(self._listener_tasks):
            task.cancel()  # listeners are not work: never waited for
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
        loop = self._binding.loop
        if not tasks or loop is None or loop.is_closed():
            return None
        return asyncio.ensure_future(self._wait_tasks(tasks), loop=loop)

    async def _wait_tasks(self, tasks: list) -> None:
        await asyncio.gather(*tasks, return_exceptions=True)
        self._maybe_idle()

    def __repr__(self) -> str:
        state = "shut down" if self._closed else ("paused" if self._paused else "running")
        return f"<nbsched.Scheduler {state} jobs={len(self._jobs)} tz={getattr(self.tz, 'key', self.tz)}>"


def _wait_from_thread(loop: asyncio.AbstractEventLoop, pending: "asyncio.Future[Any]") -> None:
    """Block this (other) thread until ``pending``, a future of ``loop``, is done."""
    done = threading.Event()
    loop.call_soon_threadsafe(lambda: pending.add_done_callback(lambda _: done.set()))
    done.wait()


def _instant(value: Any, zone: tzinfo, what: str, end_of_day: bool = False) -> float:
    """POSIX seconds from a datetime or an ISO string; naive values are in ``zone``.  A date alone
    means its midnight (for an ``end``: the end of that day, with ``end_of_day``)."""
    from datetime import date as _date, time as _time

    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:  # a date: 2026-10-31
                day = _date.fromisoformat(text)
                value = datetime.combine(day, _time(23, 59, 59, 999999) if end_of_day else _time())
            else:
                value = datetime.fromisoformat(text)
        except ValueError:
            raise PolicyError(f"invalid {what} {value!r}: give a date or date-time such as '2026-11-01' or "
                              "'2026-11-01 02:00' (naive times are in the job's zone)") from None
    elif isinstance(value, _date) and not isinstance(value, datetime):
        value = datetime.combine(value, _time(23, 59, 59, 999999) if end_of_day else _time())
    if not isinstance(value, datetime):
        raise PolicyError(f"invalid {what} {value!r}: give a datetime or a string such as '2026-11-01'")
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=zone)
    return value.timestamp()


def _why(what: str, consumed: dict) -> str:
    """The error column of a downstream run its rule did not let run."""
    if what == "upstream_failed":
        failed = [f"{up!r} ended {d.outcome}" for up, d in consumed.items() if d.outcome in FAILED]
        return "upstream " + ", ".join(failed)
    notes = [d.note or f"upstream {up!r} ended {d.outcome}" for up, d in consumed.items()]
    return "; ".join(notes)


_default: Scheduler | None = None
_default_lock = threading.Lock()


def get_scheduler(*, create: bool = True, loop: asyncio.AbstractEventLoop | None = None,
                  loop_thread: int | None = None, background: bool = False) -> Scheduler | None:
    """The process-wide default scheduler (the one the magics and the dashboard use).

    Created on first use (on ``loop``, run by ``loop_thread``, when given; on a loop of its own with
    ``background=True``, as ``%load_ext nbsched`` does outside a kernel); after it is shut down,
    the next call creates a fresh one.  ``create=False`` returns None instead of creating one.
    """
    global _default
    with _default_lock:
        if _default is None or not _default.running:
            if not create:
                return None
            _default = Scheduler(loop=loop, loop_thread=loop_thread, background=background)
        return _default
