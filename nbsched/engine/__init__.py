"""The engine: the :class:`Scheduler` and the small parts it is made of.

Lives here: the public facade (``scheduler``), the loop hand-over, the timing wheel, the pure fire
planner (misfire and coalesce as a function), the run lifecycle (attempts, retries, the one place
that records a run), and the process-wide settings it manages for the loop's sake (``_gc``: freezing
after bulk adds; ``_gil``: the thread switch interval while jobs keep the loop busy).  May import
the bottom layer (``nbsched.clock``, ``triggers``, ``history``, ``job``, ``events``,
``executors``, ``errors``) and nothing above it: never ``nbsched.store``,
``nbsched.notebook``, IPython, ipywidgets or pandas at module level.  A store is handed in as an
object that satisfies :class:`nbsched.store.Store` (opening one from a path is a lazy call).
"""
from ._batch import Backfill
from .scheduler import MaxInstancesReachedError, RunHandle, Scheduler, SchedulerStatistics, get_scheduler

__all__ = ["Scheduler", "Backfill", "RunHandle", "SchedulerStatistics", "MaxInstancesReachedError", "get_scheduler"]
