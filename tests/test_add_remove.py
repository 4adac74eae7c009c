"""The bulk add/remove paths of the Scheduler (shared policies, the remove fast path, the loop check)."""
import asyncio
import dataclasses
import threading
from datetime import datetime, timezone

import pytest

import nbsched
from nbsched import JobState, PolicyError
from nbsched.triggers import Interval, parse_trigger

from conftest import START

T0 = START.timestamp()


async def test_jobs_added_with_the_same_options_share_one_policy(sched):
    a = sched.add(lambda: None, "every 10s", name="a", retries=2, timeout="5s")
    b = sched.add(lambda: None, "every 10s", name="b", retries=2, timeout="5s")
    c = sched.add(lambda: None, "every 10s", name="c", retries=2, timeout=5)  # another type: built apart
    d = sched.add(lambda: None, "every 10s", name="d")
    assert a.policy is b.policy and a.policy.retries == 2 and a.policy.timeout == 5.0
    assert c.policy is not a.policy and c.policy == a.policy
    assert d.policy is sched.defaults


async def test_a_cached_valid_option_does_not_let_an_equal_invalid_one_through(sched):
    sched.add(lambda: None, "every 10s", name="a", max_instances=1)
    with pytest.raises(PolicyError, match="invalid max_instances True"):
        sched.add(lambda: None, "every 10s", name="b", max_instances=True)  # True == 1, but not a count
    with pytest.raises(PolicyError, match="invalid max_instances 1.0"):
        sched.add(lambda: None, "every 10s", name="b", max_instances=1.0)
    assert "b" not in sched


async def test_unhashable_options_are_validated_each_time(sched):
    class Workers:
        supports_resources = True

        def check(self, func):
            return None

        def submit(self, func):
            raise NotImplementedError

        def shutdown(self, wait=False):
            return None

    with pytest.raises(PolicyError, match="needs an executor that places work on workers"):
        sched.add(lambda: None, "every 10s", name="b", resources={"GPU": 1})
    sched.add_executor("workers", Workers())
    a = sched.add(lambda: None, "every 10s", name="a", executor="workers", resources={"GPU": 1})
    c = sched.add(lambda: None, "every 10s", name="c", executor="workers", resources={"GPU": 2})
    assert a.policy.resources == (("GPU", 1.0),) and c.policy.resources == (("GPU", 2.0),)
    with pytest.raises(PolicyError, match="invalid resources"):
        sched.add(lambda: None, "every 10s", name="d", executor="workers", resources={"GPU": -1})
    assert "b" not in sched and "d" not in sched


async def test_replaced_defaults_are_not_served_from_the_policy_cache(sched):
    a = sched.add(lambda: None, "every 10s", name="a", retries=2)
    sched.defaults = dataclasses.replace(sched.defaults, timeout=7.0)
    b = sched.add(lambda: None, "every 10s", name="b", retries=2)
    assert a.policy.timeout is None and b.policy.timeout == 7.0 and b.policy.retries == 2


async def test_a_blank_name_is_refused_as_before(sched):
    for bad in ("", "   ", "\t\n", "\u2003"):
        with pytest.raises(PolicyError, match="invalid job name"):
            sched.add(lambda: None, "every 10s", name=bad)
    assert len(sched) == 0
    sched.add(lambda: None, "every 10s", name=" x ")
    assert " x " in sched


async def test_bad_input_raises_before_anything_is_registered(sched):
    for kwargs in ({"name": "a", "trigger": "every 0s"}, {"name": "a", "trigger": "cron nonsense"},
                   {"name": "a", "trigger": "every 10s", "retries": -1}, {"name": "a", "trigger": None},
                   {"name": "a", "trigger": "every 10s", "executor": "nope"}):
        trigger = kwargs.pop("trigger")
        with pytest.raises((PolicyError, nbsched.TriggerError)):
            sched.add(lambda: None, trigger, **kwargs)
    assert len(sched) == 0 and sched.history_names() == []


async def test_the_same_spec_string_gives_each_job_its_own_anchor(sched, clock):
    a = sched.add(lambda: None, "every 10s", name="a")
    await clock.advance(3)
    b = sched.add(lambda: None, "every 10s", name="b")
    assert a.next_fire_timestamp == T0 + 10 and b.next_fire_timestamp == T0 + 13
    assert a.trigger.start == datetime.fromtimestamp(T0 + 10, timezone.utc)


def test_an_anchored_interval_equals_one_built_with_that_start():
    every = parse_trigger("every 10s", tz=timezone.utc)
    anchored = every.anchored(T0)
    built = Interval(10, start=datetime.fromtimestamp(T0 + 10, timezone.utc))
    assert anchored == built and hash(anchored) == hash(built) and repr(anchored) == repr(built)
    for f in dataclasses.fields(Interval):  # every slot is set
        assert getattr(anchored, f.name) == getattr(built, f.name)
    assert anchored.next_timestamp(T0) == T0 + 10 and anchored.next_timestamp(T0 + 10) == T0 + 20


async def test_remove_takes_the_job_off_the_wheel_and_keeps_its_history(sched, clock):
    job = sched.add(lambda: None, "every 10s", name="a")
    await clock.advance(10)
    sched.remove("a")
    assert job.state is JobState.REMOVED and job.next_fire_timestamp is None and job._key is None
    await clock.advance(30)
    assert len(sched.history("a")) == 1 and "a" not in sched


async def test_remove_tells_listeners_only_when_someone_listens(sched):
    seen = []
    sched.add(lambda: None, "every 10s", name="a")
    sched.add(lambda: None, "every 10s", name="b")
    sched.remove("a")
    sched.events.subscribe(seen.append, nbsched.events.JobRemoved, jobs={"b"})
    sched.add(lambda: None, "every 10s", name="c")
    sched.remove("c")
    sched.remove("b")
    assert [e.job for e in seen] == ["b"]


async def test_remove_of_an_unknown_job_and_of_an_upstream_still_explain(sched):
    sched.add(lambda: None, "every 10s", name="up")
    sched.add(lambda: None, after="up", name="down")
    with pytest.raises(nbsched.JobLookupError, match="the jobs are 'up', 'down'"):
        sched.remove("nope")
    with pytest.raises(PolicyError, match="'down' run\\(s\\) after it"):
        sched.remove("up")
    sched.remove("up", cascade=True)
    assert len(sched) == 0


async def test_remove_cancels_a_waiter(sched, clock):
    sched.add(lambda: None, "every 10s", name="a")
    waiter = asyncio.ensure_future(sched.wait_next_run("a"))
    await asyncio.sleep(0)
    sched.remove("a")
    await asyncio.sleep(0)
    assert waiter.cancelled()


async def test_binding_here_only_on_the_open_loops_thread(sched):
    binding = sched._binding
    assert binding.here()
    answers = []
    t = threading.Thread(target=lambda: answers.append(binding.here()))
    t.start()
    t.join()
    assert answers == [False]
    binding.closed = True
    try:
        assert not binding.here()
    finally:
        binding.closed = False


def test_binding_here_is_false_without_a_loop_or_on_a_closed_one():
    from nbsched.engine._handover import LoopBinding

    binding = LoopBinding(on_move=lambda: None)
    assert not binding.here()
    loop = asyncio.new_event_loop()
    binding.bind(loop, threading.get_ident())
    assert binding.here()
    loop.close()
    assert not binding.here()
