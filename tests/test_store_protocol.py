"""The Store protocol is enough: an in-memory store written against it alone serves the engine."""
import pytest

import nbsched
from nbsched.store import MemoryStore, Store, open_store

from conftest import START

pytestmark = pytest.mark.filterwarnings("error")


def test_memory_store_satisfies_the_protocol():
    assert isinstance(MemoryStore(), Store)
    store = MemoryStore()
    assert open_store(store) is store
    with pytest.raises(TypeError, match=r"is not a store: it must provide what nbsched.store.Store describes"):
        open_store(object())


def test_a_store_missing_part_of_the_protocol_is_refused_with_what_it_lacks():
    from nbsched.store.sqlite import _STORE_MEMBERS

    members = {name for name in dir(Store) if not name.startswith("_")} | set(Store.__annotations__)
    assert set(_STORE_MEMBERS) == members  # the error names the protocol as it is

    # a store written before row_key was asked for: everything else a MemoryStore has
    base = MemoryStore()
    older = type("Older", (), {name: getattr(base, name) for name in _STORE_MEMBERS if name != "row_key"})()
    with pytest.raises(TypeError, match=r"and it lacks row_key; or pass a path"):
        nbsched.Scheduler(tz="UTC", store=older)


async def test_jobs_history_and_results_survive_a_new_scheduler(clock):
    store = MemoryStore()
    calls = []

    def sample():
        calls.append(clock.time())
        return {"n": len(calls)}

    def flaky():
        raise ValueError("down")

    first = nbsched.Scheduler(clock=clock, tz="UTC", store=store)
    first.add(sample, "every 10s", name="sample")
    first.add(flaky, "every 10s", name="flaky")
    first.add(sample, "every 1h", name="quiet", paused=True)
    await clock.advance(30)
    before = first.history()
    results_before = first.results("sample")
    first.shutdown()
    assert len(before) == 6 and list(results_before["n"]) == [1, 2, 3]

    clock.jump(25)  # "the kernel was down": fire times at 40 s and 50 s pass unseen
    second = nbsched.Scheduler(clock=clock, tz="UTC", store=store)
    jobs = second.restore()
    assert [j.name for j in jobs] == ["sample", "flaky", "quiet"]
    sample_job, flaky_job, quiet = jobs
    assert (sample_job.runs, sample_job.successes, flaky_job.failures) == (3, 3, 3)
    assert flaky_job.last_error == "ValueError: down" and flaky_job.state.value == "failing"
    assert quiet.paused and quiet.next_fire_time is None
    # the restored past is the same frame; the missed fire times go through coalesce ("latest")
    assert second.history().iloc[:6].equals(before)
    await clock.advance(0.1)
    rows = second.history("sample")
    assert list(rows["outcome"]) == ["success"] * 3 + ["missed", "success"]
    assert [(t - START).total_seconds() for t in rows["scheduled_at"]] == [10, 20, 30, 40, 50]
    assert list(second.results("sample")["n"]) == [1, 2, 3, 4]
    # run ids continue above the stored ones
    assert rows["run_id"].is_unique and rows["run_id"].iloc[-1] > before["run_id"].max()
    second.shutdown()


async def test_a_removed_jobs_history_comes_back_too(clock):
    store = MemoryStore()
    first = nbsched.Scheduler(clock=clock, tz="UTC", store=store)
    first.add(lambda: None, "every 10s", name="gone")
    await clock.advance(20)
    first.remove("gone")
    first.shutdown()
    second = nbsched.Scheduler(clock=clock, tz="UTC", store=store)
    assert second.restore() == []
    assert list(second.history("gone")["outcome"]) == ["success", "success"]
    assert second.history_names() == ["gone"]
    second.shutdown()
