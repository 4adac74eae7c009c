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
