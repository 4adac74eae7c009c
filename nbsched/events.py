"""Past-tense events and the listener registry.

Subscribe with :meth:`nbsched.Scheduler.subscribe`::

    def on_failure(event):
        print(event.job, event.record.error)

    sub = sched.subscribe(on_failure, kinds=nbsched.events.JobFailed)
    ...
    sub.unsubscribe()

``kinds`` takes event classes (a base class such as :class:`JobEvent` selects all its subclasses).
``jobs`` narrows a subscription to the events of some job names: any container that supports ``in``
(a set you keep adding to, a dict keyed by name), consulted at each event, so it can change while
subscribed; events not about a job (scheduler events) are not delivered to such a subscription.
Events are built only when someone listens: a listener for a few jobs costs nothing on the fires of
the others.

What a listener cannot do to the scheduler:

* **Raise.**  Any exception - ``KeyboardInterrupt`` and ``SystemExit`` (``sys.exit()``) included - is
  logged (logger ``nbsched``) and swallowed: it never ends the scheduler, ``asyncio.run`` or a kernel.
* **Hang.**  Coroutine listeners run as tasks on the scheduler's loop, outside the scheduler's work:
  ``wait_idle()`` and ``shutdown(wait=True)`` never wait for them (shutdown cancels them).  Each call
  is cancelled after :data:`LISTENER_TIMEOUT` seconds (the scheduler's clock), logged.
* **Pile up.**  At most :data:`LISTENER_MAX_PENDING` calls of one coroutine listener run at once; events
  for it beyond that are dropped, counted in ``Subscription.dropped`` and logged with the count.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Container, Iterable

if TYPE_CHECKING:
    from .history import RunRecord

__all__ = [
    "Event", "SchedulerEvent", "SchedulerStarted", "SchedulerPaused", "SchedulerResumed", "SchedulerShutdown",
    "ClockJumped",
    "JobEvent", "JobAdded", "JobModified", "JobRemoved", "JobPaused", "JobResumed", "JobFinished",
    "JobSubmitted", "JobExecuted", "JobFailed", "JobMissed", "JobMaxInstancesReached", "JobRetried",
    "JobTimedOut", "JobCancelled", "JobInterrupted", "JobSkipped", "JobUpstreamFailed", "Subscription", "EventBus",
    "LISTENER_TIMEOUT", "LISTENER_MAX_PENDING",
]

log = logging.getLogger("nbsched")

#: Seconds an async listener's call may take before it is cancelled (and logged).
LISTENER_TIMEOUT = 30.0
#: Calls of one async listener running at once; events beyond that are dropped for it (counted).
LISTENER_MAX_PENDING = 100


@dataclass(frozen=True)
class Event:
    """Base of every event: ``timestamp`` is when it happened (aware)."""

    timestamp: datetime


@dataclass(frozen=True)
class SchedulerEvent(Event):
    pass


@dataclass(frozen=True)
class SchedulerStarted(SchedulerEvent):
    """The scheduler armed its first timer on an event loop."""


@dataclass(frozen=True)
class SchedulerPaused(SchedulerEvent):
    """``pause()`` without a name: no job fires until ``resume()``."""


@dataclass(frozen=True)
class SchedulerResumed(SchedulerEvent):
    pass


@dataclass(frozen=True)
class SchedulerShutdown(SchedulerEvent):
    pass


@dataclass(frozen=True)
class ClockJumped(SchedulerEvent):
    """The wall clock was stepped by ``by`` (negative: back), e.g. by NTP or a resumed VM.

    Interval jobs keep measuring elapsed time (their fire times moved with the clock); cron and
    ``at`` jobs follow the wall clock (a step forward makes their skipped fire times overdue)."""

    by: timedelta


@dataclass(frozen=True)
class JobEvent(Event):
    """Base of job events; ``job`` is the job's name."""

    job: str


@dataclass(frozen=True)
class JobAdded(JobEvent):
    pass


@dataclass(frozen=True)
class JobModified(JobEvent):
    """A job was replaced by a new definition with the same name (a re-run cell)."""


@dataclass(frozen=True)
class JobRemoved(JobEvent):
    pass


@dataclass(frozen=True)
class JobPaused(JobEvent):
    reason: str = "paused"


@dataclass(frozen=True)
class JobResumed(JobEvent):
    pass


@dataclass(frozen=True)
class JobFinished(JobEvent):
    """The job has no more fire times (one-shot done, ``max_runs`` or ``until`` reached)."""


@dataclass(frozen=True)
class JobSubmitted(JobEvent):
    run_id: int
    scheduled_at: datetime
    attempt: int


@dataclass(frozen=True)
class _RunEvent(JobEvent):
    record: "RunRecord"


@dataclass(frozen=True)
class JobExecuted(_RunEvent):
    """A run attempt succeeded."""


@dataclass(frozen=True)
class JobFailed(_RunEvent):
    """A run attempt raised; ``record.error`` and ``record.traceback`` say what."""


@dataclass(frozen=True)
class JobTimedOut(_RunEvent):
    pass


@dataclass(frozen=True)
class JobCancelled(_RunEvent):
    pass


@dataclass(frozen=True)
class JobInterrupted(_RunEvent):
    """The user interrupted the run (the kernel's interrupt button); the job was paused."""


@dataclass(frozen=True)
class JobSkipped(_RunEvent):
    """A run was recorded ``skipped``: it raised :class:`nbsched.Skip`, a branch upstream was not taken,
    or its upstreams were skipped (workflows)."""


@dataclass(frozen=True)
class JobUpstreamFailed(_RunEvent):
    """A downstream run was recorded ``upstream_failed`` instead of running: its trigger rule could not
    hold because an upstream run failed."""


@dataclass(frozen=True)
class JobMissed(JobEvent):
    """A fire time passed without a run (coalesced, or later than ``misfire_grace``)."""

    scheduled_at: datetime
    lateness: timedelta


@dataclass(frozen=True)
class JobMaxInstancesReached(JobEvent):
    """A fire time came while ``max_instances`` runs were still going: that run was skipped."""

    scheduled_at: datetime


@dataclass(frozen=True)
class JobRetried(JobEvent):
    """A failed attempt will be retried after ``delay``."""

    run_id: int
    attempt: int
    delay: timedelta


class Subscription:
    """Returned by ``subscribe``; ``unsubscribe()`` (or use it as a context manager) to stop listening."""

    def __init__(self, bus: "EventBus", callback: Callable[[Event], Any], kinds: tuple[type, ...],
                 jobs: Container[str] | None = None):
        self._bus = bus
        self.callback = callback
        self.kinds = kinds
        #: Job names this subscription listens to (a container consulted at each event), or None: all.
        self.jobs = jobs
        #: Calls of this (async) listener still running.
        self.pending = 0
        #: Events not delivered because :data:`LISTENER_MAX_PENDING` calls were still running.
        self.dropped = 0
        #: Calls cancelled after :data:`LISTENER_TIMEOUT` seconds.
        self.timed_out = 0

    def unsubscribe(self) -> None:
        self._bus._remove(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.unsubscribe()


class EventBus:
    """Dispatches events to subscribers.  ``wants(kind, job)`` is a cheap check done before building an event."""

    def __init__(self, spawn: Callable[[Any], Any] | None = None):
        self._subs: list[Subscription] = []
        # per event class: True (a subscriber takes it for every job), False (nobody), or the job-name
        # containers of the subscribers that take it for some jobs only
        self._wanted: dict[type, bool | tuple[Container[str], ...]] = {}
        self._spawn = spawn

    def subscribe(self, callback: Callable[[Event], Any], kinds: type | Iterable[type] | None = None,
                  jobs: Container[str] | None = None) -> Subscription:
        if not callable(callback):
            raise TypeError(f"subscribe() needs a callable, got {callback!r}")
        if jobs is not None:
            if isinstance(jobs, str):
                jobs = (jobs,)
            elif not hasattr(jobs, "__contains__"):
                raise TypeError(f"subscribe(jobs=...) takes job names (a set, list or any container supporting "
                                f"'in'), got {jobs!r}")
        if kinds is None:
            kinds_t: tuple[type, ...] = (Event,)
        elif isinstance(kinds, type):
            kinds_t = (kinds,)
        else:
            kinds_t = tuple(kinds)
        for k in kinds_t:
            if not (isinstance(k, type) and issubclass(k, Event)):
                names = ", ".join(__all__[:-2])
                raise TypeError(f"unknown event kind {k!r}: use classes from nbsched.events ({names})")
        sub = Subscription(self, callback, kinds_t, jobs)
        self._subs.append(sub)
        self._wanted.clear()
        return sub

    def _remove(self, sub: Subscription) -> None:
        try:
            self._subs.remove(sub)
        except ValueError:
            pass
        self._wanted.clear()

    def wants(self, kind: type, job: str | None = None) -> bool:
        """Whether anyone listens to events of ``kind`` (about job ``job``): ask before building one."""
        hit = self._wanted.get(kind)
        if hit is None:
            takers = [s for s in self._subs if any(issubclass(kind, k) for k in s.kinds)]
            hit = (True if any(s.jobs is None for s in takers) else tuple(s.jobs for s in takers) if takers
                   else False)
            self._wanted[kind] = hit
        if hit.__class__ is bool:
            return hit  # type: ignore[return-value]
        for jobs in hit:  # type: ignore[union-attr]
            if job in jobs:
                return True
        return False

    def emit(self, event: Event) -> None:
        for sub in list(self._subs):
            if isinstance(event, sub.kinds) and (sub.jobs is None or getattr(event, "job", None) in sub.jobs):
                try:
                    result = sub.callback(event)
                    if inspect.isawaitable(result):
                        self._start(sub, result)
                except BaseException:  # noqa: BLE001 - sys.exit() in a listener must not end a kernel
                    log.exception("nbsched: event listener %r failed on %s (the scheduler carries on)",
                                  sub.callback, type(event).__name__)

    def _start(self, sub: Subscription, awaitable: Any) -> None:
        if self._spawn is None or sub.pending >= LISTENER_MAX_PENDING:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never started: no "never awaited" warning
            if self._spawn is not None:
                sub.dropped += 1
                if sub.dropped == 1 or sub.dropped % 1000 == 0:
                    log.warning("nbsched: async listener %r still has %d calls running: %d events dropped for it "
                                "so far (make it faster, or let it hand work to a queue)",
                                sub.callback, sub.pending, sub.dropped)
            return
        sub.pending += 1
        self._spawn(awaitable, sub)


async def run_listener(sub: Subscription, awaitable: Any) -> None:
    """Await one async listener call; nothing it raises escapes (see the module docstring)."""
    try:
        await awaitable
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt/SystemExit too: never ends the loop
        import asyncio

        if isinstance(exc, asyncio.CancelledError):
            return  # timed out (logged by whoever cancelled it) or shut down
        log.error("nbsched: async event listener %r failed (the scheduler carries on)", sub.callback,
                  exc_info=exc)
    finally:
        sub.pending -= 1
