"""The interpreter's thread switch interval while firing jobs keeps the loop busy.

A Jupyter kernel is several threads: the loop's thread runs the cells and the jobs, and others
receive the front end's messages and send output (ipykernel 7 hands every request from a thread
of its own to the loop).  A thread that wants the interpreter while another is busy computing
waits up to :func:`sys.getswitchinterval` (5 ms by default) before it may take over.  When jobs
keep the loop thread busy most of the time (100,000 jobs a second), each hop of a request from
thread to thread waits that long: measured in a real kernel, a trivial ``execute_request`` took
about 140 ms at its 99th percentile where an idle kernel answers in 8 ms, and about 20-25 ms with a
0.5 ms interval (``bench/bench_kernel.py``).

**What the scheduler does** (:class:`SwitchInterval`): the timing wheel reports, about once a
second, the share of wall time it spent firing jobs.  From a share of :data:`BUSY` on, the
scheduler sets the switch interval to ``Scheduler.switch_interval`` (0.5 ms); when the share falls
below :data:`QUIET` (and at shutdown) it puts the previous value back.  It only ever replaces
Python's default: an interval the user set themselves is left alone.  Several schedulers share one
process-wide setting: it is restored when none of them is busy.

**The trade-off**: with two threads computing at once, a shorter interval means more switches
between them (each costs microseconds).  ``Scheduler.switch_interval = None`` (before creating the
scheduler) leaves the interval alone.
"""
from __future__ import annotations

import logging
import sys
import threading

__all__ = ["SwitchInterval", "BUSY", "QUIET", "DEFAULT"]

log = logging.getLogger("nbsched")

#: Share of wall time spent firing jobs from which the interval is shortened ...
BUSY = 0.25
#: ... and below which it is given back.
QUIET = 0.10
#: Python's own switch interval (what this module is allowed to replace).
DEFAULT = 0.005

_lock = threading.Lock()
_busy: set[int] = set()  # ids of the SwitchInterval objects that want the short interval
_saved: list[float] = []  # the value replaced (empty: not replaced)
_ours: list[float] = []  # the value set (to see whether someone changed it since)


class SwitchInterval:
    """One scheduler's say in the process's switch interval (see the module docstring)."""

    __slots__ = ("interval", "busy")

    def __init__(self, interval: float | None):
        if interval is not None and not (isinstance(interval, (int, float)) and 0 < interval <= DEFAULT):
            raise ValueError(f"invalid switch_interval {interval!r}: seconds in (0, {DEFAULT}], or None to leave "
                             "the interpreter's setting alone")
        self.interval = interval
        self.busy = False

    def report(self, share: float) -> None:
        """The share of the last second's wall time the wheel spent firing jobs."""
        if self.interval is None:
            return
        if not self.busy and share >= BUSY:
            self.busy = True
            with _lock:
                _busy.add(id(self))
                if not _saved and sys.getswitchinterval() == DEFAULT:
                    _saved.append(DEFAULT)
                    sys.setswitchinterval(self.interval)
                    _ours[:] = [sys.getswitchinterval()]
                    log.debug("nbsched: jobs keep the loop %.0f%% busy: switch interval %.4f s", share * 100,
                              self.interval)
        elif self.busy and share < QUIET:
            self.release()

    def release(self) -> None:
        """This scheduler is quiet again (or shut down): restore the interval if nobody else is busy."""
        if not self.busy:
            return
        self.busy = False
        with _lock:
            _busy.discard(id(self))
            if not _busy and _saved:
                if _ours and sys.getswitchinterval() == _ours[0]:  # not changed by anyone since
                    sys.setswitchinterval(_saved[0])
                _saved.clear()
                _ours.clear()
