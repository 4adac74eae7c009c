"""Events: past tense, typed, filtered by kind; a failing listener never breaks the scheduler."""
import asyncio
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


# ------------------------------------------------------------------------ listeners that misbehave
@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
async def test_a_listener_raising_base_exceptions_is_logged_and_harmless(sched, clock, caplog, exc_type):
    def rude(event):
        raise exc_type("from a listener")

    async def rude_async(event):
        raise exc_type("from an async listener")

    sched.subscribe(rude, kinds=ev.JobExecuted)
    sched.subscribe(rude_async, kinds=ev.JobExecuted)
    sched.add(lambda: None, "every 10s", name="a")
    with caplog.at_level(logging.ERROR, logger="nbsched"):
        await clock.advance(20)
        await clock.advance(0)  # the async listener's tasks run
    assert list(sched.history("a")["outcome"]) == ["success", "success"]
    name = exc_type.__name__
    assert caplog.text.count(f"{name}: from a listener\n") == 2
    assert caplog.text.count(f"{name}: from an async listener\n") == 2
    assert sched.running


def test_an_async_listener_calling_sys_exit_does_not_end_asyncio_run():
    from nbsched.testing import FakeClock

    async def main():
        clock = FakeClock()
        s = nbsched.Scheduler(clock=clock, tz="UTC")

        async def leave(event):
            raise SystemExit(7)

        async def stop(event):
            raise KeyboardInterrupt

        s.subscribe(leave, kinds=ev.JobExecuted)
        s.subscribe(stop, kinds=ev.JobExecuted)
        s.add(lambda: 1, "every 1s", name="a")
        await clock.advance(3)
        await clock.advance(0)
        s.shutdown()
        return len(s.history("a"))

    assert asyncio.run(main()) == 3


async def test_a_hung_async_listener_is_not_work_in_progress(sched, clock):
    forever = asyncio.Event()
    started = []

    async def hang(event):
        started.append(event)
        await forever.wait()

    sched.subscribe(hang, kinds=ev.JobExecuted)
    sched.add(lambda: None, "every 10s", name="a")
    await clock.advance(10)
    await clock.advance(0)
    assert len(started) == 1
    idle = asyncio.ensure_future(sched.wait_idle())
    await clock.advance(0)
    assert idle.done()  # the hung listener is not a run in progress
    assert sched.shutdown(wait=True) is None  # nothing to wait for
    await clock.advance(0)
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("nbsched:listener")] == []


async def test_async_listener_calls_time_out(sched, clock, caplog):
    from nbsched.events import LISTENER_TIMEOUT

    async def hang(event):
        await asyncio.Event().wait()

    sub = sched.subscribe(hang, kinds=ev.JobExecuted)
    sched.add(lambda: None, "every 1h", name="a")
    await clock.advance(3600)
    await clock.advance(0)
    assert (sub.pending, sub.timed_out) == (1, 0)
    with caplog.at_level(logging.ERROR, logger="nbsched"):
        await clock.advance(LISTENER_TIMEOUT)
        await clock.advance(0)
    assert (sub.pending, sub.timed_out) == (0, 1)
    assert f"took longer than {LISTENER_TIMEOUT:g}s: cancelled" in caplog.text


async def test_async_listener_calls_are_bounded_and_drops_counted(sched, clock, caplog):
    from nbsched.events import LISTENER_MAX_PENDING

    async def hang(event):
        await asyncio.Event().wait()

    sub = sched.subscribe(hang, kinds=ev.JobExecuted)
    for i in range(LISTENER_MAX_PENDING + 50):
        sched.add(lambda: None, "every 1h", name=f"j{i}")
    with caplog.at_level(logging.WARNING, logger="nbsched"):
        await clock.advance(3600)
        await clock.advance(0)
    assert (sub.pending, sub.dropped) == (LISTENER_MAX_PENDING, 50)
    assert len([t for t in asyncio.all_tasks() if t.get_name().startswith("nbsched:listener")]) == LISTENER_MAX_PENDING
    assert f"still has {LISTENER_MAX_PENDING} calls running: 1 events dropped" in caplog.text
    sched.shutdown()
    await clock.advance(0)
    assert sub.pending == 0


async def test_a_subscription_for_some_jobs_sees_only_theirs_and_follows_its_container(sched, clock):
    got = []
    watched = {"a"}
    sched.subscribe(lambda e: got.append((type(e).__name__, e.job)), kinds=(ev.JobEvent, ev.SchedulerEvent),
                    jobs=watched)
    sched.add(lambda: None, "every 10s", name="a")
    sched.add(lambda: None, "every 10s", name="b")
    await clock.advance(10)
    assert got == [("JobAdded", "a"), ("JobSubmitted", "a"), ("JobExecuted", "a")]
    # nobody listens to b: its events are not even built
    assert sched.events.wants(ev.JobExecuted, "b") is False
    assert sched.events.wants(ev.JobExecuted, "a") is True
    watched.add("b")  # the container is consulted at each event
    got.clear()
    await clock.advance(10)
    assert got == [("JobSubmitted", "a"), ("JobExecuted", "a"), ("JobSubmitted", "b"), ("JobExecuted", "b")]
    # a subscriber for all jobs makes every job's events wanted again
    with sched.subscribe(lambda e: None, kinds=ev.JobExecuted):
        assert sched.events.wants(ev.JobExecuted, "c") is True
    assert sched.events.wants(ev.JobExecuted, "c") is False


def test_subscribing_with_jobs_that_are_not_names_is_refused():
    with pytest.raises(TypeError, match=r"subscribe\(jobs=...\) takes job names .* got 42"):
        nbsched.Scheduler().subscribe(print, jobs=42)
