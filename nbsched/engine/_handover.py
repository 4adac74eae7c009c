"""Loop hand-over: the scheduler lives on one asyncio loop; calls from any other thread are handed to it.

In a kernel the loop is the kernel's own; cells on an ipykernel 7 subshell, worker threads and the
dashboard's comm handlers may call from elsewhere.  :meth:`LoopBinding.call` runs a function on the
loop, directly when already there, else via ``call_soon_threadsafe`` and waits for the answer.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Callable

from ..errors import NoEventLoopError, SchedulerShutdownError

__all__ = ["LoopBinding"]

_get_ident = threading.get_ident


class LoopBinding:
    """Which loop (and thread) the scheduler belongs to, and how to get work onto it."""

    __slots__ = ("loop", "thread", "closed", "on_move")

    def __init__(self, on_move: Callable[[], None]):
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: int | None = None
        self.closed = False  # set at shutdown: calls are refused from then on
        self.on_move = on_move  # called after moving to a new loop (the old one was closed)

    def bind(self, loop: asyncio.AbstractEventLoop, thread: int | None) -> None:
        """Belong to ``loop``, run by ``thread`` (None: whichever thread first calls from it)."""
        self.loop = loop
        self.thread = thread

    def bind_running(self) -> None:
        """Belong to the loop running in this thread, if there is one."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        self.bind(running, threading.get_ident())

    def require(self, what: str) -> asyncio.AbstractEventLoop:
        """The loop, binding to the running one if needed; :class:`NoEventLoopError` if there is none."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self.loop
        if loop is not None and loop.is_closed():
            self.loop = loop = None  # e.g. a second asyncio.run() in a script: move to the new loop
            if running is not None:
                self.bind(running, threading.get_ident())
                self.on_move()
                return running
        if loop is None:
            if running is None:
                raise NoEventLoopError(
                    f"{what} needs a running asyncio event loop and there is none in this thread. "
                    "In Jupyter, call it from a cell (the kernel's loop is running there); in a script, "
                    "put your code in 'async def main(): ...' and run it with asyncio.run(main()), or give "
                    "the scheduler a loop of its own: nbsched.Scheduler(background=True)."
                )
            self.bind(running, threading.get_ident())
            return running
        if self.thread is None and running is loop:
            self.thread = threading.get_ident()
        return loop

    def elsewhere(self) -> asyncio.AbstractEventLoop | None:
        """The loop, when it is open and runs in another thread than this one (else None)."""
        loop = self.loop
        if loop is not None and not loop.is_closed() and self.thread is not None \
                and self.thread != threading.get_ident():
            return loop
        return None

    def here(self) -> bool:
        """Whether this thread is the open loop's own (then work runs directly, as :meth:`call` does).

        A caller may test this before building :meth:`call`'s arguments (bulk ``add``/``remove``)."""
        loop = self.loop
        return self.thread == _get_ident() and loop is not None and not self.closed and not loop.is_closed()

    def call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the loop: directly when we are on it, else hand it over and wait."""
        if self.closed:
            raise SchedulerShutdownError(
                f"{what}: this scheduler was shut down; create a new Scheduler() or call nbsched.get_scheduler()"
            )
        loop = self.loop
        if loop is not None and self.thread == threading.get_ident() and not loop.is_closed():
            return fn(*args)  # on the loop's own thread (the common case, e.g. adding 100,000 jobs in a cell)
        loop = self.elsewhere()
        if loop is not None:
            return self.hand_over(loop, fn, *args)
        self.require(what)
        return fn(*args)

    @staticmethod
    def hand_over(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on ``loop`` (another thread's) and wait for its result or exception."""
        result: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(fn(*args))
            except BaseException as exc:  # handed back to the calling thread
                result.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return result.result()

    def post(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Queue ``fn(*args)`` on the loop from any thread without waiting; False if the loop is gone."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # closed meanwhile
            return False
        return True
