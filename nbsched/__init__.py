"""nbsched: notebook-native scheduling on the kernel's own asyncio loop.

    import nbsched
    sched = nbsched.get_scheduler()
    sched.add(refresh, "every 5m", retries=3, timeout="30s")
    sched.history()          # one row per run attempt
    sched.results("refresh") # what the job returned, accumulated

In Jupyter: ``%load_ext nbsched`` then ``%%schedule every 5m`` on a cell.  Importing nbsched is cheap:
IPython, ipywidgets and pandas are imported only where needed.
"""
from __future__ import annotations

from . import events
from ._durations import parse_duration
from .clock import Clock, SystemClock
from .dask import DaskExecutor
from .errors import (
    ClusterUnreachableError,
    DurationError,
    JobLookupError,
    NbschedError,
    NbschedWarning,
    NoEventLoopError,
    PolicyError,
    SchedulerShutdownError,
    StoreError,
    TriggerError,
    WorkerDiedError,
)
from .executors import Executor, LoopExecutor, ProcessExecutor, ThreadExecutor
from .context import Branch, RunContext, Skip, current_run
from .history import Outcome, RunRecord
from .notebook_files import NotebookCellError, NotebookFileError
from .job import Job, JobPolicy, JobState
from .engine import MaxInstancesReachedError, RunHandle, Scheduler, SchedulerStatistics, get_scheduler
from .triggers import After, Cron, Date, Interval, OnFile, Trigger, parse_trigger

from ._version import __version__  # noqa: E402

__all__ = [
    "Scheduler", "get_scheduler", "Job", "JobPolicy", "JobState", "RunHandle", "RunRecord", "Outcome",
    "SchedulerStatistics", "Trigger", "Interval", "Cron", "Date", "After", "OnFile", "parse_trigger", "parse_duration",
    "current_run", "RunContext", "Branch", "Skip",
    "Clock", "SystemClock", "Executor", "LoopExecutor", "ThreadExecutor", "ProcessExecutor", "DaskExecutor",
    "events",
    "NbschedError", "TriggerError", "DurationError", "PolicyError", "JobLookupError", "NoEventLoopError",
    "SchedulerShutdownError", "MaxInstancesReachedError", "NbschedWarning", "StoreError",
    "NotebookFileError", "NotebookCellError",
    "ClusterUnreachableError", "WorkerDiedError",
    "dashboard", "load_ipython_extension", "unload_ipython_extension", "__version__",
]


def dashboard(scheduler: Scheduler | None = None):
    """A live ipywidgets dashboard of every job (see :class:`nbsched.notebook.Dashboard`)."""
    from .notebook.dashboard import Dashboard

    return Dashboard(scheduler or get_scheduler())


def load_ipython_extension(ipython) -> None:
    """``%load_ext nbsched``: register ``%%schedule`` / ``%schedule`` and the kernel integration."""
    from .notebook.magics import load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext nbsched``: stop every job cleanly and remove the magics."""
    from .notebook.magics import unload

    unload(ipython)
