"""Exceptions and warnings.  Every message names the bad value, the valid choices and what to do next."""
from __future__ import annotations

__all__ = [
    "NbschedError",
    "TriggerError",
    "DurationError",
    "PolicyError",
    "JobLookupError",
    "NoEventLoopError",
    "SchedulerShutdownError",
    "StoreError",
    "ClusterUnreachableError",
    "WorkerDiedError",
    "NbschedWarning",
]


class NbschedError(Exception):
    """Base class of nbsched's own errors."""


class TriggerError(NbschedError, ValueError):
    """A trigger spec (``every 5m``, ``cron ...``, ``at ...``) or time zone could not be understood."""


class DurationError(TriggerError):
    """A duration (``"30s"``, ``90``, ``timedelta(...)``) could not be understood."""


class PolicyError(NbschedError, ValueError):
    """A job option (retries, coalesce, max_instances, ...) has a value outside its valid range."""


class JobLookupError(NbschedError, LookupError):
    """No job has that name.  The message lists the names that exist."""

    def __str__(self) -> str:  # LookupError/KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class NoEventLoopError(NbschedError, RuntimeError):
    """The scheduler needs a running asyncio event loop and there is none here."""


class SchedulerShutdownError(NbschedError, RuntimeError):
    """The scheduler was shut down; create a new one (or call ``nbsched.get_scheduler()`` again)."""


class StoreError(NbschedError):
    """The store file cannot be used: it is not an nbsched store, it is damaged, it was written by a
    newer nbsched, or it cannot be written.  The message names the path, the problem and what to do;
    the file is left exactly as it was."""


class ClusterUnreachableError(NbschedError, ConnectionError):
    """The Dask scheduler could not be reached (connection refused or dropped).  Recorded as the run's
    error; the job keeps its schedule and runs resume when the cluster is back."""


class WorkerDiedError(NbschedError, RuntimeError):
    """The Dask worker running the job died (killed, out of memory) and the cluster gave up on the task.
    Recorded as the run's error; retried by the job's ``retries=`` policy."""


class NbschedWarning(UserWarning):
    """Warnings from nbsched (tests turn these into errors)."""
