"""Logical time, data intervals, catch-up and backfill, on FakeClock."""
import asyncio
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

import nbsched
from nbsched import current_run
from nbsched.errors import PolicyError
from nbsched.store import MemoryStore

from conftest import START

pytestmark = pytest.mark.filterwarnings("error")
BERLIN = ZoneInfo("Europe/Berlin")


def day(d, hh=2):
    return datetime(2026, 1, d, hh, 0, tzinfo=timezone.utc)


def contexts(log):
    def job():
        ctx = current_run()
        log.append((ctx.scheduled_at, ctx.data_interval, ctx.reason))
        return {"day": ctx.scheduled_at.day}
    return job


# ---------------------------------------------------------------------------------- data intervals
async def test_interval_runs_cover_back_to_back_intervals(sched, clock):
    log = []
    sched.add(contexts(log), "every 10s", name="tick")
    await clock.advance(30)
    got = [(s - START).total_seconds() for s, _, _ in log]
    intervals = [((a - START).total_seconds(), (b - START).total_seconds()) for _, (a, b), _ in log]
    assert got == [10, 20, 30] and intervals == [(0, 10), (10, 20), (20, 30)]


async def test_cron_intervals_follow_the_wall_clock_across_dst(clock):
    await clock.set(datetime(2026, 3, 27, 12, 0, tzinfo=BERLIN))
    sched = nbsched.Scheduler(clock=clock, tz="Europe/Berlin")
    log = []
    sched.add(contexts(log), "daily at 02:00", name="daily")
    await clock.set(datetime(2026, 3, 31, 12, 0, tzinfo=BERLIN))
    shown = [(a.astimezone(BERLIN).strftime("%d %H:%M %Z"), b.astimezone(BERLIN).strftime("%d %H:%M %Z"))
             for _, (a, b), _ in log]
    # 29 March: 02:00 does not exist, the run is at 03:00 CEST (the DST policy); the intervals chain up
    assert shown == [("27 02:00 CET", "28 02:00 CET"), ("28 02:00 CET", "29 03:00 CEST"),
                     ("29 03:00 CEST", "30 02:00 CEST"), ("30 02:00 CEST", "31 02:00 CEST")]
    sched.shutdown()


async def test_downstream_runs_inherit_the_logical_time_and_interval(sched, clock):
    log = []
    sched.add(lambda: None, "every 10s", name="root")
    sched.add(contexts(log), "after root", name="child")
    await clock.advance(20)
    assert [((a - START).total_seconds(), (b - START).total_seconds(), r) for _, (a, b), r in log] == \
        [(0, 10, "upstream"), (10, 20, "upstream")]


# --------------------------------------------------------------------------------------- catch-up
async def test_catchup_runs_every_past_fire_time_oldest_first_then_the_schedule(clock):
    await clock.set(day(5, 12))
    sched = nbsched.Scheduler(clock=clock, tz="UTC")
    log = []
    sched.add(contexts(log), "daily at 02:00", name="daily", start="2026-01-01", catchup=True)
    await clock.advance(0)
    assert [(s.day, r) for s, _, r in log] == [(1, "catchup"), (2, "catchup"), (3, "catchup"), (4, "catchup"),
                                               (5, "catchup")]
    assert [(a.day, b.day) for _, (a, b), _ in log][:2] == [(31, 1), (1, 2)]
    await clock.set(day(6, 3))
    assert [(s.day, r) for s, _, r in log][-1] == (6, "schedule")
    assert list(sched.results("daily")["day"]) == [1, 2, 3, 4, 5, 6]
    assert sched.get("daily").runs == 6
    sched.shutdown()


async def test_catchup_respects_max_active_runs_and_live_fires_wait_their_turn(clock):
    await clock.set(day(8, 12))
    sched = nbsched.Scheduler(clock=clock, tz="UTC")
    running, peak, order = [0], [0], []

    async def slow():
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        order.append((current_run().scheduled_at.hour, current_run().reason))
        await clock.sleep(3600 * 10)
        running[0] -= 1

    sched.add(slow, "every 12h", name="slow", start=day(6, 0), catchup=True, max_active_runs=2)
    await clock.advance(3600 * 39)
    assert peak[0] == 2
    # six fire times from the start to now (6th 00/12h, 7th 00/12h, 8th 00/12h; 12h is now), two at a
    # time, 10 h each, until 9th 18h; the live fires of 9th 00h and 12h wait their turn, in order
    assert order == [(0, "catchup"), (12, "catchup"), (0, "catchup"), (12, "catchup"), (0, "catchup"),
                     (12, "catchup"), (0, "schedule"), (12, "schedule")]
    sched.shutdown()
    for _ in range(5):
        await asyncio.sleep(0)


async def test_catchup_needs_a_start_and_a_past_start_alone_only_anchors(sched, clock):
    with pytest.raises(PolicyError, match=r"catchup=True needs a start \(e.g. start='2026-11-01'\)"):
        sched.add(lambda: None, "daily at 02:00", name="x", catchup=True)
    log = []
    sched.add(contexts(log), "every 1h", name="anchored", start=START - timedelta(minutes=90))
    await clock.advance(3600)
    assert [(s - START).total_seconds() for s, _, _ in log] == [1800]  # on the start's half-hour, no catch-up
    assert sched.jobs[0].name == "anchored" and len(sched.jobs) == 1


async def test_restore_with_catchup_runs_what_was_missed_while_down(clock):
    store = MemoryStore()
    first = nbsched.Scheduler(clock=clock, tz="UTC", store=store)
    log = []
    first.add(contexts(log), "every 10s", name="tick", catchup=True, start=START)
    await clock.advance(20)
    first.shutdown()
    clock.jump(30)  # down: fire times at 30, 40 and 50 pass
    second = nbsched.Scheduler(clock=clock, tz="UTC", store=store)
    second.restore()
    await clock.advance(0)
    rows = second.history("tick")
    assert [(t - START).total_seconds() for t in rows["scheduled_at"]] == [0, 10, 20, 30, 40, 50]
    assert list(rows["reason"]) == ["catchup", "schedule", "schedule", "catchup", "catchup", "catchup"]
    assert list(rows["outcome"]) == ["success"] * 6
    second.shutdown()


# ---------------------------------------------------------------------------------------- backfill
async def test_backfill_runs_each_fire_time_with_its_downstream_chain(clock):
    await clock.set(day(20, 12))
    sched = nbsched.Scheduler(clock=clock, tz="UTC")
    log = []
    sched.add(contexts(log), "daily at 02:00", name="daily")
    sched.add(lambda: current_run().upstream["daily"]["day"] * 10, "after daily", name="report")
    handle = sched.backfill("daily", "2026-01-01", "2026-01-05", max_active=2)
    frame = await handle
    assert list(frame["reason"]) == ["backfill"] * 5
    assert [t.day for t in frame["scheduled_at"]] == [1, 2, 3, 4, 5]
    assert [(a.day, b.day) for _, (a, b), _ in log] == [(31, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    report = sched.history("report")
    assert [t.day for t in report["scheduled_at"]] == [1, 2, 3, 4, 5] and set(report["reason"]) == {"upstream"}
    assert list(sched.results("report")["value"]) == [10, 20, 30, 40, 50]
    assert [t.day for t in sched.results("daily")["scheduled_at"]] == [1, 2, 3, 4, 5]
    assert (handle.total, handle.done, handle.failed, handle.finished) == (5, 5, 0, True)
    await clock.set(day(21, 3))  # the schedule carried on
    assert list(sched.history("daily")["reason"])[-1] == "schedule"
    sched.shutdown()


async def slow_daily_backfill(clock, now, run_seconds: float, end: str):
    """A scheduler at ``now`` with job 'daily' (02:00, each run taking ``run_seconds`` on the fake
    clock) and a backfill of it from 2026-01-01 to ``end``: (scheduler, backfill handle)."""
    await clock.set(now)
    sched = nbsched.Scheduler(clock=clock, tz="UTC")

    async def slow():
        await clock.sleep(run_seconds)

    sched.add(slow, "daily at 02:00", name="daily")
    return sched, sched.backfill("daily", "2026-01-01", end)


async def test_backfill_progress_is_told_after_every_run_and_once_finished(clock):
    sched, handle = await slow_daily_backfill(clock, day(20, 12), 60, "2026-01-03")
    progress = []
    handle.on_progress(lambda b: progress.append((b.done, b.finished)))
    await clock.advance(200)
    await handle
    # one call a run, and a last one once finished (so a progress bar can draw its end state)
    assert progress == [(1, False), (2, False), (3, False), (3, True)]
    sched.shutdown()


async def test_backfill_alongside_the_schedule_and_cancel(clock):
    sched, handle = await slow_daily_backfill(clock, day(20, 1), 3600, "2026-01-10")
    await clock.advance(3600 * 1.5)  # two backfill runs done, one going; the 02:00 fire ran beside it
    assert handle.done == 1 and handle.running == 1
    assert handle.cancel() == 1
    frame = await handle
    assert list(frame["outcome"]) == ["success", "cancelled"]
    assert [t.day for t in frame["scheduled_at"]] == [1, 2]
    live = sched.history("daily")
    assert list(live[live["reason"] == "schedule"]["outcome"]) == []  # still running
    await clock.advance(3600)
    live = sched.history("daily")
    assert list(live[live["reason"] == "schedule"]["outcome"]) == ["success"]
    assert sched.backfills() == []
    sched.shutdown()


async def test_bad_backfills_are_refused(sched, clock):
    sched.add(lambda: None, "every 1s", name="fast")
    sched.add(lambda: None, "after fast", name="child")
    with pytest.raises(PolicyError, match=r"backfill end '2026-01-01' is before its start '2026-01-02': swap them"):
        sched.backfill("fast", "2026-01-02", "2026-01-01")
    with pytest.raises(PolicyError, match=r"would run more than 100,000 fire times of 'every 1s': pick a shorter range"):
        sched.backfill("fast", "2025-12-01", "2025-12-31")
    with pytest.raises(PolicyError, match=r"job 'child' runs after other jobs: backfill its root instead \('fast'\)"):
        sched.backfill("child", "2026-01-01", "2026-01-02")
    with pytest.raises(PolicyError, match=r"invalid start 'yesterday': give a date or date-time"):
        sched.backfill("fast", "yesterday", "2026-01-02")
    assert sched.history("fast").empty
