"""The ``dask`` executor: jobs run on a Dask cluster (``distributed``), driven from the scheduler's loop.

    from dask.distributed import Client
    client = await Client("tcp://scheduler:8786", asynchronous=True)   # on the notebook's own loop
    sched.add_executor("dask", nbsched.DaskExecutor(client))
    sched.add(train, "daily at 02:00", executor="dask", resources={"GPU": 1}, retries=2, timeout="2h")

How it behaves (and why):

* **Never blocks the loop.**  The client is Dask's *asynchronous* client on the scheduler's own event
  loop: ``client.submit`` only queues a message, and the run awaits the Dask future like any other
  coroutine.  A synchronous client (one with its own loop thread) is refused with the line to use.
* **nbsched owns the policies.**  Dask's own ``retries`` stay 0: nbsched retries by the job's policy,
  so every attempt is a history row.  A timeout or an interrupt cancels the run's task, which cancels
  the Dask future on the cluster (a queued task never starts; a running one is released and its
  result dropped - a Python thread on the worker cannot be killed mid-call).
* **Bursts are sliced.**  Submissions queue and are sent in slices of at most
  :data:`SUBMIT_SLICE_SECONDS`, giving the loop back in between, so a thousand jobs due at once do not
  hold a cell or a widget click for the whole burst.
* **Faults are values.**  A worker that dies while running the job (killed, out of memory) surfaces
  as :class:`~nbsched.errors.WorkerDiedError`; a scheduler that cannot be reached (connection refused
  or dropped) as :class:`~nbsched.errors.ClusterUnreachableError`.  Both become the run's recorded
  error (retried if the job has retries); the job keeps its schedule, and when the client has given up
  reconnecting, the next run opens a new client to the same address, so runs resume when the cluster
  is back.
* **What is shipped.**  The job's function, with Dask's own serialization (cloudpickle): functions
  defined in a notebook travel by value, functions from modules by reference (the module must be
  importable on the workers).  Nothing is stored: the store keeps the JSON job definition as usual.
  A job function may instead offer ``nbsched_remote()`` returning an object with ``func`` (what runs on
  the worker) and ``finish(value)`` (run back on the loop; its return is the run's value): a
  ``%%schedule`` cell uses it to ship its source and the values of the names it reads
  (see :mod:`nbsched.notebook.remote`).

``distributed`` is an optional dependency: ``pip install 'nbsched[dask]'``.  This module imports it
only when a :class:`DaskExecutor` is created, so ``import nbsched`` stays cheap.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
from typing import Any, Callable

from .clock import perf_counter
from .errors import ClusterUnreachableError, PolicyError, WorkerDiedError
from .executors import run_worker

__all__ = ["DaskExecutor", "require_distributed"]

log = logging.getLogger("nbsched")

INSTALL_HINT = "pip install 'nbsched[dask]'"

_keys = itertools.count(1)

#: How long submitting to the client may hold the loop in one go.  ``client.submit`` serializes the
#: task on the calling thread (~0.1-1 ms each): a thousand jobs falling due together would otherwise
#: hold a kernel's loop for the whole burst.  Submissions queue and are sent in slices of this length.
SUBMIT_SLICE_SECONDS = 0.002


def require_distributed(what: str = "the dask executor") -> Any:
    """Import and return the ``distributed`` package, or raise ImportError saying what to install."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            f"{what} needs Dask's 'distributed' package, which is not installed: "
            f"{INSTALL_HINT} (and install the same on the cluster's workers)"
        ) from exc
    return distributed


def run_on_worker(func: Callable[[], Any]) -> tuple[Any, str | None]:
    """Runs on the worker: the function's value and the worker's address (for the history).  An
    exception carries the address back as its ``nbsched_worker`` attribute."""
    from distributed import get_worker

    try:
        address = get_worker().address
    except ValueError:  # not inside a worker (never the case on a cluster)
        address = None
    try:
        return func(), address
    except BaseException as exc:
        try:
            exc.nbsched_worker = address
        except AttributeError:  # an exception type without a __dict__: the column stays empty
            pass
        raise


class DaskExecutor:
    """Runs jobs on a Dask cluster through an asynchronous ``distributed.Client``.

    ``DaskExecutor(client, *, reconnect=True, connect_timeout=10.0)``: ``client`` must be asynchronous
    (``await Client(address, asynchronous=True)``) and created on the loop the scheduler runs on
    (in Jupyter: in a cell).  With ``reconnect`` (the default), when the client has closed itself after
    losing the scheduler, the next run opens a new asynchronous client to the same address (waiting at
    most ``connect_timeout`` seconds; until then the runs are recorded as unreachable).

    Register it with ``sched.add_executor("dask", DaskExecutor(client))`` and pick it per job with
    ``executor="dask"``; ``resources={"GPU": 1}`` becomes a Dask resource restriction (the task waits
    for a worker started with ``--resources GPU=1``).
    """

    name = "dask"
    #: Jobs on this executor may pass ``resources=``.
    supports_resources = True

    def __init__(self, client: Any, *, reconnect: bool = True, address: str | None = None,
                 connect_timeout: float = 10.0):
        distributed = require_distributed("DaskExecutor")
        if not isinstance(client, distributed.Client):
            raise TypeError(
                f"DaskExecutor needs a dask.distributed.Client, got {client!r}: "
                "client = await Client('tcp://host:8786', asynchronous=True)"
            )
        if not client.asynchronous:
            raise PolicyError(
                f"DaskExecutor needs an asynchronous client on the notebook's loop, got {client!r} "
                "(a synchronous client would block the loop while it waits): create it with "
                "client = await Client(address, asynchronous=True)"
            )
        self._distributed = distributed
        self.client = client
        self.reconnect = reconnect
        self.connect_timeout = connect_timeout
        self._address = address or _scheduler_address(client)
        self._reconnecting: asyncio.Future | None = None
        self._starting: asyncio.Future | None = None
        if client.status == "newly-created":  # created but not awaited yet (e.g. by %schedule cluster)
            self._starting = asyncio.ensure_future(_start(client))
            self._starting.add_done_callback(_log_start_failure)
        self._cancels: set[asyncio.Task] = set()
        self._closed = False
        self._queue: collections.deque = collections.deque()  # (make, asyncio future) waiting for a slice
        self._slice_end: float | None = None  # this loop iteration's submission slice ends then

    # -- the Executor protocol -------------------------------------------------------------------
    def check(self, func: Callable[[], Any]) -> None:
        """Refuse, at ``add()`` time, a function Dask cannot serialize (naming what failed)."""
        from distributed.protocol.pickle import dumps

        remote = getattr(func, "nbsched_remote", None)
        if remote is not None:  # e.g. a %%schedule cell: it checks its own shipment (naming what fails)
            remote()
            return
        try:
            dumps(func)
        except Exception as exc:  # noqa: BLE001 - reported with its cause
            raise PolicyError(
                f"{func!r} cannot be shipped to the Dask cluster: {type(exc).__name__}: {exc}. "
                "Define what it uses inside the function, or move it into a module the workers can import"
            ) from exc

    def submit(self, func: Callable[[], Any], *, resources: dict[str, float] | None = None) -> Any:
        """Send ``func`` to the cluster; returns a coroutine of its value (called on the scheduler's loop)."""
        return self._run(func, resources)

    def shutdown(self, wait: bool = False) -> None:
        """Stop sending work.  The client belongs to the caller and is left open (close it yourself)."""
        self._closed = True

    # -- one run ---------------------------------------------------------------------------------
    @property
    def address(self) -> str | None:
        """The scheduler's address (``tcp://host:8786``)."""
        return self._address or _scheduler_address(self.client)

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's address, when the cluster serves one."""
        try:
            return self.client.dashboard_link
        except Exception:  # noqa: BLE001 - no dashboard (bokeh missing, or disabled)
            return None

    async def _run(self, func: Callable[[], Any], resources: dict[str, float] | None) -> Any:
        if self._closed:
            raise ClusterUnreachableError("the dask executor was shut down with its scheduler; register a new one")
        finish = None
        remote = getattr(func, "nbsched_remote", None)
        if remote is not None:  # the job ships something else than itself (a cell: its values and source)
            call = remote()
            func, finish = call.func, call.finish
        client = await self._connected_client()
        key = f"{_label(func)}-nbsched-{os.getpid()}-{next(_keys)}"
        loop = asyncio.get_running_loop()

        def make() -> Any:
            return client.submit(run_on_worker, func, key=key, pure=False, retries=0,
                                 resources=dict(resources) if resources else None)

        try:
            if self._admit(loop):
                future = make()  # the common case: right here, no queueing
            else:  # a burst: wait for a later slice
                submitted = loop.create_future()
                self._queue.append((make, submitted))
                try:
                    future = await submitted
                except asyncio.CancelledError:  # timed out or interrupted while queued (or just sent)
                    if submitted.done() and not submitted.cancelled() and submitted.exception() is None:
                        self._cancel(submitted.result())
                    raise
        except self._distributed.client.ClosedClientError as exc:  # closed between the check and here
            raise self._unreachable(f"the client closed ({exc})") from None
        try:
            value, worker = await future
        except BaseException as exc:
            worker = getattr(exc, "nbsched_worker", None)
            if worker is None and isinstance(exc, self._distributed.scheduler.KilledWorker):
                worker = getattr(exc.last_worker, "address", None)
            run_worker.set(worker)
            if isinstance(exc, asyncio.CancelledError):
                self._cancel(future)  # timeout, interrupt or shutdown: release the task on the cluster too
                raise
            replacement = self._translate(client, key, exc)
            if replacement is None:
                raise
            raise replacement from None
        run_worker.set(worker)
        return value if finish is None else finish(value)

    def _admit(self, loop: asyncio.AbstractEventLoop) -> bool:
        """May a submission run now?  Yes while this loop iteration's slice has time left and none wait."""
        if self._queue:
            return False  # first come, first sent
        if self._slice_end is None:  # the first submission of this loop iteration opens a slice
            self._slice_end = perf_counter() + SUBMIT_SLICE_SECONDS
            loop.call_soon(self._next_slice, loop)
            return True
        return perf_counter() < self._slice_end

    def _next_slice(self, loop: asyncio.AbstractEventLoop) -> None:
        """The next loop iteration: send what waits, for one slice at most (then again, later)."""
        self._slice_end = None
        queue = self._queue
        if not queue:
            return
        self._slice_end = deadline = perf_counter() + SUBMIT_SLICE_SECONDS
        loop.call_soon(self._next_slice, loop)
        while queue and perf_counter() < deadline:
            make, submitted = queue.popleft()
            if submitted.done():  # the run was cancelled while it waited: nothing to send
                continue
            try:
                submitted.set_result(make())
            except Exception as exc:  # noqa: BLE001 - handed to the run that asked
                submitted.set_exception(exc)

    def _translate(self, client: Any, key: str, exc: BaseException) -> BaseException | None:
        """What the run records for a cluster fault (None: the job's own exception, recorded as it is)."""
        distributed = self._distributed
        if isinstance(exc, distributed.client.FutureCancelledError):
            if exc.reason == "scheduler-connection-lost":
                return self._unreachable("the connection was lost while the run was going")
            return ClusterUnreachableError(
                f"the Dask task {key!r} was cancelled on the cluster ({exc.reason}): "
                "someone cancelled it or restarted the cluster; the next run submits it again")
        if isinstance(exc, distributed.scheduler.KilledWorker):
            return WorkerDiedError(
                f"the Dask worker running this job died (killed, or out of memory) and the scheduler gave up "
                f"on the task: {exc}. nbsched retries it if the job has retries=; check the worker's log")
        if isinstance(exc, OSError) and client.status != "running":  # e.g. gathering from a worker that went away
            return self._unreachable(f"{type(exc).__name__}: {exc}")
        return None

    async def _connected_client(self) -> Any:
        client = self.client
        status = client.status
        if status == "running":
            return client
        starting = self._starting
        if starting is not None and starting.done() is False:
            try:
                await asyncio.shield(starting)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported as the run's error
                raise self._unreachable(f"{type(exc).__name__}: {exc}") from None
            if client.status == "running":
                return client
            status = client.status
        if status in ("closed", "closing") and self.reconnect and self.address:
            if self._reconnecting is None or self._reconnecting.done():
                self._reconnecting = asyncio.ensure_future(self._open_client())
            try:
                return await asyncio.shield(self._reconnecting)
            except Exception as exc:  # noqa: BLE001 - reported as the run's error
                raise self._unreachable(f"{type(exc).__name__}: {exc}") from None
        raise self._unreachable(f"the client is {status!r}")

    async def _open_client(self) -> Any:
        client = await self._distributed.Client(self.address, asynchronous=True, timeout=self.connect_timeout,
                                                set_as_default=False)
        self.client = client
        log.info("nbsched: reconnected to the Dask scheduler at %s", self.address)
        return client

    def _unreachable(self, detail: str) -> ClusterUnreachableError:
        return ClusterUnreachableError(
            f"the Dask scheduler at {self.address or '?'} is unreachable ({detail}): the run was not completed. "
            "The job keeps its schedule and runs resume when the cluster is back; check that the "
            "scheduler is running (dask scheduler) and reachable from here"
        )

    def _cancel(self, future: Any) -> None:
        async def cancel() -> None:
            try:
                await self.client.cancel([future], force=True, reason="nbsched-cancelled",
                                         msg="cancelled by nbsched (timeout or interrupt)")
            except Exception:  # noqa: BLE001 - the cluster may be gone; nothing else to do
                log.debug("nbsched: could not cancel Dask task %s", future.key, exc_info=True)

        task = asyncio.ensure_future(cancel())
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    def __repr__(self) -> str:
        return f"<nbsched.DaskExecutor {self.address} status={self.client.status}>"


async def _start(client: Any) -> Any:
    return await client


def _log_start_failure(fut: "asyncio.Future[Any]") -> None:
    if not fut.cancelled() and fut.exception() is not None:  # runs report it as their error too
        log.info("nbsched: the Dask client could not connect: %s", fut.exception())


def _scheduler_address(client: Any) -> str | None:
    try:
        return client.scheduler.address
    except AttributeError:
        return None


def _label(func: Callable[[], Any]) -> str:
    name = getattr(func, "__name__", None) or type(func).__name__
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name)[:60] or "job"
