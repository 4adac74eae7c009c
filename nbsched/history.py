"""Run history and results: append-only logs, turned into pandas frames on demand.

Every run attempt (and every missed or skipped fire time) is one row.  Rows are small tuples appended
to a bounded deque per job - amortised O(1), no DataFrame work on the hot path.  Frames are built
lazily and cached until the next row arrives.  pandas is imported only when a frame is asked for.

Retention: each job keeps at most ``max_rows`` history rows (default 10,000) and ``results_max_rows``
result rows (default 10,000), optionally also dropping rows older than ``max_age``.
"""
from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Iterable, NamedTuple

__all__ = ["Outcome", "RunRecord", "RunLog", "ResultLog", "HISTORY_COLUMNS", "ErrorInfo", "HistoryRow", "REASONS"]


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

    def __str__(self) -> str:
        return self.value

    # Hash like the plain string, so rows (which store "success", not Outcome.SUCCESS, see
    # scheduler.py) and members look each other up in dicts and sets.
    __hash__ = str.__hash__


OUTCOME_CATEGORIES = [o.value for o in Outcome]

HISTORY_COLUMNS = [
    "job", "run_id", "scheduled_at", "started_at", "finished_at", "duration", "lateness",
    "outcome", "attempt", "reason", "worker", "error", "error_type", "traceback",
]


class ErrorInfo(NamedTuple):
    type: str
    message: str
    traceback: str


class HistoryRow(NamedTuple):
    """The layout of one history row (POSIX seconds; ``None`` where a time does not apply).

    Logs store each row as a *plain* tuple in this layout, built in one place
    (:meth:`RunLog.record`): the garbage collector stops tracking an exact tuple of numbers, strings
    and ``None``, but never a NamedTuple instance, and millions of tracked rows would make every full
    collection pause the loop.  Read a stored row by name with ``HistoryRow._make(row)``.
    """

    run_id: int
    scheduled: float
    started: float | None
    finished: float | None
    lateness: float
    outcome: str  # an Outcome value ("success", ...): equal to (and hashing like) the Outcome member
    attempt: int
    error: ErrorInfo | None
    reason: str  # why the run happened: one of REASONS
    worker: str | None  # the address of the cluster worker that ran it; None for runs on this machine


#: Field positions in a stored row (the engine reads these on the hot path).
SCHEDULED, OUTCOME, ATTEMPT, REASON = 1, 5, 6, 8

#: Why a run happened: its trigger fired, ``run_now``, an upstream job finished (workflows), a
#: backfill, or catching up on fire times missed.  A categorical column in ``history()``.
REASONS = ("schedule", "manual", "upstream", "backfill", "catchup")
SCHEDULE, MANUAL, UPSTREAM, BACKFILL, CATCHUP = REASONS


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
        run_id, sched, started, finished, lateness, outcome, attempt, err, reason, worker = row
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


class RunLog:
    """A job's history rows (bounded), with a cached frame."""

    __slots__ = ("job", "_rows", "_max_rows", "max_age", "_frame", "_results", "_results_retention")

    def __init__(self, job: str, max_rows: int | None = 10_000, max_age: float | None = None,
                 results: "ResultLog | None" = None, results_rows: int | None = 10_000,
                 results_age: float | None = None):
        self.job = job
        # the job's results log lives with its history; created when first needed
        self._results = results
        self._results_retention = (results_rows, results_age)
        # created here, not on the first run: allocating long-lived containers while thousands of
        # jobs fire at once would trigger full garbage collections in the middle of the burst
        self._rows: deque | None = deque(maxlen=max_rows)
        self._max_rows = max_rows
        self.max_age = max_age
        self._frame = None

    @property
    def results(self) -> "ResultLog":
        results = self._results
        if results is None:
            results = self._results = ResultLog(*self._results_retention)
        return results

    def set_results_retention(self, max_rows: int | None, max_age: float | None) -> None:
        self._results_retention = (max_rows, max_age)
        if self._results is not None:
            self._results.set_retention(max_rows, max_age)

    @property
    def rows(self) -> deque:
        rows = self._rows
        if rows is None:
            rows = self._rows = deque(maxlen=self._max_rows)
        return rows

    def append(self, row: tuple) -> None:
        rows = self._rows
        if rows is None:
            rows = self._rows = deque(maxlen=self._max_rows)
        rows.append(row)
        self._frame = None
        if self.max_age is not None:
            horizon = row[1] - self.max_age
            while rows and rows[0][1] < horizon:
                rows.popleft()

    def record(self, run_id: int, scheduled: float, started: float | None, finished: float | None,
               lateness: float, outcome: str, attempt: int, error: ErrorInfo | None, reason: str,
               worker: str | None = None) -> tuple:
        """Append one row (the only place rows are built); returns the stored tuple."""
        row = (run_id, scheduled, started, finished, lateness, outcome, attempt, error, reason, worker)
        rows = self._rows  # append() inlined: this runs on every fire
        if rows is None:
            rows = self._rows = deque(maxlen=self._max_rows)
        rows.append(row)
        self._frame = None
        if self.max_age is not None:
            horizon = scheduled - self.max_age
            while rows and rows[0][1] < horizon:
                rows.popleft()
        return row

    def prepend(self, rows: list[tuple]) -> None:
        """Put older rows (from a store) before the ones recorded in this session, within retention."""
        current = self.rows
        self._rows = deque(rows + list(current), maxlen=current.maxlen)
        if self.max_age is not None and self._rows:
            horizon = self._rows[-1][1] - self.max_age
            while self._rows and self._rows[0][1] < horizon:
                self._rows.popleft()
        self._frame = None

    def set_retention(self, max_rows: int | None, max_age: float | None) -> None:
        if self._max_rows != max_rows:
            self._max_rows = max_rows
            if self._rows is not None:
                self._rows = deque(self._rows, maxlen=max_rows)
        self.max_age = max_age
        self._frame = None

    def frame(self, tz: tzinfo):
        if self._frame is None:
            self._frame = history_frame([(self.job, self.rows)], tz)
        return self._frame


def _ts_column(values: list, tz: tzinfo):
    import pandas as pd

    col = pd.to_datetime(pd.array(values, dtype="Float64"), unit="s", utc=True)
    return col.tz_convert(tz)


def history_frame(logs: Iterable[tuple[str, Iterable[tuple]]], tz: tzinfo):
    """One DataFrame from several jobs' rows, ordered by scheduled time."""
    import pandas as pd

    names: list[str] = []
    run_id, sched, started, finished, lateness, outcome, attempt, error, etype, tb, reason, worker = (
        [] for _ in range(12))
    for name, rows in logs:
        for r in rows:
            names.append(name)
            run_id.append(r[0]); sched.append(r[1]); started.append(r[2]); finished.append(r[3])
            lateness.append(r[4]); outcome.append(str(r[5])); attempt.append(r[6]); reason.append(r[8])
            worker.append(r[9])
            err = r[7]
            if err is None:
                error.append(None); etype.append(None); tb.append(None)
            else:
                error.append(f"{err.type}: {err.message}"); etype.append(err.type); tb.append(err.traceback)
    started_c = _ts_column(started, tz)
    finished_c = _ts_column(finished, tz)
    frame = pd.DataFrame({
        "job": pd.Series(names, dtype="string"),
        "run_id": pd.Series(run_id, dtype="int64"),
        "scheduled_at": _ts_column(sched, tz),
        "started_at": started_c,
        "finished_at": finished_c,
        "duration": finished_c - started_c,
        "lateness": pd.to_timedelta(pd.Series(lateness, dtype="float64"), unit="s"),
        "outcome": pd.Categorical(outcome, categories=OUTCOME_CATEGORIES),
        "attempt": pd.Series(attempt, dtype="int64"),
        "reason": pd.Categorical(reason, categories=REASONS),
        "worker": pd.Series(worker, dtype="object"),
        "error": pd.Series(error, dtype="object"),
        "error_type": pd.Series(etype, dtype="object"),
        "traceback": pd.Series(tb, dtype="object"),
    })
    if len(frame) > 1:
        frame = frame.sort_values(["scheduled_at", "run_id", "attempt"], kind="stable").reset_index(drop=True)
    return frame


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
