"""Run history and results: append-only logs, turned into pandas frames on demand.

Every run attempt (and every missed or skipped fire time) is one row.  A job's rows are packed into
one bytearray (:class:`RunLog`, :data:`ROW_BYTES` bytes a row, laid out by the :data:`COLUMNS`
table) - amortised O(1), no object per row for the garbage collector, no DataFrame work on the hot
path.  Frames are built lazily with numpy (no loop per row) and cached until the next row arrives.
numpy and pandas are imported only when a frame is asked for.

Retention: each job keeps at most ``max_rows`` history rows (default 10,000) and ``results_max_rows``
result rows (default 10,000), optionally also dropping rows older than ``max_age``.
"""
from __future__ import annotations

import enum
import functools
import math
import struct
import sys
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Iterable, NamedTuple

__all__ = ["Outcome", "RunRecord", "RunLog", "ResultLog", "HISTORY_COLUMNS", "ErrorInfo", "HistoryRow", "REASONS",
           "COLUMNS", "Column", "ROW_BYTES"]


class Outcome(str, enum.Enum):
    """How a run attempt (or a fire time) ended.  A categorical column in ``history()``."""

    SUCCESS = "success"
    ERROR = "error"
    MISSED = "missed"
    SKIPPED = "skipped"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    UPSTREAM_FAILED = "upstream_failed"
    CLOCK_STEP = "clock_step"  # not a run: the wall clock was stepped while the job waited (a note)

    def __str__(self) -> str:
        return self.value

    # Hash like the plain string, so rows (which store "success", not Outcome.SUCCESS, see
    # scheduler.py) and members look each other up in dicts and sets.
    __hash__ = str.__hash__


OUTCOME_CATEGORIES = [o.value for o in Outcome]

#: Why a run happened: its trigger fired, ``run_now``, an upstream job finished (workflows), a
#: backfill, or catching up on fire times missed.  A categorical column in ``history()``.
REASONS = ("schedule", "manual", "upstream", "backfill", "catchup")
SCHEDULE, MANUAL, UPSTREAM, BACKFILL, CATCHUP = REASONS

class ErrorInfo(NamedTuple):
    type: str
    message: str
    traceback: str


class Column(NamedTuple):
    """One history column: its :class:`HistoryRow` field, how a log stores it, its ``history()`` column.

    ``kind`` says how a value is stored and shown: ``"int"`` (an integer column), ``"time"`` (POSIX
    seconds, ``None`` stored as NaN; an aware datetime column), ``"seconds"`` (a float; a timedelta
    column), ``"category"`` (a string or ``None``, stored as a small code; a categorical column - with
    ``categories`` fixed, otherwise interned as they come), ``"error"`` (an :class:`ErrorInfo` or
    ``None``, kept aside for the rare rows that have one; the columns error, error_type, traceback)
    and ``"text"`` (any string or ``None``, kept aside like errors; an object column).
    """

    field: str
    kind: str
    code: str = ""  # struct code of the packed value ("q", "d", "I", "B", "H"); "" for values kept aside
    categories: tuple[str, ...] | None = None


#: The layout of a history row.  **Adding a column is one line here**: :class:`HistoryRow`, the
#: recorder (:meth:`RunLog.record`), the packed row, the stored-row decoder and the ``history()``
#: frame all follow from this table.  New columns go at the end (callers pass rows positionally).
COLUMNS: tuple[Column, ...] = (
    Column("run_id", "int", "q"),
    Column("scheduled", "time", "d"),
    Column("started", "time", "d"),
    Column("finished", "time", "d"),
    Column("lateness", "seconds", "d"),
    Column("outcome", "category", "B", tuple(OUTCOME_CATEGORIES)),
    Column("attempt", "int", "H"),  # at most JobPolicy's retries + 1 (nbsched.job.MAX_RETRIES)
    Column("error", "error"),
    Column("reason", "category", "B", REASONS),  # why the run happened: one of REASONS
    Column("worker", "text"),  # the cluster worker that ran the attempt (its address); None: this machine
)

_FRAME_NAME = {"scheduled": "scheduled_at", "started": "started_at", "finished": "finished_at"}
_KINDS = ("int", "time", "seconds", "category", "error", "text")
for _c in COLUMNS:
    assert _c.kind in _KINDS and (_c.code == "") == (_c.kind in ("error", "text")), _c


def _frame_columns(columns: tuple[Column, ...]) -> list[str]:
    """The ``history()`` columns: in table order (duration after finished_at), the error columns last."""
    out = ["job"]
    for c in columns:
        if c.kind != "error":
            out.append(_FRAME_NAME.get(c.field, c.field))
            if c.field == "finished":
                out.append("duration")
    if any(c.kind == "error" for c in columns):
        out += ["error", "error_type", "traceback"]
    return out


HISTORY_COLUMNS = _frame_columns(COLUMNS)

HistoryRow = NamedTuple("HistoryRow", [(c.field, Any) for c in COLUMNS])
HistoryRow.__doc__ = """The layout of one history row (see :data:`COLUMNS`): POSIX seconds, ``None`` where a time
does not apply, the outcome as its plain string (``"success"``, equal to and hashing like the
:class:`Outcome` member), ``error`` an :class:`ErrorInfo` or ``None``.

Logs do not keep row objects: :class:`RunLog` packs each row into a byte buffer (see there).  Rows
handed out (:attr:`RunLog.rows`, the store's rows) are *plain* tuples in this layout - the garbage
collector stops tracking an exact tuple of numbers, strings and ``None``, never a NamedTuple
instance.  Read one by name with ``HistoryRow._make(row)``.
"""

#: Field positions in a row.
SCHEDULED, OUTCOME, ATTEMPT, REASON = (HistoryRow._fields.index(f) for f in ("scheduled", "outcome", "attempt", "reason"))

_PACKED = [i for i, c in enumerate(COLUMNS) if c.code]  # row positions stored in the packed buffer
_ASIDE = [i for i, c in enumerate(COLUMNS) if not c.code]  # row positions kept aside (rare values)
_ROW = struct.Struct("<" + "".join(COLUMNS[i].code for i in _PACKED))
#: Bytes of one packed history row.
ROW_BYTES = _ROW.size
_SCHEDULED_OFFSET = struct.calcsize("<" + "".join(COLUMNS[i].code for i in _PACKED[:_PACKED.index(SCHEDULED)]))
_NAN = float("nan")


@dataclass(frozen=True)
class RunRecord:
    """One run attempt, as handed to event listeners and run waiters."""

    job: str
    run_id: int
    scheduled_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    outcome: Outcome
    attempt: int
    lateness: timedelta
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    reason: str = "schedule"
    worker: str | None = None  # the cluster worker's address (e.g. 'tcp://10.0.0.7:39211'); None: ran here

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @classmethod
    def from_row(cls, job: str, row: tuple, tz: tzinfo) -> "RunRecord":
        run_id, sched, started, finished, lateness, outcome, attempt, err, reason, *rest = row
        worker = rest[0] if rest else None
        ts = datetime.fromtimestamp
        return cls(
            job=job, run_id=run_id, scheduled_at=ts(sched, tz),
            started_at=None if started is None else ts(started, tz),
            finished_at=None if finished is None else ts(finished, tz),
            outcome=Outcome(outcome), attempt=attempt, lateness=timedelta(seconds=lateness),
            error=None if err is None else f"{err.type}: {err.message}",
            error_type=None if err is None else err.type,
            traceback=None if err is None else err.traceback, reason=reason, worker=worker,
        )


class _Categories:
    """The codes of one category column: fixed categories, or strings interned as they first come
    (code 0 is ``None``).  Shared by every log of the process, so codes mean the same everywhere."""

    __slots__ = ("values", "code", "limit")

    def __init__(self, column: Column):
        fixed = column.categories
        self.values: list = list(fixed) if fixed else [None]
        self.code: dict = {v: i for i, v in enumerate(self.values)}
        self.limit = 2 ** (8 * struct.calcsize(column.code))

    def intern(self, value: Any) -> int:
        if self.values[0] is not None:  # fixed categories
            raise ValueError(f"{value!r} is not one of the history categories {self.values}")
        if value is not None and not isinstance(value, str):
            raise TypeError(f"a history category value must be a string or None, not {value!r}")
        code = self.code.get(value)
        if code is None:
            if len(self.values) >= self.limit:
                raise ValueError(f"more than {self.limit} distinct values in a history category column")
            code = self.code[value] = len(self.values)
            self.values.append(value)
        return code


_CATEGORIES = {i: _Categories(c) for i, c in enumerate(COLUMNS) if c.kind == "category"}


def _make_recorder() -> Any:
    """``RunLog.record`` written out for :data:`COLUMNS` (once, at import, like dataclasses do):
    straight-line code, so recording a row allocates no object the garbage collector tracks."""
    params = ", ".join(c.field for c in COLUMNS)
    packed = []
    for i in _PACKED:
        c = COLUMNS[i]
        if c.kind == "time":
            packed.append(f"_NAN if {c.field} is None else {c.field}")
        elif c.kind == "category":
            packed.append(f"_code{i}[{c.field}] if {c.field} in _code{i} else _intern{i}({c.field})")
        else:
            packed.append(c.field)
    aside = "".join(f"    if {COLUMNS[i].field} is not None:\n        self._aside({i}, {COLUMNS[i].field})\n"
                    for i in _ASIDE)
    optional = []  # trailing text columns may be left out (None): older callers and stored rows
    for c in reversed(COLUMNS):
        if c.kind != "text":
            break
        optional.append(c.field)
    params = ", ".join(f"{c.field}=None" if c.field in optional else c.field for c in COLUMNS)
    src = (f"def record(self, {params}) -> None:\n"
           "    buf = self._buf\n"
           f"    buf += _pack({', '.join(packed)})\n"
           f"{aside}"
           "    self._frame = None\n"
           "    if len(buf) > self._limit:\n"
           "        self._trim_rows()\n"
           "    if self.max_age is not None:\n"
           "        self._trim_age(scheduled - self.max_age)\n")
    namespace: dict[str, Any] = {"_NAN": _NAN, "_pack": _ROW.pack}
    for i, cats in _CATEGORIES.items():
        namespace[f"_code{i}"] = cats.code
        namespace[f"_intern{i}"] = cats.intern
    exec(compile(src, f"<nbsched.history recorder for {params}>", "exec"), namespace)  # noqa: S102 - our own text
    record = namespace["record"]
    record.__doc__ = ("Append one row (the only place rows are recorded), then apply retention.  "
                      f"Arguments in :data:`COLUMNS` order: {params}.")
    record.__source__ = src
    return record


class RunLog:
    """A job's history rows (bounded), packed, with a cached frame.

    Rows live in one ``bytearray`` per job, :data:`ROW_BYTES` bytes each (the packed columns of
    :data:`COLUMNS`); the rare values kept aside (errors) sit in a small deque keyed by row number.
    No Python object per row: a million rows are a few tens of MB that the garbage collector never
    walks, and a frame is built from the buffers with numpy, without a Python loop per row.
    Retention is exact: beyond ``max_rows`` (or older than ``max_age`` before the newest row) the
    oldest rows are dropped as each row is recorded (``del buf[:n]`` on a bytearray moves its start,
    no copy per row).
    """

    __slots__ = ("job", "_buf", "_limit", "_max_rows", "max_age", "_dropped", "_aside_rows", "_frame",
                 "_results", "_results_retention")

    record = _make_recorder()

    def __init__(self, job: str, max_rows: int | None = 10_000, max_age: float | None = None,
                 results: "ResultLog | None" = None, results_rows: int | None = 10_000,
                 results_age: float | None = None):
        self.job = job
        # the job's results log lives with its history; created when first needed
        self._results = results
        self._results_retention = _retention(results_rows, results_age)
        self._buf = bytearray()
        self._max_rows = max_rows
        self._limit = _limit(max_rows)
        self.max_age = max_age
        self._dropped = 0  # rows dropped from the front so far (row numbers of aside values count from 0)
        self._aside_rows: deque | None = None  # (row number, row position, value), oldest first
        self._frame = None

    # ------------------------------------------------------------------ results
    @property
    def results(self) -> "ResultLog":
        results = self._results
        if results is None:
            results = self._results = ResultLog(*self._results_retention)
        return results

    def set_results_retention(self, max_rows: int | None, max_age: float | None) -> None:
        self._results_retention = _retention(max_rows, max_age)
        if self._results is not None:
            self._results.set_retention(max_rows, max_age)

    # ------------------------------------------------------------------ rows
    def __len__(self) -> int:
        return len(self._buf) // ROW_BYTES

    @property
    def max_rows(self) -> int | None:
        return self._max_rows

    @property
    def rows(self) -> list[tuple]:
        """The rows kept, oldest first, as plain tuples in the :class:`HistoryRow` layout (decoded on
        each call: for a job's detail view, not for loops over many jobs - use the frame)."""
        return _decode(self._buf, self._dropped, self._aside_rows)

    def last_row(self) -> tuple | None:
        """The newest row (a plain tuple in the :class:`HistoryRow` layout), or ``None``."""
        buf = self._buf
        if not buf:
            return None
        number = self._dropped + len(buf) // ROW_BYTES - 1
        aside = [a for a in reversed(self._aside_rows or ()) if a[0] == number]
        return _decode(buf[-ROW_BYTES:], number, aside)[0]

    def append(self, row: tuple) -> None:
        """Append one row given as a tuple in the :class:`HistoryRow` layout."""
        self.record(*row)

    def _aside(self, position: int, value: Any) -> None:
        aside = self._aside_rows
        if aside is None:
            aside = self._aside_rows = deque()
        aside.append((self._dropped + len(self._buf) // ROW_BYTES - 1, position, value))

    def _drop(self, n: int) -> None:
        del self._buf[:n * ROW_BYTES]
        self._dropped += n
        aside = self._aside_rows
        if aside:
            first = self._dropped
            while aside and aside[0][0] < first:
                aside.popleft()

    def _trim_rows(self) -> None:
        self._drop((len(self._buf) - self._limit) // ROW_BYTES)

    def _trim_age(self, horizon: float) -> None:
        buf = self._buf
        n = 0
        end = len(buf)
        while n * ROW_BYTES < end and _unpack_time(buf, n * ROW_BYTES + _SCHEDULED_OFFSET)[0] < horizon:
            n += 1
        if n:
            self._drop(n)

    def prepend(self, rows: list[tuple]) -> None:
        """Put older rows (from a store) before the ones recorded in this session, within retention."""
        older = RunLog(self.job, max_rows=None)
        for row in rows:
            older.record(*row)
        n_old = len(older)
        aside = deque(older._aside_rows or ())
        for number, position, value in self._aside_rows or ():
            aside.append((number - self._dropped + n_old, position, value))
        self._buf = older._buf + self._buf
        self._dropped = 0
        self._aside_rows = aside or None
        self._apply_retention()

    def set_retention(self, max_rows: int | None, max_age: float | None) -> None:
        self._max_rows = max_rows
        self._limit = _limit(max_rows)
        self.max_age = max_age
        self._apply_retention()

    def _apply_retention(self) -> None:
        if len(self._buf) > self._limit:
            self._trim_rows()
        if self.max_age is not None and self._buf:
            self._trim_age(_unpack_time(self._buf, len(self._buf) - ROW_BYTES + _SCHEDULED_OFFSET)[0] - self.max_age)
        self._frame = None

    def retention_cut(self) -> float | None:
        """The scheduled time of the oldest row kept, if retention has dropped (or is about to drop)
        older rows - a store deletes its rows of this job before it - else ``None``."""
        buf = self._buf
        if not buf or (len(buf) < self._limit and self.max_age is None):
            return None
        return _unpack_time(buf, _SCHEDULED_OFFSET)[0]

    def nbytes(self) -> int:
        """Bytes this log holds for its rows (the buffer's allocation and the values kept aside)."""
        aside = self._aside_rows
        return self._buf.__sizeof__() + (0 if aside is None else sys.getsizeof(aside) + 64 * len(aside))

    def frame(self, tz: tzinfo):
        frame = self._frame
        if frame is None:
            # another thread (a scheduler on a background loop) may record while numpy builds the
            # frame: cache it only if no row came meanwhile, else the cache would hide that row
            key = (self._dropped, len(self._buf))
            frame = history_frame_of([self], tz)
            if key == (self._dropped, len(self._buf)):
                self._frame = frame
        return frame


_unpack_time = struct.Struct("<d").unpack_from


@functools.lru_cache(maxsize=64)
def _limit(max_rows: int | None) -> float:
    # cached: 100,000 jobs at the default retention share one float instead of one each
    return math.inf if max_rows is None else max_rows * ROW_BYTES


@functools.lru_cache(maxsize=64)
def _retention(max_rows: int | None, max_age: float | None) -> tuple[int | None, float | None]:
    return (max_rows, max_age)  # one shared pair per setting, not one per job


def _decode(buf: bytes, dropped: int, aside: Iterable | None) -> list[tuple]:
    """Plain row tuples from a packed buffer (a Python loop per row: for small views only)."""
    times = [k for k, i in enumerate(_PACKED) if COLUMNS[i].kind == "time"]
    cats = [(k, _CATEGORIES[i].values) for k, i in enumerate(_PACKED) if i in _CATEGORIES]
    rows = []
    for values in _ROW.iter_unpack(buf):
        values = list(values)
        for k in times:
            if values[k] != values[k]:
                values[k] = None
        for k, names in cats:
            values[k] = names[values[k]]
        for i in _ASIDE:
            values.insert(i, None)
        rows.append(values)
    for number, position, value in aside or ():
        rows[number - dropped][position] = value
    return [tuple(r) for r in rows]


def _ns(seconds):
    """Float seconds (NaN = none) as int64 nanoseconds (NaT), rounded as ``pd.to_datetime(unit="s")``
    rounds them (whole seconds, plus the fraction rounded to 9 digits), at twice its speed."""
    import numpy as np

    nan = np.isnan(seconds)
    if nan.any():
        seconds = np.where(nan, 0.0, seconds)
    whole = seconds.astype(np.int64)
    ns = whole * 1_000_000_000 + (np.round(seconds - whole, 9) * 1e9).astype(np.int64)
    if nan.any():
        ns[nan] = np.iinfo(np.int64).min
    return ns


def _ts_column(seconds, tz: tzinfo):
    import pandas as pd

    return pd.array(_ns(seconds).view("M8[ns]")).tz_localize("UTC").tz_convert(tz)


def history_frame_of(logs: list[RunLog], tz: tzinfo):
    """One DataFrame of several jobs' logs, ordered by scheduled time (then run id and attempt).

    Built from the packed buffers with numpy: one ``bytes.join`` and column views, no loop per row.
    """
    import numpy as np

    bufs = [log._buf for log in logs]
    counts = np.fromiter(map(len, bufs), dtype=np.int64, count=len(bufs)) // ROW_BYTES
    codes = np.repeat(np.arange(len(logs), dtype=np.int32), counts)
    aside = []
    with_aside = [k for k, log in enumerate(logs) if log._aside_rows]
    if with_aside:
        starts = (np.cumsum(counts) - counts)[with_aside].tolist()
        for k, start in zip(with_aside, starts):
            log = logs[k]
            base = start - log._dropped
            for number, position, value in log._aside_rows:
                aside.append((base + number, position, value))
    return _frame(b"".join(bufs), codes, [log.job for log in logs], aside, tz)


def history_frame(logs: Iterable[tuple[str, Iterable[tuple]]], tz: tzinfo):
    """One DataFrame from (job name, row tuples) groups - e.g. rows read back from a store.

    The frame is sorted like :func:`history_frame_of`; rows that compare equal keep their given order.
    """
    import numpy as np

    packed = RunLog("", max_rows=None)
    names: dict[str, int] = {}
    codes = []
    for name, rows in logs:
        code = names.setdefault(name, len(names))
        for row in rows:
            packed.record(*row)
            codes.append(code)
    return _frame(bytes(packed._buf), np.asarray(codes, dtype=np.int32), list(names),
                  list(packed._aside_rows or ()), tz)


def _frame(data: bytes, job_codes, job_names: list[str], aside: list[tuple], tz: tzinfo):
    import numpy as np
    import pandas as pd

    global _DTYPE
    if _DTYPE is None:
        _DTYPE = _numpy_dtype()
    arr = np.frombuffer(data, dtype=_DTYPE)
    n = len(arr)
    columns = [arr[f"f{k}"].copy() for k in range(len(_PACKED))]  # contiguous: takes below are cheap
    scheduled, run_id = columns[_PACKED.index(SCHEDULED)], columns[_PACKED.index(0)]
    order = None
    if n > 1 and not ((scheduled[1:] > scheduled[:-1]).all()):
        # ordered by (scheduled, run_id, attempt).  The sorts are stable and the attempts of one run
        # (same scheduled time and run id) are recorded in attempt order, so attempt needs no key;
        # run_id is needed only where scheduled times tie
        order = np.argsort(scheduled, kind="stable")
        ordered = scheduled[order]
        if (ordered[1:] == ordered[:-1]).any():
            order = np.lexsort((run_id, scheduled))
        columns = [c[order] for c in columns]
        job_codes = job_codes[order]
    rank = None
    if aside:
        rank = np.empty(n, dtype=np.int64)
        rank[order if order is not None else np.arange(n)] = np.arange(n)
    out: dict[str, Any] = {"job": pd.Categorical.from_codes(job_codes, categories=job_names)}
    for i, c in enumerate(COLUMNS):
        if c.code:
            values = columns[_PACKED.index(i)]
        if c.kind == "int":
            out[c.field] = pd.Series(values.astype(np.int64), copy=False)
        elif c.kind == "time":
            out[_FRAME_NAME.get(c.field, c.field)] = _ts_column(values.astype(np.float64), tz)
            if c.field == "finished":
                out["duration"] = out["finished_at"] - out["started_at"]
        elif c.kind == "seconds":
            out[c.field] = pd.array(_ns(values.astype(np.float64)).view("m8[ns]"))
        elif c.kind == "category":
            cats = _CATEGORIES[i].values
            if c.categories:
                out[c.field] = pd.Categorical.from_codes(values.astype(np.int32), categories=list(c.categories))
            else:
                out[c.field] = pd.Categorical.from_codes(values.astype(np.int32) - 1, categories=cats[1:])
        else:
            cols = ["error", "error_type", "traceback"] if c.kind == "error" else [c.field]
            filled = [np.full(n, None, dtype=object) for _ in cols]
            for number, position, value in aside:
                if position == i:
                    k = rank[number]
                    if c.kind == "error":
                        filled[0][k] = f"{value.type}: {value.message}"
                        filled[1][k] = value.type
                        filled[2][k] = value.traceback
                    else:
                        filled[0][k] = value
            for name, col in zip(cols, filled):
                out[name] = pd.Series(col, dtype="object", copy=False)
    return pd.DataFrame(out, columns=HISTORY_COLUMNS, copy=False)  # the columns are ours: no copy


_DTYPE = None


def _numpy_dtype():
    import numpy as np

    # packed (no alignment), little-endian: the same bytes as _ROW
    return np.dtype([(f"f{k}", "<" + COLUMNS[i].code.replace("q", "i8").replace("d", "f8").replace("I", "u4")
                      .replace("B", "u1").replace("H", "u2")) for k, i in enumerate(_PACKED)])


class ResultLog:
    """What a job returned, accumulated over runs (bounded by rows and age), as one frame.

    A returned DataFrame has its rows appended; a dict or Series becomes one row; any other value
    becomes a row with a ``value`` column; ``None`` adds nothing.  Every row carries the ``run_id``
    and ``scheduled_at`` of the run that produced it.
    """

    __slots__ = ("chunks", "rows", "max_rows", "max_age", "_frame")

    def __init__(self, max_rows: int | None = 10_000, max_age: float | None = None):
        # (run_id, scheduled, kind, payload, nrows); created on the first result (most jobs of a
        # 100,000-job schedule return nothing, and every container is work for the GC)
        self.chunks: deque | None = None
        self.rows = 0
        self.max_rows = max_rows
        self.max_age = max_age
        self._frame = None

    def append(self, run_id: int, scheduled: float, value: Any) -> None:
        if value is None:
            return
        kind, payload, n = _classify(value)
        if self.chunks is None:
            self.chunks = deque()
        self.chunks.append((run_id, scheduled, kind, payload, n))
        self.rows += n
        self._frame = None
        chunks = self.chunks
        if self.max_rows is not None:
            while self.rows - chunks[0][4] >= self.max_rows and len(chunks) > 1:
                self.rows -= chunks.popleft()[4]
        if self.max_age is not None:
            horizon = scheduled - self.max_age
            while chunks and chunks[0][1] < horizon:
                self.rows -= chunks.popleft()[4]

    def set_retention(self, max_rows: int | None, max_age: float | None) -> None:
        self.max_rows = max_rows
        self.max_age = max_age
        self._frame = None

    def frame(self, tz: tzinfo):
        if self._frame is None:
            self._frame = self._build(tz)
        return self._frame

    def _build(self, tz: tzinfo):
        import pandas as pd

        pieces = []
        records: list[dict] = []

        def flush() -> None:
            if records:
                pieces.append(pd.DataFrame.from_records(records))
                records.clear()

        for run_id, sched, kind, payload, _ in self.chunks or ():
            if kind == "frame":
                flush()
                part = payload.reset_index(drop=not _has_named_index(payload))
                part.insert(0, "scheduled_at", sched)
                part.insert(0, "run_id", run_id)
                pieces.append(part)
            else:
                row = {"run_id": run_id, "scheduled_at": sched}
                row.update(payload)
                records.append(row)
        flush()
        if not pieces:
            return pd.DataFrame({"run_id": pd.Series(dtype="int64"),
                                 "scheduled_at": pd.Series(dtype=f"datetime64[ns, {getattr(tz, 'key', 'UTC')}]")
                                 if hasattr(tz, "key") else pd.Series(dtype="datetime64[ns, UTC]")})
        frame = pieces[0] if len(pieces) == 1 else pd.concat(pieces, ignore_index=True, sort=False)
        frame["scheduled_at"] = pd.to_datetime(frame["scheduled_at"], unit="s", utc=True).dt.tz_convert(tz)
        if self.max_rows is not None and len(frame) > self.max_rows:
            frame = frame.iloc[len(frame) - self.max_rows:]
        return frame.reset_index(drop=True)


def _has_named_index(df) -> bool:
    return any(name is not None for name in df.index.names)


def _classify(value: Any) -> tuple[str, Any, int]:
    module = type(value).__module__
    if module.startswith("pandas"):
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            return "frame", value.copy(), len(value)
        if isinstance(value, pd.Series):
            return "row", {str(k): v for k, v in value.items()}, 1
    if isinstance(value, dict):
        return "row", {str(k): v for k, v in value.items()}, 1
    return "row", {"value": value}, 1
