"""Workflows: jobs that run after other jobs (``after NAME[, NAME ...]``), with Airflow's trigger rules.

Every finished run of an upstream job (its final outcome, after retries) is *delivered* to its
downstream jobs.  Each downstream job has a :class:`Gate` that collects deliveries in *rounds*: a
round holds one delivered run of every upstream.  For the ``all_*``/``none_failed`` rules the job
runs (or records why not) when the round is complete; for ``one_*`` and ``always`` as soon as one
delivered run satisfies the rule (the rest of that round is consumed when it arrives).  Deliveries
of an upstream that runs ahead wait in order.  A run that cannot happen because of the rule is
*recorded*, not run: ``upstream_failed`` if an upstream failed, ``skipped`` if upstreams were
skipped, and that outcome is delivered further down, so a failure at the root shows along the chain.

:func:`decide` is the rule table as a pure function.
"""
from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

from ..job import DEFAULT_TRIGGER_RULE as DEFAULT_RULE, TRIGGER_RULES as RULES

__all__ = ["RULES", "FAILED", "RUN", "decide", "Delivery", "Gate", "DEFAULT_RULE", "MAX_PENDING"]

#: Outcomes that count as "failed" for the rules.
FAILED = frozenset(("error", "timeout", "interrupted", "cancelled", "upstream_failed"))
_EARLY = frozenset(("one_success", "one_failed", "always"))
#: Deliveries a downstream job keeps waiting (per upstream, and runs ready for a free instance).
#: Beyond this the oldest are recorded ``missed`` (never dropped silently).
MAX_PENDING = 10_000

RUN, UPSTREAM_FAILED, SKIPPED = "run", "upstream_failed", "skipped"


def decide(rule: str, outcomes: "list[str] | tuple[str, ...]", complete: bool) -> str | None:
    """What a downstream job does given the outcomes delivered so far in a round.

    Returns ``"run"``, ``"upstream_failed"`` or ``"skipped"``, or None to wait for more deliveries.
    ``complete`` says every upstream has delivered in this round.
    """
    if rule == "always":
        return RUN if outcomes else None
    if rule == "one_success":
        if "success" in outcomes:
            return RUN
        if not complete:
            return None
        return UPSTREAM_FAILED if any(o in FAILED for o in outcomes) else SKIPPED
    if rule == "one_failed":
        if any(o in FAILED for o in outcomes):
            return RUN
        return SKIPPED if complete else None
    if not complete:
        return None
    if rule == "all_done":
        return RUN
    failed = any(o in FAILED for o in outcomes)
    if rule == "all_success":
        if all(o == "success" for o in outcomes):
            return RUN
        return UPSTREAM_FAILED if failed else SKIPPED
    if rule == "none_failed":
        return UPSTREAM_FAILED if failed else RUN
    if rule == "all_failed":
        return RUN if all(o in FAILED for o in outcomes) else SKIPPED
    raise ValueError(f"unknown trigger rule {rule!r}")


class Delivery(NamedTuple):
    upstream: str
    run_id: int
    scheduled: float  # the upstream run's logical time
    outcome: str
    value: Any
    note: str | None  # why a delivery counts as skipped (a branch not taken), else None
    trigger: Any = None  # the data interval: (trigger whose previous fire starts it, or a fixed start)
    interval_start: float | None = None


class Gate:
    """One downstream job's deliveries: per upstream queues, the current round, runs waiting to start."""

    __slots__ = ("upstreams", "rule", "pending", "round", "fired", "ready")

    def __init__(self, upstreams: tuple, rule: str):
        self.upstreams = upstreams
        self.rule = rule
        self.pending: dict[str, deque] = {name: deque() for name in upstreams}
        self.round: dict[str, Delivery] = {}
        self.fired = False
        self.ready: deque = deque()  # (scheduled, upstream values, consumed deliveries) waiting for an instance

    def direct(self, delivery: Delivery) -> str | None:
        """The common case - one upstream, nothing waiting - decided directly: a round of this one
        delivery is complete at once, and this is its decision (what :meth:`offer` would decide,
        without a queue, a round or a list).  None: not the common case, :meth:`offer` it."""
        if len(self.upstreams) == 1 and not self.round and not self.pending[delivery.upstream]:
            outcome = delivery.outcome
            return RUN if outcome == "success" and self.rule == DEFAULT_RULE else decide(self.rule, (outcome,), True)
        return None

    def offer(self, delivery: Delivery) -> tuple[list, list]:
        """Take a delivery; returns (decisions, overflow).  A decision is ``(what, scheduled, round)`` with
        ``what`` from :func:`decide` and ``round`` the deliveries it consumed; overflow lists deliveries
        pushed out of a full queue (the caller records them)."""
        what = self.direct(delivery)
        if what is not None:
            return [(what, delivery.scheduled, {delivery.upstream: delivery})], []
        queue = self.pending[delivery.upstream]
        queue.append(delivery)
        overflow = [queue.popleft()] if len(queue) > MAX_PENDING else []
        decisions = []
        n = len(self.upstreams)
        while True:
            moved = False
            for name in self.upstreams:
                if name not in self.round and self.pending[name]:
                    self.round[name] = self.pending[name].popleft()
                    moved = True
            rnd = self.round
            complete = len(rnd) == n
            if not self.fired and rnd and (complete or self.rule in _EARLY):
                what = decide(self.rule, [d.outcome for d in rnd.values()], complete)
                if what is not None:
                    decisions.append((what, max(d.scheduled for d in rnd.values()), dict(rnd)))
                    self.fired = True
            if complete:
                self.round = {}
                self.fired = False
                continue
            if not moved:
                return decisions, overflow
