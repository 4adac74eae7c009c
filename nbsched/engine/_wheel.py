"""The timing wheel: jobs wait in 1 ms buckets, one loop timer is armed for the earliest bucket.

* **One timer.**  Buckets (``dict[int, list]``) are keyed by millisecond; their keys sit in a heap and
  a single timer (from the clock) is armed for the earliest.  Adding, removing (lazy: a job's entry
  is live only while ``job._key`` equals its bucket's key) and firing cost O(1) amortised per job,
  plus O(log buckets) for a new bucket.  Jobs go in the buckets as they are: no per-fire tuples.
* **Never early.**  Bucket ``k`` holds the planned times in ``(k - 1, k]`` ms.  The timer is armed
  for the earliest bucket's first job (its first entry, usually its earliest; a big bucket's or a
  stale entry's: the bucket's end); woken (the selector wakes up to a millisecond late), the wheel
  fires every bucket that has ended and, of the current millisecond's (small) bucket, the jobs
  planned by now - the others wait for the next wake.  So in a dense schedule a job starts about
  as soon after its time as a timer of its own would start it, never before, and the loop wakes
  at most about once a millisecond (on a VM a wake costs tens of microseconds of CPU).
* **Exact instants.**  A timer may fire up to ``clock.timer_slack`` late (the selector rounds to
  milliseconds); when the schedule is sparse (:data:`SPIN_MIN_GAP`) the wheel arms that much early
  and spins to the instant within a CPU budget (:data:`SPIN_BUDGET` of a core).  The same code runs
  on every clock: a fake clock has no slack.
* **Slices.**  When thousands of jobs fall due at once they are worked through in slices of
  :data:`SLICE_SECONDS`, giving the loop back between slices, so a kernel's cells, widget clicks and
  comms are never held up by bookkeeping.  Starting comes first: the owner's ``hold(due)`` is
  called before a slice starts jobs (with how many are due), ``park()`` when it ends with more
  due, and ``release(deadline)`` once every due job has started (it records what the runs left
  to record, and says whether it is done: if not, the wheel calls it again at the loop's next
  turn, after any newly due jobs).
* **Load.**  About once a second the wheel tells its owner (``on_load(share)``) the share of wall
  time it spent firing jobs (the scheduler uses it for the thread switch interval, see
  :mod:`nbsched.engine._gil`).
"""
from __future__ import annotations

import heapq
import math
from typing import Any, Callable

from ..clock import Clock, perf_counter

__all__ = ["TimingWheel", "SLICE_SECONDS", "SPIN_BUDGET"]

#: How long one slice of due-job processing may hold the loop before yielding.  Each step of a
#: kernel's request waits for the slice under way: in a real kernel with 100,000 jobs a second, 1 ms
#: slices answered a trivial request in 13-16 ms at the median (17-20 ms with 2 ms slices) and 22-23 ms
#: at p99 (24-29 ms); 0.5 ms slices cost the loop so much overhead that it fell behind.
SLICE_SECONDS = 0.001
_CHECK_EVERY = 16  # entries between budget checks
#: The share of one core that spinning to exact fire times may use (tokens refill at this rate).
SPIN_BUDGET = 0.03
#: Spin only for a bucket at least this long after the previous wake.  In a dense schedule (buckets
#: a millisecond or two apart) the loop is awake that often anyway and spinning would only burn CPU
#: (about 2.5 us a fire at 10,000 jobs a second) for a fraction of a millisecond of lateness.
SPIN_MIN_GAP = 0.005
#: Buckets with more jobs than this are fired at their end (finding the earliest costs too much).
_SMALL_BUCKET = 64


_ceil = math.ceil


class TimingWheel:
    """Holds waiting jobs and calls ``fire(job, now)`` for each when its planned time comes.

    ``on_drained()`` is called when a burst has been worked through and nothing else is due;
    ``on_load(share)`` about once a second with the share of wall time spent firing, and
    ``hold``/``park``/``release`` around slices of fires (see the module docstring).
    """

    def __init__(self, clock: Clock, loop_of: Callable[[], Any], fire: Callable[[Any, float], None],
                 on_drained: Callable[[], None], on_wake: Callable[[], bool] | None = None,
                 on_load: Callable[[float], None] | None = None, hold: Callable[[int], None] | None = None,
                 park: Callable[[], None] | None = None, release: Callable[[float], bool] | None = None):
        self._clock = clock
        self._time = clock.time
        self._loop_of = loop_of  # the loop to arm timers and schedule slices on
        self._fire = fire
        self._on_drained = on_drained
        self._on_wake = on_wake  # called first on every timer wake; True: it rebuilt the wheel, stop here
        self._wake_interval = getattr(clock, "wake_interval", None) if on_wake is not None else None
        self._on_load = on_load
        self._hold, self._park, self._release = hold, park, release
        self._busy = 0.0  # seconds spent firing since _window began (perf_counter)
        self._window = perf_counter()
        self._buckets: dict[int, list] = {}
        self._keys: list[int] = []
        self._timer = None
        self._timer_key: int | None = None
        self._spin_tokens = 0.0
        self._spin_refilled = self._time()
        self._last_wake = self._spin_refilled  # the last timer wake (a dense schedule wakes often)
        self._early = False  # the timer was armed early, to spin to the instant
        self._due: list[tuple[int, list]] = []  # (bucket key, jobs) waiting to be processed
        self._due_chunk = 0
        self._due_pos = 0
        self.draining = False
        self.stopped = False  # paused scheduler or shut down: nothing fires

    # ------------------------------------------------------------------------------ public
    def put(self, job: Any, planned: float) -> None:
        """Wait ``job`` for POSIX time ``planned`` (its entry replaces any earlier one)."""
        job._planned = planned
        key = _ceil(planned * 1000.0 - 1e-6)  # its millisecond, rounded up: never fired before its time
        job._key = key
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [job]
            heapq.heappush(self._keys, key)
            if not self.stopped and (self._timer_key is None or key < self._timer_key) and not self.draining:
                self._arm(key)
        else:
            bucket.append(job)

    @staticmethod
    def take(job: Any) -> None:
        """Take ``job`` out (lazily: its bucket entry goes stale).  Scheduler._remove writes this out."""
        job._key = None
        job._next_ts = job._planned = None

    def clear(self) -> None:
        """Forget every waiting job and stop the timer (the caller re-puts what should wait)."""
        self.disarm()
        self._buckets.clear()
        self._keys.clear()
        self._due = []
        self._due_chunk = self._due_pos = 0
        self.draining = False

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_key = None

    def rearm(self) -> None:
        """Arm the timer for the earliest bucket (after :attr:`stopped` is cleared)."""
        if self._keys and not self.draining:
            self._arm(self._keys[0])

    @property
    def next_key(self) -> int | None:
        """The earliest bucket's millisecond key, if any."""
        return self._keys[0] if self._keys else None

    @property
    def backlog(self) -> int:
        """Due entries not processed yet (a burst being worked through)."""
        due = self._due
        count = -self._due_pos
        for chunk in range(self._due_chunk, len(due)):  # usually one or two: no generator for them
            count += len(due[chunk][1])
        return count

    @property
    def busy(self) -> bool:
        return self._due_chunk < len(self._due) or self.draining

    # ------------------------------------------------------------------------------ timer
    def _arm(self, key: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_key = key
        when = key / 1000.0
        slack = self._clock.timer_slack
        self._early = False
        if slack and when - self._last_wake >= SPIN_MIN_GAP:
            self._refill(self._time())
        if slack and self._spin_tokens >= slack and when - self._last_wake >= SPIN_MIN_GAP:
            # a sparse schedule: wake a little early and spin to the instant (see the module docstring);
            # a big bucket (a thousand jobs on the same second) is worth twice the margin
            big = len(self._buckets.get(key, ())) > _SMALL_BUCKET
            when = self._bucket_target(key) - (2 * slack if big else slack)
            self._early = True
        elif slack:
            # a dense schedule: wake for the bucket's first job, not the bucket's end - the selector
            # wakes up to a millisecond after the instant asked, and the end could add another.  The
            # first entry is usually the earliest (jobs are put in the order they fire); if it is not,
            # the wake is later than it could be, never earlier than its job.
            bucket = self._buckets.get(key)
            if bucket and len(bucket) <= _SMALL_BUCKET:  # a big one is fired whole, at its end
                first = bucket[0]
                if first._key == key:
                    when = first._planned
        wake = self._wake_interval
        if wake is not None and when - self._time() > wake:
            when = self._time() + wake  # look at the clock at least this often (a wall-clock step)
        self._timer = self._clock.call_at(when, self._on_timer, self._loop_of())

    def _bucket_target(self, key: int) -> float:
        """The earliest planned fire time in bucket ``key`` (small buckets; else the bucket's end)."""
        bucket = self._buckets.get(key)
        if not bucket or len(bucket) > _SMALL_BUCKET:
            return key / 1000.0
        planned = [job._planned for job in bucket if job._key == key]
        return min(planned) if planned else key / 1000.0

    def _refill(self, now: float) -> None:
        """Add the spin budget earned since the last refill (SPIN_BUDGET of a core, capped)."""
        self._spin_tokens = min(SPIN_BUDGET * 2.5, self._spin_tokens + (now - self._spin_refilled) * SPIN_BUDGET)
        self._spin_refilled = now

    def _spin_to(self, key: int) -> bool:
        """Before processing bucket ``key``: spin to its instant if it is a hair away and the budget
        allows.  Returns False if the timer fired too early to spin (the caller re-arms)."""
        target = self._bucket_target(key)
        time = self._time
        now = time()
        self._refill(now)
        remaining = target - now
        if remaining <= 0:
            return True
        slack = self._clock.timer_slack
        if remaining <= 2 * slack + 0.0015 and remaining <= self._spin_tokens:
            while time() < target:
                pass
            self._spin_tokens -= remaining
            return True
        return False  # woke early (a long horizon, or no spin budget): never fire a job before its time

    def _on_timer(self) -> None:
        key = self._timer_key
        self._timer = None
        self._timer_key = None
        if self.stopped:
            return
        if self._on_wake is not None and self._on_wake():
            return
        self._last_wake = self._time()
        if key is not None and self._early:
            self._spin_to(key)  # armed early (a sparse schedule): spin to the instant
        if not self._collect_due():
            if self._keys:
                self._arm(self._keys[0])  # woke too early (long horizon, or no spin budget): wait
            return
        self._drain()

    # ------------------------------------------------------------------------------ due jobs
    def _account(self, began: float) -> None:
        ended = perf_counter()
        self._busy += ended - began
        if ended - self._window >= 1.0:
            self._report_load(ended)

    def _report_load(self, now: float) -> None:
        share = self._busy / (now - self._window)
        self._busy = 0.0
        self._window = now
        if self._on_load is not None:
            self._on_load(share)

    def _collect_due(self) -> bool:
        """Move what is due now to the due list: every bucket that has ended, and the jobs of the
        current millisecond's (small) bucket planned by now - never a job before its time.  Returns
        whether anything was added."""
        now = self._time()
        ended = math.floor(now * 1000.0 + 1e-6)  # bucket k holds planned times in (k - 1, k] ms
        keys = self._keys
        buckets = self._buckets
        due = self._due
        if self._due_chunk and self._due_chunk >= len(due):
            due.clear()
            self._due_chunk = self._due_pos = 0
        count = len(due)
        while keys and keys[0] <= ended:
            key = heapq.heappop(keys)
            due.append((key, buckets.pop(key)))
        if keys and keys[0] == ended + 1:  # the current millisecond: its jobs planned by now
            key = keys[0]
            bucket = buckets[key]
            if len(bucket) <= _SMALL_BUCKET:
                ready = []
                rest = []
                for job in bucket:  # one pass: this runs at nearly every wake of a dense schedule
                    if job._key == key:
                        if job._planned <= now:
                            ready.append(job)
                        else:
                            rest.append(job)
                if ready:
                    if rest:
                        buckets[key] = rest
                    else:
                        heapq.heappop(keys)
                        del buckets[key]
                    due.append((key, ready))
        return len(due) > count

    def _drain(self) -> None:
        """Start due jobs for at most SLICE_SECONDS, then record them (or yield to the loop first);
        while the slice lasts, jobs that fell due meanwhile are started in the same turn of the loop."""
        self.draining = True
        if self._due_chunk >= len(self._due) and self._keys:
            self._collect_due()  # releasing a burst's records took a turn of the loop: new ones first
        began = perf_counter()
        deadline = began + SLICE_SECONDS
        fire = self._fire
        time = self._time
        loop = self._loop_of()
        while True:
            due = self._due
            chunk = self._due_chunk
            pos = self._due_pos
            if self._hold is not None:
                self._hold(self.backlog)
            count = 0
            out_of_time = False
            try:
                while chunk < len(due):
                    key, jobs = due[chunk]
                    end = len(jobs)
                    while pos < end:
                        job = jobs[pos]
                        pos += 1
                        if job._key == key:
                            fire(job, time())
                        count += 1
                        if count == _CHECK_EVERY:
                            count = 0
                            if perf_counter() > deadline:
                                out_of_time = True
                                break
                    if out_of_time and pos < end:
                        break
                    chunk += 1
                    pos = 0
                    if out_of_time:
                        break
            finally:
                self._due_chunk = chunk
                self._due_pos = pos
            if chunk < len(due):
                if self._park is not None:
                    self._park()
                self._account(began)
                loop.call_soon(self._drain)  # more to start: give the loop back first
                return
            due.clear()
            self._due_chunk = self._due_pos = 0
            if self._release is not None and not self._release(deadline):
                self._account(began)
                loop.call_soon(self._drain)  # more to record: give the loop back first
                return
            if self.stopped or not self._keys or perf_counter() > deadline or not self._collect_due():
                break
            # more fell due while these started and were recorded: the same slice goes on with them
        self._account(began)
        self.draining = False
        if self.stopped:
            return
        if self._keys:
            self._arm(self._keys[0])  # (already due: the loop runs it at its next turn)
        self._on_drained()
