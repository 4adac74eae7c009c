"""Events: past tense, typed, filtered by kind; a failing listener never breaks the scheduler."""
import logging

import dataclasses

import pytest

import nbsched
from nbsched import events as ev


async def test_lifecycle_events_in_order(sched, clock):
    seen = []
    sched.subscribe(lambda e: seen.append(type(e).__name__))
    sched.add(lambda: None, "every 10s", name="a")
    await clock.advance(10)
    sched.add(lambda: None, "every 10s", name="a")  # replaced
    sched.pause("a")
    sched.resume("a")
    sched.remove("a")
    sched.pause()
    sched.resume()
    assert seen == ["SchedulerStarted", "JobAdded", "JobSubmitted", "JobExecuted", "JobModified", "JobPaused",
                    "JobResumed", "JobRemoved", "SchedulerPaused", "SchedulerResumed"]


async def test_failure_timeout_missed_events(sched, clock):
    got = []
    sched.subscribe(got.append, kinds=(ev.JobFailed, ev.JobTimedOut, ev.JobMissed, ev.JobFinished))

    def bad():
        raise ValueError("x")

    async def slow():
        await clock.sleep(10)

    sched.add(bad, "every 10s", name="bad", max_runs=1)
    sched.add(slow, "in 5s", name="slow", timeout=1)
    sched.add(lambda: None, "every 10s", name="late", misfire_grace=1)
    await clock.advance(10)
    clock.jump(25)
    await clock.advance(0)
    kinds = [type(e).__name__ for e in got]
    assert "JobFailed" in kinds and "JobTimedOut" in kinds and "JobMissed" in kinds and "JobFinished" in kinds
    failed = next(e for e in got if isinstance(e, ev.JobFailed))
    assert failed.record.error == "ValueError: x" and "Traceback" in failed.record.traceback
    assert failed.timestamp.tzinfo is not None


async def test_base_class_kind_selects_subclasses(sched, clock):
    got = []
    sched.subscribe(got.append, kinds=ev.JobEvent)
    sched.add(lambda: None, "every 10s", name="a")
    await clock.advance(10)
    assert all(isinstance(e, ev.JobEvent) for e in got) and len(got) == 3


async def test_failing_listener_is_logged_and_harmless(sched, clock, caplog):
    def broken(event):
        raise RuntimeError("listener bug")

    ok = []
    sched.subscribe(broken)
    sched.subscribe(ok.append, kinds=ev.JobExecuted)
    sched.add(lambda: None, "every 10s", name="a")
    with caplog.at_level(logging.ERROR, logger="nbsched"):
        await clock.advance(20)
    assert len(ok) == 2
    assert "listener" in caplog.text and "listener bug" in caplog.text
    assert list(sched.history("a")["outcome"]) == ["success", "success"]


async def test_unsubscribe_and_async_listener(sched, clock):
    got = []

    async def alisten(e):
        got.append(e)

    sub = sched.subscribe(alisten, kinds=ev.JobExecuted)
    sched.add(lambda: None, "every 10s", name="a")
    await clock.advance(10)
    sub.unsubscribe()
    await clock.advance(10)
    assert len(got) == 1


def test_bad_kind_is_refused():
    s = nbsched.Scheduler()
    with pytest.raises(TypeError, match="unknown event kind"):
        s.subscribe(print, kinds=str)


def test_events_are_frozen():
    from datetime import datetime, timezone

    e = ev.JobAdded(datetime.now(timezone.utc), "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.job = "y"
