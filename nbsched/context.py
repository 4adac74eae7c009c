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
from types import MappingProxyType
from typing import Any, Mapping

from .errors import NbschedError

__all__ = ["RunContext", "current_run", "Branch", "Skip", "NotInRunError"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class NotInRunError(NbschedError, LookupError):
    """:func:`current_run` was called outside a run of a job."""


@dataclass(frozen=True)
class RunContext:
    """The run this code is part of (see :func:`current_run`)."""

    job: str
    run_id: int
    attempt: int
    scheduled_at: datetime  # the logical time: the fire time, or the upstream runs' (the latest of a join)
    reason: str  # schedule, manual, upstream, backfill or catchup
    upstream: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)  # upstream name -> its consumed run's value


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
# inline on the loop use the slot below instead (no allocation per fire).  The slot holds the job, the
# run id, the nominal time, the reason and the upstream values while the call lasts.
_current: contextvars.ContextVar[RunContext] = contextvars.ContextVar("nbsched_run")
_inline: list = [None, 0, 0.0, "", None, 0]  # ... and the thread that is running it


def current_run() -> RunContext:
    """The :class:`RunContext` of the run this code belongs to; :class:`NotInRunError` outside a run."""
    job, run_id, nominal, reason, upstream, thread = _inline
    if job is None or (thread is not None and thread != threading.get_ident()):  # a Task's (or thread's) run?
        ctx = _current.get(None)
        if ctx is not None:
            return ctx
        raise NotInRunError(
            "current_run() works only inside a run of a job (a scheduled function, coroutine or %%schedule cell); "
            "here no job is running")
    return RunContext(job.name, run_id, 1, datetime.fromtimestamp(nominal, job.scheduler.tz), reason,
                      MappingProxyType(upstream) if upstream else _EMPTY)
