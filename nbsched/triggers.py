"""Triggers: small frozen values that answer one question, *when next?*

``Trigger.next_fire(after)`` is pure: it returns the first fire time strictly after ``after`` as an
aware datetime in the trigger's time zone, or ``None`` when the trigger is finished.  No trigger reads
the clock; relative specs (``in 10m``, an interval's first run) are anchored once, when the job is
added (:meth:`Trigger.anchored`).

One grammar serves the Python API and the ``%%schedule`` magic (:func:`parse_trigger`)::

    every 30s | every 5m | every 1h30m | every 250ms | every 0.5s | every 2 days
    cron */5 * * * *   (5 fields; 6 with leading seconds; names like mon-fri, jan; @hourly, @daily,
                        @weekly, @monthly, @yearly)
    at 2026-12-01 09:00   (in the trigger's zone unless an offset is given)  |  in 10m
    daily at 09:30 | weekdays at 18:00 | weekends at 10:00 | mondays at 08:15

DST policy (cron, shorthand and ``at`` triggers; intervals are real elapsed time):

* A job whose hour field names specific hours (a number, list or range: ``30 2 * * *``) and whose
  local time does not exist on spring-forward day runs once, at the first valid instant after the
  gap - the gap's end (e.g. 03:00:00).  It is never silently skipped.
* On fall-back day such a job runs **once**, at the first occurrence of the repeated wall time.
* Jobs with a wildcard or stepped hour (``*/30 * * * *``, ``@hourly``, ``15 * * * *``) follow real
  time: wall times inside the spring gap do not exist and are not run; wall times in the repeated
  hour run at both occurrences, so the rhythm in elapsed time is unbroken.
* When both day-of-month and day-of-week are restricted (``0 9 1 * mon``), a day matches if **either**
  matches (OR), as in Vixie cron and croniter.

The only import of croniter in nbsched is in this module.
"""
from __future__ import annotations

import math
import re
import threading
import weakref
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime, time as dtime, timedelta, timezone, tzinfo
from typing import Any, ClassVar

from ._durations import UNIT_HELP, format_duration, parse_duration
from .clock import resolve_zone, to_timestamp, zone_name
from .errors import DurationError, TriggerError

__all__ = ["Trigger", "Interval", "Cron", "Date", "After", "OnFile", "parse_trigger", "trigger_from_dict",
           "trigger_from_spec", "TriggerLike", "SPEC_HELP", "MIN_INTERVAL"]

#: The shortest interval: the scheduler keeps due jobs in 1 ms buckets (its timing wheel), so a
#: shorter interval could not be honoured - it would fire every bucket and record the rest missed.
MIN_INTERVAL = 0.001

SPEC_HELP = (
    "valid forms: 'every 5m', 'every 1h30m', 'every 250ms', 'cron */5 * * * *', 'cron 0 9 * * mon-fri', "
    "'@daily', 'at 2026-12-01 09:00', 'in 10m', 'daily at 09:30', 'weekdays at 18:00', 'after prices', "
    "'on file data/*.csv'"
)


def _zone_name(tz: tzinfo) -> str:
    """For specs: the zone's IANA name, else its text (a fixed offset)."""
    return zone_name(tz) or str(tz)


class Trigger:
    """Base class: a frozen value with one pure method, :meth:`next_fire`."""

    __slots__ = ()  # subclasses are slotted dataclasses: no per-instance dict (cheap to hold 100,000)
    tz: tzinfo
    kind: ClassVar[str] = "trigger"

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after`` (aware, in this trigger's zone), or ``None``."""
        ts = self.next_timestamp(to_timestamp(after))
        return None if ts is None else datetime.fromtimestamp(ts, self.tz)

    def next_timestamp(self, after: float) -> float | None:
        """:meth:`next_fire` on POSIX seconds (the scheduler's hot path)."""
        raise NotImplementedError

    def anchored(self, now: float) -> "Trigger":
        """This trigger with relative parts fixed to ``now`` (POSIX seconds).  Most triggers are absolute."""
        return self

    def previous_timestamp(self, before: float) -> float | None:
        """The last fire time strictly before ``before`` (POSIX seconds), or None (a data interval's start).

        Found by looking back over a window that doubles (a minute, two, ... up to about two years)
        and stepping forward with :meth:`next_timestamp`, so it follows the same DST policy."""
        window = 60.0
        while window <= 2 * 366 * 86400.0:
            ts = self.next_timestamp(before - window)
            last = None
            while ts is not None and ts < before:
                last = ts
                ts = self.next_timestamp(ts)
            if last is not None:
                return last
            window *= 2
        return None

    def preview(self, n: int, after: datetime) -> list[datetime]:
        """The next ``n`` fire times after ``after``."""
        out: list[datetime] = []
        ts = to_timestamp(after)
        for _ in range(n):
            nxt = self.next_timestamp(ts)
            if nxt is None:
                break
            out.append(datetime.fromtimestamp(nxt, self.tz))
            ts = nxt
        return out

    def fires_between(self, after: float, until: float, keep: int) -> tuple[int, list[float]]:
        """How many fire times fall in ``(after, until]``, and the last ``keep`` of them (oldest first)."""
        from collections import deque

        last: deque = deque(maxlen=keep)
        count = 0
        ts = self.next_timestamp(after)
        while ts is not None and ts <= until:
            count += 1
            last.append(ts)
            ts = self.next_timestamp(ts)
        return count, list(last)

    def describe(self) -> str:
        """The trigger in words (for cards and the dashboard)."""
        raise NotImplementedError

    def to_spec(self) -> dict[str, Any]:
        """Deprecated name of :meth:`to_dict` ("spec" means the trigger text: :attr:`spec`)."""
        import warnings

        warnings.warn("Trigger.to_spec() is now Trigger.to_dict() (same data); to_spec() goes away in nbsched 0.3",
                      DeprecationWarning, stacklevel=2)
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description; :func:`trigger_from_dict` rebuilds the trigger from it."""
        raise NotImplementedError

    @property
    def spec(self) -> str:
        """The trigger in the spec grammar (what :func:`parse_trigger` reads)."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.spec


# --------------------------------------------------------------------------------------- interval
@dataclass(frozen=True, eq=True, slots=True)
class Interval(Trigger):
    """Every ``seconds``, anchored to ``start`` (fires at start, start + every, ...), until ``end``.

    Intervals measure real elapsed time, so DST changes do not move them.  Unanchored (``start=None``)
    the first fire is one interval after :meth:`anchored` is called (when the job is added).
    """

    seconds: float
    start: datetime | None = None
    end: datetime | None = None
    tz: tzinfo = field(default=timezone.utc, compare=False)
    _start: float | None = field(default=None, init=False, repr=False, compare=False)
    _end: float | None = field(default=None, init=False, repr=False, compare=False)
    kind: ClassVar[str] = "interval"

    def __post_init__(self) -> None:
        secs = parse_duration(self.seconds, what="interval")
        if secs < MIN_INTERVAL:
            raise TriggerError(
                f"invalid interval {self.seconds!r} ({format_duration(secs)}): shorter than the scheduler's "
                f"resolution; the smallest allowed interval is {format_duration(MIN_INTERVAL)} (e.g. 'every 1ms', 'every 0.5s')"
            )
        object.__setattr__(self, "seconds", secs)
        object.__setattr__(self, "_start", None if self.start is None else to_timestamp(self.start))
        object.__setattr__(self, "_end", None if self.end is None else to_timestamp(self.end))
        if self._start is not None and self._end is not None and self._end < self._start:
            raise TriggerError(f"interval end {self.end!r} is before its start {self.start!r}: swap them or drop one")

    def anchored(self, now: float) -> "Interval":
        if self.start is not None:
            return self
        # hot when adding thousands of jobs: build the anchored copy without re-validating, through the
        # slots' own setters (a third cheaper than object.__setattr__ by name)
        copy = _new(Interval)
        first = now + self.seconds
        tz = self.tz
        _set_seconds(copy, self.seconds)
        _set_start(copy, datetime.fromtimestamp(first, tz))
        _set_end(copy, self.end)
        _set_tz(copy, tz)
        _set__start(copy, first)
        _set__end(copy, self._end)
        return copy

    def previous_timestamp(self, before: float) -> float | None:
        start = self._start
        if start is None:
            return before - self.seconds
        if before <= start:
            return start - self.seconds  # the first fire's interval starts one period before it
        k = math.ceil((before - start) / self.seconds - 1e-9) - 1
        return start + k * self.seconds

    def next_timestamp(self, after: float) -> float | None:
        start = self._start
        every = self.seconds
        if start is None:
            nxt = after + every
        elif after < start:
            nxt = start
        else:
            k = math.floor((after - start) / every) + 1
            nxt = start + k * every
            # float rounding: (after - start) / every can land a hair below a whole number, giving a
            # "next" fire time a fraction of a microsecond after `after` - that is `after` itself
            if nxt <= after + 1e-6:
                nxt += every
        end = self._end
        if end is not None and nxt > end:
            return None
        return nxt

    def shifted(self, seconds: float) -> "Interval":
        """This interval with its rhythm moved by ``seconds`` (the scheduler keeps intervals in elapsed
        time when the wall clock is stepped); ``end`` stays a wall-clock bound."""
        if self._start is None:
            return self
        return Interval(self.seconds, start=datetime.fromtimestamp(self._start + seconds, self.tz), end=self.end,
                        tz=self.tz)

    def fires_between(self, after: float, until: float, keep: int) -> tuple[int, list[float]]:
        """:meth:`Trigger.fires_between` by arithmetic: a day of 'every 1ms' costs no more than one fire."""
        first = self.next_timestamp(after)
        if self._end is not None:
            until = min(until, self._end)
        if first is None or first > until:
            return 0, []
        every = self.seconds
        if self._start is None:  # unanchored: fires every `seconds` from `after`
            base, k0 = after, 1
        else:
            base = self._start
            k0 = round((first - base) / every)
        k1 = math.floor((until - base) / every + 1e-9)
        while base + k1 * every > until + 1e-9:
            k1 -= 1
        count = max(0, k1 - k0 + 1)
        return count, [base + k * every for k in range(max(k0, k1 - keep + 1), k1 + 1)]

    def describe(self) -> str:
        text = f"every {format_duration(self.seconds)}"
        if self.end is not None:
            text += f" until {self.end.astimezone(self.tz):%Y-%m-%d %H:%M}"
        return text

    @property
    def spec(self) -> str:
        return f"every {format_duration(self.seconds)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "interval",
            "seconds": self.seconds,
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "tz": _zone_name(self.tz),
        }



# The slots' setters, for Interval.anchored (the class is frozen: its own __setattr__ refuses)
_new = object.__new__
_set_seconds, _set_start, _set_end, _set_tz, _set__start, _set__end = (
    Interval.__dict__[name].__set__ for name in ("seconds", "start", "end", "tz", "_start", "_end"))

# ------------------------------------------------------------------------------------------- date
@dataclass(frozen=True, eq=True, slots=True)
class Date(Trigger):
    """Once, at ``run_at``."""

    run_at: datetime
    tz: tzinfo = field(default=timezone.utc, compare=False)
    _ts: float = field(default=0.0, init=False, repr=False, compare=False)
    kind: ClassVar[str] = "date"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ts", to_timestamp(self.run_at))

    def next_timestamp(self, after: float) -> float | None:
        return self._ts if self._ts > after else None

    def describe(self) -> str:
        return f"once at {self.run_at.astimezone(self.tz):%Y-%m-%d %H:%M:%S %Z}"

    @property
    def spec(self) -> str:
        return f"at {self.run_at.astimezone(self.tz).isoformat()}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "date", "run_at": self.run_at.isoformat(), "tz": _zone_name(self.tz)}


# ------------------------------------------------------------------------------------------ after
@dataclass(frozen=True, eq=True, slots=True)
class After(Trigger):
    """After other jobs: the job runs when its upstream jobs have finished runs (see workflows in the
    README).  It has no fire times of its own: ``next_timestamp`` is always None."""

    upstreams: tuple
    tz: tzinfo = field(default=timezone.utc, compare=False)
    kind: ClassVar[str] = "after"

    def __post_init__(self) -> None:
        names = tuple(self.upstreams) if not isinstance(self.upstreams, str) else (self.upstreams,)
        cleaned = tuple(n.strip() if isinstance(n, str) else n for n in names)
        bad = [n for n in cleaned if not isinstance(n, str) or not n or "," in n]
        if not cleaned or bad:
            raise TriggerError(f"invalid 'after' trigger {self.upstreams!r}: name one or more upstream jobs, "
                               "e.g. 'after prices' or 'after clean, weather' (names may not contain commas)")
        if len(set(cleaned)) != len(cleaned):
            raise TriggerError(f"invalid 'after' trigger {self.upstreams!r}: a job is named twice")
        object.__setattr__(self, "upstreams", cleaned)

    def next_timestamp(self, after: float) -> float | None:
        return None

    def describe(self) -> str:
        return "after " + " and ".join(self.upstreams) if len(self.upstreams) <= 2 else \
            "after " + ", ".join(self.upstreams[:-1]) + " and " + self.upstreams[-1]

    @property
    def spec(self) -> str:
        return "after " + ", ".join(self.upstreams)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "after", "upstreams": list(self.upstreams)}


# ------------------------------------------------------------------------------------------- files
@dataclass(frozen=True, eq=True, slots=True)
class OnFile(Trigger):
    """When new data lands: files matching ``pattern`` (a glob, ``**`` allowed) created or modified and
    then unchanged for ``debounce`` seconds, once per batch (see :mod:`nbsched.watch`).  A relative
    pattern is made absolute against the working directory when the trigger is made.  It has no fire
    times of its own: ``next_timestamp`` is always None."""

    pattern: str
    debounce: float = 1.0
    tz: tzinfo = field(default=timezone.utc, compare=False)
    kind: ClassVar[str] = "file"

    def __post_init__(self) -> None:
        from .watch import check_pattern  # the watcher owns what a pattern may be

        object.__setattr__(self, "pattern", check_pattern(self.pattern))
        try:
            debounce = parse_duration(self.debounce, what="debounce", allow_zero=True)
        except DurationError as exc:
            raise TriggerError(str(exc)) from None
        object.__setattr__(self, "debounce", debounce)

    def next_timestamp(self, after: float) -> float | None:
        return None

    def describe(self) -> str:
        return f"when files matching {self.pattern} land (quiet for {format_duration(self.debounce)})"

    @property
    def spec(self) -> str:
        return f"on file {self.pattern}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "file", "pattern": self.pattern, "debounce": self.debounce}


# ------------------------------------------------------------------------------------------- cron
_CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELD_NAMES5 = ("minute", "hour", "day of month", "month", "day of week")
_FIELD_HELP = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day of month": "1-31 (or L)",
    "month": "1-12 or jan-dec",
    "day of week": "0-6 (0 = Sunday) or sun-sat",
}
_DOW = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_DOW_WORDS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]


_CRON_LOCK = threading.Lock()


def _croniter():
    from croniter import croniter  # the one place nbsched imports croniter

    return croniter


class _CronTimes:
    """The fire instants of one cron expression in one zone, shared by every :class:`Cron` equal to it.

    Finding the next instant is the DST-correct search below (a croniter walk, some tens of
    microseconds).  The instants found are kept as a run ``times`` with no instant in between (each
    is the next one after the one before, and ``times[0]`` the next one after ``lo``), and the run is
    extended :data:`_CRON_AHEAD` instants at a time.  So a thousand jobs on ``cron * * * * * *`` look
    their next fire time up with a bisection, and the search itself runs once every few fire times of
    the expression, not once per fire of every job."""

    __slots__ = ("expr", "tz", "seconds", "fixed_hour", "lo", "times", "known", "_iter", "__weakref__")

    def __init__(self, expr: str, tz: tzinfo, seconds: bool, fixed_hour: bool):
        self.expr, self.tz, self.seconds, self.fixed_hour = expr, tz, seconds, fixed_hour
        self.lo = math.inf
        self.times: list[float] = []
        #: (lo, times) as published for lock-free reads: a tuple never changed once made
        self.known: tuple[float, tuple[float, ...]] = (math.inf, ())
        self._iter: Any = None

    def next_after(self, after: float) -> float | None:
        times = self.times
        if times and self.lo <= after < times[-1]:
            return times[bisect_right(times, after)]
        try:
            return self._next_after(after)
        finally:
            self.known = (self.lo, tuple(self.times))

    def _next_after(self, after: float) -> float | None:
        times = self.times
        if not times or after != times[-1]:
            # somewhere else in time (a preview, a backfill, a job far behind): start a new run there,
            # without searching ahead (a caller jumping around pays one search per call, as before)
            first = self._search(after)
            if first is not None:
                self.lo, self.times = after, [first]
            return first
        # the common case, a job asking for its next fire time after the last one known: search a
        # few instants ahead at once, for it and every other job on this expression
        self._extend(_CRON_AHEAD)
        i = bisect_right(times, after)
        return times[i] if i < len(times) else None  # None: the expression never fires again

    def _extend(self, count: int) -> None:
        times = self.times
        if len(times) > _CRON_KEEP:  # keep the run short: drop its older half
            half = len(times) // 2
            self.lo = times[half - 1]
            del times[:half]
        for _ in range(count):
            nxt = self._search(times[-1])
            if nxt is None:
                return
            times.append(nxt)

    def _search(self, after: float) -> float | None:
        tz = self.tz
        after_local = datetime.fromtimestamp(after, tz)
        wall = after_local.replace(tzinfo=None, fold=0)
        near_transition = _offset_changes_near(after, tz)
        start = wall - timedelta(hours=3) if near_transition else wall
        it = self._iterator(start)
        best: float | None = None
        best_wall: datetime | None = None
        best_from_fold1 = False
        for _ in range(100_000):
            try:
                cand = it.get_next(datetime)
            except Exception:  # CroniterBadDateError: no match in the horizon (e.g. 'cron 0 0 30 2 *')
                return best
            if best_wall is not None and (not best_from_fold1 or cand > best_wall + timedelta(hours=3)):
                break
            for ts, fold1 in _instants(cand, tz, self.fixed_hour):
                if ts > after and (best is None or ts < best):
                    best, best_wall, best_from_fold1 = ts, cand, fold1
        return best

    def _iterator(self, start: datetime):
        # Parsing the expression costs ~200 us: parse once per expression and re-position it.
        cached = self._iter
        if cached is None:
            cached = self._iter = _croniter()(self.expr, start, ret_type=datetime, day_or=True,
                                              second_at_beginning=self.seconds, max_years_between_matches=50)
        else:
            cached.set_current(start, force=True)
        return cached


#: Instants a cron expression's run of known fire times is extended by at a time.
_CRON_AHEAD = 8
_CRON_KEEP = 64
_CRON_SHARED: "weakref.WeakValueDictionary[tuple, _CronTimes]" = weakref.WeakValueDictionary()


def _cron_times(expr: str, tz: tzinfo, seconds: bool, fixed_hour: bool) -> _CronTimes:
    """The shared fire instants of ``expr`` in ``tz`` (one object per distinct expression and zone)."""
    key = (expr, tz, seconds)
    with _CRON_LOCK:
        times = _CRON_SHARED.get(key)
        if times is None:
            times = _CRON_SHARED[key] = _CronTimes(expr, tz, seconds, fixed_hour)
        return times


@dataclass(frozen=True, eq=True, slots=True)
class Cron(Trigger):
    """A cron expression in a time zone: 5 fields (minute hour day month weekday), or 6 with leading
    seconds, or an alias (``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``).

    See the module docstring for the DST policy.
    """

    expr: str
    tz: tzinfo = field(default=timezone.utc)
    label: str | None = field(default=None, compare=False)  # shorthand it came from, for describe()
    _expanded: str = field(default="", init=False, repr=False, compare=False)
    _seconds: bool = field(default=False, init=False, repr=False, compare=False)
    _fixed_hour: bool = field(default=False, init=False, repr=False, compare=False)
    _fields: dict = field(default=None, init=False, repr=False, compare=False)
    _times: Any = field(default=None, init=False, repr=False, compare=False)
    kind: ClassVar[str] = "cron"

    def __post_init__(self) -> None:
        raw = " ".join(self.expr.split())
        expanded = _CRON_ALIASES.get(raw.lower(), raw)
        fields = expanded.split()
        if len(fields) not in (5, 6):
            raise TriggerError(
                f"invalid cron spec 'cron {raw}': expected 5 fields (minute hour day-of-month month day-of-week) "
                f"or 6 with leading seconds, got {len(fields)}; e.g. 'cron */5 * * * *', 'cron 0 9 * * mon-fri', "
                "'cron 30 */10 * * * *' or '@daily'"
            )
        names = (("second",) + _FIELD_NAMES5) if len(fields) == 6 else _FIELD_NAMES5
        _validate_cron(fields, names, raw)
        hour = fields[names.index("hour")]
        object.__setattr__(self, "expr", raw)
        object.__setattr__(self, "_expanded", expanded)
        object.__setattr__(self, "_seconds", len(fields) == 6)
        object.__setattr__(self, "_fixed_hour", "*" not in hour and "/" not in hour and not hour.upper().startswith("H"))
        object.__setattr__(self, "_fields", dict(zip(names, fields)))
        object.__setattr__(self, "_times", _cron_times(expanded, self.tz, len(fields) == 6, self._fixed_hour))

    def next_timestamp(self, after: float) -> float | None:
        # The known run covers it (the common case): a bisection of one immutable snapshot, no lock.
        lo, known = self._times.known
        if known and lo <= after < known[-1]:
            return known[bisect_right(known, after)]
        with _CRON_LOCK:
            return self._times.next_after(after)

    def describe(self) -> str:
        zone = _zone_name(self.tz)
        text = self.label or _describe_cron(self._fields) or f"cron '{self.expr}'"
        return f"{text} ({zone})"

    @property
    def spec(self) -> str:
        return self.label or f"cron {self.expr}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "cron", "expr": self.expr, "tz": _zone_name(self.tz), "label": self.label}


def _validate_cron(fields: list[str], names: tuple[str, ...], raw: str) -> None:
    """Let croniter judge the expression; when it refuses, find and name the bad field."""
    croniter = _croniter()
    expr = " ".join(fields)
    six = len(fields) == 6
    try:
        croniter(expr, datetime(2026, 1, 1), second_at_beginning=six)
        return
    except Exception as whole_error:
        reason = str(whole_error)
    for i, name in enumerate(names):
        probe = ["*"] * len(fields)
        probe[i] = fields[i]
        try:
            croniter(" ".join(probe), datetime(2026, 1, 1), second_at_beginning=six)
        except Exception:
            raise TriggerError(
                f"invalid cron spec 'cron {raw}': the {name} field {fields[i]!r} is not valid "
                f"(use {_FIELD_HELP[name]}, '*', lists 'a,b', ranges 'a-b' and steps '*/n'); "
                "e.g. 'cron */5 * * * *'"
            ) from None
    raise TriggerError(f"invalid cron spec 'cron {raw}': {reason}; e.g. 'cron */5 * * * *'")


def _offset_changes_near(ts: float, tz: tzinfo) -> bool:
    if isinstance(tz, timezone):
        return False
    here = datetime.fromtimestamp(ts, tz).utcoffset()
    return (datetime.fromtimestamp(ts - 10800, tz).utcoffset() != here
            or datetime.fromtimestamp(ts + 10800, tz).utcoffset() != here)


def _instants(wall: datetime, tz: tzinfo, fixed_hour: bool) -> list[tuple[float, bool]]:
    """The real instants of a local wall time under the DST policy, as (timestamp, is_second_occurrence)."""
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    off0, off1 = first.utcoffset(), second.utcoffset()
    if off0 == off1:
        return [(first.timestamp(), False)]
    round_trip = first.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None)
    if round_trip == wall:  # ambiguous: the wall time happens twice (fall back)
        if fixed_hour:
            return [(first.timestamp(), False)]
        return [(first.timestamp(), False), (second.timestamp(), True)]
    # the wall time does not exist (spring forward)
    if not fixed_hour:
        return []
    return [(_gap_end(wall, tz), False)]


def _gap_end(wall: datetime, tz: tzinfo) -> float:
    """The instant the clocks jumped over ``wall`` (the first valid instant after the gap)."""
    lo = int(wall.replace(tzinfo=tz, fold=1).timestamp()) - 1  # before the transition
    hi = int(math.ceil(wall.replace(tzinfo=tz, fold=0).timestamp())) + 1  # after it
    before = datetime.fromtimestamp(lo, tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return float(hi)


def _describe_cron(f: dict[str, str]) -> str | None:
    minute, hour, dom, month, dow = f["minute"], f["hour"], f["day of month"], f["month"], f["day of week"]
    second = f.get("second", "0")
    if second != "0":
        if second.startswith("*/") and second[2:].isdigit() and minute == hour == dom == month == dow == "*":
            return f"every {second[2:]} seconds"
        return None
    if dom != "*" or month != "*":
        return None
    days = _describe_dow(dow)
    if days is None:
        return None
    if hour == "*" and minute == "*":
        return "every minute" + days
    if hour == "*" and minute.startswith("*/") and minute[2:].isdigit():
        return f"every {minute[2:]} minutes" + days
    if hour == "*" and minute.isdigit():
        return f"hourly at :{int(minute):02d}" + days
    if minute.isdigit() and hour.isdigit():
        return f"at {int(hour):02d}:{int(minute):02d}" + (days or " every day")
    return None


def _describe_dow(dow: str) -> str | None:
    d = dow.lower()
    if d == "*":
        return ""
    table = {"mon-fri": " on weekdays", "1-5": " on weekdays", "sat,sun": " on weekends", "0,6": " on weekends",
             "6,0": " on weekends", "sun,sat": " on weekends"}
    if d in table:
        return table[d]
    if d in _DOW:
        return f" on {_DOW_WORDS[_DOW[d]]}"
    if d.isdigit() and int(d) <= 7:
        return f" on {_DOW_WORDS[int(d) % 7]}"
    return None


# ---------------------------------------------------------------------------------------- parsing
TriggerLike = "str | Trigger"

_TIME_RE = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_SHORTHAND = re.compile(
    r"^(?:every\s+)?(?P<days>daily|day|weekdays?|weekends?|"
    r"(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*)\s+at\s+" + _TIME_RE + r"$",
    re.IGNORECASE,
)
_DAY_PREFIX = {"mon": "mon", "tue": "tue", "wed": "wed", "thu": "thu", "fri": "fri", "sat": "sat", "sun": "sun"}
_CRONISH = re.compile(r"^[\d*/,\-?LW#A-Za-z]+(\s+[\d*/,\-?LW#A-Za-z]+){4,5}$")


def parse_trigger(spec: "str | Trigger", *, tz: str | tzinfo | None = None, now: float | datetime | None = None,
                  start: datetime | None = None, end: datetime | None = None) -> Trigger:
    """Read a trigger spec (see the module docstring for the grammar).

    ``tz`` is the zone for cron, shorthand and naive ``at`` times (default: this machine's local zone).
    ``now`` anchors the relative forms (``in 10m``, ``at 09:00``); it defaults to the system clock and
    the scheduler passes its own clock's time.  ``start``/``end`` bound an interval.

    Raises :class:`~nbsched.errors.TriggerError` (a ``ValueError``) naming the bad part and the valid forms.
    """
    if isinstance(spec, Trigger):
        return spec
    if not isinstance(spec, str):
        raise TriggerError(f"invalid trigger {spec!r} ({type(spec).__name__}): give a spec string or a Trigger; {SPEC_HELP}")
    zone = resolve_zone(tz)
    text = " ".join(spec.strip().split())
    if not text:
        raise TriggerError(f"empty trigger spec: {SPEC_HELP}")
    head, _, rest = text.partition(" ")
    head_l = head.lower()
    if (start is not None or end is not None) and head_l != "every":
        raise TriggerError(f"start/end apply to 'every ...' intervals only, not to {spec!r}")

    if head_l == "every" and not _SHORTHAND.match(text):
        if not rest:
            raise TriggerError(f"invalid interval {spec!r}: missing the length ({UNIT_HELP})")
        try:
            seconds = parse_duration(rest, what="interval")
        except DurationError as exc:
            raise TriggerError(f"invalid interval {spec!r}: {_reason(exc)}") from None
        try:
            return Interval(seconds, start=start, end=end, tz=zone)
        except TriggerError as exc:
            raise TriggerError(f"invalid interval {spec!r}: {_reason(exc)}") from None
    if head_l == "cron":
        if not rest:
            raise TriggerError(f"invalid cron spec {spec!r}: missing the fields; e.g. 'cron */5 * * * *'")
        return Cron(rest, tz=zone)
    if head_l in _CRON_ALIASES:
        if rest:
            raise TriggerError(f"invalid cron spec {spec!r}: nothing may follow {head}")
        return Cron(head_l, tz=zone)
    if head_l == "in":
        try:
            delay = parse_duration(rest, what="delay")
        except DurationError as exc:
            raise TriggerError(f"invalid delay {spec!r}: {_reason(exc)}") from None
        base = _now_ts(now)
        return Date(datetime.fromtimestamp(base + delay, zone), tz=zone)
    if head_l == "at":
        return Date(_parse_at(rest, spec, zone, now), tz=zone)
    if head_l == "on":
        kind, _, pattern = rest.partition(" ")
        if kind.lower() not in ("file", "files"):
            raise TriggerError(f"unknown trigger spec {spec!r}: the event trigger is 'on file PATTERN', "
                               "e.g. 'on file data/*.csv'")
        if not pattern.strip():
            raise TriggerError(f"invalid 'on file' trigger {spec!r}: give a glob, e.g. 'on file data/*.csv'")
        return OnFile(spec.strip().split(None, 2)[2].strip(), tz=zone)  # the pattern as written (spaces kept)
    if head_l == "after":
        if not rest:
            raise TriggerError(f"invalid 'after' trigger {spec!r}: name the upstream jobs, e.g. 'after prices'")
        return After(tuple(part for part in rest.split(",")), tz=zone)
    m = _SHORTHAND.match(text)
    if m:
        return _shorthand(m, zone, text)
    if _CRONISH.match(text) and any(c in text for c in "*/0123456789"):
        return Cron(text, tz=zone)
    raise TriggerError(f"unknown trigger spec {spec!r}: {SPEC_HELP}")


def _reason(exc: Exception) -> str:
    msg = str(exc)
    return msg.split(": ", 1)[1] if ": " in msg else msg


def _now_ts(now: float | datetime | None) -> float:
    if now is None:
        from .clock import SystemClock

        return SystemClock().time()
    if isinstance(now, datetime):
        return to_timestamp(now)
    return float(now)


def _localize(naive: datetime, zone: tzinfo) -> datetime:
    """A naive local time in ``zone`` under the DST policy: gap -> gap end, repeated -> first occurrence."""
    instants = _instants(naive, zone, fixed_hour=True)
    return datetime.fromtimestamp(instants[0][0], zone)


def _parse_at(rest: str, spec: str, zone: tzinfo, now: float | datetime | None) -> datetime:
    if not rest:
        raise TriggerError(f"invalid date {spec!r}: missing the time (use 'at YYYY-MM-DD HH:MM', e.g. 'at 2026-12-01 09:00')")
    m = re.fullmatch(_TIME_RE, rest)
    if m:  # 'at 09:00': the next time the clock shows it
        hh, mm, ss = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        _check_time(hh, mm, ss, spec)
        base = _now_ts(now)
        local = datetime.fromtimestamp(base, zone)
        for add_days in range(0, 3):
            day = (local + timedelta(days=add_days)).date()
            cand = _localize(datetime.combine(day, dtime(hh, mm, ss)), zone)
            if cand.timestamp() > base:
                return cand
    text = rest.replace("T", " ") if "T" in rest and "+" not in rest else rest
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise TriggerError(
            f"invalid date {spec!r}: {exc} (use 'at YYYY-MM-DD HH:MM[:SS]' with an optional offset, "
            "e.g. 'at 2026-12-01 09:00' or 'at 2026-12-01T09:00+01:00', or 'at 09:00')"
        ) from None
    if value.tzinfo is None:
        return _localize(value, zone)
    return value


def _check_time(hh: int, mm: int, ss: int, spec: str) -> None:
    if not (0 <= hh <= 23 and 0 <= mm <= 59 and 0 <= ss <= 59):
        raise TriggerError(f"invalid time in {spec!r}: use HH:MM with hours 0-23 and minutes 0-59 (e.g. '09:30')")


def _shorthand(m: re.Match, zone: tzinfo, text: str) -> Cron:
    days = m.group("days").lower()
    hh, mm, ss = int(m.group(2)), int(m.group(3)), int(m.group(4) or 0)
    _check_time(hh, mm, ss, text)
    if days in ("daily", "day"):
        dow = "*"
    elif days.startswith("weekday"):
        dow = "mon-fri"
    elif days.startswith("weekend"):
        dow = "sat,sun"
    else:
        prefix = days[:3]
        full = {"mon": "monday", "tue": "tuesday", "wed": "wednesday", "thu": "thursday", "fri": "friday",
                "sat": "saturday", "sun": "sunday"}[prefix] if prefix in _DAY_PREFIX else None
        if full is None or not (full.startswith(days.rstrip("s")) or days in (prefix, prefix + "s")):
            raise TriggerError(f"unknown day {m.group('days')!r} in {text!r}: use daily, weekdays, weekends or a day name like 'mondays'")
        dow = prefix
    expr = f"{ss} {mm} {hh} * * {dow}" if ss else f"{mm} {hh} * * {dow}"
    label = " ".join(text.split()).lower()
    return Cron(expr, tz=zone, label=label)


def trigger_from_spec(spec: dict[str, Any]) -> Trigger:
    """Deprecated name of :func:`trigger_from_dict`."""
    import warnings

    warnings.warn("trigger_from_spec() is now trigger_from_dict() (same data); the old name goes away in nbsched 0.3",
                  DeprecationWarning, stacklevel=2)
    return trigger_from_dict(spec)


def trigger_from_dict(spec: dict[str, Any]) -> Trigger:
    """Rebuild a trigger from :meth:`Trigger.to_dict` output (JSON data)."""
    kind = spec.get("kind")
    zone = resolve_zone(spec.get("tz") or "UTC")
    if kind == "interval":
        start = spec.get("start")
        end = spec.get("end")
        return Interval(spec["seconds"], start=datetime.fromisoformat(start) if start else None,
                        end=datetime.fromisoformat(end) if end else None, tz=zone)
    if kind == "cron":
        return Cron(spec["expr"], tz=zone, label=spec.get("label"))
    if kind == "date":
        return Date(datetime.fromisoformat(spec["run_at"]), tz=zone)
    if kind == "after":
        return After(tuple(spec["upstreams"]))
    if kind == "file":
        return OnFile(spec["pattern"], spec.get("debounce", 1.0))
    raise TriggerError(f"unknown trigger kind {kind!r} in stored spec: expected interval, cron, date or after")


