"""What a running job can know about its run, and how it steers a workflow.

* :func:`current_run` - inside any run (a function, a coroutine, a thread-executor job, a cell body)
  returns a frozen :class:`RunContext`: which job and run, the attempt, the logical time
  (``scheduled_at``), why it runs, and what its upstream runs returned.
* :class:`Branch` - returned by a job: only the named direct downstream jobs run; the others record
  ``skipped``.
* :class:`Skip` - raised by a job: its run is recorded ``skipped`` with the reason.
"""
from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from types import MappingProxyType
from typing import Any, Mapping

from .errors import NbschedError

__all__ = ["RunContext", "current_run", "current_job_name", "Branch", "Skip", "NotInRunError"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class NotInRunError(NbschedError, LookupError):
    """:func:`current_run` was called outside a run of a job."""


@dataclass(frozen=True)
class RunContext:
    """The run this code is part of (see :func:`current_run`).

    ``scheduled_at`` is the run's logical time: its fire time (for a backfill or catch-up run, the
    fire time it stands for), or for a downstream run the upstream runs' (the latest of a join).
    ``data_interval`` is ``(start, end)``: from the trigger's previous fire time to this one
    (downstream runs inherit it).  ``upstream`` maps upstream job names to what their consumed runs
    returned (the objects themselves); ``changed`` lists the files that fired an ``on file`` job.
    """

    job: str
    run_id: int
    attempt: int
    scheduled_at: datetime
    reason: str  # schedule, manual, upstream, backfill or catchup
    upstream: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    changed: tuple = ()
    _interval_source: Any = field(default=None, repr=False, compare=False)  # (trigger, start or None)

    @cached_property
    def data_interval(self) -> tuple[datetime, datetime]:
        end = self.scheduled_at
        trigger, start = self._interval_source or (None, None)
        if start is None and trigger is not None:
            start = trigger.previous_timestamp(end.timestamp())
        return (end if start is None else datetime.fromtimestamp(start, end.tzinfo), end)


class Branch:
    """Return ``Branch("a", "b")`` from a job to let only those of its direct downstream jobs run; the
    others record ``skipped`` (the error column says which branch was taken).  ``value`` is what the run
    returned (for the results frame and the downstream jobs' ``current_run().upstream``)."""

    __slots__ = ("targets", "value")

    def __init__(self, *targets: str, value: Any = None):
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise TypeError(f"Branch{targets!r}: name one or more downstream jobs, e.g. Branch('report')")
        self.targets = tuple(targets)
        self.value = value

    def __repr__(self) -> str:
        return f"Branch({', '.join(map(repr, self.targets))})"


class Skip(Exception):
    """Raise ``Skip("why")`` inside a job to record this run as ``skipped`` with that reason."""


# Runs on a Task (coroutines, retries, executors) set the context variable; plain functions called
# inline on the loop use the slot below instead (no context object per fire).  While the call lasts,
# _inline[0] is (job, run id, nominal time, reason, upstream values, the thread running it); None
# between calls.  A job that runs another job inline puts the outer tuple back after it.
_current: contextvars.ContextVar[RunContext] = contextvars.ContextVar("nbsched_run")
_inline: list = [None]


class RunInputs:
    """What a run gets besides its function: upstream values, the data interval's source, changed files."""

    __slots__ = ("values", "trigger", "interval_start", "changed")

    def __init__(self, values: dict | None = None, trigger: Any = None, interval_start: float | None = None,
                 changed: tuple = ()):
        self.values = values
        self.trigger = trigger  # whose previous fire time starts the data interval (None: the job's own)
        self.interval_start = interval_start
        self.changed = changed


def make_context(job: Any, run_id: int, attempt: int, nominal: float, reason: str,
                 inputs: "RunInputs | None") -> RunContext:
    """The :class:`RunContext` of a run (built only when someone asks, or once per Task run)."""
    when = datetime.fromtimestamp(nominal, job.scheduler.tz)
    if inputs is None:
        return RunContext(job.name, run_id, attempt, when, reason, _EMPTY, (), (job.trigger, None))
    return RunContext(job.name, run_id, attempt, when, reason,
                      MappingProxyType(inputs.values) if inputs.values else _EMPTY, inputs.changed,
                      (inputs.trigger or job.trigger, inputs.interval_start))


def _inline_run() -> tuple | None:
    """The plain function running inline on this thread: (job, run id, nominal, reason, inputs,
    thread), or None."""
    inline = _inline[0]
    if inline is None or inline[5] not in (None, threading.get_ident()):
        return None
    return inline


def current_job_name() -> str | None:
    """The name of the job whose run this code belongs to, or None outside a run.

    What :func:`current_run` answers first, without building a context or raising: cheap enough to
    ask on every ``print`` (the notebook's output router does)."""
    inline = _inline_run()
    if inline is None:
        ctx = _current.get(None)
        return None if ctx is None else ctx.job
    return inline[0].name


def current_run() -> RunContext:
    """The :class:`RunContext` of the run this code belongs to; :class:`NotInRunError` outside a run."""
    inline = _inline_run()
    if inline is None:  # a Task's (or another thread's) run?
        ctx = _current.get(None)
        if ctx is not None:
            return ctx
        raise NotInRunError(
            "current_run() works only inside a run of a job (a scheduled function, coroutine or %%schedule cell); "
            "here no job is running")
    job, run_id, nominal, reason, inputs, _thread = inline
    return make_context(job, run_id, 1, nominal, reason, inputs)
