"""The system clock's timers and elapsed time (a few short real-time tests)."""
import asyncio

import pytest

from nbsched import clock as clock_module


@pytest.mark.realtime
async def test_timers_beyond_the_horizon_fire_at_their_wall_time_not_early(monkeypatch):
    # a job timeout of 60 s used to fire after MAX_TIMER_HORIZON (30 s): far timers are re-armed now
    monkeypatch.setattr(clock_module, "MAX_TIMER_HORIZON", 0.05)
    clock = clock_module.SystemClock()
    loop = asyncio.get_running_loop()
    fired = loop.create_future()
    start = clock.time()
    clock.call_at(start + 0.3, lambda: fired.set_result(clock.time()), loop)
    assert await fired >= start + 0.3


@pytest.mark.realtime
async def test_a_cancelled_far_timer_never_fires(monkeypatch):
    monkeypatch.setattr(clock_module, "MAX_TIMER_HORIZON", 0.05)
    clock = clock_module.SystemClock()
    loop = asyncio.get_running_loop()
    calls = []
    handle = clock.call_at(clock.time() + 0.2, lambda: calls.append(1), loop)
    done = loop.create_future()
    loop.call_later(0.1, handle.cancel)  # after one re-arm
    loop.call_later(0.35, done.set_result, None)
    await done
    assert calls == []


def test_elapsed_time_moves_with_the_wall_clock_when_nobody_steps_it():
    clock = clock_module.SystemClock()
    offset = clock.time() - clock.elapsed()
    assert abs((clock.time() - clock.elapsed()) - offset) < 0.5
