"""Freezing long-lived objects after bulk adds (nbsched/engine/_gc.py)."""
import gc

import pytest

import nbsched
from nbsched.engine._gc import STEP, GcFreezer


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freezer_freezes_after_a_bulk_add_and_unfreezes_after_a_bulk_remove(unfrozen):
    posted = []
    f = GcFreezer(posted.append, threshold=3)
    f.added()
    f.added()
    assert posted == [] and gc.get_freeze_count() == 0
    f.added()
    f.added()
    assert len(posted) == 1  # one settle per batch, at the loop's next turn
    posted.pop()()
    assert f.frozen and gc.get_freeze_count() > 0
    f.removed()
    f.removed()
    assert posted == []
    f.removed()
    posted.pop()()
    assert not f.frozen and gc.get_freeze_count() == 0


def test_freezer_off(unfrozen):
    posted = []
    f = GcFreezer(posted.append, threshold=None)
    for _ in range(5000):
        f.added()
    assert posted == [] and gc.get_freeze_count() == 0 and not f.frozen


async def test_scheduler_freezes_after_bulk_add_and_unfreezes_at_shutdown(clock, unfrozen, monkeypatch):
    monkeypatch.setattr(nbsched.Scheduler, "gc_freeze_after", 50)
    s = nbsched.Scheduler(clock=clock)
    try:
        for i in range(49):
            s.add(lambda: None, "every 10s", name=f"j{i}")
        await clock.advance(0)
        assert gc.get_freeze_count() == 0
        s.add(lambda: None, "every 10s", name="j49")
        await clock.advance(0)
        frozen = gc.get_freeze_count()
        assert frozen > 0
        await clock.advance(10)  # the jobs still fire, the collector still runs for new objects
        assert len(s.history()) == 50
        assert gc.isenabled()
    finally:
        s.shutdown()
    assert gc.get_freeze_count() == 0


async def test_bulk_remove_unfreezes(clock, unfrozen, monkeypatch):
    monkeypatch.setattr(nbsched.Scheduler, "gc_freeze_after", 20)
    s = nbsched.Scheduler(clock=clock)
    try:
        for i in range(20):
            s.add(lambda: None, "every 10s", name=f"j{i}")
        await clock.advance(0)
        assert gc.get_freeze_count() > 0
        for i in range(20):
            s.remove(f"j{i}")
        await clock.advance(0)
        assert gc.get_freeze_count() == 0
    finally:
        s.shutdown()


def test_a_long_bulk_add_is_frozen_in_steps_within_one_loop_turn(unfrozen, monkeypatch):
    calls = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append("collect") or 0)
    real_freeze = gc.freeze
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze") or real_freeze())
    posted = []
    f = GcFreezer(posted.append, threshold=3)
    step = STEP * 3
    for _ in range(step - 1):
        f.added()
    assert len(posted) == 1 and calls == [] and not f.frozen  # the first freeze waits for the loop's turn
    f.added()  # the loop has not turned yet: a step, right away
    assert calls == ["collect", "freeze"] and f.frozen and len(posted) == 1
    for _ in range(step - 1):
        f.added()
    assert calls == ["collect", "freeze"]
    f.added()
    assert calls == ["collect", "freeze"] * 2
    posted.pop()()  # the loop's turn: the rest since the last step
    assert calls == ["collect", "freeze"] * 3 and posted == []
    for _ in range(step - 1):  # a new bulk add after the turn: its first freeze waits for the next turn again
        f.added()
    assert len(posted) == 1 and calls == ["collect", "freeze"] * 3


def test_steps_while_a_bulk_remove_is_pending_still_unfreeze_then_freeze_at_the_turn(unfrozen):
    posted = []
    f = GcFreezer(posted.append, threshold=2)
    f.added(), f.added()
    posted.pop()()
    assert f.frozen
    f.removed(), f.removed()
    assert len(posted) == 1  # the unfreeze waits for the turn
    for _ in range(STEP * 2):  # adds in the same turn: steps freeze as they go
        f.added()
    assert f.frozen and gc.get_freeze_count() > 0 and len(posted) == 1
    posted.pop()()
    assert f.frozen and gc.get_freeze_count() > 0  # unfrozen for the removed jobs, then frozen again
