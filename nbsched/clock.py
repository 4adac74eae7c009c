"""Time, in one place.

Every other module is handed a :class:`Clock`; only this module (and the fake clock in
:mod:`nbsched.testing`) reads the wall clock or sleeps.  Times inside nbsched are POSIX seconds
(``float``) on the hot path and timezone-aware :class:`~datetime.datetime` at the edges.

A clock does three things for the scheduler:

* ``time()``  - the current POSIX time (float seconds);
* ``call_at(when, callback, loop=None)`` - arm a one-shot timer for POSIX time ``when`` (on ``loop``,
  default the running one); returns a handle with ``cancel()``.  The clock decides how to wait: the
  scheduler's timing wheel runs the same code on every clock;
* ``timer_slack`` - how late a timer may fire after its time (the wheel arms that much early and
  spins to the instant, within a small CPU budget: 0 for a fake clock);
* ``sleep(seconds)`` - an awaitable pause (retry delays, timeouts).

The system clock arms timers on the running asyncio loop.  Wall time and the loop's monotonic time
can drift apart (a laptop suspended for an hour, NTP stepping the clock): a timer further ahead than
:data:`MAX_TIMER_HORIZON` is armed for that long and re-armed for what remains of the wall time, so
it fires at its wall time, never early.  ``elapsed()`` gives time nobody sets; the scheduler compares
it with ``time()`` at least every ``wake_interval`` seconds to notice a step of the wall clock.
"""
from __future__ import annotations

import asyncio
import os
import time as _time
from datetime import datetime, timezone, tzinfo
from typing import Callable, Protocol, runtime_checkable

__all__ = ["perf_counter", "monotonic", "sleep_blocking", "Clock", "SystemClock", "TimerHandle", "local_zone", "to_timestamp", "resolve_zone", "zone_name"]

#: A monotonic high-resolution counter for measuring how long work takes (never for scheduling).
perf_counter = _time.perf_counter

#: Monotonic seconds, for measuring how long something took (never for scheduling).
monotonic = _time.monotonic


def sleep_blocking(seconds: float) -> None:
    """Block this thread (never call it on an event loop's thread: it would freeze the loop)."""
    _time.sleep(max(0.0, seconds))


#: Timers further ahead than this are armed for this long, then re-armed for what remains of the wall
#: time (so a timer follows the wall clock when it is stepped, and fires at its time, never early).
MAX_TIMER_HORIZON = 30.0

if hasattr(_time, "CLOCK_BOOTTIME"):
    def _elapsed() -> float:
        return _time.clock_gettime(_time.CLOCK_BOOTTIME)
else:  # pragma: no cover - not Linux
    _elapsed = _time.monotonic


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


@runtime_checkable
class Clock(Protocol):
    """What the scheduler needs from time.  See :class:`SystemClock` and :class:`nbsched.testing.FakeClock`."""

    def time(self) -> float: ...

    def now(self) -> datetime: ...

    timer_slack: float

    def call_at(self, when: float, callback: Callable[[], None],
                loop: asyncio.AbstractEventLoop | None = None) -> TimerHandle: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: wall time from :func:`time.time`, timers on an asyncio loop."""

    #: The selector rounds timeouts up to whole milliseconds (and Linux adds slack): a timer armed for
    #: an instant fires up to about a millisecond late.
    timer_slack = 0.001

    #: The scheduler wakes at least this often while jobs wait, to notice a step of the wall clock.
    wake_interval = 1.0

    #: POSIX time now: :func:`time.time` itself (read several times per fire: no Python frame around it).
    time = staticmethod(_time.time)

    def elapsed(self) -> float:
        """Seconds on a clock nobody sets (it counts a suspended machine's sleep too, as the wall clock
        does): ``time() - elapsed()`` changes only when the wall clock is stepped."""
        return _elapsed()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def call_at(self, when: float, callback: Callable[[], None],
                loop: asyncio.AbstractEventLoop | None = None) -> TimerHandle:
        if loop is None:
            loop = asyncio.get_running_loop()
        delay = when - _time.time()
        if delay <= MAX_TIMER_HORIZON:
            return loop.call_at(loop.time() + delay, callback)
        return _WallTimer(loop, when, callback)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


class _WallTimer:
    """A timer for a wall time more than MAX_TIMER_HORIZON ahead: re-armed until the wall clock gets
    there (the loop's own timers count elapsed time, which a step of the wall clock does not move)."""

    __slots__ = ("_loop", "_when", "_callback", "_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, when: float, callback: Callable[[], None]):
        self._loop = loop
        self._when = when
        self._callback = callback
        self._arm()

    def _arm(self) -> None:
        delay = self._when - _time.time()
        loop = self._loop
        if delay > MAX_TIMER_HORIZON:
            self._handle = loop.call_at(loop.time() + MAX_TIMER_HORIZON, self._arm)
        else:
            self._handle = loop.call_at(loop.time() + max(0.0, delay), self._callback)

    def cancel(self) -> None:
        self._handle.cancel()


def to_timestamp(value: datetime) -> float:
    """Aware datetime -> POSIX seconds.  Naive datetimes are refused (they are ambiguous)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"naive datetime {value!r}: nbsched needs timezone-aware datetimes "
            "(e.g. datetime(2026, 12, 1, 9, 0, tzinfo=ZoneInfo('Europe/Berlin')))"
        )
    return value.timestamp()


def resolve_zone(tz: str | tzinfo | None) -> tzinfo:
    """A :class:`tzinfo` from an IANA name, a tzinfo, or ``None`` (this machine's local zone)."""
    if tz is None:
        return local_zone()
    if isinstance(tz, tzinfo):
        return tz
    if isinstance(tz, str):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        name = tz.strip()
        if name.upper() in ("UTC", "Z"):
            return timezone.utc
        if name.lower() == "local":
            return local_zone()
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, IsADirectoryError):
            from .errors import TriggerError

            raise TriggerError(
                f"unknown time zone {tz!r}: use an IANA name such as 'Europe/Berlin', "
                "'America/New_York', 'UTC' or 'local'"
            ) from None
    raise TypeError(f"tz must be an IANA zone name or a tzinfo, not {type(tz).__name__}")


def zone_name(tz: tzinfo | None) -> str | None:
    """The IANA name of ``tz`` (``"UTC"`` for any zero-offset fixed zone), or None if it has none
    (a fixed offset such as +01:00: it cannot be named, so callers show or store it otherwise)."""
    if tz is None:
        return None
    key = getattr(tz, "key", None)
    if key:
        return key
    offset = tz.utcoffset(None)
    return "UTC" if offset is not None and offset.total_seconds() == 0 else None


_LOCAL: tzinfo | None = None


def local_zone() -> tzinfo:
    """This machine's local time zone as a DST-aware :class:`~zoneinfo.ZoneInfo` when it can be named.

    Looks at ``$TZ``, then the ``/etc/localtime`` link, then ``/etc/timezone``; falls back to the
    current fixed UTC offset (which does not follow DST) only when no name can be found.
    """
    global _LOCAL
    if _LOCAL is not None:
        return _LOCAL
    from zoneinfo import ZoneInfo

    candidates = []
    env = os.environ.get("TZ")
    if env:
        candidates.append(env.lstrip(":"))
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    try:
        with open("/etc/timezone") as fh:
            candidates.append(fh.read().strip())
    except OSError:
        pass
    zone: tzinfo | None = None
    for name in candidates:
        if not name:
            continue
        if name in ("UTC", "Etc/UTC", "Universal", "Zulu"):
            zone = timezone.utc
            break
        try:
            zone = ZoneInfo(name)
            break
        except Exception:
            continue
    if zone is None:
        zone = datetime.now().astimezone().tzinfo or timezone.utc
    _LOCAL = zone
    return zone
