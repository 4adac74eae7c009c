"""Testing helpers: a fake clock, so time-dependent code is tested without sleeping.

    clock = FakeClock(start=datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc))
    sched = nbsched.Scheduler(clock=clock)
    sched.add(job, "every 10s")
    await clock.advance(60)   # six runs, in order, instantly

``advance(seconds)`` moves time forward timer by timer: every timer due in the window fires in order
and, after each step, the event loop runs until nothing is ready (so runs that wait only on the clock -
retry delays, timeouts, ``await clock.sleep(...)`` inside a job - finish).  It does not wait for runs
blocked on anything else (a thread, a socket).
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import datetime, timezone
from typing import Callable

from ._durations import DurationLike, parse_duration
from .clock import to_timestamp

__all__ = ["FakeClock"]


class _FakeTimer:
    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], None]):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that only moves when told to (:meth:`advance`, :meth:`set`)."""

    def __init__(self, start: datetime | float | None = None, *, wake_interval: float | None = None):
        #: Like ``SystemClock.wake_interval``: the scheduler wakes at least this often while jobs wait
        #: (to notice :meth:`step`).  None (default): it wakes only when something is due.
        self.wake_interval = wake_interval
        if start is None:
            start = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
        self._now = to_timestamp(start) if isinstance(start, datetime) else float(start)
        self._offset = self._now  # wall time minus elapsed time: changes only on step()
        # timers wait in elapsed time (as the loop's timers do): (elapsed deadline, seq, timer)
        self._timers: list[tuple[float, int, _FakeTimer]] = []
        self._seq = itertools.count()

    # -- the Clock protocol ------------------------------------------------------------------------
    def time(self) -> float:
        return self._now

    def elapsed(self) -> float:
        """Elapsed seconds (see :meth:`nbsched.clock.SystemClock.elapsed`): moved by advance() and
        jump(), not by step()."""
        return self._now - self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._now, timezone.utc)

    #: Fake timers fire exactly at their time.
    timer_slack = 0.0

    def call_at(self, when: float, callback: Callable[[], None], loop: object = None) -> _FakeTimer:
        # like a loop timer: armed for a delay, so it fires after that much elapsed time whatever the
        # wall clock does meanwhile
        deadline = when - self._offset
        timer = _FakeTimer(deadline, callback)
        heapq.heappush(self._timers, (deadline, next(self._seq), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        timer = self.call_at(self._now + max(0.0, seconds), wake)
        try:
            await fut
        finally:
            timer.cancel()

    # -- driving time --------------------------------------------------------------------------------
    async def advance(self, seconds: DurationLike) -> None:
        """Move time forward by ``seconds`` (``"5m"``, ``90``, a timedelta), firing due timers in order."""
        step = parse_duration(seconds, what="advance", allow_zero=True)
        target = self.elapsed() + step  # in elapsed time: a step() meanwhile does not move it
        await self._settle()
        while True:
            timer = self._pop_due(target)
            if timer is None:
                break
            if timer.when > self.elapsed():
                self._now = timer.when + self._offset
            timer.callback()
            await self._settle()
        self._now = target + self._offset
        await self._settle()

    async def set(self, when: datetime) -> None:
        """Advance to an absolute time (never backwards)."""
        ts = to_timestamp(when)
        if ts < self._now:
            raise ValueError(f"FakeClock.set({when!r}) would move time backwards from {self.now()!r}")
        await self.advance(ts - self._now)

    def jump(self, seconds: float) -> None:
        """Move time forward WITHOUT firing timers (simulates a loop blocked by a cell, or a suspend)."""
        self._now += seconds

    def step(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (negative: back) without any time elapsing - what NTP or a
        resumed VM does to the real clock.  Timers keep waiting in elapsed time."""
        self._now += seconds
        self._offset += seconds

    def _pop_due(self, target: float) -> _FakeTimer | None:
        timers = self._timers
        while timers:
            when, _, timer = timers[0]
            if timer.cancelled:
                heapq.heappop(timers)
                continue
            if when > target:
                return None
            heapq.heappop(timers)
            return timer
        return None

    @property
    def pending(self) -> int:
        """Timers armed and not cancelled."""
        return sum(1 for _, _, t in self._timers if not t.cancelled)

    async def _settle(self, max_rounds: int = 10_000) -> None:
        """Let the loop run until nothing is ready (tasks waiting only on this clock are then parked)."""
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)
        quiet = 0
        for _ in range(max_rounds):
            await asyncio.sleep(0)
            if ready is None:
                quiet += 1
                if quiet > 50:
                    return
            elif len(ready) == 0:
                quiet += 1
                if quiet >= 2:
                    return
            else:
                quiet = 0

    def __repr__(self) -> str:
        return f"FakeClock({self.now().isoformat()})"

