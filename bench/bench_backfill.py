"""Backfill throughput: 10,000 fire times of a trivial job, against the same 10,000 runs fired by the
schedule (a burst of 10,000 jobs due at once), in one process, one after the other.

Reports runs per second for both, their ratio (target: backfill >= 0.8x the scheduled burst) and the
longest loop iteration during each (target <= 5 ms), as wall and as loop-thread CPU time.

    .venv/bin/python bench/bench_backfill.py
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone

import nbsched

N = 10_000


def noop():
    return None


class LoopBlocks:
    """The longest loop iteration: from the selector returning to the loop asking it again (wall time,
    and the loop thread's CPU time - on a shared machine the wall time also counts other processes)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self._since: tuple[float, float] | None = None
        self._selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
        self._select = self._selector.select

        def select(timeout=None):
            if self._since is not None:
                self.wall = max(self.wall, time.perf_counter() - self._since[0])
                self.cpu = max(self.cpu, time.thread_time() - self._since[1])
            events = self._select(timeout)
            self._since = (time.perf_counter(), time.thread_time())
            return events

        self._selector.select = select

    def stop(self) -> tuple[float, float]:
        self._selector.select = self._select
        return self.wall * 1000, self.cpu * 1000


async def scheduled_burst() -> tuple[float, float]:
    sched = nbsched.Scheduler(tz="UTC")
    count = [0]

    def bump():
        count[0] += 1

    trigger = nbsched.Date(datetime.now(timezone.utc) + timedelta(seconds=8))  # one value, added N times
    for i in range(N):
        sched.add(bump, trigger, name=f"j{i}")
    while count[0] == 0:
        await asyncio.sleep(0.0005)
    blocks = LoopBlocks()
    t0 = time.perf_counter()
    while count[0] < N:
        await asyncio.sleep(0.0005)
    elapsed = time.perf_counter() - t0
    wall, cpu = blocks.stop()
    sched.shutdown()
    return N / elapsed, wall, cpu


async def backfill() -> tuple[float, float]:
    sched = nbsched.Scheduler(tz="UTC")
    job = sched.add(noop, "every 1s", name="job", history_rows=2 * N)  # room for all of them
    end = job.next_fire_time - timedelta(days=1)  # on the job's grid: exactly N fire times
    start = end - timedelta(seconds=N - 1)
    await asyncio.sleep(0.01)
    blocks = LoopBlocks()
    t0 = time.perf_counter()
    handle = sched.backfill("job", start, end)
    await handle._batch.future  # the runs; building the frame afterwards is history(), measured elsewhere
    elapsed = time.perf_counter() - t0
    wall, cpu = blocks.stop()
    frame = await handle
    assert len(frame) == handle.total and set(frame["outcome"]) == {"success"}, (len(frame), handle.total)
    sched.shutdown()
    return handle.total / elapsed, wall, cpu


def main() -> None:
    import pandas  # noqa: F401 - a notebook has it loaded; its first import is not the backfill's cost

    load = os.getloadavg()
    burst_rate, burst_block, burst_cpu = asyncio.run(scheduled_burst())
    back_rate, back_block, back_cpu = asyncio.run(backfill())
    result = {"runs": N, "scheduled_runs_per_s": round(burst_rate), "backfill_runs_per_s": round(back_rate),
              "ratio": round(back_rate / burst_rate, 2), "scheduled_longest_block_ms": round(burst_block, 2),
              "backfill_longest_block_ms": round(back_block, 2), "scheduled_longest_block_cpu_ms": round(burst_cpu, 2),
              "backfill_longest_block_cpu_ms": round(back_cpu, 2), "load": [round(x, 2) for x in load]}
    print(f"backfill benchmark ({N:,} runs of a trivial job; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")
    print("| | runs/s | longest loop block, wall (ms) | same, loop CPU (ms) |\n|---|---:|---:|---:|")
    print(f"| fired by the schedule (burst) | {burst_rate:,.0f} | {burst_block:.2f} | {burst_cpu:.2f} |")
    print(f"| backfill, max_active=1 | {back_rate:,.0f} | {back_block:.2f} | {back_cpu:.2f} |")
    print(f"ratio backfill / schedule: {back_rate / burst_rate:.2f}x (target >= 0.8x); "
          f"loop block target <= 5 ms")
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
