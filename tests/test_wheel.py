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
    wheel._last_wake = clock.now  # the last wake: now
    far = 1_000.0 + SPIN_MIN_GAP + 0.0104  # sparse: wake a timer slack early, then spin to the instant
    wheel.put(_Job(), far)
    assert clock.armed == [far - clock.timer_slack]
    wheel.clear()
    clock.armed.clear()
    near = 1_000.0 + 0.0014  # dense (the loop is awake every millisecond or so): a plain timer for the job
    wheel.put(_Job(), near)
    assert clock.armed == [near]


def test_a_dense_schedule_arms_for_the_buckets_first_job_and_never_before_it():
    from nbsched.engine._wheel import TimingWheel

    clock = _StubClock(1_000.0)
    wheel = TimingWheel(clock, lambda: None, fire=lambda job, now: None, on_drained=lambda: None)
    wheel._last_wake = clock.now  # dense: the loop was awake just now
    first, second = _Job(), _Job()
    wheel.put(first, 1_000.0016)
    wheel.put(second, 1_000.0012)  # the same bucket (1000.001, 1000.002], earlier but put second
    wheel._arm(wheel.next_key)
    assert clock.armed[-1] == 1_000.0016  # the first entry: later than the earliest, never before a job
    wheel.take(first)  # the first entry goes stale (its job was removed or moved)
    wheel._arm(wheel.next_key)
    assert clock.armed[-1] == 1_000.002  # then the bucket's end, as before


def test_a_big_bucket_in_a_dense_schedule_is_armed_for_its_end_and_its_early_wake_does_not_spin():
    """A big bucket (100,000 jobs a second: ~100 a millisecond) is fired whole once it has ended, so its
    timer is for its end: armed for its first job, every wake inside it would find nothing to fire
    and re-arm for a time already past - a busy loop until the bucket ends."""
    from nbsched.engine._wheel import _SMALL_BUCKET, TimingWheel

    clock = _StubClock(1_000.0)
    loop = _Loop()
    fired = []
    wheel = TimingWheel(clock, lambda: loop, fire=lambda job, now: fired.append(now), on_drained=lambda: None)
    wheel._last_wake = clock.now
    for i in range(_SMALL_BUCKET + 1):
        wheel.put(_Job(), 1_000.0011 + i * 1e-6)
    assert clock.armed == [1_000.0011]  # armed by the first put, while the bucket was small
    armed = len(clock.armed)
    clock.now = 1_000.0015  # woken inside the bucket (another timer, or the selector's rounding)
    wheel._on_timer()
    assert fired == [] and clock.armed[armed:] == [1_000.002]  # re-armed for its end, not for the past
    clock.now = 1_000.0021
    wheel._on_timer()
    assert len(fired) == _SMALL_BUCKET + 1



def test_a_big_bucket_in_a_sparse_schedule_is_armed_twice_as_early():
    from nbsched.engine._wheel import _SMALL_BUCKET, SPIN_BUDGET, TimingWheel

    clock = _StubClock(1_000.0)
    wheel = TimingWheel(clock, lambda: None, fire=lambda job, now: None, on_drained=lambda: None)
    wheel._spin_tokens = SPIN_BUDGET
    wheel._last_wake = clock.now
    second = 1_001.0  # a thousand jobs on 'cron * * * * * *' wait for the next second
    for _ in range(_SMALL_BUCKET + 1):
        wheel.put(_Job(), second)
    clock.armed.clear()
    wheel._arm(wheel.next_key)  # what the wheel does after a burst: arm for the earliest bucket
    assert clock.armed == [second - 2 * clock.timer_slack]

class _Loop:
    def __init__(self):
        self.soon = []

    def call_soon(self, callback):
        self.soon.append(callback)


def test_the_wheel_reports_the_share_of_time_spent_firing(monkeypatch):
    import nbsched.engine._wheel as wheel_mod

    ticks = iter([0.0, 0.0, 0.3, 0.5, 0.9, 1.0, 1.6, 2.0, 2.05])  # the wheel's perf_counter readings
    monkeypatch.setattr(wheel_mod, "perf_counter", lambda: next(ticks))
    clock = _StubClock(1_000.0)
    loop = _Loop()
    shares = []
    wheel = wheel_mod.TimingWheel(clock, lambda: loop, fire=lambda job, now: None, on_drained=lambda: None,
                                  on_load=shares.append)  # reads 0.0: the window starts
    for _ in range(2):  # drains from 0.0 to 0.3 and from 0.5 to 0.9: 0.7 s busy, 0.9 s of wall time
        wheel._drain()
    assert shares == []  # less than a second so far: nothing reported
    wheel._drain()  # 1.0 -> 1.6: the window (0.0 -> 1.6) closes with 1.3 s busy
    assert shares == [1.3 / 1.6]
    wheel._drain()  # 2.0 -> 2.05: a new window, not a second long yet
    assert shares == [1.3 / 1.6]


def test_the_switch_interval_is_shortened_only_while_busy_and_only_from_the_default():
    import sys

    from nbsched.engine._gil import BUSY, DEFAULT, QUIET, SwitchInterval

    before = sys.getswitchinterval()
    sys.setswitchinterval(DEFAULT)
    try:
        a, b = SwitchInterval(0.0005), SwitchInterval(0.0005)
        a.report(BUSY - 0.01)
        assert sys.getswitchinterval() == DEFAULT  # not busy enough
        a.report(BUSY)
        assert sys.getswitchinterval() == 0.0005
        b.report(0.9)
        a.report(QUIET - 0.01)  # a is quiet, b is still busy: the short interval stays
        assert (a.busy, b.busy, sys.getswitchinterval()) == (False, True, 0.0005)
        b.report(QUIET)  # between QUIET and BUSY: no change (hysteresis)
        assert sys.getswitchinterval() == 0.0005
        b.release()  # shutdown
        assert sys.getswitchinterval() == DEFAULT

        sys.setswitchinterval(0.002)  # the user's own value is never replaced ...
        a.report(1.0)
        assert sys.getswitchinterval() == 0.002
        a.release()
        assert sys.getswitchinterval() == 0.002

        sys.setswitchinterval(DEFAULT)
        a.report(1.0)
        sys.setswitchinterval(0.003)  # ... nor one the user set while it was short
        a.release()
        assert sys.getswitchinterval() == 0.003

        sys.setswitchinterval(DEFAULT)
        off = SwitchInterval(None)  # Scheduler.switch_interval = None: never touched
        off.report(1.0)
        assert (off.busy, sys.getswitchinterval()) == (False, DEFAULT)
    finally:
        sys.setswitchinterval(before)


def test_a_bad_switch_interval_is_refused_with_the_valid_range():
    import pytest

    from nbsched.engine._gil import SwitchInterval

    with pytest.raises(ValueError, match=r"invalid switch_interval 0\.01: seconds in \(0, 0\.005\], or None"):
        SwitchInterval(0.01)


def test_no_job_fires_before_its_time_and_a_bucket_fires_as_its_jobs_come_due():
    """A bucket holds a millisecond of planned times: woken inside it, the wheel fires the jobs
    planned by now and leaves the others for the next wake (it used to fire the whole current
    bucket, up to 1 ms early)."""
    from nbsched.engine._wheel import TimingWheel

    clock = _StubClock(1_000.0)
    loop = _Loop()
    fired = []
    wheel = TimingWheel(clock, lambda: loop, fire=lambda job, now: fired.append((job.name, now)),
                        on_drained=lambda: None)
    for name, planned in (("a", 1_000.0003), ("b", 1_000.0008), ("c", 1_000.0013)):  # a, b: one bucket
        job = _Job()
        job.name = name
        wheel.put(job, planned)
    assert clock.armed[-1] == 1_000.0003  # the earliest bucket's first job (a dense schedule)
    clock.now = 1_000.0005  # the timer fires late, inside the bucket
    wheel._on_timer()
    assert fired == [("a", 1_000.0005)]
    assert clock.armed[-1] == 1_000.0008  # b waits, with a timer for its own time
    clock.now = 1_000.0007  # woken again before b's time: nothing fires
    wheel._on_timer()
    assert fired == [("a", 1_000.0005)] and clock.armed[-1] == 1_000.0008
    clock.now = 1_000.0011  # b's bucket has ended; c (the next bucket) is not due yet
    wheel._on_timer()
    assert fired == [("a", 1_000.0005), ("b", 1_000.0011)]
    assert clock.armed[-1] == 1_000.0013
