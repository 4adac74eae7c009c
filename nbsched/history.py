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
import itertools
import math
import operator
import struct
import sys
from array import array
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Iterable, NamedTuple

__all__ = ["Outcome", "RunRecord", "RunLog", "ResultLog", "HISTORY_COLUMNS", "ErrorInfo", "HistoryRow", "REASONS",
           "COLUMNS", "Column", "ROW_BYTES",
           "ASIDE_FIELDS", "PACKED_OFFSETS", "PackedRows", "pack_row", "unpack_row", "category_values", "packed_column",
           "packed_fields", "zeroed_rows", "pack_row_aside",
           "pack_lateness", "unpack_lateness"]


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
    ``None``, kept aside for the rare rows that have one; the columns error, error_type, traceback),
    ``"text"`` (any string or ``None``, kept aside like errors; an object column) and ``"lateness"``
    (float seconds, a timedelta column; not packed: see :data:`COLUMNS`).
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
    # Lateness is started - scheduled for nearly every row: it is not packed.  The top two bits of
    # the reason byte say how a row has it (_LATE_*): that difference, zero, in the started time's
    # place (a row with no start), or kept aside (a retry, a jittered fire time).
    Column("lateness", "lateness"),
    Column("outcome", "category", "B", tuple(OUTCOME_CATEGORIES)),
    Column("attempt", "int", "H"),  # at most JobPolicy's retries + 1 (nbsched.job.MAX_RETRIES)
    Column("error", "error"),
    Column("reason", "category", "B", REASONS),  # why the run happened: one of REASONS
    Column("worker", "text"),  # the cluster worker that ran the attempt (its address); None: this machine
)

_FRAME_NAME = {"scheduled": "scheduled_at", "started": "started_at", "finished": "finished_at"}
_KINDS = ("int", "time", "seconds", "category", "error", "text", "lateness")
for _c in COLUMNS:
    assert _c.kind in _KINDS and (_c.code == "") == (_c.kind in ("error", "text", "lateness")), _c


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
STARTED, LATENESS = HistoryRow._fields.index("started"), HistoryRow._fields.index("lateness")
#: How a packed row has its lateness, in the top two bits of its reason byte (the reason's code is
#: below them): the started time minus the scheduled time (nearly every row), zero (a run started
#: the moment it was decided: upstream, backfill, catch-up), in the started time's place (a fire
#: time that did not start: missed, skipped), or kept aside with the errors (a retry, a jittered
#: fire time).  Exact: each is used only when it gives back the very float recorded.
_LATE_SHIFT = 6
_LATE_DERIVED, _LATE_ZERO, _LATE_IN_STARTED, _LATE_ASIDE = (k << _LATE_SHIFT for k in range(4))
_REASON_MASK = (1 << _LATE_SHIFT) - 1  # the bits of the reason byte that hold the reason's code

_PACKED = [i for i, c in enumerate(COLUMNS) if c.code]  # row positions stored in the packed buffer
_ASIDE = [i for i, c in enumerate(COLUMNS) if not c.code]  # row positions kept aside (rare values)
_ROW = struct.Struct("<" + "".join(COLUMNS[i].code for i in _PACKED))
#: Bytes of one packed history row.
ROW_BYTES = _ROW.size
_SCHEDULED_OFFSET = struct.calcsize("<" + "".join(COLUMNS[i].code for i in _PACKED[:_PACKED.index(SCHEDULED)]))
#: The fields kept aside, not packed (an error, a worker address): a packed row plus a tuple of these
#: values (``None`` when all are None, the common case) is a whole row.  See :func:`unpack_row`.
ASIDE_FIELDS = tuple(COLUMNS[i].field for i in _ASIDE)
#: Where each packed field sits in a packed row (little-endian): field -> (byte offset, struct code).
PACKED_OFFSETS = {COLUMNS[i].field: (struct.calcsize("<" + "".join(COLUMNS[j].code for j in _PACKED[:k])),
                                     COLUMNS[i].code) for k, i in enumerate(_PACKED)}
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
        # the reason byte's top bits say how the row has its lateness
        self.limit = 1 << _LATE_SHIFT if column.field == "reason" else 2 ** (8 * struct.calcsize(column.code))
        assert len(self.values) <= self.limit, column

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
    """``RunLog.record`` and the row packers written out for :data:`COLUMNS` (once, at import, like
    dataclasses do): straight-line code, so recording a row allocates no object the garbage
    collector tracks."""
    fast, full = [], []  # fast: as the common row has them (times given, categories known, lateness derived)
    for i in _PACKED:
        c = COLUMNS[i]
        if c.kind == "time":
            full.append(f"_NAN if {c.field} is None else {c.field}")
            fast.append(c.field)
        elif c.kind == "category":
            code = f"_code{i}[{c.field}] if {c.field} in _code{i} else _intern{i}({c.field})"
            full.append(f"({code}) | how" if i == REASON else code)
            fast.append(f"_code{i}[{c.field}]")
        else:
            full.append(c.field)
            fast.append(c.field)
    aside_values = ", ".join("kept" if i == LATENESS else COLUMNS[i].field for i in _ASIDE)
    optional = []  # trailing text columns may be left out (None): older callers and stored rows
    for c in reversed(COLUMNS):
        if c.kind != "text":
            break
        optional.append(c.field)
    params = ", ".join(f"{c.field}=None" if c.field in optional else c.field for c in COLUMNS)
    args = ", ".join(c.field for c in COLUMNS)
    plain = " and ".join(f"{COLUMNS[i].field} is None" for i in _ASIDE if i != LATENESS)
    all_none = " and ".join(f"{'kept' if i == LATENESS else COLUMNS[i].field} is None" for i in _ASIDE)
    zero = [f"{e} | _LATE_ZERO" if i == REASON else e for i, e in zip(_PACKED, fast)]
    src = (f"def record(self, {params}):\n"
           "    buf = self._buf\n"
           "    try:\n"
           f"        if not ({plain}):\n"
           "            row = None\n"
           "        elif lateness == started - scheduled:\n"
           f"            row = _pack({', '.join(fast)})\n"
           "        elif lateness == 0.0:  # started the moment it was decided (downstream, backfill)\n"
           f"            row = _pack({', '.join(zero)})\n"
           "        else:\n"
           "            row = None\n"
           "    except (_StructError, KeyError, TypeError):  # a time is None, a category value is new\n"
           "        row = None\n"
           "    if row is None:\n"
           f"        return self._record_full({args})\n"
           "    buf += row\n"
           "    self._frame = None\n"
           "    if len(buf) > self._limit:\n"
           "        self._trim_rows()\n"
           "    if self.max_age is not None:\n"
           "        self._trim_age(scheduled - self.max_age)\n"
           "    return row\n"
           f"def pack_row_aside({params}):\n"
           "    if started is None:\n"
           "        how, started, kept = _LATE_IN_STARTED, lateness, None\n"
           "    elif scheduled is not None and lateness == started - scheduled:\n"
           "        how, kept = _LATE_DERIVED, None\n"
           "    elif lateness == 0.0:\n"
           "        how, kept = _LATE_ZERO, None\n"
           "    else:\n"
           "        how, kept = _LATE_ASIDE, lateness\n"
           f"    row = _pack({', '.join(full)})\n"
           f"    return row, (None if {all_none} else ({aside_values},))\n")
    namespace: dict[str, Any] = {"_NAN": _NAN, "_pack": _ROW.pack, "_StructError": struct.error,
                                 "_LATE_DERIVED": _LATE_DERIVED,
                                 "_LATE_ZERO": _LATE_ZERO, "_LATE_IN_STARTED": _LATE_IN_STARTED,
                                 "_LATE_ASIDE": _LATE_ASIDE}
    for i, cats in _CATEGORIES.items():
        namespace[f"_code{i}"] = cats.code
        namespace[f"_intern{i}"] = cats.intern
    exec(compile(src, f"<nbsched.history recorder for {params}>", "exec"), namespace)  # noqa: S102 - our own text
    record, pack_row_aside = namespace["record"], namespace["pack_row_aside"]
    record.__doc__ = ("Append one row (the only place rows are recorded), then apply retention.  "
                      f"Arguments in :data:`COLUMNS` order: {params}.  Returns the packed row "
                      "(:data:`ROW_BYTES` bytes), or (packed row, values kept aside in "
                      ":data:`ASIDE_FIELDS` order) when the row has any.")
    pack_row_aside.__doc__ = ("(packed bytes, values kept aside in :data:`ASIDE_FIELDS` order or ``None`` when all "
                              "are None) of one row given in :data:`COLUMNS` order, packed as "
                              ":meth:`RunLog.record` packs it.  ``unpack_row(*pack_row_aside(*row))`` is the row.")
    record.__source__ = pack_row_aside.__source__ = src
    return record, pack_row_aside


_record, pack_row_aside = _make_recorder()


def pack_row(*row: Any) -> bytes:
    """The packed bytes of one row (:data:`COLUMNS` order), as :meth:`RunLog.record` packs it; the
    values kept aside are left out (see :func:`pack_row_aside`)."""
    return pack_row_aside(*row)[0]


_POSITION_BITS = 4  # an aside key is row number << 4 | row position
_POSITION_MASK = (1 << _POSITION_BITS) - 1
assert len(COLUMNS) <= 1 << _POSITION_BITS


class _Lane:
    """Entries of one kind kept aside: keys (row number << 4 | row position) in an int64 ``array``,
    values alongside (a list, or an ``array`` of doubles for floats)."""

    __slots__ = ("keys", "values")

    def __init__(self, keys: array, values: "list | array"):
        self.keys = keys
        self.values = values

    def of_row(self, number: int) -> list[tuple]:
        keys = self.keys
        lo = bisect_left(keys, number << _POSITION_BITS)
        hi = bisect_left(keys, (number + 1) << _POSITION_BITS, lo)
        return [(number, keys[i] & _POSITION_MASK, self.values[i]) for i in range(lo, hi)]

    def after(self, number: int) -> "_Lane":
        """The entries of row ``number`` and later rows (a new lane)."""
        k = bisect_left(self.keys, number << _POSITION_BITS)
        return _Lane(self.keys[k:], self.values[k:]) if k else self

    def nbytes(self) -> int:
        return sys.getsizeof(self) + self.keys.__sizeof__() + self.values.__sizeof__()


class _Aside:
    """The values kept aside (lateness values that are not started - scheduled, errors, worker
    addresses) of one log's rows, oldest first: each value's row number and row position packed in
    one int64, the values alongside - a float (a lateness) in an ``array`` of doubles, 16 bytes with
    its key; any other value in a list, 16 bytes and the object (a deque of (number, position, value)
    tuples took 72 bytes a value and 624 bytes for the first).  Iterating gives (row number,
    position, value) triples, row order within each kind."""

    __slots__ = ("objects", "floats")

    def __init__(self) -> None:
        self.objects: _Lane | None = None  # each created with its first value
        self.floats: _Lane | None = None

    def append(self, number: int, position: int, value: Any) -> None:
        if type(value) is float:
            lane = self.floats
            if lane is None:
                lane = self.floats = _Lane(array("q"), array("d"))
        else:
            lane = self.objects
            if lane is None:
                lane = self.objects = _Lane(array("q"), [])
        lane.keys.append(number << _POSITION_BITS | position)
        lane.values.append(value)

    def _lanes(self) -> list[_Lane]:
        return [lane for lane in (self.objects, self.floats) if lane is not None]

    def __len__(self) -> int:
        return sum(len(lane.values) for lane in self._lanes())

    def __iter__(self):
        for lane in self._lanes():
            for key, value in zip(lane.keys, lane.values):  # a row being recorded meanwhile: left out
                yield key >> _POSITION_BITS, key & _POSITION_MASK, value

    def lanes_now(self) -> list[tuple[array, "list | array"]]:
        """Each kind's (keys, values) as they are now, of equal length (a value being recorded
        meanwhile is left out): what :meth:`__iter__` gives, without an object per entry."""
        out = []
        for lane in self._lanes():
            keys, values = lane.keys, lane.values  # one lane object: drop_before swaps whole lanes
            m = min(len(keys), len(values))
            out.append((keys[:m], values[:m]))
        return out

    def of_row(self, number: int) -> list[tuple]:
        """The entries of row ``number`` (a bisection: row numbers only grow)."""
        return [entry for lane in self._lanes() for entry in lane.of_row(number)]

    def drop_before(self, number: int) -> None:
        """Forget the entries of rows before row ``number``."""
        # a new lane each, keys and values in one object: a frame being built on another thread
        # keeps a lane whose keys and values match
        if self.objects is not None:
            self.objects = self.objects.after(number)
        if self.floats is not None:
            self.floats = self.floats.after(number)

    @classmethod
    def of(cls, entries: Iterable[tuple]) -> "_Aside | None":
        """An aside of (row number, position, value) entries in row order (None: there are none)."""
        aside = cls()
        for number, position, value in entries:
            aside.append(number, position, value)
        return aside if len(aside) else None

    def nbytes(self) -> int:
        return sys.getsizeof(self) + sum(lane.nbytes() for lane in self._lanes())


class RunLog:
    """A job's history rows (bounded), packed, with a cached frame.

    Rows live in one ``bytearray`` per job, :data:`ROW_BYTES` bytes each (the packed columns of
    :data:`COLUMNS`); the rare values kept aside (errors) sit in a small :class:`_Aside` keyed by row
    number.
    No Python object per row: a million rows are a few tens of MB that the garbage collector never
    walks, and a frame is built from the buffers with numpy, without a Python loop per row.
    Retention is exact: beyond ``max_rows`` (or older than ``max_age`` before the newest row) the
    oldest rows are dropped as each row is recorded (``del buf[:n]`` on a bytearray moves its start,
    no copy per row).
    """

    __slots__ = ("job", "_buf", "_limit", "_max_rows", "max_age", "_dropped", "_aside_rows", "_frame",
                 "_results", "_results_retention")

    record = _record

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
        self._aside_rows: _Aside | None = None  # (row number, row position, value), oldest first
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
        aside = self._aside_rows.of_row(number) if self._aside_rows else None
        return _decode(buf[-ROW_BYTES:], number, aside)[0]

    def append(self, row: tuple) -> None:
        """Append one row given as a tuple in the :class:`HistoryRow` layout."""
        self.record(*row)

    def _record_full(self, *row: Any) -> "bytes | tuple[bytes, tuple]":
        """:meth:`record` for any row: a time that is None, a category value not coded yet, a
        lateness that is not started - scheduled, values kept aside."""
        packed, aside = pack_row_aside(*row)
        buf = self._buf
        buf += packed
        if aside is not None:
            for position, value in zip(_ASIDE, aside):
                if value is not None:
                    self._aside(position, value)
        self._apply_retention()
        return packed if aside is None else (packed, aside)

    def _aside(self, position: int, value: Any) -> None:
        aside = self._aside_rows
        if aside is None:
            aside = self._aside_rows = _Aside()
        aside.append(self._dropped + len(self._buf) // ROW_BYTES - 1, position, value)

    def _drop(self, n: int) -> None:
        del self._buf[:n * ROW_BYTES]
        self._dropped += n
        aside = self._aside_rows
        if aside:
            aside.drop_before(self._dropped)

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

    def prepend(self, rows: "PackedRows | Iterable[tuple]") -> None:
        """Put older rows (from a store: :class:`PackedRows` taken as they are, or plain tuples) before
        the ones recorded in this session, within retention."""
        rows = PackedRows.of(rows)
        n_old = len(rows)
        stored = ((i, position, value) for i, values in sorted((rows.aside or {}).items())
                  for position, value in zip(_ASIDE, values) if value is not None)
        shift = n_old - self._dropped
        mine = ((number + shift, position, value) for number, position, value in self._aside_rows or ())
        self._buf = bytearray(rows.data) + self._buf
        self._dropped = 0
        self._aside_rows = _Aside.of(itertools.chain(stored, mine))
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
        return self._buf.__sizeof__() + (0 if aside is None else aside.nbytes())

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


def unpack_row(packed: bytes, aside: tuple | None = None) -> tuple:
    """The plain row tuple (:class:`HistoryRow` layout) of a packed row and its values kept aside
    (in :data:`ASIDE_FIELDS` order; ``None``: all None)."""
    row = _decode(packed, 0, None)[0]
    if aside is None:
        return row
    row = list(row)
    for i, value in zip(_ASIDE, aside):
        if value is not None:
            row[i] = value
    return tuple(row)


def category_values(field: str) -> list:
    """The values of a category column's codes, by code (the packed rows hold the codes)."""
    return list(_CATEGORIES[HistoryRow._fields.index(field)].values)


def packed_fields(data: bytes):
    """The rows in ``data`` (whole packed rows) as a numpy structured array over the same memory, one
    field per packed column, named as in :data:`COLUMNS` (no copy; its fields are strided views)."""
    import numpy as np

    return np.frombuffer(data, dtype=_packed_dtype(named=True))


def zeroed_rows(n: int):
    """``n`` packed rows of zeros as a writable numpy structured array (see :func:`packed_fields`):
    fill its fields, then ``tobytes()`` is the rows packed."""
    import numpy as np

    return np.zeros(n, dtype=_packed_dtype(named=True))


def packed_column(data: bytes, field: str, width: int = 0) -> bytes:
    """One packed field of every row in ``data`` (whole packed rows) as a contiguous little-endian
    column of ``width`` bytes a value (default: the field's own size; a narrower field is
    zero-extended): one strided copy by numpy, no object per row."""
    column = packed_fields(data)[field]
    size = column.dtype.itemsize
    if width and width != size:
        column = column.view(f"<u{size}").astype(f"<u{width}")
    return column.tobytes()


class PackedRows:
    """History rows packed as a :class:`RunLog` packs them: ``data`` (:data:`ROW_BYTES` a row, oldest
    first) and the values kept aside, ``aside`` = {row index: values in :data:`ASIDE_FIELDS` order}
    (``None``: no row has any).  How a store hands a job's stored history back (see
    :class:`nbsched.job.StoredJob`): a million rows are one bytes object, not a million tuples."""

    __slots__ = ("data", "aside")

    def __init__(self, data: bytes, aside: "dict[int, tuple] | None" = None):
        if len(data) % ROW_BYTES:
            raise ValueError(f"packed history rows are {ROW_BYTES} bytes each; got {len(data)} bytes")
        self.data = data
        self.aside = aside or None

    @classmethod
    def of(cls, rows: "PackedRows | Iterable[tuple]") -> "PackedRows":
        """Rows given as plain tuples (:class:`HistoryRow` layout), packed (PackedRows: as they are)."""
        if isinstance(rows, PackedRows):
            return rows
        data, aside = [], {}
        for i, row in enumerate(rows):
            packed, extra = pack_row_aside(*row)
            data.append(packed)
            if extra is not None:
                aside[i] = extra
        return cls(b"".join(data), aside)

    def __len__(self) -> int:
        return len(self.data) // ROW_BYTES

    def __repr__(self) -> str:
        return f"PackedRows({len(self)} rows)"

    def column(self, field: str) -> list:
        """The values of one field, oldest first (a category field: its values, not codes)."""
        if field not in PACKED_OFFSETS or field in ("started", "reason"):  # need the lateness bits
            position = HistoryRow._fields.index(field)
            return [row[position] for row in self.rows()]
        code = PACKED_OFFSETS[field][1]
        raw = packed_column(self.data, field)
        if field in _CATEGORY_FIELDS:
            return list(map(category_values(field).__getitem__, raw))
        return list(struct.unpack(f"<{len(self)}{code}", raw))

    def row(self, i: int) -> tuple:
        """Row ``i`` as a plain tuple (:class:`HistoryRow` layout)."""
        i = range(len(self))[i]
        return unpack_row(self.data[i * ROW_BYTES:(i + 1) * ROW_BYTES], (self.aside or {}).get(i))

    def rows(self) -> list[tuple]:
        """Every row as a plain tuple (a loop per row: for small views and tests)."""
        return [self.row(i) for i in range(len(self))]


_CATEGORY_FIELDS = frozenset(COLUMNS[i].field for i in _CATEGORIES)


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
    k_reason, k_started, k_scheduled = (_PACKED.index(i) for i in (REASON, STARTED, SCHEDULED))
    rows = []
    for values in _ROW.iter_unpack(buf):
        values = list(values)
        how = values[k_reason] & ~_REASON_MASK
        values[k_reason] &= _REASON_MASK
        lateness = None  # _LATE_ASIDE: the value kept aside is put in below
        if how == _LATE_DERIVED:
            lateness = values[k_started] - values[k_scheduled]
        elif how == _LATE_ZERO:
            lateness = 0.0
        elif how == _LATE_IN_STARTED:
            lateness, values[k_started] = values[k_started], _NAN
        for k in times:
            if values[k] != values[k]:
                values[k] = None
        for k, names in cats:
            values[k] = names[values[k]]
        for i in _ASIDE:
            values.insert(i, None)
        values[LATENESS] = lateness
        rows.append(values)
    for number, position, value in aside or ():
        rows[number - dropped][position] = value
    return [tuple(r) for r in rows]


#: Elements per block of the in-place conversions (:func:`_ns`): a few hundred kB, so the dozen passes
#: over a block stay in the CPU cache instead of walking the whole column a dozen times.
_BLOCK = 1 << 15
#: Bytes of packed rows joined and decoded at a time (:func:`_decode_columns`): one join of every log
#: would be a temporary of 36 bytes a row (47 MB at 1.3 million rows), paid in page faults and cache
#: misses; a chunk of 1 MB is decoded while it is still in the cache.
_CHUNK_BYTES = 1 << 20
_NAT = -(2 ** 63)


def _ns(seconds):
    """Float seconds (NaN = none) as int64 nanoseconds (NaT), rounded exactly as
    ``pd.to_datetime(unit="s")`` rounds them: the whole seconds (truncated toward zero) times 1e9, plus
    the fraction rounded to 9 digits as ``np.round`` does (times 1e9, ``rint``, divided by 1e9), times
    1e9 and truncated.

    **In place**: ``seconds`` (a contiguous float64 array the caller owns) is overwritten and returned
    viewed as int64 - no temporary the size of the column; the passes run block by block (:data:`_BLOCK`)
    so each block stays in the cache.
    """
    import numpy as np

    out = seconds.view(np.int64)
    n = len(seconds)
    size = min(n, _BLOCK)
    whole, fraction, nan = np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size, np.bool_)
    for a in range(0, n, _BLOCK):
        x = seconds[a:a + _BLOCK]
        m = len(x)
        w, f, isnan, o = whole[:m], fraction[:m], nan[:m], out[a:a + m]
        np.isnan(x, out=isnan)
        missing = isnan.any()
        if missing:
            np.copyto(x, 0.0, where=isnan)
        np.copyto(w, x, casting="unsafe")  # truncated toward zero, as astype(int64)
        np.subtract(x, w, out=x)  # the fraction
        np.multiply(x, 1e9, out=x)  # np.round(fraction, 9): times 1e9, rint, divided by 1e9
        np.rint(x, out=x)
        np.divide(x, 1e9, out=x)
        np.multiply(x, 1e9, out=x)
        np.copyto(f, x, casting="unsafe")  # truncated toward zero, as astype(int64)
        np.multiply(w, 1_000_000_000, out=w)
        np.add(w, f, out=o)  # o is x's memory: x is not read again
        if missing:
            np.copyto(o, _NAT, where=isnan)
    return out


def _ts_column(seconds, tz: tzinfo):
    """An aware datetime array (``tz``) of POSIX seconds (NaN: NaT); ``seconds`` is overwritten (:func:`_ns`)."""
    return _aware(_ns(seconds), tz)


def _aware(ns, tz: tzinfo):
    """An aware datetime array (``tz``) of int64 UTC nanoseconds (NaT: int64 min), without a copy.

    The same array as ``pd.array(ns.view("M8[ns]")).tz_localize("UTC").tz_convert(tz)``, which copies
    the column to localize it to UTC (the values are UTC already).
    """
    import pandas as pd

    dtype = pd.DatetimeTZDtype(unit="ns", tz=tz)  # what tz_convert(tz) makes (cached by pandas)
    new = getattr(pd.arrays.DatetimeArray, "_simple_new", None)
    if new is not None:
        try:
            return new(ns.view("M8[ns]"), dtype=dtype)
        except (TypeError, AssertionError):  # pragma: no cover - another pandas: the public way
            pass
    return pd.array(ns.view("M8[ns]")).tz_localize("UTC").tz_convert(tz)


def _duration(finished, started):
    """``finished_at - started_at`` of two aware datetime arrays as pandas computes it (NaT where
    either is NaT), with one numpy subtraction."""
    import numpy as np
    import pandas as pd

    f, s = finished.asi8, started.asi8
    out = np.subtract(f, s)
    missing = f == _NAT
    missing |= s == _NAT
    np.copyto(out, _NAT, where=missing)
    return pd.array(out.view("m8[ns]"))


def _job_dtype(names: list[str]):
    """The job column's ``CategoricalDtype`` for these job names (in this order).  Many names are
    cached (checking 100,000 names unique costs more than the rest of the column; a frame of the same
    jobs reuses it); a few (one job's frame) are not, so they never push a schedule's names out."""
    if len(names) < 256:
        import pandas as pd

        return pd.CategoricalDtype(names)
    return _cached_job_dtype(tuple(names))


@functools.lru_cache(maxsize=4)
def _cached_job_dtype(names: tuple):
    import pandas as pd

    return pd.CategoricalDtype(list(names))


def _codes_dtype(categories: int):
    """The integer dtype pandas keeps the codes of ``categories`` categories in (its
    ``coerce_indexer_dtype``): codes made in it are not converted again."""
    import numpy as np

    for t in (np.int8, np.int16, np.int32):
        if categories < np.iinfo(t).max:
            return np.dtype(t)
    return np.dtype(np.int64)


_buf_of = operator.attrgetter("_buf")
_aside_of = operator.attrgetter("_aside_rows")
_job_of = operator.attrgetter("job")


def history_frame_of(logs: list[RunLog], tz: tzinfo):
    """One DataFrame of several jobs' logs, ordered by scheduled time (then run id and attempt).

    Built from the packed buffers with numpy: the buffers joined a chunk at a time and decoded into
    columns, no loop per row.
    """
    import numpy as np

    bufs = list(map(_buf_of, logs))
    sizes = np.fromiter(map(len, bufs), dtype=np.int64, count=len(bufs))
    counts = sizes // ROW_BYTES
    codes = np.repeat(np.arange(len(logs), dtype=_codes_dtype(len(logs))), counts)
    aside = []  # (first row of the log - rows it dropped, its aside values): row = that + value's row number
    with_aside = list(itertools.compress(range(len(logs)), map(_aside_of, logs)))
    if with_aside:
        starts = (np.cumsum(counts) - counts)[with_aside].tolist()
        aside = [(start - logs[k]._dropped, logs[k]._aside_rows) for k, start in zip(with_aside, starts)]
    return _frame(bufs, sizes, codes, list(map(_job_of, logs)), aside, tz)


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
    data = bytes(packed._buf)
    return _frame([data], np.array([len(data)], dtype=np.int64), np.asarray(codes, dtype=_codes_dtype(len(names))),
                  list(names), [(0, packed._aside_rows)] if packed._aside_rows else [], tz)


def _decode_columns(bufs: list, sizes):
    """The packed columns of the rows in ``bufs`` (buffers of whole rows, ``sizes`` their lengths in
    bytes), each one contiguous array in row order: ints as int64, times and seconds as float64,
    category codes as stored (uint8/uint16).

    The buffers are joined and decoded about :data:`_CHUNK_BYTES` at a time.  A buffer that grew since
    ``sizes`` was taken (a row recorded by another thread meanwhile) is cut to its size: the rows
    decoded are the ones counted.
    """
    import numpy as np

    dtype = _packed_dtype()
    n = int(sizes.sum()) // ROW_BYTES
    targets = []
    for k, i in enumerate(_PACKED):
        kind = COLUMNS[i].kind
        targets.append(np.int64 if kind == "int" else np.float64 if kind in ("time", "seconds") else dtype[k])
    columns = [np.empty(n, t) for t in targets]
    if not n:
        return columns
    ends = np.cumsum(sizes)
    total = int(ends[-1])
    stops = np.unique(np.searchsorted(ends, np.arange(_CHUNK_BYTES, total, _CHUNK_BYTES), side="left") + 1)
    stops = [s for s in stops.tolist() if s < len(bufs)] + [len(bufs)]
    start, at = 0, 0
    for stop in stops:
        if stop <= start:
            continue
        expected = int(ends[stop - 1]) - (int(ends[start - 1]) if start else 0)
        data = b"".join(bufs[start:stop])
        if len(data) != expected:  # a buffer changed meanwhile: its rows as counted (never a crash)
            data = b"".join([bytes(b[:s]) for b, s in zip(bufs[start:stop], sizes[start:stop].tolist())])
            data = data[:expected].ljust(expected, b"\0")
        rows = np.frombuffer(data, dtype=dtype)
        m = len(rows)
        for k, column in enumerate(columns):
            np.copyto(column[at:at + m], rows[f"f{k}"], casting="unsafe")
        at += m
        start = stop
    return columns


#: :func:`_stable_argsort` sorts this many keys or more by radix (see :func:`_radix_argsort`) when
#: they differ in at most :data:`_RADIX_BITS` bits (positive float times: a span of weeks).
_RADIX_MIN = 1 << 16
_RADIX_BITS = 48


def _stable_argsort(keys):
    """``np.argsort(keys, kind="stable")``, faster for the usual keys (positive floats such as POSIX
    times, non-negative ints).  Many keys that differ in at most :data:`_RADIX_BITS` bits: by radix,
    16 bits at a time (:func:`_radix_argsort`).  Otherwise each key and its position packed into one
    int64 and sorted by value (an unstable sort of distinct values, much faster than numpy's stable
    timsort here).  When key and position need more than 63 bits, the key's low bits are dropped and
    the result is checked: it is the stable order if the keys come out non-decreasing, else numpy's
    stable sort is used.
    """
    import numpy as np

    n = len(keys)
    if n < 2:
        return np.arange(n)
    if keys.dtype == np.float64:
        if not keys.min() > 0:  # zero, negatives or NaN: the bits of a float do not sort like it
            return np.argsort(keys, kind="stable")
        ints = keys.view(np.int64)  # positive finite floats (and +inf) sort like their bits
    elif keys.dtype == np.int64 and keys.min() >= 0:
        ints = keys
    else:
        return np.argsort(keys, kind="stable")
    low, high = int(ints.min()), int(ints.max())
    if n >= _RADIX_MIN and (high - low).bit_length() <= _RADIX_BITS:
        return _radix_argsort(np.subtract(ints, low), (high - low).bit_length())
    position_bits = (n - 1).bit_length()
    shift = max(0, (high - low).bit_length() + position_bits - 63)
    packed = np.subtract(ints, low)
    if shift:
        packed >>= shift
    packed <<= position_bits
    packed |= np.arange(n, dtype=np.int64)
    packed.sort()
    packed &= (1 << position_bits) - 1
    if shift:  # keys that differ only in the dropped bits may have come out in position order
        ordered = keys[packed]
        if not (ordered[1:] >= ordered[:-1]).all():
            return np.argsort(keys, kind="stable")
    return packed


def _radix_argsort(keys, bits: int):
    """The stable argsort of non-negative int64 ``keys`` below ``2**bits``: least significant 16 bits
    first, each pass numpy's stable argsort of 16-bit digits (a radix sort: linear, about 7 ms a
    million keys here, where sorting a million int64 takes 55-70 ms).  Each digit is read through a
    view of the keys' bytes, and only the digit is gathered into the order so far."""
    import numpy as np

    words = keys.view(np.uint16).reshape(-1, 4)
    little = sys.byteorder == "little"
    order = None
    for shift in range(0, max(bits, 1), 16):  # (all keys equal: one pass, the identity)
        digit = words[:, shift // 16 if little else 3 - shift // 16]
        if order is None:
            order = np.argsort(digit, kind="stable")
        else:
            order = order[np.argsort(digit[order], kind="stable")]
    return order


def _order(scheduled, run_id):
    """The frame's row order as an index array, or ``None`` if the rows are in it already: by
    scheduled time, then run id, then as recorded (attempts of one run are recorded in attempt order,
    so attempt needs no key).  The sorts are stable; run id is needed only where scheduled times tie."""
    if len(scheduled) < 2 or (scheduled[1:] > scheduled[:-1]).all():
        return None
    order = _stable_argsort(scheduled)
    ordered = scheduled[order]
    if (ordered[1:] == ordered[:-1]).any():
        # ties: by run id first, then (stable) by scheduled time - what np.lexsort((run_id, scheduled)) does
        by_run = _stable_argsort(run_id)
        order = by_run[_stable_argsort(scheduled[by_run])]
    return order


class _Permuter:
    """Columns put in ``order`` (``column.take(order)``), each into the memory the previous column of
    its dtype just gave up: one new array per dtype, not one per column.  At a million rows a fresh
    array is tens of thousands of pages the kernel has to map and zero on first touch, which cost
    more than the take itself.  Every column passed in must be the caller's own: it is reused."""

    __slots__ = ("order", "spare")

    def __init__(self, order):
        self.order = order
        self.spare: dict = {}

    def __call__(self, column):
        import numpy as np

        out = self.spare.pop(column.dtype, None)
        if out is None:
            out = np.empty_like(column)
        np.take(column, self.order, out=out, mode="clip")  # the indexes are valid: "clip" skips a buffered copy
        self.spare[column.dtype] = column
        return out


def _sorted_positions(rows, order, n: int):
    """Where the rows ``rows`` (row numbers in decoding order) land in the frame ordered by ``order``."""
    import numpy as np

    if order is None:
        return rows
    marked = np.zeros(n, dtype=np.bool_)
    marked[rows] = True
    landed = np.flatnonzero(marked[order])  # frame positions of the marked rows
    source = order[landed]  # their row numbers
    by_row = np.argsort(source)
    return landed[by_row][np.searchsorted(source[by_row], rows)]


_CATEGORY_DTYPES: dict = {}


def _category_dtype(categories: tuple):
    """A cached ``CategoricalDtype`` for fixed categories (built once, not validated on every frame)."""
    dtype = _CATEGORY_DTYPES.get(categories)
    if dtype is None:
        import pandas as pd

        dtype = _CATEGORY_DTYPES[categories] = pd.CategoricalDtype(list(categories))
    return dtype


def _frame(bufs: list, sizes, job_codes, job_names: list[str], aside: list[tuple], tz: tzinfo):
    """The history frame of the rows in ``bufs`` (packed buffers, ``sizes`` their lengths in bytes):
    ``job_codes`` the row's job (an index into ``job_names``) in row order, ``aside`` the values kept
    aside as (row offset, entries) per log (see :func:`_aside_entries`).  Every array built here is
    the frame's own: converted in place, handed to pandas without a copy."""
    import numpy as np
    import pandas as pd

    columns = _decode_columns(bufs, sizes)
    n = len(columns[0])
    entries = _aside_entries(aside, n) if aside else None
    lateness = _lateness(columns, entries)
    order = _order(columns[_PACKED.index(SCHEDULED)], columns[_PACKED.index(0)])
    if order is not None:
        permute = _Permuter(order)
        columns = list(map(permute, columns))
        lateness = permute(lateness)
        job_codes = permute(job_codes)
    out: dict[str, Any] = {"job": pd.Categorical.from_codes(job_codes, dtype=_job_dtype(job_names))}
    for i, c in enumerate(COLUMNS):
        if c.code:
            values = columns[_PACKED.index(i)]  # ours: converted in place
        if c.kind == "int":
            out[c.field] = values
        elif c.kind == "time":
            out[_FRAME_NAME.get(c.field, c.field)] = _ts_column(values, tz)
            if c.field == "finished":
                out["duration"] = _duration(out["finished_at"], out["started_at"])
        elif c.kind == "seconds":
            out[c.field] = pd.array(_ns(values).view("m8[ns]"))
        elif c.kind == "lateness":
            out[c.field] = pd.array(_ns(lateness).view("m8[ns]"))
        elif c.kind == "category":
            if c.categories:
                codes = values.astype(_codes_dtype(len(c.categories)))
                out[c.field] = pd.Categorical.from_codes(codes, dtype=_category_dtype(c.categories))
            else:  # interned: taken after decoding, so every code decoded is in it (code 0 is None)
                cats = _CATEGORIES[i].values[1:]
                codes = values.astype(_codes_dtype(len(cats)))
                codes -= 1
                out[c.field] = pd.Categorical.from_codes(codes, categories=cats)
    objects = {name: np.empty(n, dtype=object) for name in HISTORY_COLUMNS if name not in out}  # all None
    if entries is not None:
        _place_aside(objects, entries, order, n)
    for name, col in objects.items():
        out[name] = pd.Series(col, dtype="object", copy=False)
    return pd.DataFrame(out, columns=HISTORY_COLUMNS, copy=False)  # the columns are ours: no copy


def _lateness(columns: list, entries: "tuple | None"):
    """The lateness column of decoded packed columns (decoding order; see :func:`unpack_lateness`),
    ``entries`` the values kept aside (see :func:`_aside_entries`)."""
    kept = None
    if entries is not None:
        rows, positions, values = entries
        mine = positions == LATENESS
        if mine.any():
            kept = (rows[mine], values[mine])
    return unpack_lateness(columns[_PACKED.index(REASON)], columns[_PACKED.index(STARTED)],
                           columns[_PACKED.index(SCHEDULED)], kept)


def unpack_lateness(reason, started, scheduled, kept: "tuple | None" = None):
    """The lateness (float64 seconds) of packed rows, from their reason bytes, started and scheduled
    times (numpy arrays; see :data:`COLUMNS`), and mend the first two **in place**: the reason codes
    lose the lateness bits, a row that did not start gets NaN as its started time.  ``kept``: (row
    indexes, values) of the lateness values kept aside."""
    import numpy as np

    how = np.bitwise_and(reason, ~_REASON_MASK & 0xFF)
    lateness = np.subtract(started, scheduled)
    if how.any():
        np.bitwise_and(reason, _REASON_MASK, out=reason)
        np.copyto(lateness, 0.0, where=how == _LATE_ZERO)
        no_start = how == _LATE_IN_STARTED
        np.copyto(lateness, started, where=no_start)
        np.copyto(started, np.nan, where=no_start)
        if kept is not None:
            lateness[kept[0]] = np.asarray(kept[1], dtype=np.float64)
    return lateness


def pack_lateness(reason, started, lateness, scheduled):
    """The inverse of :func:`unpack_lateness` for rows given as columns (numpy arrays: the reason
    codes as uint8, float64 times; NaN started: no start): (the reason bytes with the lateness bits,
    what the started time's place holds, the indexes of the rows whose lateness is kept aside)."""
    import numpy as np

    no_start = np.isnan(started)
    how = np.full(len(started), _LATE_ASIDE, dtype=np.uint8)
    how[lateness == started - scheduled] = _LATE_DERIVED
    how[(how == _LATE_ASIDE) & (lateness == 0.0)] = _LATE_ZERO
    how[no_start] = _LATE_IN_STARTED
    return reason | how, np.where(no_start, lateness, started), np.flatnonzero(how == _LATE_ASIDE)


def _aside_entries(aside: list[tuple], n: int):
    """The values kept aside as arrays (row in decoding order, row position, value), from (row
    offset, entries) per log, an entry (row number, position, value); rows beyond ``n`` (recorded
    after the buffers were taken) are left out."""
    import numpy as np

    keys, found, offsets, lengths = array("q"), [], [], []
    for offset, entries in aside:
        for lane_keys, lane_values in entries.lanes_now():  # as they are now (another thread may record)
            keys.extend(lane_keys)
            found.extend(lane_values)
            offsets.append(offset)
            lengths.append(len(lane_keys))
    packed = np.array(keys, dtype=np.int64)
    rows = packed >> _POSITION_BITS
    rows += np.repeat(np.array(offsets, dtype=np.int64), np.array(lengths, dtype=np.int64))
    positions = packed & _POSITION_MASK
    values = _objects(found)
    keep = (rows >= 0) & (rows < n)  # rows counted when the buffers were taken (not ones recorded meanwhile)
    if not keep.all():
        rows, positions, values = rows[keep], positions[keep], values[keep]
    return rows, positions, values


def _place_aside(objects: dict, entries: tuple, order, n: int) -> None:
    """Put the values kept aside (errors, workers) into the object columns, at their rows' places in
    the frame (``entries``: see :func:`_aside_entries`; the lateness values went in :func:`_lateness`)."""
    rows, positions, values = entries
    at = _sorted_positions(rows, order, n)
    for i, c in enumerate(COLUMNS):
        if c.code or c.kind == "lateness":
            continue
        mine = positions == i
        if not mine.any():
            continue
        where, these = at[mine], values[mine]
        if c.kind == "error":
            objects["error"][where] = _objects([f"{v.type}: {v.message}" for v in these])
            objects["error_type"][where] = _objects(list(map(_error_type, these)))
            objects["traceback"][where] = _objects(list(map(_error_traceback, these)))
        else:
            objects[c.field][where] = these


_error_type, _error_traceback = operator.attrgetter("type"), operator.attrgetter("traceback")


def _objects(values: list):
    """A 1-d object array of ``values`` as they are (tuples stay elements, not rows)."""
    import numpy as np

    return np.fromiter(values, dtype=object, count=len(values))


_DTYPES: dict = {}


def _packed_dtype(named: bool = False):
    """The numpy dtype of a packed row: fields ``f0``, ``f1``, ... in packed order, or (``named``)
    the :data:`COLUMNS` field names."""
    dtype = _DTYPES.get(named)
    if dtype is None:
        dtype = _DTYPES[named] = _numpy_dtype(named)
    return dtype


def _numpy_dtype(named: bool):
    import numpy as np

    # packed (no alignment), little-endian: the same bytes as _ROW
    return np.dtype([(COLUMNS[i].field if named else f"f{k}",
                      "<" + COLUMNS[i].code.replace("q", "i8").replace("d", "f8").replace("I", "u4")
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
