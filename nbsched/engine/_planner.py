"""The fire planner: what happens when a job's fire time comes.  A pure function, tested with tables.

When the loop was blocked (a long cell, a suspended laptop) several fire times may be overdue at
once.  The job's policy decides:

* ``coalesce="latest"`` runs the newest overdue fire time and records the others ``missed``;
  ``"earliest"`` runs the oldest; ``"all"`` runs each (later ones wait for a free instance);
* ``misfire_grace``: a fire time later than this is recorded ``missed`` instead of run;
* ``until`` / ``max_runs``: no fire time after ``until``; no more runs than ``max_runs``.

:func:`plan_fire` takes everything it needs as arguments and returns the decision; the engine
carries it out (starting runs, recording missed rows, waiting for the next fire time).
"""
from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["FirePlan", "plan_fire", "overdue_times"]


class FirePlan(NamedTuple):
    run: tuple       # nominal fire times to start now, oldest first
    missed: tuple    # nominal fire times to record as missed, oldest first
    next: float | None  # the next nominal fire time to wait for; None: the job is finished
    uncounted: int   # fire times missed between missed[0] and the rest: counted, not listed (retention)


def overdue_times(trigger: Any, nominal: float, now: float, cap: int) -> tuple[list[float], float | None, int]:
    """Fire times of ``trigger`` from ``nominal`` up to ``now``, the first fire time after them, and how
    many were not listed.

    At most ``cap`` are listed (retention would drop more): ``nominal`` and the newest ``cap - 1``; the
    fire times between them are counted exactly (third value) - a day of 'every 1s' lists 10,000 and
    counts the other 76,400, it does not guess."""
    count, tail = trigger.fires_between(nominal, now, max(1, cap - 1))
    due = [nominal, *tail]
    beyond = count - len(tail)
    return due, trigger.next_timestamp(due[-1]), beyond


def plan_fire(trigger: Any, policy: Any, runs: int, nominal: float, planned: float, now: float) -> FirePlan:
    """Decide what a fire of a job does.

    ``trigger`` (``next_timestamp(after)``) and ``policy`` (a :class:`~nbsched.job.JobPolicy`) are the
    job's; ``runs`` is how many scheduled runs it has started; ``nominal`` the fire time that came due,
    ``planned`` the same with jitter (the instant the fire was meant to happen) and ``now`` the time.
    """
    nxt = trigger.next_timestamp(nominal)
    until = policy.until
    max_runs = policy.max_runs
    grace = policy.misfire_grace
    if nxt is None or nxt > now:
        # the common case: exactly one fire time is due
        if nxt is not None and until is not None and nxt > until:
            nxt = None
        if max_runs is not None and runs + 1 >= max_runs:
            nxt = None
        if grace is not None and now - planned > grace:
            return FirePlan((), (nominal,), nxt, 0)
        return FirePlan((nominal,), (), nxt, 0)
    # several fire times are overdue (the loop was blocked): coalesce, record the rest as missed
    due, nxt, beyond = overdue_times(trigger, nominal, now, policy.history_rows or 100_000)
    if nxt is not None and until is not None and nxt > until:
        nxt = None
    if until is not None:
        due = [t for t in due if t <= until]
    coalesce = policy.coalesce
    if coalesce == "latest":
        run, missed = due[-1:], due[:-1]
    elif coalesce == "earliest":
        run, missed = due[:1], due[1:]
    else:
        run, missed = due, []
    if grace is not None:
        missed = sorted(missed + [t for t in run if now - t > grace])
        run = [t for t in run if now - t <= grace]
    if max_runs is not None:
        run = run[:max(0, max_runs - runs)]
        if runs + len(run) >= max_runs:
            nxt = None
    return FirePlan(tuple(run), tuple(missed), nxt, beyond)
