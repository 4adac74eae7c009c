"""Executors: where a job's function runs.

* ``loop`` - on the scheduler's own event loop: coroutine functions are awaited, plain functions are
  called directly (cheapest; a plain function that blocks, blocks the loop - use ``thread``).
* ``thread`` - a thread pool; results are handed back to the loop thread-safely.  The context
  (context variables such as nbsched's output routing in a kernel) is copied into the thread.
* ``process`` - a process pool for importable (module-level) functions.

The seam for other engines (a cluster, say) is :class:`Executor`: ``submit(func)`` returns an
awaitable (an asyncio future or a coroutine), called on the scheduler's loop.  Register one with
``Scheduler(executors={"name": ...})`` or ``sched.add_executor(name, executor)`` and pick it per job
with ``executor="name"``.  An executor that places runs on other machines (``dask``, see
:mod:`nbsched.dask`) sets :data:`run_worker` while the run's awaitable runs; the history's ``worker``
column shows it.  One that accepts ``resources=`` says so with ``supports_resources = True`` and
receives ``submit(func, resources={...})``.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import multiprocessing
from contextvars import ContextVar
from typing import Any, Callable, Protocol, runtime_checkable

from .errors import PolicyError

__all__ = ["Executor", "LoopExecutor", "ThreadExecutor", "ProcessExecutor", "default_executors", "run_worker"]

#: The address of the machine that ran the current attempt, set by executors that run work elsewhere
#: (inside the run's own task, so concurrent runs do not mix); ``None`` for runs on this machine.
run_worker: ContextVar[str | None] = ContextVar("nbsched_run_worker", default=None)


@runtime_checkable
class Executor(Protocol):
    """Runs a job's function somewhere and returns an asyncio future of its value."""

    name: str

    def check(self, func: Callable[[], Any]) -> None:
        """Raise :class:`~nbsched.errors.PolicyError` at ``add()`` time if ``func`` cannot run here."""

    def submit(self, func: Callable[[], Any]) -> Any:
        """Start ``func()``; called on the scheduler's loop.  Returns an awaitable of its value."""

    def shutdown(self, wait: bool = False) -> None: ...


class LoopExecutor:
    """Marker for running on the event loop itself; the scheduler calls/awaits the function directly."""

    name = "loop"

    def check(self, func: Callable[[], Any]) -> None:
        return None

    def submit(self, func: Callable[[], Any]) -> "asyncio.Future[Any]":  # pragma: no cover - not used
        raise NotImplementedError("the scheduler runs loop jobs itself")

    def shutdown(self, wait: bool = False) -> None:
        return None


class ThreadExecutor:
    """A thread pool (created on first use).  Timed-out runs are abandoned: Python cannot kill a thread."""

    name = "thread"

    def __init__(self, max_workers: int | None = None):
        self.max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def check(self, func: Callable[[], Any]) -> None:
        return None

    def submit(self, func: Callable[[], Any]) -> "asyncio.Future[Any]":
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.max_workers, thread_name_prefix="nbsched")
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return loop.run_in_executor(self._pool, ctx.run, func)

    def shutdown(self, wait: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None


class ProcessExecutor:
    """A process pool (``forkserver`` start method: forking a kernel with live threads is unsafe).

    The function must be importable by name (defined at module level in an importable module, not in
    a notebook cell) and its return value must be transferable between processes.
    """

    name = "process"

    def __init__(self, max_workers: int | None = None, start_method: str = "forkserver"):
        self.max_workers = max_workers
        self.start_method = start_method
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def check(self, func: Callable[[], Any]) -> None:
        module = getattr(func, "__module__", None)
        qualname = getattr(func, "__qualname__", "")
        if module in (None, "__main__", "builtins") or "<" in qualname:
            raise PolicyError(
                f"the process executor needs an importable module-level function, not {func!r} "
                f"(module {module!r}, name {qualname!r}): move it into a .py module and import it, "
                "or use executor='thread'"
            )

    def submit(self, func: Callable[[], Any]) -> "asyncio.Future[Any]":
        if self._pool is None:
            ctx = multiprocessing.get_context(self.start_method)
            self._pool = concurrent.futures.ProcessPoolExecutor(self.max_workers, mp_context=ctx)
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._pool, func)

    def shutdown(self, wait: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None


def default_executors() -> dict[str, Any]:
    return {"loop": LoopExecutor(), "thread": ThreadExecutor(), "process": ProcessExecutor()}
