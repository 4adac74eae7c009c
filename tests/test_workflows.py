"""Workflows on FakeClock: after-triggers, trigger rules, rounds, branching, data passing, bad input."""
import itertools
from datetime import timedelta

import pandas as pd
import pytest

import nbsched
from nbsched import Branch, Skip, current_run
from nbsched.context import NotInRunError, current_job_name
from nbsched.engine._flow import decide
from nbsched.errors import PolicyError, TriggerError
from nbsched.job import TRIGGER_RULES

from conftest import START

pytestmark = pytest.mark.filterwarnings("error")


def secs(frame, column="scheduled_at"):
    return [(t - START).total_seconds() for t in frame[column]]


def outcomes(sched, name):
    return list(sched.history(name)["outcome"])


def recorder(log, name, value=None, fail=False):
    def job():
        ctx = current_run()
        log.append((name, (ctx.scheduled_at - START).total_seconds(), ctx.reason, dict(ctx.upstream)))
        if fail:
            raise RuntimeError(f"{name} failed")
        return value
    job.__name__ = name
    return job


# ----------------------------------------------------------------------------------- the rule table
S, E, K, U = "success", "error", "skipped", "upstream_failed"
TABLE = {
    # rule:         (all success, one error, all error, one skipped, all skipped, error + skipped)
    "all_success": ("run", U, U, K, K, U),
    "all_done": ("run", "run", "run", "run", "run", "run"),
    "all_failed": (K, K, "run", K, K, K),
    "one_success": ("run", "run", U, "run", K, U),
    "one_failed": (K, "run", "run", K, K, "run"),
    "none_failed": ("run", U, U, "run", "run", U),
    "always": ("run", "run", "run", "run", "run", "run"),
}
COMBOS = [(S, S), (S, E), (E, E), (S, K), (K, K), (E, K)]


@pytest.mark.parametrize("rule", TRIGGER_RULES)
def test_rule_table_on_a_complete_round(rule):
    assert tuple(decide(rule, list(c), True) for c in COMBOS) == TABLE[rule]


def test_early_rules_fire_on_the_first_satisfying_delivery_and_others_wait():
    assert decide("one_success", [S], False) == "run"
    assert decide("one_success", [E], False) is None
    assert decide("one_failed", ["timeout"], False) == "run"
    assert decide("one_failed", [S], False) is None
    assert decide("always", [K], False) == "run"
    for rule in ("all_success", "all_done", "all_failed", "none_failed"):
        assert decide(rule, [S], False) is None


def test_every_failed_outcome_counts_as_failed():
    for failed in ("error", "timeout", "interrupted", "cancelled", "upstream_failed"):
        assert decide("all_success", [failed], True) == "upstream_failed"
        assert decide("one_failed", [failed], True) == "run"


# ------------------------------------------------------------------------------------ chains, joins
async def test_a_chain_runs_once_per_root_run_with_the_roots_logical_time(sched, clock):
    log = []
    sched.add(recorder(log, "a", 1), "every 10s")
    sched.add(recorder(log, "b", 2), "after a")
    sched.add(recorder(log, "c", 3), after="b")
    await clock.advance(30)
    assert [(n, t) for n, t, *_ in log] == [("a", 10), ("b", 10), ("c", 10), ("a", 20), ("b", 20), ("c", 20),
                                            ("a", 30), ("b", 30), ("c", 30)]
    assert [r for _, _, r, _ in log] == ["schedule", "upstream", "upstream"] * 3
    assert [u for *_, u in log[:3]] == [{}, {"a": 1}, {"b": 2}]
    c = sched.history("c")
    assert secs(c) == [10, 20, 30] and list(c["reason"]) == ["upstream"] * 3
    assert list(sched.history("a")["reason"]) == ["schedule"] * 3
    assert secs(sched.results("c")) == [10, 20, 30]


async def test_a_downstream_run_waits_for_a_free_instance_and_keeps_its_order(sched, clock):
    """A run decided while the downstream job is busy (max_instances=1) waits for the running one to
    end, with its own upstream values, and starts then - not dropped, not run alongside."""
    started = []

    async def slow():
        started.append(((clock.now() - START).total_seconds(), current_run().upstream["root"]))
        await clock.sleep(15)

    values = iter(range(1, 10))
    sched.add(lambda: next(values), "every 10s", name="root", until=START + timedelta(seconds=25))
    sched.add(slow, "after root", name="down")
    await clock.advance(20)  # root ran at 10 (down starts, busy until 25) and at 20 (down is busy)
    assert started == [(10, 1)]
    await clock.advance(5)  # down's first run ends at 25: the waiting one starts
    assert started == [(10, 1), (25, 2)]
    await clock.advance(15)  # it ends at 40
    h = sched.history("down")
    assert secs(h) == [10, 20] and secs(h, "started_at") == [10, 25] and list(h["reason"]) == ["upstream"] * 2


async def test_a_diamond_runs_the_join_once_per_root_run(sched, clock):
    log = []
    sched.add(recorder(log, "a", "A"), "every 10s")
    sched.add(recorder(log, "b", "B"), "after a")
    sched.add(recorder(log, "c", "C"), "after a")
    sched.add(recorder(log, "d"), "after b, c")
    await clock.advance(20)
    d = [(t, u) for n, t, _, u in log if n == "d"]
    assert d == [(10, {"b": "B", "c": "C"}), (20, {"b": "B", "c": "C"})]


async def test_a_join_of_jobs_on_different_schedules_consumes_one_run_of_each(sched, clock):
    log = []
    sched.add(recorder(log, "fast", "f"), "every 10s")
    sched.add(recorder(log, "slow", "s"), "every 25s")
    sched.add(recorder(log, "report"), "after fast, slow")
    await clock.advance(50)
    # fast delivers at 10..50, slow at 25 and 50: report runs twice; logical time = the later of each pair
    assert [(t, u) for n, t, _, u in log if n == "report"] == [(25, {"fast": "f", "slow": "s"}),
                                                              (50, {"fast": "f", "slow": "s"})]
    # fast's runs at 30, 40, 50 wait in order for slow's next runs: none are lost
    await clock.advance(50)
    assert secs(sched.history("report")) == [25, 50, 75, 100]


async def test_upstream_values_are_the_same_objects(sched, clock):
    frame = pd.DataFrame({"x": [1, 2]})
    seen = []
    sched.add(lambda: frame, "every 10s", name="prices")
    sched.add(lambda: seen.append(current_run().upstream["prices"]), "after prices", name="clean")
    await clock.advance(10)
    assert seen[0] is frame


async def test_coroutines_and_thread_jobs_see_their_context(sched, clock):
    seen = []

    async def coro():
        await clock.sleep(1)
        ctx = current_run()
        seen.append(("coro", ctx.reason, dict(ctx.upstream), ctx.attempt))

    def threaded():
        ctx = current_run()
        seen.append(("thread", ctx.reason, dict(ctx.upstream), ctx.attempt))
        return "t"

    sched.add(lambda: 7, "every 10s", name="root")
    sched.add(coro, "after root")
    sched.add(threaded, "after root", executor="thread")
    await clock.advance(10)
    for _ in range(50):
        await clock.advance(1)
        if len(seen) == 2:
            break
    assert sorted(seen) == [("coro", "upstream", {"root": 7}, 1), ("thread", "upstream", {"root": 7}, 1)]
    await sched.wait_idle()


def test_current_run_outside_a_run_says_so():
    with pytest.raises(NotInRunError, match=r"current_run\(\) works only inside a run of a job"):
        current_run()
    assert current_job_name() is None


async def test_current_job_name_in_inline_task_and_thread_runs(sched, clock):
    seen = []

    def plain():
        seen.append(("plain", current_job_name()))

    async def coro():
        seen.append(("coro", current_job_name()))

    def threaded():
        seen.append(("thread", current_job_name()))

    sched.add(plain, "every 10s")
    sched.add(coro, "every 10s")
    sched.add(threaded, "every 10s", executor="thread")
    await clock.advance(10)
    await sched.wait_idle()
    assert sorted(seen) == [("coro", "coro"), ("plain", "plain"), ("thread", "threaded")]
    assert current_job_name() is None


# ------------------------------------------------------------------------------- rules in practice
async def test_a_failure_at_the_root_shows_as_upstream_failed_down_the_chain(sched, clock):
    log = []
    events = []
    sched.subscribe(events.append, kinds=nbsched.events.JobUpstreamFailed)
    sched.add(recorder(log, "prices", fail=True), "every 10s")
    sched.add(recorder(log, "clean"), "after prices")
    sched.add(recorder(log, "report"), "after clean")
    sched.add(recorder(log, "alert"), "after prices", trigger_rule="one_failed")
    await clock.advance(10)
    assert [n for n, *_ in log] == ["prices", "alert"]
    assert outcomes(sched, "clean") == ["upstream_failed"] and outcomes(sched, "report") == ["upstream_failed"]
    assert list(sched.history("clean")["error"]) == ["UpstreamFailed: upstream 'prices' ended error"]
    assert list(sched.history("report")["error"]) == ["UpstreamFailed: upstream 'clean' ended upstream_failed"]
    assert secs(sched.history("report")) == [10]
    assert [e.job for e in events] == ["clean", "report"]
    assert sched.get("report").last_outcome is nbsched.Outcome.UPSTREAM_FAILED


async def test_retries_happen_before_delivery(sched, clock):
    calls = itertools.count()
    log = []

    def flaky():
        if next(calls) == 0:
            raise RuntimeError("first try")
        return "ok"

    sched.add(flaky, "every 60s", name="flaky", retries=1, retry_delay="5s")
    sched.add(recorder(log, "after_flaky"), "after flaky")
    await clock.advance(64)
    assert log == []
    await clock.advance(1)
    assert [(n, t, u) for n, t, _, u in log] == [("after_flaky", 60, {"flaky": "ok"})]


async def test_branching_runs_the_chosen_jobs_and_skips_the_rest(sched, clock):
    log = []
    sched.add(lambda: Branch("fast_path", value=42), "every 10s", name="choose")
    sched.add(recorder(log, "fast_path"), "after choose")
    sched.add(recorder(log, "slow_path"), "after choose")
    sched.add(recorder(log, "after_slow"), "after slow_path")
    sched.add(recorder(log, "cleanup"), "after slow_path", trigger_rule="none_failed")
    await clock.advance(10)
    assert [(n, u) for n, _, _, u in log] == [("fast_path", {"choose": 42}), ("cleanup", {"slow_path": None})]
    assert outcomes(sched, "slow_path") == ["skipped"]
    assert list(sched.history("slow_path")["error"]) == ["Skipped: branch taken at 'choose': fast_path"]
    assert outcomes(sched, "after_slow") == ["skipped"]
    assert list(sched.results("choose")["value"]) == [42]


async def test_a_branch_naming_a_stranger_is_the_runs_error(sched, clock):
    sched.add(lambda: Branch("nobody"), "every 10s", name="choose")
    sched.add(lambda: None, "after choose", name="child")
    await clock.advance(10)
    row = sched.history("choose").iloc[0]
    assert row["outcome"] == "error"
    assert row["error"] == ("ValueError: Branch('nobody') from job 'choose' names 'nobody', which do not run after it; "
                            "its downstream jobs are 'child'")
    assert outcomes(sched, "child") == ["upstream_failed"]


async def test_skip_records_the_reason_and_propagates_under_all_success(sched, clock):
    log = []

    def maybe():
        raise Skip("no new data")

    events = []
    sched.subscribe(events.append, kinds=nbsched.events.JobSkipped)
    sched.add(maybe, "every 10s")
    sched.add(recorder(log, "strict"), "after maybe")
    sched.add(recorder(log, "lenient"), "after maybe", trigger_rule="all_done")
    await clock.advance(10)
    assert list(sched.history("maybe")["error"]) == ["Skip: no new data"]
    assert outcomes(sched, "maybe") == ["skipped"] and outcomes(sched, "strict") == ["skipped"]
    assert [n for n, *_ in log] == ["lenient"]
    assert [e.job for e in events] == ["maybe", "strict"]


async def test_deliveries_wait_for_a_busy_downstream_in_order(sched, clock):
    started = []

    async def slow():
        started.append((current_run().scheduled_at - START).total_seconds())
        await clock.sleep(25)

    sched.add(lambda: None, "every 10s", name="tick")
    sched.add(slow, "after tick")
    await clock.advance(100)
    sched.pause("tick")
    await clock.advance(200)
    assert started == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert outcomes(sched, "slow") == ["success"] * 10
    assert [(t - START).total_seconds() for t in sched.history("slow")["started_at"]] == \
        [10, 35, 60, 85, 110, 135, 160, 185, 210, 235]


async def test_run_now_runs_the_chain_below_unless_told_not_to(sched, clock):
    log = []
    sched.add(recorder(log, "root", 1), "every 1h")
    sched.add(recorder(log, "child"), "after root")
    await sched.run_now("root")
    assert [(n, r) for n, _, r, _ in log] == [("root", "manual"), ("child", "upstream")]
    await sched.run_now("root", downstream=False)
    assert [n for n, *_ in log] == ["root", "child", "root"]


async def test_a_chain_of_1500_plain_functions_runs_without_recursion(sched, clock):
    count = [0]

    def bump():
        count[0] += 1

    sched.add(bump, "every 10s", name="j0")
    for i in range(1, 1500):
        sched.add(bump, f"after j{i - 1}", name=f"j{i}")
    await clock.advance(10)
    assert count[0] == 1500
    assert secs(sched.history("j1499")) == [10]


async def test_a_fan_out_is_worked_through_in_slices(sched, clock, monkeypatch):
    import nbsched.engine.scheduler as mod

    monkeypatch.setattr(mod, "SLICE_SECONDS", 0.0)
    slices = []
    orig = sched._drain_flow
    monkeypatch.setattr(sched, "_drain_flow", lambda: (slices.append(1), orig()))
    count = [0]

    def bump():
        count[0] += 1

    sched.add(bump, "every 10s", name="root")
    for i in range(500):
        sched.add(bump, "after root", name=f"leaf{i}")
    await clock.advance(10)
    assert count[0] == 501
    assert len(slices) >= 2  # the loop was given back between slices


# ---------------------------------------------------------------------------- lifecycle of a graph
async def test_pausing_replacing_and_removing(sched, clock):
    log = []
    sched.add(recorder(log, "up"), "every 10s")
    sched.add(recorder(log, "down"), "after up")
    sched.pause("down")
    await clock.advance(20)  # a paused downstream consumes nothing
    assert [n for n, *_ in log] == ["up", "up"]
    sched.resume("down")
    await clock.advance(10)
    assert [n for n, *_ in log] == ["up", "up", "up", "down"]
    # replacing the upstream by name keeps the dependents attached
    sched.add(recorder(log, "up"), "every 5s", name="up")
    await clock.advance(5)
    assert [n for n, *_ in log][-2:] == ["up", "down"]
    sched.pause("up")  # pausing an upstream pauses the flow below it
    await clock.advance(30)
    assert len(log) == 6
    with pytest.raises(PolicyError, match=r"cannot remove 'up': 'down' run\(s\) after it; remove those first, or "
                                          r"remove\('up', cascade=True\)"):
        sched.remove("up")
    assert "up" in sched and "down" in sched
    sched.remove("up", cascade=True)
    assert sched.jobs == []


async def test_bad_input_is_refused_and_nothing_is_added(sched, clock):
    sched.add(lambda: None, "every 10s", name="a")
    sched.add(lambda: None, "after a", name="b")
    sched.add(lambda: None, "after b", name="c")
    before = [j.name for j in sched.jobs]
    with pytest.raises(TriggerError, match=r"unknown upstream job 'nope' in 'after nope': the jobs are 'a', 'b', 'c'"):
        sched.add(lambda: None, "after nope", name="d")
    with pytest.raises(TriggerError, match=r"job 'd' cannot run after itself"):
        sched.add(lambda: None, "after a, d", name="d")
    with pytest.raises(PolicyError, match=r"unknown trigger rule 'most_success': choose one of all_success, all_done"):
        sched.add(lambda: None, "after a", name="d", trigger_rule="most_success")
    with pytest.raises(PolicyError, match=r"trigger_rule='all_done' applies to jobs that run after other jobs"):
        sched.add(lambda: None, "every 5m", name="d", trigger_rule="all_done")
    with pytest.raises(TriggerError, match=r"give either a trigger \('every 5m'\) or after='a', not both"):
        sched.add(lambda: None, "every 5m", name="d", after="a")
    with pytest.raises(TriggerError, match=r"'after' would make a cycle: a -> c -> b -> a"):
        sched.reschedule("a", "after c")
    with pytest.raises(TriggerError, match=r"'after' would make a cycle: b -> c -> b"):
        sched.add(lambda: None, "after c", name="b")
    assert [j.name for j in sched.jobs] == before
    assert sched.get("b").upstreams == ("a",) and sched.downstream_of("a") == ["b"]


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
async def test_dependencies_are_persisted_and_restored(clock, tmp_path, store_kind):
    from nbsched.store import MemoryStore

    store = MemoryStore() if store_kind == "memory" else str(tmp_path / "flow.db")
    first = nbsched.Scheduler(clock=clock, tz="UTC", store=store)
    first.add(_root, "every 10s")
    first.add(_child, "after _root", trigger_rule="all_done")
    await clock.advance(10)
    first.shutdown()
    second = nbsched.Scheduler(clock=clock, tz="UTC", store=store if store_kind == "memory" else str(tmp_path / "flow.db"))
    jobs = {j.name: j for j in second.restore()}
    assert jobs["_child"].upstreams == ("_root",) and jobs["_child"].policy.trigger_rule == "all_done"
    assert second.downstream_of("_root") == ["_child"]
    await clock.advance(10)
    assert secs(second.history("_child")) == [10, 20]
    second.shutdown()


def _root():
    return 1


def _child():
    return current_run().upstream["_root"] + 1
