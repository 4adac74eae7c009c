"""A loop of its own: an asyncio event loop running forever in a daemon thread.

Outside a kernel (terminal IPython, the ``python`` REPL, a script that never starts asyncio) there is
no running loop for the scheduler to live on.  ``Scheduler(background=True)`` then starts a
:class:`LoopThread` and binds to it with that thread as the loop thread, so every call from the main
thread is handed over (:class:`~nbsched.engine._handover.LoopBinding`) and jobs run in the
background while the prompt (or the script) goes on.

The thread is a daemon: it never keeps the interpreter alive.  It stops when the scheduler shuts
down, and at interpreter exit (``atexit``) after the scheduler has been shut down, so jobs are
recorded ``cancelled`` rather than cut off silently.
"""
from __future__ import annotations

import asyncio
import atexit
import threading
import weakref
from typing import Any, Callable

__all__ = ["LoopThread"]


class LoopThread:
    """``LoopThread(name)``: start a thread running a new event loop; :meth:`stop` ends both."""

    def __init__(self, name: str = "nbsched-loop"):
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        self._started.wait()
        self._at_exit: list[Callable[[], Any]] = []
        me = weakref.ref(self)

        def on_exit() -> None:
            lt = me()
            if lt is not None:
                lt._exit()

        self._exit_hook = on_exit
        atexit.register(on_exit)

    @property
    def ident(self) -> int:
        """The loop thread's id (what the scheduler's loop binding compares against)."""
        assert self.thread.ident is not None
        return self.thread.ident

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        loop.call_soon(self._started.set)
        try:
            loop.run_forever()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def on_exit(self, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` at interpreter exit, before the loop stops (e.g. the scheduler's shutdown)."""
        self._at_exit.append(fn)

    def _exit(self) -> None:
        for fn in self._at_exit:
            try:
                fn()
            except Exception:  # noqa: BLE001 - exiting anyway; never block interpreter exit
                pass
        self.stop()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop (its pending tasks are cancelled) and, from another thread, wait for the thread."""
        loop = self.loop
        if loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # closed meanwhile
            return
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)
        atexit.unregister(self._exit_hook)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()
