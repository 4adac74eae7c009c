"""'on file PATTERN' jobs through the scheduler: real files, real time (marked realtime)."""
import asyncio

import pytest

import nbsched
from nbsched import current_run
from nbsched.errors import PolicyError, TriggerError
from nbsched.store import MemoryStore

pytestmark = [pytest.mark.realtime, pytest.mark.filterwarnings("error")]


async def until(predicate, timeout=10.0):
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def recorder(seen):
    def retrain():
        ctx = current_run()
        seen.append((sorted(p.rsplit("/", 1)[1] for p in ctx.changed), ctx.reason))
    return retrain


async def test_a_batch_of_new_files_runs_the_job_once_with_their_paths(tmp_path):
    (tmp_path / "old.csv").write_text("there before")
    sched = nbsched.Scheduler(tz="UTC")
    seen = []
    job = sched.add(recorder(seen), f"on file {tmp_path}/*.csv", name="retrain", debounce="0.3s")
    assert job.describe() == f"when files matching {tmp_path}/*.csv land (quiet for 300ms)"
    await asyncio.sleep(0.3)  # the watch is armed
    for name in ("a.csv", "b.csv", "c.csv", "notes.txt"):
        (tmp_path / name).write_text("x")
    await until(lambda: seen)
    await asyncio.sleep(0.8)  # no second batch for the same files
    assert seen == [(["a.csv", "b.csv", "c.csv"], "schedule")]
    assert list(sched.history("retrain")["outcome"]) == ["success"]
    assert sched.watch_backend("retrain") in ("native", "polling")
    sched.shutdown()


async def test_paused_jobs_consume_nothing_and_busy_jobs_lose_nothing(tmp_path):
    sched = nbsched.Scheduler(tz="UTC")
    seen = []
    gate = asyncio.Event()

    async def slow():
        seen.append(sorted(p.rsplit("/", 1)[1] for p in current_run().changed))
        if len(seen) == 1:
            await gate.wait()

    sched.add(slow, f"on file {tmp_path}/*.csv", name="slow", debounce="0.2s")
    await asyncio.sleep(0.3)
    (tmp_path / "1.csv").write_text("x")
    await until(lambda: len(seen) == 1)
    (tmp_path / "2.csv").write_text("x")  # lands while the first run is busy
    await asyncio.sleep(1.0)
    assert len(seen) == 1
    gate.set()
    await until(lambda: len(seen) == 2)
    assert seen == [["1.csv"], ["2.csv"]]
    sched.pause("slow")
    (tmp_path / "3.csv").write_text("x")
    await asyncio.sleep(1.0)
    sched.resume("slow")
    await asyncio.sleep(0.3)
    (tmp_path / "4.csv").write_text("x")
    await until(lambda: len(seen) == 3)
    assert seen[2] == ["4.csv"]  # 3.csv landed while paused: not consumed
    sched.shutdown()


async def test_an_on_file_job_is_persisted_and_watches_again_after_restore(tmp_path):
    store = MemoryStore()
    first = nbsched.Scheduler(tz="UTC", store=store)
    seen = []
    first.add(recorder(seen), f"on file {tmp_path}/in/**/*.json", name="ingest", debounce="0.2s")
    first.shutdown()
    second = nbsched.Scheduler(tz="UTC", store=store)
    [job] = second.restore()
    assert job.trigger == nbsched.OnFile(f"{tmp_path}/in/**/*.json", 0.2)
    await asyncio.sleep(0.3)
    (tmp_path / "in" / "2026" / "12").mkdir(parents=True)
    (tmp_path / "in" / "2026" / "12" / "d.json").write_text("{}")
    await until(lambda: seen)
    assert seen == [(["d.json"], "schedule")]
    second.shutdown()


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(TriggerError, match=r"the event trigger is 'on file PATTERN', e.g. 'on file data/\*.csv'"):
        nbsched.parse_trigger("on change data/*.csv")
    with pytest.raises(TriggerError, match=r"invalid 'on file' trigger 'on file': give a glob"):
        nbsched.parse_trigger("on file")


async def test_debounce_and_time_options_belong_to_the_right_triggers(tmp_path):
    sched = nbsched.Scheduler(tz="UTC")
    with pytest.raises(PolicyError, match=r"debounce='2s' applies to 'on file PATTERN' triggers, not to 'every 5m'"):
        sched.add(lambda: None, "every 5m", name="x", debounce="2s")
    with pytest.raises(PolicyError, match=r"start/end/catchup apply to time triggers, not to 'on file "):
        sched.add(lambda: None, f"on file {tmp_path}/*.csv", name="x", start="2026-01-01", catchup=True)
    assert sched.jobs == []
    sched.shutdown()
