"""The timing wheel's own rules, on a stub clock (no loop, no time passing)."""


class _StubClock:
    """What the wheel asks of a clock: time(), timer_slack and call_at (recorded, never run)."""

    timer_slack = 0.001

    def __init__(self, now):
        self.now = now
        self.armed = []

    def time(self):
        return self.now

    def call_at(self, when, callback, loop):
        self.armed.append(when)
        return _Handle()


class _Handle:
    def cancel(self):
        pass


class _Job:
    _key = _planned = _next_ts = None


def test_the_wheel_spins_only_for_sparse_schedules():
    from nbsched.engine._wheel import SPIN_BUDGET, SPIN_MIN_GAP, TimingWheel

    clock = _StubClock(1_000.0)
    wheel = TimingWheel(clock, lambda: None, fire=lambda job, now: None, on_drained=lambda: None)
    wheel._spin_tokens = SPIN_BUDGET  # a full budget
    wheel._spin_refilled = clock.now  # the last wake: now
    far = 1_000.0 + SPIN_MIN_GAP + 0.0104  # sparse: wake a timer slack early, then spin to the instant
    wheel.put(_Job(), far)
    assert clock.armed == [far - clock.timer_slack]
    wheel.clear()
    clock.armed.clear()
    near = 1_000.0 + 0.0014  # dense (the loop is awake every millisecond or so): a plain timer for the bucket
    wheel.put(_Job(), near)
    assert clock.armed == [1_000.002]
