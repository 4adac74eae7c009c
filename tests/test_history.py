"""History and results frames: shapes, dtypes, retention."""
from datetime import timedelta

import pandas as pd
import pytest

import nbsched
from nbsched.history import HISTORY_COLUMNS, OUTCOME_CATEGORIES


async def test_history_columns_and_dtypes(sched, clock):
    sched.add(lambda: 1, "every 10s", name="a")
    await clock.advance(20)
    h = sched.history()
    assert list(h.columns) == HISTORY_COLUMNS
    assert str(h["scheduled_at"].dt.tz) == "UTC" and str(h["started_at"].dt.tz) == "UTC"
    assert isinstance(h["outcome"].dtype, pd.CategoricalDtype)
    assert list(h["outcome"].cat.categories) == OUTCOME_CATEGORIES
    assert h["duration"].dtype.kind == "m" and h["lateness"].dtype.kind == "m"


async def test_empty_history_has_the_columns(sched):
    h = sched.history()
    assert list(h.columns) == HISTORY_COLUMNS and len(h) == 0


async def test_history_in_scheduler_zone(clock):
    s = nbsched.Scheduler(clock=clock, tz="Europe/Berlin")
    try:
        s.add(lambda: None, "every 10s", name="z")
        await clock.advance(10)
        assert str(s.history()["scheduled_at"].dt.tz) == "Europe/Berlin"
    finally:
        s.shutdown()


async def test_results_shapes(sched, clock):
    values = iter([
        pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
        {"a": 3, "b": "z"},
        pd.Series({"a": 4, "b": "w"}),
        None,
        pd.DataFrame({"a": [5]}),
    ])
    sched.add(lambda: next(values), "every 10s", name="mixed")
    await clock.advance(50)
    r = sched.results("mixed")
    assert list(r.columns[:2]) == ["run_id", "scheduled_at"]
    assert list(r["a"]) == [1, 2, 3, 4, 5]
    assert r["scheduled_at"].dt.tz is not None
    assert r["scheduled_at"].nunique() == 4  # the None run added nothing
    assert len(sched.history("mixed")) == 5


async def test_scalar_results_become_value_column(sched, clock):
    n = iter(range(100))
    sched.add(lambda: next(n), "every 1s", name="s")
    await clock.advance(3)
    assert list(sched.results("s")["value"]) == [0, 1, 2]


async def test_frames_are_cached_until_next_run(sched, clock):
    sched.add(lambda: {"v": 1}, "every 10s", name="c")
    await clock.advance(10)
    h1, r1 = sched.history("c"), sched.results("c")
    assert sched.history("c") is h1 and sched.results("c") is r1
    assert sched.history() is sched.history()
    await clock.advance(10)
    assert sched.history("c") is not h1 and len(sched.results("c")) == 2


async def test_history_retention_rows(sched, clock):
    sched.add(lambda: {"v": 1}, "every 1s", name="r", history_rows=5, results_rows=3)
    await clock.advance(20)
    h = sched.history("r")
    assert len(h) == 5 and h["run_id"].is_monotonic_increasing
    assert len(sched.results("r")) == 3
    assert sched.get("r").runs == 20


async def test_history_retention_age(sched, clock):
    sched.add(lambda: {"v": 1}, "every 1s", name="age", history_age="10s", results_age="5s")
    await clock.advance(60)
    h = sched.history("age")
    span = h["scheduled_at"].max() - h["scheduled_at"].min()
    assert span <= timedelta(seconds=10) and len(h) <= 11
    assert len(sched.results("age")) <= 6


async def test_default_retention_bounds_memory(sched, clock):
    sched.add(lambda: None, "every 1ms", name="fast")
    await clock.advance(15)
    assert len(sched.history("fast")) == 10_000


async def test_unknown_job_frames(sched):
    with pytest.raises(nbsched.JobLookupError, match="no job named 'nope'"):
        sched.results("nope")
    with pytest.raises(nbsched.JobLookupError):
        sched.history("nope")


async def test_history_survives_removal_until_forgotten(sched, clock):
    sched.add(lambda: None, "every 1s", name="gone")
    await clock.advance(2)
    sched.remove("gone")
    assert len(sched.history("gone")) == 2
    sched.forget("gone")
    with pytest.raises(nbsched.JobLookupError):
        sched.history("gone")


# ------------------------------------------------------------------ the packed log (RunLog)
from datetime import timezone  # noqa: E402
import gc  # noqa: E402

from nbsched.history import COLUMNS, ROW_BYTES, ErrorInfo, HistoryRow, RunLog, history_frame, history_frame_of  # noqa: E402

E1 = ErrorInfo("ValueError", "boom 1", "tb 1")
E2 = ErrorInfo("KeyError", "'k'", "tb 2")
ROWS = [
    (1, 100.0, 100.25, 100.5, 0.25, "success", 1, None, "schedule", None),
    (2, 110.0, 110.0, 110.125, 0.0, "error", 1, E1, "schedule", "tcp://10.0.0.7:39211"),
    (2, 110.0, 111.0, 111.5, 0.5, "error", 2, E2, "schedule", None),
    (3, 120.0, None, None, 3.0, "missed", 0, None, "schedule", None),
    (4, 130.0, None, None, 0.001, "skipped", 0, None, "schedule", None),
    (5, 140.0, 140.5, 140.75, 0.5, "timeout", 1, ErrorInfo("TimeoutError", "late", ""), "schedule", None),
]


def test_row_layout_follows_the_column_table():
    assert HistoryRow._fields == tuple(c.field for c in COLUMNS)
    assert ROW_BYTES == 36


def test_runlog_gives_back_the_rows_it_recorded():
    log = RunLog("j", max_rows=None)
    for row in ROWS:
        log.record(*row)
    assert log.rows == ROWS and len(log) == len(ROWS)
    assert all(type(r) is tuple for r in log.rows)


def test_runlog_retention_by_rows_is_exact_and_drops_errors_with_their_rows():
    log = RunLog("j", max_rows=3)
    for row in ROWS:
        log.append(row)
    assert log.rows == ROWS[-3:]
    assert [e for _, _, e in log._aside_rows] == [ROWS[-1][7]]  # E1, E2 went with their rows
    log.set_retention(2, None)
    assert log.rows == ROWS[-2:]
    f = log.frame(timezone.utc)
    assert list(f["run_id"]) == [4, 5] and list(f["error_type"]) == [None, "TimeoutError"]


def test_runlog_retention_by_age():
    log = RunLog("j", max_rows=None, max_age=15.0)
    for row in ROWS:
        log.record(*row)
    assert log.rows == ROWS[-2:]  # scheduled 130 and 140: within 15 s of the newest (140)
    assert log.retention_cut() == 130.0


def test_prepend_puts_stored_rows_first_within_retention():
    log = RunLog("j", max_rows=4)
    for row in ROWS[3:]:
        log.record(*row)
    log.prepend(ROWS[:3])
    assert log.rows == ROWS[-4:]
    assert log.frame(timezone.utc)["error"].tolist() == ["KeyError: 'k'", None, None, "TimeoutError: late"]


def test_frame_order_and_columns_match_rows_given_as_tuples():
    a, b = RunLog("a", max_rows=None), RunLog("b", max_rows=None)
    # same scheduled times in both jobs: ties are ordered by run id, attempts of one run stay in order
    for row in [(7, 10.0, 10.0, 10.5, 0.0, "success", 1, None, "schedule"),
                (9, 20.0, 20.0, 20.1, 0.0, "error", 1, E1, "manual"), (9, 20.0, 21.0, 21.1, 1.0, "success", 2, None, "manual")]:
        a.record(*row)
    for row in [(6, 10.0, 10.0, 10.2, 0.0, "success", 1, None, "schedule"),
                (8, 20.0, None, None, 0.0, "missed", 0, None, "schedule")]:
        b.record(*row)
    f = history_frame_of([a, b], timezone.utc)
    assert list(zip(f["job"], f["run_id"], f["attempt"])) == [("b", 6, 1), ("a", 7, 1), ("b", 8, 0), ("a", 9, 1),
                                                               ("a", 9, 2)]
    assert f["error"].tolist() == [None, None, None, "ValueError: boom 1", None]
    assert f["reason"].tolist() == ["schedule"] * 3 + ["manual"] * 2
    assert f["traceback"].tolist() == [None, None, None, "tb 1", None]
    assert f["started_at"].isna().tolist() == [False, False, True, False, False]
    assert f["duration"].dt.total_seconds().round(6).tolist()[:2] == [0.2, 0.5]
    g = history_frame([("a", a.rows), ("b", b.rows)], timezone.utc)
    pd.testing.assert_frame_equal(f, g)


def test_unknown_outcome_is_refused_with_the_choices():
    log = RunLog("j")
    with pytest.raises(ValueError, match="'exploded' is not one of the history categories"):
        log.record(1, 1.0, 1.0, 1.0, 0.0, "exploded", 1, None, "schedule")
    assert len(log) == 0


def test_recording_rows_leaves_nothing_for_the_garbage_collector():
    log = RunLog("j", max_rows=1000)
    log.record(0, 0.0, 0.0, 0.0, 0.0, "success", 1, None, "schedule")
    gc.collect()
    before = len(gc.get_objects())
    for i in range(1, 20_000):
        log.record(i, float(i), i + 0.5, i + 0.75, 0.5, "success", 1, None, "upstream" if i % 2 else "schedule")
    log.record(20_000, 20_000.0, None, None, 1.0, "missed", 0, None, "schedule")
    assert len(gc.get_objects()) == before
    assert len(log) == 1000 and log.rows[0][0] == 19_001


async def test_retries_beyond_what_a_row_can_count_are_refused(sched):
    with pytest.raises(nbsched.PolicyError, match=r"invalid retries 70000: at most 65,534 \(e.g. retries=3\)"):
        sched.add(lambda: None, "every 10s", name="r", retries=70_000)
    assert "r" not in sched
    sched.add(lambda: None, "every 10s", name="ok", retries=65_534)
    assert sched.get("ok").policy.retries == 65_534


def test_last_row_is_the_newest_row_with_its_error():
    log = RunLog("j", max_rows=2)
    assert log.last_row() is None
    for row in ROWS[:3]:
        log.record(*row)
    assert log.last_row() == ROWS[2] and log.last_row() == log.rows[-1]


def test_values_kept_aside_follow_their_rows_through_retention():
    log = RunLog("e", max_rows=4)
    for i in range(10):
        err = ErrorInfo("ValueError", str(i), "") if i % 3 == 0 else None
        log.record(i, float(i), i + 0.5, i + 0.75, 0.5, "success" if err is None else "error", 1, err, "schedule",
                   "tcp://w:8" if i == 8 else None)
    assert [r[0] for r in log.rows] == [6, 7, 8, 9]  # retention: exact, errors dropped with their rows
    assert [(r[7] and r[7].message, r[9]) for r in log.rows] == [("6", None), (None, None), (None, "tcp://w:8"),
                                                                 ("9", None)]
    error_at, worker_at = HistoryRow._fields.index("error"), HistoryRow._fields.index("worker")
    assert [(n, p) for n, p, _ in log._aside_rows] == [(6, error_at), (8, worker_at), (9, error_at)]
    assert log.last_row() == log.rows[-1] and log.last_row()[7].message == "9"
    assert log.frame(timezone.utc)["error"].tolist() == ["ValueError: 6", None, None, "ValueError: 9"]


def test_a_value_kept_aside_half_recorded_is_left_out_of_the_frame():
    log = RunLog("e", max_rows=None)
    for i in range(6):
        err = ErrorInfo("ValueError", str(i), "tb") if i % 2 else None
        log.record(i, float(i), i + 0.5, i + 0.75, 0.5, "success" if err is None else "error", 1, err, "schedule",
                   "tcp://w:8" if i == 4 else None)
    log.record(6, 6.0, 6.5, 6.75, 0.25, "success", 1, None, "schedule")  # its lateness is kept aside
    whole = log.frame(timezone.utc)
    assert whole["error"].tolist() == [None, "ValueError: 1", None, "ValueError: 3", None, "ValueError: 5", None]
    assert whole["traceback"].tolist() == [None, "tb", None, "tb", None, "tb", None]
    assert whole["worker"].tolist() == [None, None, None, None, "tcp://w:8", None, None]
    assert whole["lateness"].dt.total_seconds().tolist() == [0.5] * 6 + [0.25]
    # another thread builds the frame between a value's key and the value itself (a row being
    # recorded on the loop): the entry without its value is left out, the others keep their rows
    lanes = log._aside_rows
    lanes.objects.keys.append(5 << 4 | 9)
    lanes.floats.keys.append(5 << 4 | 4)
    assert [len(keys) for keys, _ in lanes.lanes_now()] == [4, 1]
    again = history_frame_of([log], timezone.utc)
    assert again["error"].tolist() == whole["error"].tolist() and again["worker"].tolist() == whole["worker"].tolist()
    assert again["lateness"].tolist() == whole["lateness"].tolist()


# ------------------------------------------------------------------ building the frame (history.py internals)
import numpy as np  # noqa: E402

from nbsched import history as _history  # noqa: E402

_EDGE_SECONDS = [0.0, -0.0, 0.5e-9, 1.5e-9, 2.5e-9, -0.5e-9, -1.5e-9, 0.9999999995, 0.99999999949, 0.9999999999,
                 -0.9999999999, 1.0, -1.0, -1.5, 1e-12, 5e-324, -5e-324, 1.7e9, 1.7e9 + 0.5, 1.7e9 + 1e-6,
                 2 ** 31 - 1e-7, 4e9 + 0.123456789, -2e9 - 0.987654321, 123.0000000005, 9.2e9, -9.2e9, float("nan"),
                 1700000000.123456789, float(np.nextafter(1.0, 0)), float(np.nextafter(1.0, 2))]


def _seconds_sample():
    rng = np.random.default_rng(7)
    x = np.concatenate([_EDGE_SECONDS, 1.7e9 + rng.random(50_000) * 1e6, rng.random(50_000) * 2 - 1,
                        (rng.random(20_000) - 0.5) * 8e9,
                        rng.integers(-10 ** 9, 10 ** 9, 20_000) / 1e9 + rng.integers(-10 ** 9, 10 ** 9, 20_000)])
    x[rng.random(len(x)) < 0.01] = np.nan
    x[-3 * _history._BLOCK // 2:-_history._BLOCK] = np.nan  # a block with NaN only, blocks without any
    return x


def test_ns_rounds_bit_for_bit_as_pandas_does():
    x = _seconds_sample()
    assert len(x) > 3 * _history._BLOCK  # several blocks
    ns = _history._ns(x.copy())
    assert ns.dtype == np.int64
    assert np.array_equal(ns, pd.to_datetime(x, unit="s").asi8)
    assert np.array_equal(ns, pd.to_timedelta(x, unit="s").asi8)  # lateness goes the same way
    y = x.copy()
    assert np.shares_memory(_history._ns(y), y)  # in place: no column-sized temporary


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/New_York"])
def test_time_columns_are_the_arrays_pandas_builds(zone):
    from datetime import timezone as tz_
    from zoneinfo import ZoneInfo

    x = _seconds_sample()[:5000]
    x = x[np.isnan(x) | (np.abs(x) < 9e9)]
    for tz in (ZoneInfo(zone), tz_.utc) if zone == "UTC" else (ZoneInfo(zone),):
        ref = pd.to_datetime(x, unit="s", utc=True).tz_convert(tz)
        got = _history._ts_column(x.copy(), tz)
        assert got.dtype == ref.dtype and np.array_equal(got.asi8, ref.asi8)
        pd.testing.assert_series_equal(pd.Series(got), pd.Series(ref.array))
        later = pd.Series(_history._ts_column(x + 0.25, tz))
        pd.testing.assert_series_equal(pd.Series(_history._duration(later.array, got)), later - pd.Series(got))


def _reference_argsort(keys):
    return np.argsort(keys, kind="stable")


@pytest.mark.parametrize("radix", [False, True], ids=["packed", "radix"])
@pytest.mark.parametrize("case", ["ties", "distinct", "negative", "nan", "ints", "wide", "wide-collide", "days",
                                  "equal"])
def test_stable_argsort_is_numpys_stable_argsort(case, radix, monkeypatch):
    rng = np.random.default_rng(3)
    n = 5000
    passes = []
    if radix:  # the radix sort is for many keys: here for these too
        monkeypatch.setattr(_history, "_RADIX_MIN", 0)
        real = _history._radix_argsort
        monkeypatch.setattr(_history, "_radix_argsort", lambda k, bits: passes.append(bits) or real(k, bits))
    keys = {
        "ties": 1.7e9 + rng.integers(0, 50, n).astype(float),
        "distinct": 1.7e9 + rng.permutation(n) / 7,
        "negative": rng.integers(-20, 20, n) / 4,
        "nan": np.where(rng.random(n) < 0.1, np.nan, 1.7e9 + rng.integers(0, 9, n)),
        "ints": rng.integers(0, 40, n).astype(np.int64),
        # a span that leaves no room for the position bits: the low key bits are dropped, then checked
        "wide": np.concatenate([[1e-300, 1e300], 1.7e9 + rng.integers(0, 30, n - 2)]),
        "wide-collide": np.concatenate([[1e-300, 1e300], 1.7e9 + rng.permutation(n - 2) * 2.4e-7]),
        # three weeks of times to the microsecond, some tied: keys of ~43 bits (three 16-bit passes)
        "days": np.round(1.7e9 + rng.random(n) * 21 * 86400, 6)[rng.integers(0, n, n)],
        "equal": np.full(n, 1.7e9),
    }[case]
    assert np.array_equal(_history._stable_argsort(keys), _reference_argsort(keys))
    radix_cases = {"ties": 28, "distinct": 32, "ints": 6, "days": 43, "equal": 0}  # the keys' bits
    assert passes == ([radix_cases[case]] if radix and case in radix_cases else [])


def _random_logs(jobs, rows_each, seed, max_rows=None):
    """Logs with many tied scheduled times, retried runs (attempts), errors and workers kept aside."""
    rng = np.random.default_rng(seed)
    logs, run_id = [], 0
    for j in range(jobs):
        log = RunLog(f"j{j}", max_rows=max_rows)
        t = float(rng.integers(0, 5))
        for _ in range(rows_each):
            t += float(rng.integers(0, 3))  # each job's rows in time order, ties across jobs and within one
            run_id += int(rng.integers(1, 4))
            for attempt in range(1, int(rng.integers(1, 3)) + 1):
                err = ErrorInfo("E", f"m{run_id}.{attempt}", "tb") if rng.random() < 0.2 else None
                worker = f"w{run_id}" if rng.random() < 0.1 else None
                outcome = "error" if err else "success"
                log.record(run_id, 1.7e9 + t, 1.7e9 + t + 0.1, 1.7e9 + t + 0.2, 0.1, outcome, attempt, err, "schedule",
                           worker)
        logs.append(log)
    return logs


def _reference_order(logs):
    """(job, run_id, attempt, error, worker) in the documented order, by plain Python sorting."""
    rows = [(r[1], r[0], k, log.job, r) for log in logs for k, r in enumerate(log.rows)]
    rows.sort(key=lambda x: (x[0], x[1]))  # stable: rows of one (scheduled, run id) stay as recorded
    return [(job, r[0], r[6], None if r[7] is None else f"{r[7].type}: {r[7].message}", r[9])
            for _, _, _, job, r in rows]


@pytest.mark.parametrize("chunk", [1 << 20, 200])
def test_frame_order_contract_with_ties_across_chunks(monkeypatch, chunk):
    monkeypatch.setattr(_history, "_CHUNK_BYTES", chunk)  # 200 bytes: many chunks, logs split over none
    logs = _random_logs(30, 40, seed=chunk, max_rows=60)  # retention dropped rows (and errors) from the front
    f = history_frame_of(logs, timezone.utc)
    assert list(zip(f["job"], f["run_id"], f["attempt"], f["error"], f["worker"])) == _reference_order(logs)
    assert f["error_type"].notna().tolist() == f["error"].notna().tolist()
    g = history_frame([(log.job, log.rows) for log in logs], timezone.utc)
    pd.testing.assert_frame_equal(f, g)


def test_decoding_takes_the_rows_counted_when_a_buffer_grew_meanwhile():
    log = RunLog("j", max_rows=None)
    for row in ROWS:
        log.record(*row)
    counted = np.array([ROW_BYTES * 3], dtype=np.int64)
    columns = _history._decode_columns([log._buf], counted)
    assert columns[0].tolist() == [1, 2, 2]  # run ids of the first three rows, the later ones left out
