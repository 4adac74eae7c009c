"""The engine, on a FakeClock: no test here sleeps."""
import asyncio
import threading
from datetime import timedelta

import pandas as pd
import pytest

import nbsched
from nbsched import events
from nbsched import JobLookupError, JobState, NoEventLoopError, Outcome, PolicyError, TriggerError

from conftest import START

T0 = START.timestamp()


def times(frame, col="scheduled_at"):
    return [round(t.timestamp() - T0, 3) for t in frame[col]]


async def test_interval_runs_in_order_from_one_interval_after_add(sched, clock):
    seen = []
    sched.add(lambda: seen.append(clock.time() - T0), "every 10s", name="tick")
    await clock.advance(35)
    assert seen == [10, 20, 30]
    hist = sched.history("tick")
    assert list(hist["outcome"]) == ["success"] * 3
    assert times(hist) == [10, 20, 30]
    assert (hist["lateness"] == pd.Timedelta(0)).all()


async def test_advance_includes_now_plus_window(sched, clock):
    seen = []
    sched.add(lambda: seen.append(1), "every 60s", name="m")
    await clock.advance(60)
    assert seen == [1]


async def test_now_true_runs_at_once_too(sched, clock):
    seen = []
    sched.add(lambda: seen.append(clock.time() - T0), "every 10s", name="n", now=True)
    await clock.advance(10)
    assert seen == [0, 10]


async def test_long_run_does_not_shift_the_schedule(sched, clock):
    starts = []

    async def slow():
        starts.append(clock.time() - T0)
        await clock.sleep(3)

    sched.add(slow, "every 10s")
    await clock.advance(40)
    assert starts == [10, 20, 30, 40]


async def test_decorator_and_trigger_object(sched, clock):
    seen = []

    @sched.job("every 5s", name="deco")
    def f():
        seen.append(1)

    sched.add(lambda: seen.append(2), nbsched.Interval(7), name="obj")
    await clock.advance(10)
    assert sorted(seen) == [1, 1, 2]
    assert callable(f)


async def test_cron_and_one_shot_jobs(sched, clock):
    seen = []
    sched.add(lambda: seen.append(("c", clock.time() - T0)), "cron */5 * * * *", name="c")
    sched.add(lambda: seen.append(("at", clock.time() - T0)), "at 2026-01-05 09:07", name="at", tz="UTC")
    sched.add(lambda: seen.append(("in", clock.time() - T0)), "in 2m", name="in")
    await clock.advance(600)
    assert seen == [("in", 120), ("c", 300), ("at", 420), ("c", 600)]
    assert sched.get("at").state is JobState.FINISHED
    assert sched.get("in").next_fire_time is None


async def test_shorthand_in_scheduler_zone(clock):
    s = nbsched.Scheduler(clock=clock, tz="Europe/Berlin")
    try:
        job = s.add(lambda: None, "daily at 10:30", name="d")
        assert job.next_fire_time.isoformat() == "2026-01-05T10:30:00+01:00"
        assert job.preview(2)[1].isoformat() == "2026-01-06T10:30:00+01:00"
    finally:
        s.shutdown()


async def test_trigger_in_the_past_is_refused(sched):
    with pytest.raises(TriggerError, match="never fires after now"):
        sched.add(lambda: None, "at 2025-01-01 09:00", name="old")
    assert "old" not in sched


async def test_replacing_by_name_keeps_history_and_results(sched, clock):
    sched.add(lambda: {"v": 1}, "every 10s", name="job")
    await clock.advance(20)
    job2 = sched.add(lambda: {"v": 2}, "every 10s", name="job")
    await clock.advance(10)
    assert len(sched.jobs) == 1 and sched.get("job") is job2
    assert list(sched.results("job")["v"]) == [1, 1, 2]
    assert len(sched.history("job")) == 3
    assert job2.runs == 1


async def test_pause_resume_continues_from_now_without_missed_rows(sched, clock):
    seen = []
    sched.add(lambda: seen.append(clock.time() - T0), "every 10s", name="p")
    await clock.advance(10)
    sched.pause("p")
    assert sched.get("p").state is JobState.PAUSED
    await clock.advance(60)
    sched.resume("p")
    await clock.advance(15)
    assert seen == [10, 80]
    assert "missed" not in set(sched.history("p")["outcome"])


async def test_pause_whole_scheduler(sched, clock):
    seen = []
    sched.add(lambda: seen.append(1), "every 10s", name="a")
    sched.pause()
    await clock.advance(60)
    assert seen == [] and sched.paused
    sched.resume()
    await clock.advance(10)
    assert seen == [1]


async def test_run_now_returns_value_and_reraises(sched, clock):
    sched.add(lambda: 42, "every 1h", name="answer")

    def boom():
        raise RuntimeError("nope")

    sched.add(boom, "every 1h", name="boom")
    assert await sched.run_now("answer") == 42
    with pytest.raises(RuntimeError, match="nope"):
        await sched.run_now("boom")
    hist = sched.history()
    assert set(hist["outcome"]) == {"success", "error"}
    err = hist[hist["outcome"] == "error"].iloc[0]
    assert err["error"] == "RuntimeError: nope" and "Traceback" in err["traceback"]


async def test_remove_and_lookup_errors_list_names(sched, clock):
    sched.add(lambda: None, "every 1s", name="alpha")
    sched.add(lambda: None, "every 1s", name="beta")
    sched.remove("alpha")
    with pytest.raises(JobLookupError, match=r"no job named 'alpha': the jobs are 'beta'"):
        sched.get("alpha")
    with pytest.raises(JobLookupError):
        sched.pause("gamma")
    await clock.advance(2)
    assert [j.name for j in sched.jobs] == ["beta"]


async def test_max_instances_skips_and_records(sched, clock):
    async def slow():
        await clock.sleep(25)

    events = []
    sched.subscribe(events.append, kinds=nbsched.events.JobMaxInstancesReached)
    sched.add(slow, "every 10s", name="slow")
    await clock.advance(40)
    out = list(sched.history("slow")["outcome"])
    assert out == ["success", "skipped", "skipped"]  # 10 s runs until 35 s: 20 s and 30 s are skipped
    assert len(events) == 2
    sched.remove("slow")
    await clock.advance(30)


async def test_max_instances_two_allows_overlap(sched, clock):
    async def slow():
        await clock.sleep(15)

    sched.add(slow, "every 10s", name="slow", max_instances=2)
    await clock.advance(50)
    assert "skipped" not in set(sched.history("slow")["outcome"])
    sched.remove("slow")
    await clock.advance(30)


async def test_blocked_loop_coalesce_latest_records_missed(sched, clock):
    seen = []
    sched.add(lambda: seen.append(clock.time() - T0), "every 10s", name="c")
    await clock.advance(10)
    clock.jump(45)  # the loop was blocked by a cell for 45 s
    await clock.advance(0)
    hist = sched.history("c")
    # fire times 20, 30, 40, 50 were overdue at 55: the latest runs (5 s late), the rest are missed rows
    assert list(hist["outcome"]) == ["success", "missed", "missed", "missed", "success"]
    missed = hist[hist["outcome"] == "missed"]
    assert [td.total_seconds() for td in missed["lateness"]] == [35, 25, 15]
    assert missed["started_at"].isna().all()
    assert hist["lateness"].iloc[-1] == pd.Timedelta(seconds=5)
    assert seen == [10, 55]
    assert sched.get("c").missed == 3


async def test_coalesce_earliest_and_all(clock):
    s = nbsched.Scheduler(clock=clock, tz="UTC")
    try:
        runs = {"earliest": [], "all": []}
        s.add(lambda: runs["earliest"].append(1), "every 10s", name="earliest", coalesce="earliest")
        s.add(lambda: runs["all"].append(1), "every 10s", name="all", coalesce="all")
        await clock.advance(10)
        clock.jump(30)
        await clock.advance(0)
        e = s.history("earliest")
        assert list(e["outcome"]) == ["success", "success", "missed", "missed"]
        assert times(e[e["outcome"] == "success"]) == [10, 20]
        a = s.history("all")
        assert list(a["outcome"]) == ["success"] * 4
        assert times(a) == [10, 20, 30, 40]
        assert [round(x.total_seconds()) for x in a["lateness"]] == [0, 20, 10, 0]
    finally:
        s.shutdown()


async def test_misfire_grace_turns_late_runs_into_missed(sched, clock):
    sched.add(lambda: None, "every 10s", name="g", misfire_grace="2s")
    await clock.advance(10)
    clock.jump(15)  # fire at 20 is 5 s late when the loop comes back
    await clock.advance(0)
    hist = sched.history("g")
    assert list(hist["outcome"]) == ["success", "missed"]
    await clock.advance(5)
    assert list(sched.history("g")["outcome"]) == ["success", "missed", "success"]


async def test_jitter_stays_within_bound(clock):
    s = nbsched.Scheduler(clock=clock, tz="UTC", random_seed=7)
    try:
        starts = []
        s.add(lambda: starts.append(clock.time() - T0), "every 10s", name="j", jitter="2s")
        await clock.advance(100)
        offsets = [t - 10 * round(t / 10 - 0.1) for t in starts]
        assert len(starts) >= 9
        assert all(0 <= o <= 2 for o in offsets) and len(set(offsets)) > 3
        assert (s.history("j")["scheduled_at"].dt.second % 10 == 0).all()
    finally:
        s.shutdown()


async def test_max_runs_and_until(sched, clock):
    sched.add(lambda: None, "every 10s", name="three", max_runs=3)
    sched.add(lambda: None, "every 10s", name="until", until=START + timedelta(seconds=25))
    await clock.advance(100)
    assert len(sched.history("three")) == 3 and sched.get("three").state is JobState.FINISHED
    assert len(sched.history("until")) == 2 and sched.get("until").state is JobState.FINISHED


async def test_retries_with_exponential_backoff(sched, clock):
    attempts = []

    def flaky():
        attempts.append(clock.time() - T0)
        if len(attempts) < 4:
            raise ConnectionError(f"try {len(attempts)}")
        return "ok"

    retried = []
    sched.subscribe(retried.append, kinds=nbsched.events.JobRetried)
    sched.add(flaky, "every 1h", name="flaky", retries=3, retry_delay="2s", backoff=2, max_retry_delay="5s")
    await clock.advance(3600 + 20)
    assert attempts == [3600, 3602, 3606, 3611]  # delays 2, 4, min(8, 5)
    hist = sched.history("flaky")
    assert list(hist["attempt"]) == [1, 2, 3, 4]
    assert list(hist["outcome"]) == ["error", "error", "error", "success"]
    assert hist["run_id"].nunique() == 1
    assert [e.attempt for e in retried] == [2, 3, 4]
    assert list(sched.results("flaky")["value"]) == ["ok"]


async def test_retries_exhausted_fail(sched, clock):
    def bad():
        raise ValueError("always")

    sched.add(bad, "every 1h", name="bad", retries=1, retry_delay=1)
    await clock.advance(3602)
    hist = sched.history("bad")
    assert list(hist["outcome"]) == ["error", "error"]
    assert sched.get("bad").state is JobState.FAILING


async def test_async_timeout_cancels(sched, clock):
    cancelled = []

    async def hang():
        try:
            await clock.sleep(100)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    sched.add(hang, "every 1h", name="hang", timeout="5s")
    await clock.advance(3600 + 6)
    hist = sched.history("hang")
    assert list(hist["outcome"]) == ["timeout"]
    assert hist["duration"].iloc[0] == pd.Timedelta(seconds=5)
    assert cancelled == [True]


async def test_timeout_then_retry(sched, clock):
    calls = []

    async def sometimes_slow():
        calls.append(1)
        if len(calls) == 1:
            await clock.sleep(100)
        return len(calls)

    sched.add(sometimes_slow, "every 1h", name="s", timeout=5, retries=1, retry_delay=1)
    await clock.advance(3600 + 10)
    assert list(sched.history("s")["outcome"]) == ["timeout", "success"]


@pytest.mark.realtime
async def test_thread_executor_runs_off_loop_and_times_out():
    s = nbsched.Scheduler(tz="UTC")
    try:
        loop_thread = threading.get_ident()
        seen = []
        release = threading.Event()

        def work():
            seen.append(threading.get_ident())
            return {"thread": threading.get_ident() != loop_thread}

        def stuck():
            release.wait(5)

        s.add(work, "every 1h", name="work", executor="thread")
        s.add(stuck, "every 1h", name="stuck", executor="thread", timeout=0.2)
        assert await s.run_now("work") == {"thread": True}
        with pytest.raises(TimeoutError):
            await s.run_now("stuck")
        release.set()
        assert list(s.history("stuck")["outcome"]) == ["timeout"]
        assert seen and seen[0] != loop_thread
    finally:
        s.shutdown()


@pytest.mark.realtime
async def test_process_executor_runs_importable_functions():
    import os

    s = nbsched.Scheduler(tz="UTC")
    try:
        s.add(os.getpid, "every 1h", name="pid", executor="process")
        pid = await asyncio.wait_for(s.run_now("pid"), 60)
        assert isinstance(pid, int) and pid != os.getpid()
        with pytest.raises(PolicyError, match="importable module-level function"):
            s.add(lambda: 1, "every 1h", name="lam", executor="process")
        assert "lam" not in s
    finally:
        s.shutdown()


async def test_custom_executor_seam(sched, clock):
    class Recording:
        name = "recording"

        def __init__(self):
            self.calls = 0

        def check(self, func):
            pass

        def submit(self, func):
            self.calls += 1
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(func() * 10)
            return fut

        def shutdown(self, wait=False):
            pass

    ex = Recording()
    sched.add_executor("recording", ex)
    sched.add(lambda: 4, "every 10s", name="r", executor="recording")
    await clock.advance(20)
    assert ex.calls == 2 and list(sched.results("r")["value"]) == [40, 40]


async def test_bad_options_add_nothing(sched):
    for kwargs, fragment in [
        ({"coalesce": "sometimes"}, "choose one of 'latest', 'earliest', 'all'"),
        ({"max_instances": 0}, "max_instances 0"),
        ({"retries": -1}, "retries -1"),
        ({"timeout": "5 parsecs"}, "unknown unit"),
        ({"backoff": 0.5}, "backoff 0.5"),
        ({"executor": "gpu"}, "unknown executor 'gpu'"),
        ({"colour": "red"}, "unknown option 'colour'"),
        ({"max_runs": "many"}, "max_runs 'many'"),
    ]:
        with pytest.raises(PolicyError, match=fragment):
            sched.add(lambda: None, "every 5m", name="x", **kwargs)
    with pytest.raises(TriggerError):
        sched.add(lambda: None, "every 5 parsecs", name="x")
    assert sched.jobs == []


async def test_bad_spec_on_replacement_keeps_old_job(sched, clock):
    sched.add(lambda: None, "every 10s", name="keep")
    await clock.advance(10)
    with pytest.raises(TriggerError):
        sched.add(lambda: None, "cron 61 * * * *", name="keep")
    assert sched.get("keep").trigger.spec == "every 10s"
    assert len(sched.history("keep")) == 1


async def test_wait_idle_and_wait_next_run(sched, clock):
    async def work():
        await clock.sleep(1)
        return 1

    job = sched.add(work, "every 10s", name="w")
    waiter = asyncio.ensure_future(job.wait_next_run())
    await clock.advance(11)
    record = await waiter
    assert record.outcome is Outcome.SUCCESS and record.duration == timedelta(seconds=1)
    await sched.wait_idle()


async def test_shutdown_cancels_running_and_records(clock):
    s = nbsched.Scheduler(clock=clock, tz="UTC")

    async def forever():
        await clock.sleep(10_000)

    s.add(forever, "every 10s", name="f")
    await clock.advance(10)
    s.shutdown(wait=False)
    await clock.advance(0)
    assert list(s.history("f")["outcome"]) == ["cancelled"]
    with pytest.raises(nbsched.SchedulerShutdownError, match="create a new Scheduler"):
        s.add(lambda: None, "every 1s")


async def test_shutdown_wait_lets_runs_finish(clock):
    s = nbsched.Scheduler(clock=clock, tz="UTC")

    async def short():
        await clock.sleep(3)

    s.add(short, "every 10s", name="s")
    await clock.advance(10)
    waiting = s.shutdown(wait=True)
    await clock.advance(5)
    await waiting
    assert list(s.history("s")["outcome"]) == ["success"]


async def test_interrupt_pauses_job_and_records(sched, clock):
    async def runaway():
        await clock.sleep(10_000)

    sched.add(runaway, "every 10s", name="r")
    await clock.advance(10)
    assert sched.interrupt("r") == 1
    await clock.advance(0)
    job = sched.get("r")
    assert list(sched.history("r")["outcome"]) == ["interrupted"]
    assert job.state is JobState.PAUSED


async def test_keyboard_interrupt_in_plain_function_is_recorded_and_pauses(sched, clock):
    def runaway():
        raise KeyboardInterrupt

    sched.add(runaway, "every 10s", name="k")
    await clock.advance(30)
    assert list(sched.history("k")["outcome"]) == ["interrupted"]
    assert sched.get("k").paused




async def test_many_jobs_all_fire_and_yield(sched, clock, monkeypatch):
    import nbsched.engine._wheel as wheel

    monkeypatch.setattr(wheel, "SLICE_SECONDS", 0.0)
    count = [0]
    slices = []
    orig = sched._wheel._drain

    def counting_drain():
        slices.append(1)
        orig()

    monkeypatch.setattr(sched._wheel, "_drain", counting_drain)

    def bump():
        count[0] += 1

    for i in range(3000):
        sched.add(bump, "every 10s", name=f"j{i}")
    await clock.advance(10)
    assert count[0] == 3000
    assert len(slices) >= 3000 // 16  # worked through in slices, yielding between them
    assert len(sched.history()) == 3000


async def test_a_burst_starts_every_due_job_before_recording_any(sched, clock, monkeypatch):
    """Starting comes first: in a burst worked through in many slices, every due job starts before
    the first run is recorded; then all are recorded, in order, failures included."""
    import nbsched.engine._wheel as wheel

    monkeypatch.setattr(wheel, "SLICE_SECONDS", 0.0)  # a slice per 16 fires: the burst spans many loop turns
    seen = []
    sched.subscribe(lambda e: seen.append((type(e).__name__, e.job)),
                    kinds=(events.JobSubmitted, events.JobExecuted, events.JobFailed))
    recorded_when_started = []

    def make(i):
        def job():
            recorded_when_started.append(len(sched.get("j0").log))  # j0's rows so far (no flush)
            if i % 25 == 24:
                raise ValueError(f"boom {i}")
        return job

    for i in range(100):
        sched.add(make(i), "every 10s", name=f"j{i}")
    await clock.advance(10)
    assert recorded_when_started == [0] * 100  # j0's own run was not recorded before the 100th started
    names = [f"j{i}" for i in range(100)]
    assert seen == ([("JobSubmitted", n) for n in names]
                    + [("JobFailed" if i % 25 == 24 else "JobExecuted", n) for i, n in enumerate(names)])
    h = sched.history()
    assert len(h) == 100
    assert h.set_index("job").loc[["j24", "j49", "j74", "j99"], "error"].tolist() == [
        "ValueError: boom 24", "ValueError: boom 49", "ValueError: boom 74", "ValueError: boom 99"]
    assert (h["outcome"] == "success").sum() == 96


@pytest.mark.parametrize("jobs", [2, 100], ids=["recorded as each ends", "a burst"])
async def test_a_run_that_returns_nothing_is_counted_and_runs_its_downstream(sched, clock, jobs):
    """The common run (nothing returned, nobody waiting or listening) is recorded without
    _succeeded's call, one job at a time or after a burst: its counters, its row and its downstream
    run all come out as for any other success."""
    ran = []
    for i in range(jobs):
        sched.add(lambda: None, "every 10s", name=f"j{i}")
    sched.add(lambda: ran.append(dict(nbsched.current_run().upstream)), "after j0", name="down")
    await clock.advance(10)
    await asyncio.sleep(0)
    j0 = sched.get("j0")
    assert (j0.runs, j0.successes, j0.last_outcome, j0.last_started, j0.last_finished) == (
        1, 1, Outcome.SUCCESS, T0 + 10, T0 + 10)
    assert ran == [{"j0": None}]
    h = sched.history()
    assert h.groupby("job")["outcome"].apply(list).to_dict() == {
        **{f"j{i}": ["success"] for i in range(jobs)}, "down": ["success"]}


async def test_a_few_jobs_due_at_once_are_recorded_as_each_ends(sched, clock):
    """Keeping completions for after pays off in bursts only: a few due jobs are recorded as they end."""
    seen = []
    sched.add(lambda: None, "every 10s", name="first")
    sched.add(lambda: seen.append(len(sched.get("first").log)), "every 10s", name="second")
    await clock.advance(10)
    assert seen == [1]


async def test_a_job_of_a_burst_reading_history_sees_the_runs_that_started_before_it(sched, clock):
    got = {}

    def first():
        return 1

    def reader():
        h = sched.history()
        got["rows"] = h[h["job"] == "first"]["outcome"].tolist()
        got["value"] = sched.results("first")["value"].tolist()

    sched.add(first, "every 10s")
    sched.add(reader, "every 10s")
    await clock.advance(10)
    assert got == {"rows": ["success"], "value": [1]}


async def test_run_now_between_slices_of_a_burst_keeps_the_jobs_rows_in_order(sched, clock, monkeypatch):
    import nbsched.engine._wheel as wheel

    monkeypatch.setattr(wheel, "SLICE_SECONDS", 0.0)
    ran = []

    def j0():
        ran.append(len(ran))
        if len(ran) == 1:  # at the loop's next turn, while the burst's later slices are still starting
            asyncio.get_running_loop().call_soon(lambda: sched.run_now("j0"))

    sched.add(j0, "every 10s")
    for i in range(1, 100):  # a burst: more than a few dozen due at once, so completions are kept
        sched.add(lambda: None, "every 10s", name=f"j{i}")
    await clock.advance(10)
    await asyncio.sleep(0)
    assert ran == [0, 1]
    rows = sched.get("j0").log.rows  # as recorded (the frame sorts; the last row is what a card shows)
    # run_now came after the first slice (16 fires: run ids 1-16), while the other 84 were still to start
    assert [(r[0], r[8]) for r in rows] == [(1, "schedule"), (17, "manual")]


def test_no_loop_gives_clear_error():
    s = nbsched.Scheduler()
    with pytest.raises(NoEventLoopError, match=r"asyncio.run\(main\(\)\)"):
        s.add(lambda: None, "every 5m")
    assert s.jobs == []


@pytest.mark.realtime
def test_works_in_a_plain_script_under_asyncio_run():
    seen = []

    async def main():
        s = nbsched.Scheduler(tz="UTC")
        # coalesce="all": on a loaded machine late fire times run instead of being recorded missed
        s.add(lambda: seen.append(1), "every 10ms", name="fast", coalesce="all")
        while len(seen) < 3:
            await asyncio.sleep(0.01)
        s.shutdown()
        return s.history("fast")

    hist = asyncio.run(main())
    assert len(seen) >= 3 and list(hist["outcome"]) == ["success"] * len(seen)


async def test_calls_from_another_thread_are_handed_to_the_loop(sched, clock):
    result = {}

    def from_thread():
        job = sched.add(lambda: None, "every 10s", name="threaded")
        result["job"] = job
        result["thread"] = threading.get_ident()

    t = threading.Thread(target=from_thread)
    t.start()
    while t.is_alive():
        await asyncio.sleep(0)
    t.join()
    assert result["job"].name == "threaded"
    await clock.advance(10)
    assert len(sched.history("threaded")) == 1


async def test_get_scheduler_is_a_process_wide_default():
    a = nbsched.get_scheduler()
    assert nbsched.get_scheduler() is a
    a.shutdown()
    b = nbsched.get_scheduler()
    assert b is not a
    b.shutdown()


async def test_statistics_and_version(sched, clock):
    v0 = sched.version
    sched.add(lambda: None, "every 10s", name="s")
    await clock.advance(20)
    st = sched.statistics()
    assert st.jobs == 1 and st.fires == 2 and st.missed == 0
    assert sched.version > v0


async def test_job_spec_is_json(sched):
    import json

    sched.add(len, "cron 0 9 * * mon-fri", name="spec", retries=2, timeout="30s")
    spec = json.loads(json.dumps(sched.get("spec").definition()))
    assert spec["trigger"]["expr"] == "0 9 * * mon-fri"
    assert spec["policy"]["retries"] == 2 and spec["policy"]["timeout"] == 30
    assert spec["target"]["qualname"] == "len"


async def test_until_in_the_past_is_refused_and_nothing_is_added(sched, clock):
    with pytest.raises(PolicyError) as info:
        sched.add(lambda: None, "every 1h", name="late", until=START - timedelta(days=1))
    assert str(info.value) == ("invalid until 2026-01-04 09:00:00 UTC: it is in the past, so the job would never run "
                               "(now: 2026-01-05 09:00:00 UTC); pick a later time or drop until")
    with pytest.raises(PolicyError, match=r"invalid until 2026-01-05 09:30:00 UTC: it comes before the first fire "
                                          r"time \(2026-01-05 10:00:00 UTC\)"):
        sched.add(lambda: None, "every 1h", name="late", until=START + timedelta(minutes=30))
    assert sched.jobs == [] and "late" not in sched
    job = sched.add(lambda: None, "every 1h", name="ok", until=START + timedelta(hours=1))
    assert job.state is JobState.SCHEDULED


# ---------------------------------------------------------------------------------- review bugs
async def test_interrupt_while_waiting_to_retry_records_that_attempt_and_pauses(sched, clock):
    def fails():
        raise RuntimeError("boom")

    sched.add(fails, "every 60s", name="retrying", retries=3, retry_delay="10s")
    await clock.advance(61)  # fire at 60 s fails; the retry waits until 71 s
    assert sched.interrupt("retrying") == 1
    await clock.advance(0)
    rows = sched.history("retrying")
    assert list(rows["outcome"]) == ["error", "interrupted"]
    assert list(rows["attempt"]) == [1, 2]
    assert [(t - START).total_seconds() for t in rows["scheduled_at"]] == [60, 60]
    assert sched.get("retrying").paused
    await clock.advance(120)
    assert len(sched.history("retrying")) == 2  # paused: nothing more runs


def test_a_long_retry_delay_raises_the_default_cap_or_is_refused():
    from nbsched.job import JobPolicy

    assert JobPolicy.build(retry_delay="10m").max_retry_delay == 600
    assert JobPolicy.build(retry_delay="1m").max_retry_delay == 300
    with pytest.raises(PolicyError, match=r"retry_delay 600s is above max_retry_delay 300s: raise max_retry_delay"):
        JobPolicy.build(retry_delay="10m", max_retry_delay="5m")


# ---------------------------------------------------------------------- BaseExceptions from job code
@pytest.mark.parametrize("exc_type", [GeneratorExit, SystemExit, KeyboardInterrupt])
async def test_base_exceptions_from_loop_jobs_are_recorded_runs(sched, clock, exc_type):
    def rude():
        raise exc_type("from the job")

    async def rude_async():
        raise exc_type("from the async job")

    sched.add(rude, "every 10s", name="plain")
    sched.add(rude_async, "every 10s", name="async")
    await clock.advance(10)
    expected = "interrupted" if exc_type is KeyboardInterrupt else "error"
    for name in ("plain", "async"):
        rows = sched.history(name)
        assert list(rows["outcome"]) == [expected], name
        assert list(rows["error_type"]) == [exc_type.__name__], name
        assert sched.get(name).running == 0
    assert sched.running


@pytest.mark.realtime
@pytest.mark.parametrize("exc_type", [GeneratorExit, SystemExit, KeyboardInterrupt])
async def test_base_exceptions_from_thread_jobs_are_recorded_runs(exc_type):
    s = nbsched.Scheduler(tz="UTC")
    try:
        def rude():
            raise exc_type("from a thread")

        s.add(rude, "every 30ms", name="rude", executor="thread")
        first = await s.wait_next_run("rude")
        assert (str(first.outcome), first.error_type) == (
            "interrupted" if exc_type is KeyboardInterrupt else "error", exc_type.__name__)
        assert s.get("rude").running == 0
        if exc_type is not KeyboardInterrupt:  # an interrupted job is paused; the others go on running
            second = await s.wait_next_run("rude")
            assert str(second.outcome) == "error"
            assert "skipped" not in set(s.history("rude")["outcome"].astype(str))
        assert s.running
    finally:
        s.shutdown()


async def test_a_blocked_day_gives_exact_missed_counts(sched, clock):
    sched.add(lambda: None, "every 1s", name="a")
    await clock.advance(1)
    clock.jump(86400)  # the loop was blocked for a day: 86,400 fire times came due, the newest runs
    await clock.advance(0)
    job = sched.get("a")
    assert (job.runs, job.missed, sched.statistics().missed) == (2, 86399, 86399)
    rows = sched.history("a")
    summary = rows[rows["error_type"] == "MissedFireTimes"]
    assert len(summary) == 1
    assert summary["error"].iloc[0] == ("MissedFireTimes: 76400 fire times from 2026-01-05 09:00:03 UTC on were "
                                        "missed (summarised in this row: more than the job's history keeps)")
    # 9,999 listed missed rows + the summary (76,400) = 86,399; retention (history_rows=10,000) keeps the newest
    assert len(rows) == 10_000 and int((rows["outcome"] == "missed").sum()) == 9_999
    assert rows["scheduled_at"].iloc[-1] == START + timedelta(seconds=86401)  # the newest fire time ran


# ---------------------------------------------------------------------- the wall clock is stepped
def runs(sched, name):
    """The job's history without the clock-step notes."""
    frame = sched.history(name)
    return frame[frame["outcome"] != "clock_step"].reset_index(drop=True)


async def test_the_wall_clock_stepping_back_does_not_silence_interval_jobs(caplog):
    from nbsched.testing import FakeClock

    clock = FakeClock(start=START, wake_interval=1.0)  # wakes at least every second, as the system clock does
    sched = nbsched.Scheduler(clock=clock, tz="UTC")
    try:
        steps = []
        sched.subscribe(steps.append, kinds=nbsched.events.ClockJumped)
        sched.add(lambda: None, "every 60s", name="every")
        sched.add(lambda: None, "cron 0 10 * * *", name="at10")  # wall clock: 10:00 UTC
        await clock.advance(60)
        assert len(sched.history("every")) == 1
        clock.step(-3600)  # NTP: back one hour, no time elapses
        await clock.advance(1)
        assert [e.by for e in steps] == [timedelta(hours=-1)]  # noticed within a second
        assert sched.clock_jumps() == [(START + timedelta(seconds=61 - 3600), timedelta(hours=-1))]
        assert "the wall clock was stepped back by 1h" in caplog.text
        notes = sched.history()[sched.history()["outcome"] == "clock_step"]  # one note per waiting job
        assert list(notes["job"]) == ["every", "at10"] or list(notes["job"]) == ["at10", "every"]
        assert set(notes["error"]) == {
            "ClockStep: the wall clock was stepped back by 1h; interval jobs keep their rhythm in elapsed time: "
            "the next fire time moved with the clock",
            "ClockStep: the wall clock was stepped back by 1h; cron and 'at' jobs follow the wall clock: the next "
            "fire time stays where it was"}
        await clock.advance(59)  # 60 s of elapsed time after the last run: the interval runs again
        every = runs(sched, "every")
        assert len(every) == 2 and set(every["outcome"]) == {"success"}
        # the history is in wall-clock order: the run after the step comes first
        assert list(every["scheduled_at"]) == [START + timedelta(seconds=120 - 3600), START + timedelta(seconds=60)]
        await clock.advance(3600 + 60)  # cron follows the wall clock: 10:00 comes 2 h of elapsed time later
        assert len(runs(sched, "at10")) == 0
        await clock.advance(3600)
        at10 = runs(sched, "at10")
        assert list(at10["scheduled_at"]) == [START.replace(hour=10)] and set(at10["outcome"]) == {"success"}
        assert len(runs(sched, "every")) == 2 + (3600 + 60 + 3600) // 60
        assert set(runs(sched, "every")["outcome"]) == {"success"}
    finally:
        sched.shutdown()


async def test_the_wall_clock_stepping_forward_moves_intervals_and_cron_catches_up():
    from nbsched.testing import FakeClock

    clock = FakeClock(start=START, wake_interval=1.0)
    sched = nbsched.Scheduler(clock=clock, tz="UTC")
    try:
        sched.add(lambda: None, "every 60s", name="every")
        sched.add(lambda: None, "cron 30 9 * * *", name="at0930")
        await clock.advance(60)
        clock.step(3600)  # forward one hour (a VM resumed with a stale clock), no time elapses
        await clock.advance(1)
        assert sched.statistics().missed == 0
        assert list(sched.history("every")["outcome"]) == ["success", "clock_step"]  # no made-up missed runs
        at = runs(sched, "at0930")
        assert list(at["outcome"]) == ["success"]  # 09:30 passed on the wall clock: it runs once, late
        assert at["scheduled_at"].iloc[0] == START.replace(minute=30)
        await clock.advance(59)
        assert list(runs(sched, "every")["outcome"]) == ["success", "success"]
        assert [d for _, d in sched.clock_jumps()] == [timedelta(hours=1)]
    finally:
        sched.shutdown()


@pytest.mark.realtime
async def test_system_exit_from_a_process_job_is_a_recorded_run():
    import sys

    s = nbsched.Scheduler(tz="UTC")
    try:
        s.add(sys.exit, "every 1h", name="leave", executor="process")  # importable: sys.exit
        s.run_now("leave")
        record = await asyncio.wait_for(s.wait_next_run("leave"), 60)
        assert (str(record.outcome), record.error_type) == ("error", "SystemExit")
        assert s.get("leave").running == 0 and s.running
    finally:
        s.shutdown()


def test_job_meta_is_the_jobs_own_dict_made_on_first_use(sched):
    given = {"owner": "ana"}
    a = sched.add(lambda: None, "every 10s", name="a", meta=given)
    b = sched.add(lambda: None, "every 10s", name="b")
    assert a.meta == {"owner": "ana"} and a.meta is not given  # a copy: changing `given` later changes nothing
    given["owner"] = "bo"
    assert a.meta == {"owner": "ana"}
    assert b.meta == {}
    b.meta["team"] = "data"  # created on first use, then kept
    assert sched.get("b").meta == {"team": "data"}
    b.meta = {"x": 1}
    assert b.meta == {"x": 1} and sched.get("a").meta == {"owner": "ana"}


async def test_a_job_that_runs_another_inline_gets_its_own_run_back(sched, clock):
    """A plain function's run sits in the inline slot while it is called; a job that runs another job
    inline (``run_now`` from its body) finds its own run there again afterwards, on success and failure."""
    from nbsched.context import NotInRunError, current_job_name

    seen = []

    def inner():
        ctx = nbsched.current_run()
        seen.append(("inner", ctx.job, ctx.reason, current_job_name()))
        if len(seen) > 3:
            raise ValueError("inner fails the second time")

    def outer():
        ctx = nbsched.current_run()
        seen.append(("outer", ctx.job, ctx.run_id, current_job_name()))
        sched.run_now("inner")
        after = nbsched.current_run()
        seen.append(("outer again", after.job, after.run_id, current_job_name()))

    sched.add(inner, "every 1h", name="inner")
    sched.add(outer, "every 10s", name="outer")
    await clock.advance(10)
    await clock.advance(10)
    first, second = sched.history("outer")["run_id"].tolist()
    assert seen == [("outer", "outer", first, "outer"), ("inner", "inner", "manual", "inner"),
                    ("outer again", "outer", first, "outer"),
                    ("outer", "outer", second, "outer"), ("inner", "inner", "manual", "inner"),
                    ("outer again", "outer", second, "outer")]
    assert sched.history("inner")["outcome"].tolist() == ["success", "error"]
    assert current_job_name() is None
    with pytest.raises(NotInRunError):
        nbsched.current_run()
