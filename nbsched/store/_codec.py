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
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Iterable

from ._schema import OUTCOME_CODES, REASON_CODES
from ..history import (ASIDE_FIELDS, ROW_BYTES, PackedRows, ErrorInfo, Outcome, category_values,
                       pack_lateness, pack_row_aside, packed_fields, unpack_lateness, zeroed_rows)

__all__ = ["encode_value_rows", "unencodable", "json_safe", "UNENCODABLE_PREFIX", "encode_chunk", "encode_packed", "encode_joined", "decode_chunk", "decode_packed",
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
# Run records are stored column by column, one chunk per commit batch: the loop hands the writer each
# row packed (as its log packed it), and the columns are cut out of the joined rows with strided byte
# copies - C speed, no object per row - where binding every record as an SQL row costs microseconds each.
# Layout (all little-endian): job int32, run_id int64, scheduled/started/finished/lateness float64
# (NaN = no time), outcome uint8 (OUTCOME_CODES), attempt int32, reason uint8 (REASON_CODES); errors as
# JSON {index: [type, msg, tb]}, workers as JSON {index: address}.
_BIG_ENDIAN = sys.byteorder == "big"
#: The history columns decode_chunk() takes, in order.
CHUNK_COLUMNS = "job, run_id, scheduled, started, finished, lateness, outcome, attempt, errors, reason, workers"
REASON_OF: dict[str, int] = dict(REASON_CODES)
REASON_BY_CODE: list[str] = [""] * (max(REASON_CODES.values()) + 1)
for _name, _code in REASON_CODES.items():
    REASON_BY_CODE[_code] = sys.intern(_name)
_SCHEDULE = REASON_BY_CODE[0]
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


def _code_table(field: str, codes: dict[str, int]) -> bytes:
    """bytes.translate() table: a log's code of ``field`` -> its stored code (255: not a value)."""
    values = category_values(field)
    return bytes(codes[values[h]] if h < len(values) and values[h] in codes else 255 for h in range(256))


_OUTCOME_TABLE = _code_table("outcome", OUTCOME_CODES)
_REASON_TABLE = _code_table("reason", REASON_CODES)
_SCHEDULE_BYTE = category_values("reason").index(_SCHEDULE)
_SCHEDULE_CODE = REASON_CODES[_SCHEDULE]
_LATENESS_AT = ASIDE_FIELDS.index("lateness")
_ERROR_AT = ASIDE_FIELDS.index("error")
_WORKER_AT = ASIDE_FIELDS.index("worker")


def encode_packed(job_ids: "list[int] | tuple[int, ...]", rows: list) -> tuple:
    """(n, first_scheduled, last_scheduled, job, run_id, scheduled, started, finished, lateness, outcome,
    attempt, errors, reason, workers) SQL values for history rows and their job ids.

    A row is its packed bytes (:meth:`nbsched.history.RunLog.record` returns them; nothing kept
    aside) or a pair (packed bytes, values kept aside in :data:`~nbsched.history.ASIDE_FIELDS`
    order).  reason is NULL when every row is "schedule"; workers NULL when every row ran on this
    machine, else JSON {index: worker address}; errors JSON {index: [type, message, traceback]}."""
    asides = None
    if set(map(type, rows)) != {bytes}:  # some rows carry values kept aside
        asides = [(i, row[1]) for i, row in enumerate(rows) if type(row) is not bytes and row[1] is not None]
        rows = [row if type(row) is bytes else row[0] for row in rows]
    joined = b"".join(rows)
    if len(joined) != len(rows) * ROW_BYTES:
        raise ValueError(f"history rows must be {ROW_BYTES} packed bytes each; got {len(joined)} bytes for "
                         f"{len(rows)} rows")
    return encode_joined(job_ids, joined, asides)


def encode_joined(job_ids: "list[int] | tuple[int, ...] | numpy.ndarray", joined: "bytes | bytearray",
                  asides: "list[tuple[int, tuple]] | None") -> tuple:
    """:func:`encode_packed` for rows already joined (``len(job_ids)`` packed rows one after the
    other), with the values kept aside as (row index, values) pairs, or None when no row has any."""
    n = len(job_ids)
    errors = workers = None
    kept: tuple | None = None
    if asides:
        errs, where, late_rows, late = {}, {}, [], []
        for i, aside in asides:
            if aside[_LATENESS_AT] is not None:
                late_rows.append(i)
                late.append(aside[_LATENESS_AT])
            if aside[_ERROR_AT] is not None:
                errs[i] = list(aside[_ERROR_AT])
            if aside[_WORKER_AT] is not None:
                where[i] = aside[_WORKER_AT]
        errors = to_json(errs) if errs else None
        workers = to_json(where) if where else None
        kept = (late_rows, late) if late_rows else None
    fields = packed_fields(joined)  # strided views of the joined rows: each column is one copy below
    scheduled = fields["scheduled"]
    # copies, mended in place: the reason codes lose the lateness bits, a row with no start gets NaN
    reason, started = fields["reason"].copy(), fields["started"].astype("<f8")
    lateness = unpack_lateness(reason, started, scheduled, kept)
    codes = fields["outcome"].tobytes().translate(_OUTCOME_TABLE)
    reasons = reason.tobytes().translate(_REASON_TABLE)
    if reasons.count(_SCHEDULE_CODE) == n:
        reasons = None
    ids = _le(job_ids, "<i4") if hasattr(job_ids, "dtype") else _pack("i", job_ids)
    return (n, float(scheduled.min()), float(scheduled.max()), ids, _le(fields["run_id"], "<i8"),
            _le(scheduled, "<f8"), started.tobytes(), _le(fields["finished"], "<f8"),
            _le(lateness, "<f8"), codes, _le(fields["attempt"], "<i4"), errors, reasons, workers)


def _le(column, dtype: str) -> bytes:
    """A field of packed rows as a contiguous column of ``dtype`` (stored little-endian)."""
    return (column if column.dtype == dtype else column.astype(dtype)).tobytes()


def chunk_times(values: tuple) -> array:
    """The scheduled times of the rows of a chunk :func:`encode_packed` encoded."""
    return _unpack("d", values[5])


def encode_chunk(job_ids: "list[int] | tuple[int, ...]", rows: "list[tuple] | tuple[tuple, ...]") -> tuple:
    """:func:`encode_packed` for rows given as plain tuples (:class:`~nbsched.history.HistoryRow` layout)."""
    packed = []
    for row in rows:
        data, aside = pack_row_aside(*row)
        packed.append(data if aside is None else (data, aside))
    return encode_packed(job_ids, packed)


_OUTCOME_BACK = bytes(category_values("outcome").index(v) if v else 255 for v in OUTCOME_BY_CODE).ljust(256, b"\xff")
_REASON_BACK = bytes(category_values("reason").index(v) if v else 255 for v in REASON_BY_CODE).ljust(256, b"\xff")


def decode_packed(job: bytes, run_id: bytes, scheduled: bytes, started: bytes, finished: bytes, lateness: bytes,
                  outcome: bytes, attempt: bytes, errors: str | None, reason: bytes | None = None,
                  workers: str | None = None) -> tuple[bytes, PackedRows]:
    """(job ids as little-endian int32 bytes, the rows packed as a log packs them) from a stored chunk:
    the inverse of :func:`encode_packed`, one numpy copy per column (no object per row)."""
    import numpy as np

    n = len(outcome)
    rows = zeroed_rows(n)
    columns = {}
    for field, column, dtype in (("run_id", run_id, "<i8"), ("scheduled", scheduled, "<f8"),
                                 ("started", started, "<f8"), ("finished", finished, "<f8"),
                                 ("lateness", lateness, "<f8"), ("attempt", attempt, "<i4"),
                                 ("outcome", outcome.translate(_OUTCOME_BACK), "u1"),
                                 ("reason", None if reason is None else reason.translate(_REASON_BACK), "u1")):
        if column is None:  # reason NULL: every row "schedule"
            columns[field] = np.full(n, _SCHEDULE_BYTE, dtype=np.uint8)
            continue
        if len(column) != n * np.dtype(dtype).itemsize:
            raise ValueError(f"a stored history chunk's {field} column has {len(column)} bytes for {n} rows")
        columns[field] = np.frombuffer(column, dtype=dtype)
    rows["reason"], rows["started"], kept = pack_lateness(columns["reason"], columns["started"], columns["lateness"],
                                                          columns["scheduled"])
    for field in ("run_id", "scheduled", "finished", "attempt", "outcome"):
        rows[field] = columns[field]
    data = rows.tobytes()
    aside: dict[int, list] = {}
    for i in kept.tolist():
        aside.setdefault(i, [None] * len(ASIDE_FIELDS))[_LATENESS_AT] = float(columns["lateness"][i])
    if errors:
        for k, v in json.loads(errors).items():
            aside.setdefault(int(k), [None] * len(ASIDE_FIELDS))[_ERROR_AT] = ErrorInfo(*v)
    if workers:
        for k, address in json.loads(workers).items():
            aside.setdefault(int(k), [None] * len(ASIDE_FIELDS))[_WORKER_AT] = address
    return job, PackedRows(data, {k: tuple(v) for k, v in aside.items()})


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
