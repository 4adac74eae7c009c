#!/usr/bin/env python
"""nbsched on a Dask cluster: dispatch overhead, a steady 1,000 jobs/s, CPU fan-out.  One run, ~1-2 min.

    .venv/bin/python bench/bench_dask.py            # writes bench/results-dask.md and prints it
    .venv/bin/python bench/bench_dask.py --quick    # smaller (about 30 s)

The cluster is started the way a user starts one: ``dask scheduler`` and ``dask worker`` as separate
processes on this machine (one worker process per core, one thread each), so the benchmark process -
the "kernel" - runs only the scheduler loop and Dask's asynchronous client, as a notebook does.  Each
scenario gets a fresh cluster, so a backlog one leaves behind cannot slow the next.

1. **Dispatch overhead**: the round trip of one run of a trivial function, ``await sched.run_now(job)``
   on the ``dask`` executor vs a bare ``await client.submit(func, pure=False)`` of the same function,
   alternating one by one so both see the same machine; median and p90 per run, and the ratio.
2. **1,000 jobs every second for 10 s** on the cluster: fires achieved (runs started / jobs x seconds),
   the outcomes, and how long the loop was held: a probe coroutine sleeping 1 ms records its
   largest lateness (the longest stretch in which nothing else on the loop - a cell, a widget click -
   could run), plus its p99.  Baseline, same cluster, same window: a bare loop submitting the same
   1,000 tasks with ``client.submit`` every second (what the cluster and client manage without nbsched):
   the share of tasks done within their second, and the same probe.
3. **CPU-bound fan-out**: N jobs each burning ~0.4 s of pure-Python CPU, started together, on the
   ``thread`` executor (one process: the GIL serialises them) vs the ``dask`` executor (worker
   processes); wall times and the speed-up, next to the number of cores.

The machine's load average is printed with the results: this machine is shared, and concurrent work
changes every number here.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import nbsched  # noqa: E402


def noop():
    return 1


def burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


# ------------------------------------------------------------------ the cluster (CLI processes)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, workers: int):
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        dask = str(Path(sys.executable).with_name("dask"))
        log = open(os.devnull, "wb")
        self.procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                        "--no-dashboard"], stdout=log, stderr=log, start_new_session=True)]
        self._wait_port()
        self.procs.append(subprocess.Popen([dask, "worker", self.address, "--nworkers", str(workers), "--nthreads", "1",
                                            "--no-dashboard", "--host", "127.0.0.1"], stdout=log, stderr=log,
                                           start_new_session=True))

    def _wait_port(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("the dask scheduler did not start")

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


# ------------------------------------------------------------------ 1. dispatch overhead
async def dispatch(client, sched, runs: int) -> dict:
    sched.add(noop, "every 1h", name="noop", executor="dask")
    for _ in range(20):  # warm up both paths (connections, function caches)
        await client.submit(noop, pure=False)
        await sched.run_now("noop")
    bare: list[float] = []
    ours: list[float] = []
    clock = time.perf_counter
    for _ in range(runs):
        t = clock()
        await client.submit(noop, pure=False)
        bare.append(clock() - t)
        t = clock()
        await sched.run_now("noop")
        ours.append(clock() - t)
    sched.remove("noop")
    med_b, med_o = statistics.median(bare), statistics.median(ours)
    return {"runs": len(ours), "bare_p50_ms": med_b * 1e3, "bare_p90_ms": _pct(bare, 90) * 1e3,
            "nbsched_p50_ms": med_o * 1e3, "nbsched_p90_ms": _pct(ours, 90) * 1e3, "ratio": med_o / med_b}


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


# ------------------------------------------------------------------ 2. 1,000 jobs every second
class Probe:
    """Records how late a 1 ms sleep wakes up: the stretches in which the loop ran nothing else."""

    def __init__(self):
        self.gaps: list[float] = []
        self._stop = False
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop:
            t = loop.time()
            await asyncio.sleep(0.001)
            self.gaps.append(loop.time() - t - 0.001)

    async def stop(self) -> dict:
        self._stop = True
        await self._task
        return {"block_max_ms": max(self.gaps) * 1e3, "block_p99_ms": _pct(self.gaps, 99) * 1e3,
                "probe_samples": len(self.gaps)}


async def bare_steady(client, jobs: int, seconds: float) -> dict:
    loop = asyncio.get_running_loop()
    done_in_time = total = 0

    async def one_second() -> None:
        nonlocal done_in_time, total
        futures = [client.submit(noop, pure=False) for _ in range(jobs)]
        total += jobs
        await asyncio.sleep(1.0)
        done_in_time += sum(f.status == "finished" for f in futures)
        await client.cancel([f for f in futures if f.status != "finished"], force=True)

    probe = Probe()
    start = loop.time()
    ticks = []
    for k in range(int(seconds)):
        await asyncio.sleep(max(0.0, start + k - loop.time()))
        ticks.append(asyncio.ensure_future(one_second()))
    await asyncio.gather(*ticks)
    out = await probe.stop()
    out["done_in_time_pct"] = 100.0 * done_in_time / total
    return out


async def steady(sched, jobs: int, seconds: float) -> dict:
    for i in range(jobs):
        sched.add(noop, "every 1s", name=f"steady-{i}", executor="dask")
    await asyncio.sleep(2.0)  # warm-up: every job has fired once or twice
    t0 = time.time()
    probe = Probe()
    await asyncio.sleep(seconds)
    blocks = await probe.stop()
    t1 = time.time()
    for i in range(jobs):
        sched.pause(f"steady-{i}")
    try:  # let runs started in the window finish (a saturated cluster may not: those are not counted)
        await asyncio.wait_for(sched.wait_idle(), 5)
    except asyncio.TimeoutError:
        pass
    frame = sched.history()
    frame = frame[frame["job"].str.startswith("steady-")]
    scheduled = frame["scheduled_at"].map(lambda ts: ts.timestamp())
    window = frame[(scheduled >= t0) & (scheduled < t1)]
    expected = jobs * (t1 - t0)
    started = window[window["outcome"].isin(["success", "error", "timeout"])]
    outcomes = window["outcome"].astype(str).value_counts().to_dict()
    durations = started["duration"].dt.total_seconds()
    return {"jobs": jobs, "seconds": round(t1 - t0, 2), "fires_pct": 100.0 * len(started) / expected,
            "outcomes": outcomes, "run_p50_ms": durations.median() * 1e3, "run_p99_ms": durations.quantile(0.99) * 1e3,
            "lateness_p99_ms": window["lateness"].dt.total_seconds().quantile(0.99) * 1e3,
            "in_time_pct": 100.0 * (durations < 1.0).sum() / expected, **blocks}


# ------------------------------------------------------------------ 3. CPU fan-out
async def fanout(sched, tasks: int, n: int) -> dict:
    out = {}
    for executor in ("thread", "dask"):
        for i in range(tasks):
            sched.add(lambda: burn(n), "every 1h", name=f"burn-{executor}-{i}", executor=executor)
        t = time.perf_counter()
        await asyncio.gather(*(sched.run_now(f"burn-{executor}-{i}") for i in range(tasks)))
        out[f"{executor}_s"] = time.perf_counter() - t
        for i in range(tasks):
            sched.remove(f"burn-{executor}-{i}")
    t = time.perf_counter()
    burn(n)
    out["one_task_s"] = time.perf_counter() - t
    out["speedup"] = out["thread_s"] / out["dask_s"]
    out["tasks"] = tasks
    return out


def _say(what: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def _scheduler(client):
    sched = nbsched.Scheduler()
    sched.add_executor("dask", nbsched.DaskExecutor(client))
    return sched


async def _settle(client, timeout: float = 20.0) -> None:
    """Wait until the cluster has no tasks left and the client is connected."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if client.status == "running":
            try:
                left = await client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
            except Exception:  # noqa: BLE001 - reconnecting
                left = -1
            if left == 0:
                return
        await asyncio.sleep(0.2)


async def main_async(args) -> str:
    from distributed import Client

    cores = os.cpu_count() or 1
    jobs, seconds = (200, 5.0) if args.quick else (1000, 10.0)

    async def on_fresh_cluster(what: str, run):
        """Each scenario on a cluster of its own: a backlog left by one cannot slow the next."""
        cluster = Cluster(workers=cores)
        try:
            client = await Client(cluster.address, asynchronous=True, set_as_default=False)
            await client.wait_for_workers(cores)
            _say(f"{what} (cluster {cluster.address}, load {os.getloadavg()[0]:.2f})")
            sched = _scheduler(client)
            try:
                return await run(client, sched)
            finally:
                sched.shutdown()
                await client.close()
        finally:
            cluster.close()

    load0 = os.getloadavg()[0]
    d = await on_fresh_cluster("dispatch overhead", lambda c, s: dispatch(c, s, 100 if args.quick else 200))
    s = await on_fresh_cluster(f"nbsched: {jobs} jobs every 1 s on the dask executor for {seconds:g} s",
                               lambda c, sched: steady(sched, jobs, seconds))
    b = await on_fresh_cluster(f"bare client.submit loop: {jobs} tasks every second for {seconds:g} s",
                               lambda c, sched: bare_steady(c, jobs, seconds))
    f = await on_fresh_cluster("CPU fan-out: thread executor vs dask executor",
                               lambda c, sched: fanout(sched, 2 * cores, 1_500_000 if args.quick else 3_000_000))
    load1 = os.getloadavg()[0]
    lines = [
        "# nbsched on a Dask cluster",
        "",
        f"Machine: {cores} cores, load average {load0:.2f} at start / {load1:.2f} at end; cluster: `dask scheduler` "
        f"+ `dask worker --nworkers {cores} --nthreads 1` on this machine; Python {sys.version.split()[0]}.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| dispatch, bare `client.submit` round trip (p50 / p90) | {d['bare_p50_ms']:.2f} / {d['bare_p90_ms']:.2f} ms | |",
        f"| dispatch, nbsched `run_now` on `dask` (p50 / p90) | {d['nbsched_p50_ms']:.2f} / {d['nbsched_p90_ms']:.2f} ms | |",
        f"| **dispatch overhead ratio** (p50 nbsched / bare, {d['runs']} runs each) | **{d['ratio']:.2f}x** | <= 1.2x |",
        f"| {s['jobs']:,} jobs every 1 s for {s['seconds']} s: **fires achieved** | **{s['fires_pct']:.1f}%** | >= 99% |",
        f"| ... outcomes | {s['outcomes']} | |",
        f"| ... runs done within their second (nbsched) / bare `client.submit` loop, same load | "
        f"{s['in_time_pct']:.1f}% / {b['done_in_time_pct']:.1f}% | |",
        f"| ... run round trip p50 / p99 | {s['run_p50_ms']:.1f} / {s['run_p99_ms']:.1f} ms | |",
        f"| ... start lateness p99 | {s['lateness_p99_ms']:.1f} ms | |",
        f"| ... **longest loop block** (p99 of {s['probe_samples']} probes) | **{s['block_max_ms']:.1f} ms** "
        f"({s['block_p99_ms']:.1f} ms) | <= 5 ms |",
        f"| ... bare `client.submit` loop: longest loop block (p99) | {b['block_max_ms']:.1f} ms "
        f"({b['block_p99_ms']:.1f} ms) | |",
        f"| CPU fan-out, {f['tasks']} jobs x {f['one_task_s']:.2f} s: thread executor | {f['thread_s']:.2f} s | |",
        f"| CPU fan-out: dask executor ({cores} worker processes) | {f['dask_s']:.2f} s | |",
        f"| **fan-out speed-up** (thread / dask) on {cores} cores | **{f['speedup']:.2f}x** | ~cores |",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller scales (about 30 s)")
    ap.add_argument("--out", default=str(HERE / "results-dask.md"))
    args = ap.parse_args(argv)
    text = asyncio.run(main_async(args))
    print(text)
    if not args.quick:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
