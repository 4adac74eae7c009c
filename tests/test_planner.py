"""The fire planner as a table: (trigger every 10 s, policy, runs so far, nominal, planned, now) -> plan."""
import pytest

from nbsched.engine._planner import FirePlan, plan_fire
from nbsched.job import JobPolicy
from nbsched.triggers import Interval

T0 = 1_000_000.0
EVERY_10S = Interval(10.0).anchored(T0 - 10)  # fires at T0, T0 + 10, ...


def policy(**options):
    return JobPolicy.build(**options)


CASES = [
    # on time: one run, next in 10 s
    ("on time", {}, 0, T0, T0, T0 + 0.001, FirePlan((T0,), (), T0 + 10, 0)),
    # late but inside the grace
    ("late within grace", {"misfire_grace": "5s"}, 0, T0, T0, T0 + 4, FirePlan((T0,), (), T0 + 10, 0)),
    # late beyond the grace: missed, not run
    ("late beyond grace", {"misfire_grace": "5s"}, 0, T0, T0, T0 + 6, FirePlan((), (T0,), T0 + 10, 0)),
    # jitter: lateness counts from the planned instant, not the nominal one
    ("jittered", {"misfire_grace": "5s"}, 0, T0, T0 + 3, T0 + 7, FirePlan((T0,), (), T0 + 10, 0)),
    # three fire times overdue (loop blocked 25 s): coalesce picks
    ("coalesce latest", {}, 0, T0, T0, T0 + 25, FirePlan((T0 + 20,), (T0, T0 + 10), T0 + 30, 0)),
    ("coalesce earliest", {"coalesce": "earliest"}, 0, T0, T0, T0 + 25, FirePlan((T0,), (T0 + 10, T0 + 20), T0 + 30, 0)),
    ("coalesce all", {"coalesce": "all"}, 0, T0, T0, T0 + 25, FirePlan((T0, T0 + 10, T0 + 20), (), T0 + 30, 0)),
    ("all, grace drops the oldest", {"coalesce": "all", "misfire_grace": "12s"}, 0, T0, T0, T0 + 25,
     FirePlan((T0 + 20,), (T0, T0 + 10), T0 + 30, 0)),
    # max_runs: the last allowed run finishes the job
    ("max_runs reached", {"max_runs": 3}, 2, T0, T0, T0, FirePlan((T0,), (), None, 0)),
    ("max_runs caps a catch-up", {"coalesce": "all", "max_runs": 3}, 1, T0, T0, T0 + 25,
     FirePlan((T0, T0 + 10), (), None, 0)),
    # until: no fire time after it
    ("until ends it", {"until": T0 + 5}, 0, T0, T0, T0, FirePlan((T0,), (), None, 0)),
    ("until cuts overdue times", {"coalesce": "all", "until": T0 + 15}, 0, T0, T0, T0 + 25,
     FirePlan((T0, T0 + 10), (), None, 0)),
    # retention caps the itemised list: the oldest and the newest are listed, the rest counted exactly
    ("beyond retention", {"history_rows": 3}, 0, T0, T0, T0 + 95, FirePlan((T0 + 90,), (T0, T0 + 80), T0 + 100, 7)),
    ("beyond retention, earliest", {"history_rows": 3, "coalesce": "earliest"}, 0, T0, T0, T0 + 95,
     FirePlan((T0,), (T0 + 80, T0 + 90), T0 + 100, 7)),
    ("ten days of 'every 10s' blocked", {}, 0, T0, T0, T0 + 864_000,  # 86,401 fire times, 10,000 listed
     FirePlan((T0 + 864_000,), (T0, *[T0 + 10 * k for k in range(76_402, 86_400)]), T0 + 864_010, 76_401)),
]


@pytest.mark.parametrize("label, options, runs, nominal, planned, now, expected", CASES, ids=[c[0] for c in CASES])
def test_plan(label, options, runs, nominal, planned, now, expected):
    assert plan_fire(EVERY_10S, policy(**options), runs, nominal, planned, now) == expected


def test_a_one_shot_trigger_finishes():
    from datetime import datetime, timezone

    from nbsched.triggers import Date

    once = Date(datetime.fromtimestamp(T0, timezone.utc))
    assert plan_fire(once, policy(), 0, T0, T0, T0 + 1) == FirePlan((T0,), (), None, 0)


@pytest.mark.parametrize("spec, jitter, block, missed", [
    ("every 10s", "2s", 25, 2),                 # a blocked loop: a few fire times overdue (the shortcut)
    ("every 10s", None, 95, 9),                 # more than the shortcut takes: the planner in both
    ("cron */10 * * * * *", None, 25, 2),      # cron: the same through the shared instants
])
async def test_the_engines_shortcut_and_the_planner_agree(clock, spec, jitter, block, missed):
    """The engine skips plan_fire when nothing can change its answer; a huge misfire_grace forces the
    planner on the same schedule, and the two histories must match (blocked loop included)."""
    import nbsched

    frames = []
    for options in ({}, {"misfire_grace": "1000d"}):
        sched = nbsched.Scheduler(clock=clock, tz="UTC", random_seed=1)
        sched.add(lambda: 1, spec, name="job", **({"jitter": jitter} if jitter else {}), **options)
        await clock.advance(35)
        clock.jump(block)  # a blocked loop: coalesce 'latest'
        await clock.advance(20)
        frame = sched.history("job")
        first = frame["scheduled_at"].iloc[0]
        frames.append((list(frame["outcome"]), [(t - first).total_seconds() for t in frame["scheduled_at"]],
                       list(frame["lateness"]), list(frame["run_id"])))
        sched.shutdown()
    assert frames[0] == frames[1]
    assert frames[0][0].count("missed") == missed  # the block: fire times coalesced away



@pytest.mark.parametrize("options, unbounded, inline", [
    ({}, True, True),
    ({"until": 1_700_000_000.0}, False, True),
    ({"max_runs": 3}, False, True),
    ({"misfire_grace": "5s"}, False, True),
    ({"jitter": "1s", "coalesce": "all"}, True, True),  # jitter and coalesce do not change how a fire is planned
    ({"retries": 2}, True, False),
    ({"timeout": "10s"}, True, False),
    ({"executor": "thread"}, True, False),
])
def test_a_policys_derived_flags_follow_its_fields_and_stay_out_of_its_value(options, unbounded, inline):
    """The engine reads `unbounded` (no bound the planner must check) and `inline` (a plain function runs
    right on the loop) on every fire instead of four fields each; they must follow every way a policy
    is made, and never count in its equality, its stored form or its repr."""
    from dataclasses import replace

    policy = JobPolicy.build(**options)
    assert (policy.unbounded, policy.inline) == (unbounded, inline)
    again = replace(JobPolicy(), **{k: getattr(policy, k) for k in options})
    assert (again.unbounded, again.inline) == (unbounded, inline) and again == policy
    built_over = JobPolicy.build(policy, max_runs=None, until=None, misfire_grace=None, retries=0, timeout=None,
                                 executor="loop")
    assert (built_over.unbounded, built_over.inline) == (True, True)
    assert "unbounded" not in policy.to_dict() and "inline" not in repr(policy)
