#!/usr/bin/env python
"""nbsched file-watch benchmark: what watching 10,000 files costs while nothing changes, and how
long after a write the batch arrives.

    .venv/bin/python bench/bench_watch.py           # full (~35 s): 10,000 files, 20 s idle
    .venv/bin/python bench/bench_watch.py --quick   # 2,000 files, 5 s idle
    .venv/bin/python bench/bench_watch.py --one native 10000 20   # one child, prints its JSON

Each configuration runs in its own child process, all of them at the same time (so they see the
same machine load), and each reads its own process CPU time (all threads) over the idle window:

* **baseline**: an asyncio loop with nothing on it (the cost of an idle process);
* **native-empty**: ``FileWatch("<dir>/*.csv")`` over an empty directory (the cost of one watch);
* **native**: ``FileWatch("<dir>/*.csv")`` over 10,000 files in one directory (inotify via watchfiles);
* **native-tree**: ``FileWatch("<dir>/**/*.csv")`` over 10,000 files in 100 directories;
* **polling**: the polling backend over the flat directory, scanning every 1 s (the fallback for
  network file systems: it costs CPU by design, shown for comparison).

Then each watching child writes a new file 10 times (one at a time, waiting for its batch) with a
debounce of 0.2 s and reports the latency from the write to ``on_batch`` minus the debounce.  Target:
watching 10,000 files adds no measurable CPU over the baseline while idle (native backend): its
idle cost must not depend on the number of files (native vs native-empty) and stay a small
fraction of a per mille of one core.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))

RESULT_TAG = "@@RESULT "
MODES = ("baseline", "native-empty", "native", "native-tree", "polling")
DEBOUNCE = 0.2
WRITES = 10


def _make_files(root: Path, files: int, tree: bool) -> str:
    if tree:
        per = max(1, files // 100)
        for d in range(100):
            sub = root / f"d{d:03d}"
            sub.mkdir()
            for i in range(per):
                (sub / f"f{i:05d}.csv").write_text("x")
        return str(root / "**" / "*.csv")
    for i in range(files):
        (root / f"f{i:05d}.csv").write_text("x")
    return str(root / "*.csv")


async def _child(mode: str, files: int, seconds: float) -> dict:
    from nbsched.clock import SystemClock
    from nbsched.watch import FileWatch

    out: dict = {"mode": mode, "files": files, "seconds": seconds}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        watch = None
        got: list[float] = []
        arrived = asyncio.Event()

        def on_batch(paths):
            got.append(time.perf_counter())
            arrived.set()

        if mode != "baseline":
            pattern = _make_files(root, 0 if mode == "native-empty" else files, tree=mode == "native-tree")
            watch = FileWatch(pattern, debounce=DEBOUNCE, on_batch=on_batch, clock=SystemClock(),
                              loop=asyncio.get_running_loop(), poll=1.0 if mode == "polling" else None)
            t = time.perf_counter()
            watch.start()
            await watch.wait_ready()
            out["ready_s"] = time.perf_counter() - t
            out["backend"] = watch.backend
        await asyncio.sleep(1.0)  # settle
        c0, w0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        c1, w1 = time.process_time(), time.perf_counter()
        out["cpu_s"] = c1 - c0
        out["wall_s"] = w1 - w0
        out["cpu_pct"] = 100 * (c1 - c0) / (w1 - w0)
        if watch is not None:
            latencies = []
            target = root / "d000" if mode == "native-tree" else root
            for i in range(WRITES):
                arrived.clear()
                t = time.perf_counter()
                (target / f"new{i:02d}.csv").write_text("y")
                await asyncio.wait_for(arrived.wait(), 30)
                latencies.append(got[-1] - t - DEBOUNCE)
            out["latency_ms"] = [round(x * 1e3, 1) for x in latencies]
            await watch.aclose()
    return out


def _run_children(files: int, seconds: float) -> list[dict]:
    procs = [subprocess.Popen([sys.executable, __file__, "--one", mode, str(files), str(seconds)],
                              stdout=subprocess.PIPE, text=True, cwd=REPO) for mode in MODES]
    results = []
    for mode, proc in zip(MODES, procs):
        stdout, _ = proc.communicate(timeout=seconds + 300)
        line = next((l for l in stdout.splitlines() if l.startswith(RESULT_TAG)), None)
        if proc.returncode or line is None:
            raise SystemExit(f"child {mode} failed (exit {proc.returncode}):\n{stdout}")
        results.append(json.loads(line[len(RESULT_TAG):]))
    return results


def _table(results: list[dict], load_before, load_after, files: int, seconds: float, took: float) -> str:
    import watchfiles

    base = next(r for r in results if r["mode"] == "baseline")
    lines = [
        "# nbsched file-watch benchmark",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()} · "
        f"watchfiles {watchfiles.__version__} · {files:,} files, {seconds:g} s idle, all configurations at once · "
        f"{took:.0f} s · load average {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f} at start, "
        f"{load_after[0]:.2f} at end",
        "",
        "| configuration | backend | ready after start (ms) | CPU over the idle window (s) | CPU (% of one core) "
        "| added over baseline (s) | latency write -> batch minus debounce, median / max (ms) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lat = r.get("latency_ms")
        ready = f"{r['ready_s'] * 1e3:.1f}" if "ready_s" in r else "-"
        added = "-" if r is base else f"{r['cpu_s'] - base['cpu_s']:+.3f}"
        latency = f"{statistics.median(lat):.0f} / {max(lat):.0f}" if lat else "-"
        lines.append(f"| {r['mode']} | {r.get('backend', '-')} | {ready} | {r['cpu_s']:.3f} | "
                     f"{r['cpu_pct']:.2f} | {added} | {latency} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--one", nargs=3, metavar=("MODE", "FILES", "SECONDS"))
    ap.add_argument("--out", default=str(HERE / "results_watch.md"))
    args = ap.parse_args()
    if args.one:
        mode, files, seconds = args.one[0], int(args.one[1]), float(args.one[2])
        print(RESULT_TAG + json.dumps(asyncio.run(_child(mode, files, seconds))), flush=True)
        return
    files, seconds = (2_000, 5.0) if args.quick else (10_000, 20.0)
    load_before = os.getloadavg()
    t = time.perf_counter()
    results = _run_children(files, seconds)
    text = _table(results, load_before, os.getloadavg(), files, seconds, time.perf_counter() - t)
    print(text)
    if not args.quick:
        Path(args.out).write_text(text)
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
