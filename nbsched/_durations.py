"""Durations: ``"5s"``-style strings, numbers (seconds) and timedeltas, everywhere."""
from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any, Union

from .errors import DurationError

DurationLike = Union[str, int, float, timedelta]

_UNITS = {
    "ms": 0.001, "msec": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "wk": 604800.0, "week": 604800.0, "weeks": 604800.0,
}
UNIT_HELP = "units: ms, s, m, h, d, w (or their long names: seconds, minutes, ...), e.g. '30s', '5m', '1h30m', '250ms', '0.5s'"
_PART = re.compile(r"\s*(-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zA-Z]+)\s*")

#: The longest duration nbsched accepts: 100 years (36,525 days).  Longer lengths cannot be turned
#: into dates on every platform (``every 3000000000000s`` would land in the year 97092) and are
#: certainly a typo.
MAX_SECONDS = 36_525 * 86_400.0
MAX_HELP = "100 years (36525d, 3155760000s)"


def parse_duration(value: DurationLike, *, what: str = "duration", allow_zero: bool = False) -> float:
    """Seconds (float) from ``"1h30m"``, ``"250ms"``, ``90``, ``1.5`` or a :class:`timedelta`.

    Raises :class:`DurationError` naming the bad value and the valid forms.
    """
    if isinstance(value, bool):
        raise DurationError(f"invalid {what} {value!r}: give seconds as a number, a timedelta or a string ({UNIT_HELP})")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    elif isinstance(value, str):
        seconds = _parse_text(value, what)
    else:
        raise DurationError(
            f"invalid {what} {value!r} ({type(value).__name__}): give seconds as a number, a timedelta "
            f"or a string ({UNIT_HELP})"
        )
    if math.isnan(seconds):
        raise DurationError(f"invalid {what} {_show(value)}: must be a finite length of time ({UNIT_HELP})")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise DurationError(f"invalid {what} {_show(value)}: must be {bound} ({UNIT_HELP})")
    if seconds > MAX_SECONDS:
        raise DurationError(f"invalid {what} {_show(value)}: too long; the largest allowed is {MAX_HELP}")
    return seconds


def _show(value: Any) -> str:
    """``repr(value)``, shortened: a 5,000-digit number must not become a 5,000-digit message."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's digit limit for str()
        return f"<a number of about {int(value.bit_length() * 0.30103)} digits>"
    return text if len(text) <= 60 else text[:40] + "..." + text[-10:]


def _parse_text(text: str, what: str) -> float:
    raw = text.strip()
    if not raw:
        raise DurationError(f"invalid {what} {text!r}: empty ({UNIT_HELP})")
    try:  # a bare number means seconds
        return float(raw)
    except ValueError:
        pass
    pos = 0
    total = 0.0
    while pos < len(raw):
        m = _PART.match(raw, pos)
        if not m:
            raise DurationError(f"invalid {what} {text!r}: cannot read {raw[pos:]!r} ({UNIT_HELP})")
        number, unit = m.group(1), m.group(2)
        factor = _UNITS.get(unit.lower())
        if factor is None:
            raise DurationError(f"invalid {what} {text!r}: unknown unit {unit!r} ({UNIT_HELP})")
        total += float(number) * factor
        pos = m.end()
    return total


def format_duration(seconds: float) -> str:
    """A compact human form: ``90 -> '1m30s'``, ``0.25 -> '250ms'``."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:.0f}ms" if ms >= 1 or ms == 0 else f"{ms:.2f}ms"
    if seconds < 60 and seconds != int(seconds):
        return f"{seconds:.3g}s"
    s = int(round(seconds))
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            n, s = divmod(s, size)
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"
