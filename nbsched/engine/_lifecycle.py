"""The run lifecycle: start a run, make its attempts (retries, timeouts, interrupts), record it.

Every outcome - success, error, timeout, cancelled, interrupted, and every missed or skipped fire
time - goes through :meth:`RunLifecycle.record`, the one place that writes a history row, hands it
to the store and bumps the job's counters.  Events and waiters are told afterwards.

Plain functions on the ``loop`` executor run inline (no Task per fire); coroutines, retries,
timeouts and other executors get a Task.

**Starting comes first.**  While the timing wheel starts a slice of many due jobs (more than
:data:`_HOLD_FROM`: a burst) it *holds* the lifecycle (:meth:`RunLifecycle.hold`): an inline run
that ends leaves what is left to do (its history row, counters, events, waiters, downstream
deliveries) in a flat list instead, and once every due job has started,
:meth:`RunLifecycle.release` does it all, in the order the runs ended (in slices too, if there is
much).  So the last of a thousand jobs due on the same second starts
after the others *started*, not after they were also recorded.  ``history()``, ``results()`` and
shutdown record what is left first, and so does a run started any other way (``run_now``); other
state (a job's last outcome, events, a card) may lag by the burst's few milliseconds.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import os
import traceback as _tb
from datetime import datetime, timedelta
from typing import Any, Iterable

from .. import events as ev
from ..clock import perf_counter
from ..context import Branch, RunInputs, Skip, _current, _inline, make_context
from ..errors import NbschedError
from ..executors import run_worker
from ..history import MANUAL, SCHEDULE, UPSTREAM, ErrorInfo, Outcome, RunRecord

__all__ = ["RunLifecycle", "MaxInstancesReachedError"]

log = logging.getLogger("nbsched")

SUCCESS, ERROR, MISSED, SKIPPED = Outcome.SUCCESS, Outcome.ERROR, Outcome.MISSED, Outcome.SKIPPED
TIMEOUT, CANCELLED, INTERRUPTED = Outcome.TIMEOUT, Outcome.CANCELLED, Outcome.INTERRUPTED
UPSTREAM_FAILED = Outcome.UPSTREAM_FAILED
# Rows hold the outcome as its plain string (see nbsched.history.HistoryRow).
_SUCCESS_S, _MISSED_S, _SKIPPED_S = SUCCESS.value, MISSED.value, SKIPPED.value
_CLOCK_S = Outcome.CLOCK_STEP.value
_EVENT_OF = {ERROR: ev.JobFailed, TIMEOUT: ev.JobTimedOut, CANCELLED: ev.JobCancelled, INTERRUPTED: ev.JobInterrupted,
             SKIPPED: ev.JobSkipped, UPSTREAM_FAILED: ev.JobUpstreamFailed}
_CANCELLED_INFO = ErrorInfo("CancelledError", "the run was cancelled (scheduler shut down or task cancelled)", "")
#: Values kept per ended inline run until it is recorded (see RunLifecycle.hold).
_HELD = 11
#: Due jobs from which a slice keeps its completions for after (fewer: recorded as they end).
_HOLD_FROM = 64
#: Runs recorded between two looks at the release deadline.
_RELEASE_CHUNK = 32
#: Finished-run outcomes kept for handles awaited late (oldest half dropped beyond this).
_KEEP_FINISHED = 1000

_ENGINE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class MaxInstancesReachedError(NbschedError):
    """``run_now`` found ``max_instances`` runs of the job already going; the run was skipped."""


def format_user_traceback(exc: BaseException) -> str:
    """The traceback from the job's own code on (nbsched's calling frames are noise to the user)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(_ENGINE_DIR):
        tb = tb.tb_next
    return "".join(_tb.format_exception(type(exc), exc, tb))


def outcome_exception(outcome: Outcome, exc: BaseException | None, error: str | None) -> BaseException | None:
    """What awaiting a run with this outcome raises (None: it returns; CancelledError: it is cancelled)."""
    if exc is None:
        return None
    if outcome is TIMEOUT:
        return TimeoutError(error)
    return exc


class RunLifecycle:
    """Starts, attempts, retries and records runs.  Owned by the :class:`~nbsched.engine.Scheduler`."""

    def __init__(self, scheduler: Any):
        s = scheduler
        self._sched = s
        self._clock = s.clock
        self._time = s.clock.time
        self._events = s.events
        self._loop_of = lambda: s._binding.loop
        self._binding = s._binding
        self._downstream = s._downstream  # the scheduler's dicts (never rebound): read on every run
        self._batch_runs = s._batch_runs
        self.run_ids = 0
        self.tasks: set[asyncio.Task] = set()
        self._futures: dict[int, asyncio.Future] = {}
        self._outcomes: dict[int, tuple] = {}  # run id -> (value, exc, outcome, error), for late awaits
        self._skipped: set[int] = set()
        self._interrupted: set[asyncio.Task] = set()
        self.fires = self.missed = self.skipped = self.errors = 0
        # completions of inline runs not recorded yet (see the module docstring): _HELD values per run,
        # flat (no tuple per run).  _held: this slice's (None: not holding); _parked: earlier slices'.
        self._held: list | None = None
        self._parked: list = []
        self._parked_at = 0
        self._releasing = False

    # ================================================================== starting comes first
    def hold(self, due: int) -> None:
        """A slice of ``due`` jobs is starting: keep the completions of its inline runs - if there are
        enough for it to matter (a few dozen are recorded as they end, which costs less), or if
        completions of the same burst are kept already (they are recorded in order)."""
        if self._held is None and (due > _HOLD_FROM or self._parked):
            self._held = []

    def park(self) -> None:
        """The slice ends with more jobs due: keep its completions for :meth:`release`; stop holding."""
        held = self._held
        self._held = None
        if held:
            if self._parked:
                self._parked += held
            else:
                self._parked = held
                self._parked_at = 0

    def release(self, deadline: float | None) -> bool:
        """Every due job has started: record the kept completions, oldest first, until ``deadline``
        (``perf_counter``; None: all).  True when none is left."""
        if self._held is None and not self._parked:
            return True  # the common case (a few jobs due at a time: recorded as they ended)
        self.park()
        if self._releasing:  # asked from within a completion (a listener reading history): later
            return not self._parked
        parked = self._parked
        i = self._parked_at
        step = _HELD * _RELEASE_CHUNK
        self._releasing = True
        try:
            while i < len(parked):
                j = min(len(parked), i + step)
                self._complete(parked[i:j])
                i = self._parked_at = j
                if deadline is not None and perf_counter() > deadline:
                    break
        finally:
            self._releasing = False
        if i < len(parked):
            return False
        parked.clear()
        self._parked_at = 0
        return True

    def flush(self) -> None:
        """Record every kept completion now (then go on holding if a slice is starting)."""
        holding = self._held is not None
        self.release(None)
        if holding:
            self._held = []

    def _complete(self, kept: list) -> None:
        succeeded, failed, record = self._succeeded, self._attempt_failed, self.record
        downstream = self._downstream
        k = _HELD
        for job, run_id, nominal, planned, started, finished, value, reason, deliver, inputs, outcome in zip(
                kept[0::k], kept[1::k], kept[2::k], kept[3::k], kept[4::k], kept[5::k], kept[6::k], kept[7::k],
                kept[8::k], kept[9::k], kept[10::k]):
            try:
                if outcome is None:
                    if value is None and not (job._waiters or self._futures or self._events._subs or self._batch_runs):
                        # nearly every run of a burst: see _succeeded
                        record(job, run_id, nominal, started, finished, started - planned, _SUCCESS_S, 1, None, reason)
                        if deliver and job.name in downstream:
                            self._sched._delivered(job, run_id, nominal, _SUCCESS_S, None, None, inputs)
                    else:
                        succeeded(job, run_id, nominal, planned, started, finished, 1, value, reason, deliver, inputs)
                else:
                    failed(job, run_id, nominal, planned, started, finished, 1, value, outcome, reason,
                           deliver=deliver, inputs=inputs)
            except Exception:  # a bug in nbsched itself: never silent, and the other runs are still recorded
                log.exception("nbsched: internal error recording run %d of job %r", run_id, job.name)

    # ================================================================== the one recorder
    def record(self, job: Any, run_id: int, nominal: float, started: float | None, finished: float | None,
               lateness: float, outcome: str, attempt: int, err: ErrorInfo | None, reason: str,
               worker: str | None = None) -> None:
        """Write one history row for ``job`` (memory, then the store) and count it.  ``worker``: the
        cluster worker that ran the attempt (None: this machine).

        The job's log packs the values (no object per row, nothing the garbage collector tracks); a
        store gets those packed bytes, and the values kept aside (error, worker) only when a row has them."""
        packed = job.log.record(run_id, nominal, started, finished, lateness, outcome, attempt, err, reason, worker)
        s = self._sched
        if job._persist:  # the store gets the packed row, or (packed row, values kept aside)
            store = s._store
            if store is not None:
                key = job._row_key
                if key is None:  # the first row since the job was added or the store attached
                    key = job._row_key = store.row_key(job.name)
                if type(packed) is bytes:
                    store.on_row(key, packed, None)
                else:
                    store.on_row(key, *packed)
        if outcome is _SUCCESS_S:  # first: nearly every row
            job._last_started = started
            job._last_finished = finished
            job._successes += 1
            job._last_outcome = SUCCESS
        elif outcome is _MISSED_S:
            job._missed += 1
            self.missed += 1
        elif outcome is _SKIPPED_S and attempt == 0:  # a fire time skipped (max_instances, a full queue)
            job._skipped += 1
            self.skipped += 1
        elif outcome is _CLOCK_S:
            pass  # a note in the history, not a run
        else:
            job._last_started = started
            job._last_finished = finished
            job._last_outcome = Outcome(outcome)
            job._last_error = f"{err.type}: {err.message}"
            if outcome in ("error", "timeout"):
                job._failures += 1
                self.errors += 1
        s._version += 1

    # ================================================================== fire times that do not run
    def record_missed(self, job: Any, scheduled: float, lateness: float) -> None:
        store = self._sched._store
        if store is not None and job._persist and not store.claim(job.name, scheduled):
            return  # another process sharing the store owns this fire time
        self.run_ids += 1
        self.record(job, self.run_ids, scheduled, None, None, lateness, _MISSED_S, 0, None, SCHEDULE)
        if self._events.wants(ev.JobMissed, job.name):
            tz = self._sched.tz
            self._events.emit(ev.JobMissed(self._clock.now(), job.name, datetime.fromtimestamp(scheduled, tz),
                                           timedelta(seconds=lateness)))

    def record_missed_summary(self, job: Any, first: float, lateness: float, count: int) -> None:
        """``count`` fire times from ``first`` on were missed and are not listed one by one (more than the
        job's history keeps): one ``missed`` row whose error says how many; the counters get all of them."""
        store = self._sched._store
        if store is not None and job._persist and not store.claim(job.name, first):
            return
        self.run_ids += 1
        when = datetime.fromtimestamp(first, self._sched.tz)
        err = ErrorInfo("MissedFireTimes", f"{count} fire times from {when:%Y-%m-%d %H:%M:%S %Z} on were missed "
                                           "(summarised in this row: more than the job's history keeps)", "")
        self.record(job, self.run_ids, first, None, None, lateness, _MISSED_S, 0, err, SCHEDULE)
        job._missed += count - 1
        self.missed += count - 1
        log.warning("nbsched: job %r missed %d fire times from %s on (the loop was blocked or the clock jumped); "
                    "one summary row records them", job.name, count, when)

    def record_skipped(self, job: Any, run_id: int, nominal: float, reason: str = SCHEDULE) -> None:
        self.record(job, run_id, nominal, None, None, self._time() - nominal, _SKIPPED_S, 0, None, reason)
        fut = self._futures.pop(run_id, None)
        if fut is not None and not fut.done():
            fut.set_exception(MaxInstancesReachedError(
                f"job {job.name!r} already has {job._running} run(s) going (max_instances="
                f"{job.policy.max_instances}): this run was skipped; raise max_instances to allow overlap"))
        self._skipped.add(run_id)
        if len(self._skipped) > _KEEP_FINISHED:
            self._skipped.clear()
        if self._events.wants(ev.JobMaxInstancesReached, job.name):
            self._events.emit(ev.JobMaxInstancesReached(self._clock.now(), job.name,
                                                        datetime.fromtimestamp(nominal, self._sched.tz)))

    # ================================================================== starting runs
    def start_runs(self, job: Any, times: Iterable[float], planned: float, scheduled: bool,
                   now: float | None = None, deliver: bool = True) -> int:
        """Start a run for each fire time (respecting max_instances).  Returns the last run id.

        ``scheduled`` runs come from the trigger (reason ``schedule``), others from ``run_now``
        (``manual``); ``deliver=False`` keeps the run's outcome from its downstream jobs."""
        reason = SCHEDULE if scheduled else MANUAL
        run_id = 0
        store = self._sched._store
        for i, nominal in enumerate(times):
            self.run_ids += 1
            run_id = self.run_ids
            if scheduled and store is not None and job._persist and not store.claim(job.name, nominal):
                continue  # another process sharing the store has this fire time: it runs and records it
            if job._running - job._batch_running >= job.policy.max_instances:
                if i > 0 and job.policy.coalesce == "all":
                    if job._backlog is None:
                        job._backlog = []
                    job._backlog.append(nominal)  # catch-up run: start when an instance frees up
                    continue
                self.record_skipped(job, run_id, nominal, reason)
                continue
            if scheduled:
                job._runs += 1
            self._start_one(job, run_id, nominal, planned if i == 0 else nominal, now if i == 0 else None,
                            reason, None, deliver)
        return run_id

    def start_scheduled(self, job: Any, nominal: float, planned: float, now: float) -> None:
        """One scheduled fire time (the common case of :meth:`start_runs`, without its loop)."""
        self.run_ids += 1
        if job._persist:
            store = self._sched._store
            if store is not None and now >= store.claims_free_until and not store.claim(job.name, nominal):
                return  # another process sharing the store has this fire time: it runs and records it
        if job._running - job._batch_running >= job.policy.max_instances:
            self.record_skipped(job, self.run_ids, nominal, SCHEDULE)
            return
        job._runs += 1
        self._start_one(job, self.run_ids, nominal, planned, now, SCHEDULE, None, True)

    def start_upstream_run(self, job: Any, nominal: float, inputs: RunInputs) -> None:
        """Start a run of downstream ``job`` for upstream runs with logical time ``nominal``."""
        self.run_ids += 1
        now = self._time()  # started as soon as decided: no lateness
        self._start_one(job, self.run_ids, nominal, now, now, UPSTREAM, inputs, True)

    def start_run(self, job: Any, nominal: float, reason: str, inputs: RunInputs | None, deliver: bool) -> int:
        """Start one run now for logical time ``nominal`` (backfill, catch-up, data triggers).  Returns its id."""
        self.run_ids += 1
        run_id = self.run_ids
        now = self._time()
        self._start_one(job, run_id, nominal, now, now, reason, inputs, deliver)
        return run_id

    def record_clock_step(self, job: Any, nominal: float, step: float, message: str) -> None:
        """A note in the job's history: the wall clock was stepped while it waited for ``nominal``."""
        self.run_ids += 1
        self.record(job, self.run_ids, nominal, None, None, step, _CLOCK_S, 0, ErrorInfo("ClockStep", message, ""),
                    SCHEDULE)

    def record_not_run(self, job: Any, nominal: float, outcome: Outcome, message: str, reason: str = UPSTREAM,
                       deliver: bool = True, inputs: RunInputs | None = None) -> None:
        """Record a downstream run that its trigger rule did not let run, and deliver that outcome on."""
        self.run_ids += 1
        run_id = self.run_ids
        kind = {UPSTREAM_FAILED: "UpstreamFailed", SKIPPED: "Skipped"}.get(outcome, "QueueFull")
        if outcome is SKIPPED:  # a decision about a run (not a skipped fire time): the job's latest outcome
            job._last_outcome = SKIPPED
        row = (run_id, nominal, None, None, 0.0, outcome.value, 0, ErrorInfo(kind, message, ""), reason)
        self.record(job, *row)
        event = _EVENT_OF.get(outcome, ev.JobMissed)
        if self._events.wants(event, job.name):
            if event is ev.JobMissed:
                self._events.emit(ev.JobMissed(self._clock.now(), job.name,
                                               datetime.fromtimestamp(nominal, self._sched.tz), timedelta(0)))
            else:
                self._events.emit(event(self._clock.now(), job.name, RunRecord.from_row(job.name, row, self._sched.tz)))
        if deliver:
            self._sched._delivered(job, run_id, nominal, outcome.value, None, None, inputs)

    def expect(self, run_id: int) -> None:
        """Keep the outcome of run ``run_id`` (about to start) for a :class:`RunHandle`."""
        fut = self._loop_of().create_future()
        # the handle may never be awaited: mark the exception as retrieved so asyncio does not complain
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._futures[run_id] = fut

    def _start_one(self, job: Any, run_id: int, nominal: float, planned: float, now: float | None,
                   reason: str, inputs: RunInputs | None, deliver: bool) -> None:
        self.fires += 1
        policy = job.policy
        events = self._events
        if events._subs and events.wants(ev.JobSubmitted, job.name):
            events.emit(ev.JobSubmitted(self._clock.now(), job.name, run_id,
                                        datetime.fromtimestamp(nominal, self._sched.tz), 1))
        if policy.inline and not job.is_coroutine:
            # fast path: a plain function, called right here on the loop
            time = self._time
            started = time() if now is None else now
            job._running += 1
            slot = _inline
            outer = slot[0]  # a job that runs another job inline: its run, put back after
            slot[0] = (job, run_id, nominal, reason, inputs, self._binding.thread)
            try:
                value = job.func()
            except BaseException as exc:  # noqa: BLE001 - every failure becomes a row, nothing escapes
                slot[0] = outer
                job._running -= 1
                outcome = SKIPPED if isinstance(exc, Skip) else INTERRUPTED if isinstance(exc, KeyboardInterrupt) \
                    else ERROR
                held = self._held
                if held is not None:
                    held += (job, run_id, nominal, planned, started, time(), exc, reason, deliver, inputs, outcome)
                    return
                if self._parked and not self._releasing:
                    self.release(None)  # keep each job's rows in order
                self._attempt_failed(job, run_id, nominal, planned, started, time(), 1, exc, outcome, reason,
                                     deliver=deliver, inputs=inputs)
                return
            slot[0] = outer
            if value is not None and inspect.isawaitable(value):  # e.g. a compiled cell with top-level await
                self._spawn(job, run_id, nominal, planned, value, started, reason, inputs, deliver)
                return
            job._running -= 1
            held = self._held
            if held is not None:  # a slice of due jobs is starting: recorded after (see the module docstring)
                held += (job, run_id, nominal, planned, started, time(), value, reason, deliver, inputs, None)
                return
            if self._parked and not self._releasing:
                self.release(None)  # keep each job's rows in order
            if value is None and not (job._waiters or self._futures or self._events._subs or self._batch_runs):
                # nearly every run: see _succeeded
                self.record(job, run_id, nominal, started, time(), started - planned, _SUCCESS_S, 1, None, reason)
                if deliver and job.name in self._downstream:
                    self._sched._delivered(job, run_id, nominal, _SUCCESS_S, None, None, inputs)
                return
            self._succeeded(job, run_id, nominal, planned, started, time(), 1, value, reason, deliver, inputs)
            return
        job._running += 1
        self._spawn(job, run_id, nominal, planned, None, None, reason, inputs, deliver)

    def _spawn(self, job: Any, run_id: int, nominal: float, planned: float, first: Any, started: float | None,
               reason: str, inputs: RunInputs | None, deliver: bool) -> None:
        task = self._loop_of().create_task(self._run(job, run_id, nominal, planned, first, started, reason,
                                                     inputs, deliver), name=f"nbsched:{job.name}:{run_id}")
        self.tasks.add(task)
        if job._run_tasks is None:
            job._run_tasks = set()
        job._run_tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a bug in nbsched itself: never silent
            log.error("nbsched: internal error in %s", task.get_name(), exc_info=task.exception())
        if not self.tasks:
            self._sched._maybe_idle()

    def interrupt(self, job: Any) -> int:
        """Cancel the job's runs in progress; they are recorded ``interrupted``.  Returns how many."""
        tasks = list(job._run_tasks or ())
        for task in tasks:
            self._interrupted.add(task)
            task.cancel()
        return len(tasks)

    # ================================================================== attempts
    async def _run(self, job: Any, run_id: int, nominal: float, planned: float, first: Any,
                   started: float | None, reason: str, inputs: RunInputs | None, deliver: bool) -> None:
        policy = job.policy
        attempt = 1
        time = self._time
        s = self._sched
        try:
            while True:
                if started is None:
                    started = time()
                _current.set(make_context(job, run_id, attempt, nominal, reason, inputs))
                outcome, value, exc = await self._attempt(job, first)
                first = None
                finished = time()
                # where the attempt ran, when its executor placed it on another machine (executors.run_worker)
                worker = None if policy.executor == "loop" else run_worker.get()
                if outcome is SUCCESS:
                    job._running -= 1
                    self._succeeded(job, run_id, nominal, planned, started, finished, attempt, value, reason, deliver,
                                    inputs, worker)
                    self._start_backlog(job)
                    return
                retry = (outcome in (ERROR, TIMEOUT) and attempt <= policy.retries and not s._closed
                         and not job._removed and not job._paused)
                if not retry:
                    job._running -= 1
                self._attempt_failed(job, run_id, nominal, planned, started, finished, attempt, exc, outcome,
                                     reason, final=not retry, deliver=deliver, inputs=inputs, worker=worker)
                if not retry:
                    self._start_backlog(job)
                    return
                delay = min(policy.retry_delay * policy.backoff ** (attempt - 1), policy.max_retry_delay)
                if self._events.wants(ev.JobRetried, job.name):
                    self._events.emit(ev.JobRetried(self._clock.now(), job.name, run_id, attempt + 1,
                                                    timedelta(seconds=delay)))
                planned = finished + delay  # the retry's own lateness is measured from its planned start
                attempt += 1
                try:
                    await self._clock.sleep(delay)
                except asyncio.CancelledError as cancel:
                    # interrupted (or shut down) while waiting to retry: that attempt is recorded
                    task = asyncio.current_task()
                    now = time()
                    job._running -= 1
                    if task in self._interrupted:
                        self._interrupted.discard(task)
                        outcome, exc = INTERRUPTED, KeyboardInterrupt()
                    else:
                        outcome, exc = CANCELLED, cancel
                    self._attempt_failed(job, run_id, nominal, planned, now, now, attempt, exc, outcome, reason,
                                         deliver=deliver, inputs=inputs)
                    self._start_backlog(job)
                    return
                started = None
        finally:
            if job._run_tasks:
                job._run_tasks.discard(asyncio.current_task())

    async def _attempt(self, job: Any, first: Any) -> tuple[Outcome, Any, BaseException | None]:
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

            handle = self._clock.call_at(self._time() + policy.timeout, on_timeout, self._loop_of())
        if policy.executor != "loop":
            run_worker.set(None)  # an executor placing the attempt on another machine sets it
        try:
            if first is not None:
                awaitable = first
            elif policy.executor == "loop":
                awaitable = job.func()
            elif policy.resources:
                awaitable = self._sched._executors[policy.executor].submit(job.func, resources=policy.resource_dict())
            else:
                awaitable = _relay(self._sched._executors[policy.executor].submit(job.func))
            value = await awaitable if inspect.isawaitable(awaitable) else awaitable
            return SUCCESS, value, None
        except _Escaped as carrier:  # GeneratorExit, SystemExit, ... from the job's code in an executor
            exc = carrier.original
            return (INTERRUPTED if isinstance(exc, KeyboardInterrupt) else ERROR), None, exc
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
        except Skip as exc:
            return SKIPPED, None, exc
        except BaseException as exc:  # noqa: BLE001 - recorded, never escapes
            return ERROR, None, exc
        finally:
            if handle is not None:
                handle.cancel()

    # ================================================================== outcomes
    def _succeeded(self, job: Any, run_id: int, nominal: float, planned: float, started: float,
                   finished: float, attempt: int, value: Any, reason: str, deliver: bool,
                   inputs: RunInputs | None = None, worker: str | None = None) -> None:
        """A successful attempt: its row, its value, waiters and events, the downstream jobs.

        For nearly every run (nothing returned, no waiter, no event subscriber, no batch) all this
        comes down to the row and the downstream deliveries, and ``_start_one`` and ``_complete`` do
        just that themselves (a call fewer on every fire): a step added here for every run must go
        there too."""
        branch = None
        if type(value) is Branch:
            problem = self._sched._check_branch(job, value)
            if problem is not None:
                self._attempt_failed(job, run_id, nominal, planned, started, finished, attempt, problem, ERROR,
                                     reason, deliver=deliver, inputs=inputs, worker=worker)
                return
            branch, value = value.targets, value.value
        self.record(job, run_id, nominal, started, finished, started - planned, _SUCCESS_S, attempt, None, reason,
                    worker)
        if value is not None:
            try:
                job.results_log.append(run_id, nominal, value)
                store = self._sched._store
                if store is not None and job._persist:
                    store.on_result(job.name, run_id, nominal, value)
            except Exception:  # an odd return value must not break the scheduler
                log.exception("nbsched: could not record the value returned by job %r", job.name)
        events = self._events
        listening = events._subs and events.wants(ev.JobExecuted, job.name)
        if job._waiters or self._futures or listening:
            row = (run_id, nominal, started, finished, started - planned, _SUCCESS_S, attempt, None, reason, worker)
            record = RunRecord.from_row(job.name, row, self._sched.tz)
            self._notify(job, run_id, record, value, None)
            if listening:
                events.emit(ev.JobExecuted(self._clock.now(), job.name, record))
        if deliver and job.name in self._downstream:
            self._sched._delivered(job, run_id, nominal, _SUCCESS_S, value, branch, inputs)
        batches = self._batch_runs
        if batches and run_id in batches:
            batches.pop(run_id).ended(run_id, _SUCCESS_S)

    def _attempt_failed(self, job: Any, run_id: int, nominal: float, planned: float, started: float,
                        finished: float, attempt: int, exc: BaseException, outcome: Outcome, reason: str,
                        final: bool = True, deliver: bool = True, inputs: RunInputs | None = None,
                        worker: str | None = None) -> None:
        if outcome is CANCELLED:
            err = _CANCELLED_INFO
        elif outcome is SKIPPED:
            err = ErrorInfo("Skip", str(exc), "")
        else:
            err = ErrorInfo(type(exc).__name__, str(exc), format_user_traceback(exc))
        row = (run_id, nominal, started, finished, started - planned, outcome.value, attempt, err, reason, worker)
        self.record(job, *row)
        if outcome is ERROR:
            # INFO, not WARNING: in a kernel a stray stderr line lands in whatever cell ran last; the
            # failure is already a history row, an event, and red on the card and the dashboard.
            log.info("nbsched: job %r failed (attempt %d): %s: %s", job.name, attempt, err.type, err.message)
        kind = _EVENT_OF[outcome]
        wanted = self._events.wants(kind, job.name)
        record = None
        if final and (job._waiters or self._futures) or wanted:
            record = RunRecord.from_row(job.name, row, self._sched.tz)
        if outcome is INTERRUPTED:
            self._sched._pause_interrupted(job)  # a runaway job must not freeze the kernel again
        if wanted:
            self._events.emit(kind(self._clock.now(), job.name, record))
        if final and record is not None:
            self._notify(job, run_id, record, None, exc)
        if final and deliver and job.name in self._downstream:
            self._sched._delivered(job, run_id, nominal, outcome.value, None, None, inputs)
        batches = self._batch_runs
        if final and batches and run_id in batches:
            batches.pop(run_id).ended(run_id, outcome.value)

    def _notify(self, job: Any, run_id: int, record: RunRecord, value: Any, exc: BaseException | None) -> None:
        waiters, job._waiters = job._waiters or (), None
        for fut in waiters:
            if not fut.done():
                fut.set_result(record)
        fut = self._futures.pop(run_id, None)
        if fut is not None and not fut.done():
            _settle(fut, value, outcome_exception(record.outcome, exc, record.error))
        self._outcomes[run_id] = (value, exc, record.outcome, record.error)
        if len(self._outcomes) > _KEEP_FINISHED:
            for key in list(self._outcomes)[:_KEEP_FINISHED // 2]:
                del self._outcomes[key]

    def future(self, run_id: int, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        """A future of run ``run_id``'s value (already settled when the run has finished)."""
        fut = self._futures.get(run_id)
        if fut is not None:
            return fut
        fut = loop.create_future()
        done = self._outcomes.get(run_id)
        if done is not None:
            value, exc, outcome, error = done
            _settle(fut, value, outcome_exception(outcome, exc, error))
        elif run_id in self._skipped:
            fut.set_exception(MaxInstancesReachedError(f"run {run_id} was skipped: max_instances reached"))
        else:
            self._futures[run_id] = fut
        return fut

    def _start_backlog(self, job: Any) -> None:
        """A run ended: start a catch-up run (or a downstream run) waiting for a free instance, if any."""
        if job._running - job._batch_running >= job.policy.max_instances or job._removed or job._paused:
            return
        if job._backlog:
            nominal = job._backlog.pop(0)
            self.run_ids += 1
            job._runs += 1
            self._start_one(job, self.run_ids, nominal, nominal, None, SCHEDULE, None, True)
        else:
            self._sched._start_ready(job)

    def cancel_all(self) -> list[asyncio.Task]:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        return tasks


class _Escaped(Exception):
    """Carries a BaseException that is not an Exception (GeneratorExit, SystemExit, KeyboardInterrupt)
    raised by job code in an executor across the await: awaiting a future that holds a GeneratorExit
    lets it escape the awaiting coroutine's ``except`` clauses, and the run would never be recorded."""

    def __init__(self, original: BaseException):
        super().__init__(original)
        self.original = original


def _relay(source: Any) -> Any:
    """An asyncio future with ``source``'s outcome, BaseExceptions wrapped in :class:`_Escaped`;
    cancelling it cancels ``source``."""
    if not isinstance(source, asyncio.Future):
        return source
    target = source.get_loop().create_future()

    def copy(src: asyncio.Future) -> None:
        if target.done():
            return
        if src.cancelled():
            target.cancel()
            return
        exc = src.exception()
        if exc is None:
            target.set_result(src.result())
        elif isinstance(exc, Exception):
            target.set_exception(exc)
        else:
            target.set_exception(_Escaped(exc))

    source.add_done_callback(copy)
    target.add_done_callback(lambda t: t.cancelled() and source.cancel())
    return target


def _settle(fut: asyncio.Future, value: Any, exc: BaseException | None) -> None:
    if exc is None:
        fut.set_result(value)
    elif isinstance(exc, asyncio.CancelledError):
        fut.cancel()
    else:
        fut.set_exception(exc)
