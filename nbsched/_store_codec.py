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
"""
from __future__ import annotations

import json
import math
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Iterable

from ._store_schema import OUTCOME_CODES
from .history import ErrorInfo, Outcome

__all__ = ["encode_value_rows", "decode_history_row", "outcome_of", "CODE_OF", "to_json"]

#: Outcome enum -> stored integer code, and back.
CODE_OF = {Outcome(name): code for name, code in OUTCOME_CODES.items()}
_OUTCOME_BY_CODE = [None] * (max(OUTCOME_CODES.values()) + 1)
for _name, _code in OUTCOME_CODES.items():
    _OUTCOME_BY_CODE[_code] = Outcome(_name)


def outcome_of(code: int) -> Outcome:
    return _OUTCOME_BY_CODE[code]


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
    return str(value)


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


def _dumps_row(row: dict) -> str:
    return to_json({str(k): _clean(v) for k, v in row.items()})


def encode_value_rows(value: Any) -> tuple[int, list[str]]:
    """(frame flag, JSON rows) for a value a job returned (the same shapes as the results frame)."""
    module = type(value).__module__
    if module.startswith("pandas"):
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            named = any(n is not None for n in value.index.names)
            flat = value.reset_index(drop=not named)
            columns = [str(c) for c in flat.columns]
            return 1, [_dumps_row(dict(zip(columns, rec))) for rec in flat.itertuples(index=False, name=None)]
        if isinstance(value, pd.Series):
            return 0, [_dumps_row(dict(value.items()))]
    if isinstance(value, dict):
        return 0, [_dumps_row(value)]
    return 0, [_dumps_row({"value": value})]


def decode_history_row(r: tuple) -> tuple:
    """SQL (run_id, scheduled, started, finished, lateness, outcome, attempt, etype, emsg, tb) -> a RunLog row."""
    etype = r[7]
    return (r[0], r[1], r[2], r[3], r[4], _OUTCOME_BY_CODE[r[5]], r[6],
            None if etype is None else ErrorInfo(etype, r[8] or "", r[9] or ""))


def decode_history_rows(rows: Iterable[tuple]) -> list[tuple]:
    by_code = _OUTCOME_BY_CODE
    return [(r[0], r[1], r[2], r[3], r[4], by_code[r[5]], r[6],
             None if r[7] is None else ErrorInfo(r[7], r[8] or "", r[9] or "")) for r in rows]
