"""Turning history rows and returned values into SQL parameters and back.  JSON only, no code objects.

Returned values are stored as JSON objects (one per result row), mirroring
:class:`nbsched.history.ResultLog`: a dict or Series is one row, a DataFrame one row per frame row
(its index kept as columns when it is named), anything else ``{"value": ...}``.

What JSON cannot hold is converted, and comes back in the converted form after a restore:

* numpy numbers and booleans -> Python numbers and booleans; numpy arrays -> lists;
* ``datetime`` / ``date`` / ``time`` / pandas ``Timestamp`` -> ISO 8601 strings;
* ``timedelta`` / pandas ``Timedelta`` -> seconds (float);
* ``NaN`` / ``NaT`` / ``pd.NA`` -> ``null``; ``Decimal`` -> float; sets and tuples -> lists;
* anything else -> ``str(value)``.

A value that cannot be converted at all (``10**5000`` is beyond JSON's integer limit, an object whose
``__str__``/``__repr__`` raises) costs that one value: it is stored as the marked placeholder
``"<nbsched: not stored: TYPE: REASON>"`` (see :func:`unencodable`), and the rest of the row, the run
record and every later write go on as usual.
"""
from __future__ import annotations

import json
import math
import sys
from array import array
from itertools import repeat
from operator import itemgetter
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Iterable

from ._schema import OUTCOME_CODES, REASON_CODES
from ..history import ErrorInfo, Outcome

__all__ = ["encode_value_rows", "unencodable", "json_safe", "UNENCODABLE_PREFIX", "encode_chunk", "decode_chunk",
           "CHUNK_COLUMNS", "CODE_OF",
           "OUTCOME_BY_CODE", "to_json"]

#: Outcome -> stored integer code, and back.  History rows hold the plain outcome strings (the
#: scheduler's rows do too: tuples of plain values are untracked by the GC); Outcome members hash
#: and compare like their strings, so either works as a key.
CODE_OF: dict[str, int] = dict(OUTCOME_CODES)
OUTCOME_BY_CODE: list[str] = [""] * (max(OUTCOME_CODES.values()) + 1)
for _name, _code in OUTCOME_CODES.items():
    OUTCOME_BY_CODE[_code] = Outcome(_name).value


def _fallback(value: Any) -> Any:
    """``json.dumps(default=...)``: a JSON-able stand-in for ``value`` (see the module docstring)."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    module = type(value).__module__
    if module.startswith(("numpy", "pandas")):
        if value is None or _is_missing(value):
            return None
        if hasattr(value, "isoformat"):  # pd.Timestamp, np.datetime64 via pandas
            return value.isoformat()
        if hasattr(value, "total_seconds"):  # pd.Timedelta
            return value.total_seconds()
        if hasattr(value, "tolist"):  # numpy scalars and arrays
            return value.tolist()
    try:
        return str(value)
    except Exception as exc:
        return unencodable(value, exc)


def _is_missing(value: Any) -> bool:
    try:
        import pandas as pd

        result = pd.isna(value)
        return bool(result) if isinstance(result, bool) or getattr(result, "ndim", 1) == 0 else False
    except (ImportError, TypeError, ValueError):
        return False


def _clean(value: Any) -> Any:
    """Missing markers (NaN, NaT, pd.NA) to None at the top level of a cell."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    module = type(value).__module__
    if module.startswith(("numpy", "pandas")) and _is_missing(value):
        return None
    return value


def to_json(obj: Any) -> str:
    return json.dumps(obj, default=_fallback, ensure_ascii=False, allow_nan=False)


#: How a value the store could not encode is stored (and comes back after a restore).
UNENCODABLE_PREFIX = "<nbsched: not stored: "


def unencodable(value: Any, exc: BaseException) -> str:
    """The marked placeholder stored instead of ``value`` (which ``exc`` kept from being encoded)."""
    reason = f"{type(exc).__name__}: {exc}"
    if len(reason) > 200:
        reason = reason[:200] + "..."
    return f"{UNENCODABLE_PREFIX}{type(value).__module__}.{type(value).__qualname__}: {reason}>"


def _safe_key(key: Any) -> str:
    try:
        return str(key)
    except Exception as exc:
        return unencodable(key, exc)


def json_safe(value: Any, problems: list | None = None) -> Any:
    """``value`` when :func:`to_json` can encode it, else its marked placeholder (and the error is
    appended to ``problems``)."""
    try:
        to_json(value)
        return value
    except Exception as exc:
        if problems is not None:
            problems.append(exc)
        return unencodable(value, exc)


def _dumps_row(row: dict, problems: list | None = None) -> str:
    try:
        return to_json({str(k): _clean(v) for k, v in row.items()})
    except Exception:  # find the values at fault: each costs itself only
        return to_json({_safe_key(k): json_safe(_clean(v), problems) for k, v in row.items()})


def encode_value_rows(value: Any, problems: list | None = None) -> tuple[int, list[str]]:
    """(frame flag, JSON rows) for a value a job returned (the same shapes as the results frame).

    Values that cannot be encoded become placeholders; their errors are appended to ``problems``."""
    module = type(value).__module__
    if module.startswith("pandas"):
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            named = any(n is not None for n in value.index.names)
            flat = value.reset_index(drop=not named)
            columns = [str(c) for c in flat.columns]
            return 1, [_dumps_row(dict(zip(columns, rec)), problems)
                       for rec in flat.itertuples(index=False, name=None)]
        if isinstance(value, pd.Series):
            return 0, [_dumps_row(dict(value.items()), problems)]
    if isinstance(value, dict):
        return 0, [_dumps_row(value, problems)]
    return 0, [_dumps_row({"value": value}, problems)]


# ------------------------------------------------------------------------------------ history chunks
# Run records are stored column by column, one chunk per commit batch: packing columns is C-speed
# (array from a map of itemgetters), where binding every record as an SQL row costs microseconds each.
# Layout (all little-endian): job int32, run_id int64, scheduled/started/finished/lateness float64
# (NaN = no time), outcome uint8 (OUTCOME_CODES), attempt int32; errors as JSON {index: [type, msg, tb]}.
_BIG_ENDIAN = sys.byteorder == "big"
#: The history columns decode_chunk() takes, in order.
CHUNK_COLUMNS = "job, run_id, scheduled, started, finished, lateness, outcome, attempt, errors, reason, workers"
_G = [itemgetter(i) for i in range(9)]
REASON_OF: dict[str, int] = dict(REASON_CODES)
REASON_BY_CODE: list[str] = [""] * (max(REASON_CODES.values()) + 1)
for _name, _code in REASON_CODES.items():
    REASON_BY_CODE[_code] = sys.intern(_name)
_SCHEDULE = REASON_BY_CODE[0]
_NAN = float("nan")
_SUCCESS_CODE = OUTCOME_CODES["success"]
MISSED_CODE = OUTCOME_CODES["missed"]


def _pack(typecode: str, values: Iterable) -> bytes:
    arr = values if isinstance(values, array) else array(typecode, values)
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr.tobytes()


def _unpack(typecode: str, blob: bytes) -> array:
    arr = array(typecode)
    arr.frombytes(blob)
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr


def _times(values: Iterable) -> Iterable:
    return (_NAN if v is None else v for v in values)


def encode_chunk(job_ids: "list[int] | tuple[int, ...]", rows: "list[tuple] | tuple[tuple, ...]") -> tuple:
    """(n, first_scheduled, last_scheduled, job, run_id, scheduled, started, finished, lateness, outcome,
    attempt, errors, reason, workers) SQL values for RunLog rows and their job ids (reason NULL: all
    "schedule"; workers NULL: every row ran on this machine, else JSON {index: worker address})."""
    n = len(rows)
    run_id, scheduled, started, finished, lateness, outcome, attempt, error, reason, worker = zip(*rows)  # columns
    codes = bytes(map(CODE_OF.__getitem__, outcome))
    errors = None
    if codes.count(_SUCCESS_CODE) != n:  # successes always have both times and no error
        started, finished = _times(started), _times(finished)
        errs = {i: list(e) for i, e in enumerate(error) if e is not None}
        errors = to_json(errs) if errs else None
    times = array("d", scheduled)
    reasons = None if reason.count(_SCHEDULE) == n else bytes(map(REASON_OF.__getitem__, reason))
    workers = None
    if worker.count(None) != n:
        workers = to_json({i: w for i, w in enumerate(worker) if w is not None})
    return (n, min(times), max(times), _pack("i", job_ids), _pack("q", run_id), _pack("d", times),
            _pack("d", started), _pack("d", finished), _pack("d", lateness), codes, _pack("i", attempt), errors,
            reasons, workers)


def decode_chunk(job: bytes, run_id: bytes, scheduled: bytes, started: bytes, finished: bytes, lateness: bytes,
                 outcome: bytes, attempt: bytes, errors: str | None, reason: bytes | None = None,
                 workers: str | None = None) -> tuple[array, list[tuple]]:
    """(job ids, RunLog rows) from a stored chunk."""
    reasons = repeat(_SCHEDULE) if reason is None else map(REASON_BY_CODE.__getitem__, reason)
    rows = list(zip(_unpack("q", run_id), _unpack("d", scheduled), _unpack("d", started), _unpack("d", finished),
                    _unpack("d", lateness), map(OUTCOME_BY_CODE.__getitem__, outcome), _unpack("i", attempt),
                    repeat(None), reasons, repeat(None)))
    if outcome.count(_SUCCESS_CODE) != len(outcome):
        errs = {int(k): ErrorInfo(*v) for k, v in json.loads(errors).items()} if errors else {}
        for i, code in enumerate(outcome):
            if code != _SUCCESS_CODE:
                r = rows[i]
                rows[i] = (r[0], r[1], None if r[2] != r[2] else r[2], None if r[3] != r[3] else r[3], r[4], r[5],
                           r[6], errs.get(i), r[8], None)
    if workers:
        for k, address in json.loads(workers).items():
            r = rows[int(k)]
            rows[int(k)] = (*r[:9], address)
    return _unpack("i", job), rows
