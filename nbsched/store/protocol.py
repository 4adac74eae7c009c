"""What a store must do: the whole contract between the engine and durable storage.

The engine calls exactly these methods (nothing else, and never through ``hasattr``); a store calls
the engine only through its public methods: ``clock``, ``tz``, ``load()`` to bring jobs back,
``merge_history()`` for rows other processes recorded.  :class:`nbsched.store.memory.MemoryStore`
is a complete implementation in about a hundred lines, written against this file alone.

Threading: every method is called on the scheduler's loop thread; the hot ones (``on_row``, and
``claim`` unless ``claims_free_until`` spares it) on every fire, so they must not do I/O there
(queue it).  A history row arrives packed, as the job's log packed it (bytes: nothing the garbage
collector tracks), with the values kept aside (error, worker) when it has any;
:func:`nbsched.history.unpack_row` makes the plain tuple in the layout of
:class:`nbsched.history.HistoryRow`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..job import Job

__all__ = ["Store"]


@runtime_checkable
class Store(Protocol):
    """A durable home for job definitions, state, history rows and results."""

    #: Persist every job added from now on (``add(..., persist=None)``); else only ``persist=True`` ones.
    persist_all: bool

    #: A scheduler-clock time before which :meth:`claim` would answer True for every fire time of
    #: every job: the engine does not call it for a scheduled fire while the clock is before it.  A
    #: store used by one process keeps it at ``inf``; a shared one at when its leases lapse (its
    #: wall-clock deadline read on the scheduler's clock, which runs with it), or ``-inf`` while
    #: some job's answer depends on the job or its fire time.
    claims_free_until: float

    def attach(self, scheduler: Any) -> None:
        """Start serving ``scheduler`` (one scheduler per store object)."""

    def on_job_saved(self, job: "Job") -> None:
        """A persisted job was added or changed (definition via ``job.definition()``, state via its properties)."""

    def on_job_removed(self, name: str) -> None:
        """A persisted job was removed (its history stays)."""

    def row_key(self, job_name: str) -> Any:
        """What :meth:`on_row` takes to name this job (not None): the engine asks once per job and
        store and keeps the answer with the job, so the hot path looks nothing up by name."""

    def on_row(self, key: Any, packed: bytes, aside: tuple | None) -> None:
        """A history row of a persisted job was recorded (hot path: queue, do not block).

        ``key``: what :meth:`row_key` answered for the job; ``packed``: the row's packed bytes; ``aside``: the values kept aside, in
        :data:`nbsched.history.ASIDE_FIELDS` order, or ``None`` when all are None (the common case).
        ``unpack_row(packed, aside)`` is the row as a plain tuple."""

    def on_result(self, job_name: str, run_id: int, scheduled: float, value: Any) -> None:
        """A persisted job's run returned ``value`` (not None)."""

    def claim(self, job_name: str, scheduled: float) -> bool:
        """May this process run (or record as missed) ``job_name``'s fire time ``scheduled``?

        A store shared between processes answers False for fire times another process owns, so
        no fire time runs twice.  A store used by one process always answers True.
        """

    def restore(self, scheduler: Any, namespace: dict | None = None) -> list["Job"]:
        """Bring every stored job back through ``scheduler.load(...)``; returns the jobs loaded."""

    def close(self) -> None:
        """Write what is pending and let go of the storage (called by ``Scheduler.shutdown``)."""
