#!/usr/bin/env python
"""What a notebook user feels: a real ipykernel with 0 / 1,000 / 10,000 / 100,000 jobs firing every second.

    .venv/bin/python bench/bench_kernel.py            # full (~4 min), writes bench/results_kernel.{md,json}
    .venv/bin/python bench/bench_kernel.py --quick    # 0 / 1,000 / 10,000 jobs, 60 requests (~1 min)
    .venv/bin/python bench/bench_kernel.py --sizes 10000 --only nbsched   # exploration (results-partial)

Each cell is a FRESH kernel process (``python -m ipykernel_launcher``, the same interpreter as this
script) driven through jupyter_client, exactly as JupyterLab drives it:

* the idle kernel (0 jobs, no scheduler at all) is the baseline every other cell is compared with;
* nbsched: ``nbsched.get_scheduler()`` (the scheduler the magics use), N plain-function jobs added with
  ``Interval(1 s, start=base + i/N)``: phases spread evenly over each second, history at its defaults;
* APScheduler 3.11 ``AsyncIOScheduler`` at its defaults with the same N jobs (coroutine jobs, so
  they run on the kernel's loop like nbsched's), the same phases.

In each cell, after a warm-up of 2 s with the jobs firing:

1. **execute round trip**: R trivial ``execute_request`` (``pass``, not stored in history), one at a
   time, a random 0-15 ms pause between them (so they land at every phase of the second); the time
   from sending the request to receiving its ``execute_reply`` (p50, p99, max).
2. **comm delay (a widget click)**: C ``comm_msg`` messages to an ipywidgets ``Button`` model, exactly
   what the front end sends on a click (``{"method": "custom", "content": {"event": "click"}}``); the
   delay is from sending to the button's ``on_click`` handler running (the handler records
   ``time.time()``; both processes read the same clock).
3. Fires achieved: the jobs count their runs; fires per second over steps 1-2 / N.  Kernel CPU
   (% of one core, from /proc) over the same span.  The kernel's longest full (generation 2)
   garbage collection during the span (``gc.callbacks`` in the kernel).
4. **``%schedule list``** (nbsched cells, last): the round trip of executing ``%schedule list`` S
   times; the first call (which imports the renderer) is shown apart from the median.

A cell whose kernel stops answering (APScheduler livelocks at 100,000 jobs) is cut off at its time cap;
its row shows what was answered by then.  The machine's load average is printed for every cell: the
machine has 2 cores shared with other work, so compare ratios to the idle kernel of the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

TARGETS = {10_000: 1.2, 100_000: 2.0}  # nbsched p99 execute round trip / the idle kernel's p99

# ------------------------------------------------------------------------------ code run in the kernel
COMMON = r"""
import array as _array, gc as _gc, json as _json, time as _time
from datetime import datetime as _dt, timezone as _tz
import ipywidgets as _w
_CLICKS = _array.array("d")
_button = _w.Button(description="click")
_button.on_click(lambda b: _CLICKS.append(_time.time()))
_FIRES = [0]
_GC = {"max_full_ms": 0.0, "full": 0, "t": 0.0}
def _gc_cb(phase, info):
    if info["generation"] != 2:
        return
    if phase == "start":
        _GC["t"] = _time.perf_counter()
    else:
        _GC["full"] += 1
        _GC["max_full_ms"] = max(_GC["max_full_ms"], (_time.perf_counter() - _GC["t"]) * 1e3)
_gc.callbacks.append(_gc_cb)
def _snap():
    out = _json.dumps([_time.time(), _FIRES[0], _GC["full"], _GC["max_full_ms"], len(_CLICKS),
                       __import__("sys").getswitchinterval()])
    _GC["max_full_ms"] = 0.0  # the longest full collection since the previous snapshot
    return out
_N = {n}
_base = float(int(_time.time()))
"""

SETUP = {
    "idle": "_add_s = 0.0\n",
    "nbsched": r"""
import nbsched as _nb
%load_ext nbsched
_s = _nb.get_scheduler()
def _job():
    _FIRES[0] += 1
_t0 = _time.perf_counter()
for _i in range(_N):
    _s.add(_job, _nb.Interval(1.0, start=_dt.fromtimestamp(_base + _i / _N, _tz.utc)), name=f"j{_i}")
_add_s = _time.perf_counter() - _t0
""",
    "apscheduler": r"""
from apscheduler.schedulers.asyncio import AsyncIOScheduler as _AIO
async def _ajob():
    _FIRES[0] += 1
_s = _AIO()
_t0 = _time.perf_counter()
for _i in range(_N):
    _s.add_job(_ajob, "interval", seconds=1, start_date=_dt.fromtimestamp(_base + _i / _N, _tz.utc), id=f"j{_i}")
_s.start()
_add_s = _time.perf_counter() - _t0
""",
}

SNAPSHOT = "_snap()"


# ------------------------------------------------------------------------------------------ helpers
def cpu_s(pid: int) -> float:
    """user + system CPU seconds of process ``pid`` so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> float:
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except OSError:
        return float("nan")


def pct(values: list[float]) -> dict:
    import numpy as np

    if not values:
        return {"n": 0}
    v = np.asarray(values) * 1e3
    return {"n": int(v.size), "p50_ms": float(np.percentile(v, 50)), "p99_ms": float(np.percentile(v, 99)),
            "max_ms": float(v.max())}


class Kernel:
    """One fresh ipykernel process and a blocking client."""

    def __init__(self) -> None:
        from jupyter_client import KernelManager
        from jupyter_client.kernelspec import KernelSpecManager

        self._dir = tempfile.mkdtemp(prefix="nbsched-bench-kernel-")
        spec = Path(self._dir) / "kernels" / "bench"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "nbsched bench", "language": "python"}))
        self.km = KernelManager(kernel_name="bench", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec.parent)]))
        env = os.environ.copy()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        self.log = Path(self._dir) / "kernel.log"
        with open(self.log, "wb") as log:
            self.km.start_kernel(env=env, stdout=log, stderr=log)
        self.pid = self.km.provisioner.pid
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def request(self, code: str, timeout: float, **kw) -> tuple[float, dict | None]:
        """Send one execute_request; (seconds to its reply, reply content) - (timeout, None) if none came."""
        t0 = time.perf_counter()
        msg_id = self.kc.execute(code, store_history=False, **kw)
        deadline = t0 + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return timeout, None
            try:
                msg = self.kc.get_shell_msg(timeout=left)
            except Exception:  # queue.Empty
                return timeout, None
            if msg["parent_header"].get("msg_id") == msg_id:
                return time.perf_counter() - t0, msg["content"]

    def evaluate(self, code: str, expr: str, timeout: float):
        """Run ``code`` and return the JSON value of ``expr`` (a user expression) - or raise."""
        _, content = self.request(code, timeout, user_expressions={"v": expr})
        if content is None:
            raise TimeoutError(f"no reply within {timeout:.0f} s")
        if content["status"] != "ok":
            raise RuntimeError(f"{content.get('ename')}: {content.get('evalue')}\n" + "\n".join(content.get("traceback", [])))
        value = content["user_expressions"]["v"]
        if value["status"] != "ok":
            raise RuntimeError(f"{value.get('ename')}: {value.get('evalue')}")
        return json.loads(value["data"]["text/plain"].strip("'\""))

    def click(self, comm_id: str) -> None:
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": {"event": "click"}}})
        self.kc.shell_channel.send(msg)

    def close(self) -> None:
        try:
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=True)
        except Exception:
            try:
                os.kill(self.pid, 9)
            except OSError:
                pass


def run_cell(kind: str, n: int, requests: int, clicks: int, lists: int, cap: float) -> dict:
    res: dict = {"kind": kind, "jobs": n, "load_start": loadavg(), "status": "ok"}
    t_cell = time.perf_counter()
    k = Kernel()
    try:
        setup = COMMON.replace("{n}", str(n)) + SETUP[kind]
        info = k.evaluate(setup, "_json.dumps([_button.model_id, _add_s])", timeout=cap)
        model_id, res["add_s"] = info
        time.sleep(2.0)  # warm-up: every job has fired at least once
        deadline = t_cell + cap
        try:
            snap0 = k.evaluate("", SNAPSHOT, timeout=max(1.0, deadline - time.perf_counter()))
        except TimeoutError:  # the jobs keep the loop busy all the time: a livelock
            res["status"] = "cut off (livelock: no reply after adding the jobs)"
            return res
        cpu0, t0 = cpu_s(k.pid), time.perf_counter()
        rtt: list[float] = []
        for _ in range(requests):
            left = deadline - time.perf_counter()
            if left <= 0:
                res["status"] = "cut off"
                break
            dt, content = k.request("pass", min(left, 5.0))
            if content is None:
                res["status"] = "cut off"
                break
            rtt.append(dt)
            time.sleep(random.uniform(0, 0.015))
        sent: list[float] = []
        if res["status"] == "ok":
            for _ in range(clicks):
                sent.append(time.time())
                k.click(model_id)
                time.sleep(random.uniform(0.01, 0.03))
        try:
            snap1 = k.evaluate("", SNAPSHOT, timeout=max(2.0, deadline - time.perf_counter()))
            cpu1, t1 = cpu_s(k.pid), time.perf_counter()
            handled = k.evaluate("", f"_json.dumps(list(_CLICKS[{snap0[4]}:]))", timeout=10)
        except (TimeoutError, RuntimeError) as exc:
            res["status"] = f"cut off ({exc})"
            snap1 = handled = None
            cpu1, t1 = cpu_s(k.pid), time.perf_counter()
        # %schedule list last (its first call imports the renderer): it does not disturb the rest
        list_s: list[float] = []
        if kind == "nbsched" and res["status"] == "ok":
            for _ in range(lists):
                dt, content = k.request("%schedule list", max(1.0, min(deadline - time.perf_counter(), 30.0)))
                if content is None or content["status"] != "ok":
                    res["status"] = "cut off" if content is None else f"%schedule list failed: {content.get('evalue')}"
                    break
                list_s.append(dt)
        res["execute_s"] = rtt
        res["execute"] = pct(rtt)
        res["requests_sent"] = requests
        res["clicks_sent"] = len(sent)
        if handled is not None:
            res["click_delay_s"] = [h - s for h, s in zip(handled, sent)]
            res["clicks_handled"] = len(handled)
            res["click"] = pct(res["click_delay_s"])
        res["schedule_list_s"] = list_s
        res["schedule_list"] = pct(list_s)
        res["schedule_list_first_s"] = list_s[0] if list_s else None
        res["span_s"] = t1 - t0
        res["kernel_cpu_pct"] = 100.0 * (cpu1 - cpu0) / (t1 - t0)
        if snap1 is not None:
            fires = snap1[1] - snap0[1]
            res["fires"] = fires
            res["fires_achieved_pct"] = 100.0 * fires / ((snap1[0] - snap0[0]) * n) if n else None
            res["full_gcs"] = snap1[2] - snap0[2]
            res["max_full_gc_ms"] = snap1[3]  # the longest during the measurement
            res["switch_interval_ms"] = snap1[5] * 1e3  # the kernel's thread switch interval at the end
    except Exception as exc:  # noqa: BLE001 - a failed cell is reported, the others still run
        res["status"] = f"error: {type(exc).__name__}: {str(exc)[:300]}"
        res["kernel_log"] = k.log.read_text(errors="replace")[-2000:]
    finally:
        k.close()
        res["load_end"] = loadavg()
        res["cell_wall_s"] = time.perf_counter() - t_cell
    return res


# ------------------------------------------------------------------------------------------ report
def fmt(v, spec="{:.1f}") -> str:
    return "-" if v is None else spec.format(v)


def table(results: list[dict]) -> tuple[str, list[str]]:
    idle = next((r for r in results if r["kind"] == "idle"), None)
    idle_p99 = (idle or {}).get("execute", {}).get("p99_ms")
    lines = [
        "| jobs | kernel | execute p50 / p99 / max (ms) | p99 / idle p99 | target | widget click p50 / p99 / max (ms) "
        "| `%schedule list` first / median (ms) | fires achieved | kernel CPU | switch interval (ms) | longest full GC (ms) | adding the jobs (s) "
        "| load avg | status |",
        "|---:|---|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    verdicts = []
    for r in results:
        e, c, lst = r.get("execute", {}), r.get("click", {}), r.get("schedule_list", {})
        ratio = e.get("p99_ms") / idle_p99 if idle_p99 and e.get("p99_ms") is not None else None
        target = TARGETS.get(r["jobs"]) if r["kind"] == "nbsched" else None
        verdict = ""
        if target is not None:
            ok = ratio is not None and ratio <= target and r["status"] == "ok"
            verdict = f"<= {target}x: {'PASS' if ok else 'MISS'}"
            verdicts.append(f"{r['jobs']:,} jobs: p99 {fmt(ratio, '{:.2f}')}x idle, target <= {target}x: {'PASS' if ok else 'MISS'}")
        lst_text = "-" if not lst.get("n") else f"{r['schedule_list_first_s'] * 1e3:.0f} / {lst['p50_ms']:.0f}"
        label = {"idle": "idle (no scheduler)", "nbsched": "nbsched", "apscheduler": "APScheduler 3.11"}[r["kind"]]
        trio = lambda d: "-" if not d.get("n") else f"{d['p50_ms']:.1f} / {d['p99_ms']:.1f} / {d['max_ms']:.1f}"  # noqa: E731
        answered = f" ({e.get('n', 0)}/{r.get('requests_sent')} answered)" if e.get("n", 0) < (r.get("requests_sent") or 0) else ""
        lines.append(
            f"| {r['jobs']:,} | {label} | {trio(e)}{answered} | {fmt(ratio, '{:.2f}x')} | {verdict} | {trio(c)} "
            f"| {lst_text} "
            f"| {fmt(r.get('fires_achieved_pct'), '{:.1f}%')} | {fmt(r.get('kernel_cpu_pct'), '{:.0f}%')} "
            f"| {fmt(r.get('switch_interval_ms'), '{:.1f}')} | {fmt(r.get('max_full_gc_ms'))} | {fmt(r.get('add_s'), '{:.2f}')} "
            f"| {r['load_start']:.2f} -> {r['load_end']:.2f} | {r['status']} |")
    return "\n".join(lines), verdicts


def versions() -> str:
    from importlib.metadata import version

    out = []
    for pkg in ("ipykernel", "jupyter_client", "ipywidgets", "apscheduler", "nbsched"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except Exception:
            out.append(f"{pkg} (not installed)")
    return ", ".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="0 / 1,000 / 10,000 jobs, 60 requests")
    ap.add_argument("--sizes", help="comma-separated job counts (default 1000,10000,100000)")
    ap.add_argument("--only", help="comma-separated kernels: idle,nbsched,apscheduler")
    ap.add_argument("--requests", type=int, help="execute requests per cell (default 200)")
    ap.add_argument("--out", help="Markdown output (JSON beside it); default bench/results_kernel.md")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    kinds = args.only.split(",") if args.only else ["idle", "nbsched", "apscheduler"]
    requests = args.requests or (60 if args.quick else 200)
    clicks, lists = (20, 3) if args.quick else (50, 5)
    cells = ([("idle", 0)] if "idle" in kinds else []) + [(k, n) for n in sizes for k in ("nbsched", "apscheduler") if k in kinds]
    # caps: APScheduler livelocks at 100,000 jobs (adding them alone takes ~10 s); cut such a cell off
    cap = lambda kind, n: 25.0 if kind == "apscheduler" and n >= 50_000 else 75.0  # noqa: E731
    load0 = loadavg()
    print(f"load average at start {load0:.2f} ({os.cpu_count()} CPUs)", file=sys.stderr)
    t_all = time.perf_counter()
    results = []
    for i, (kind, n) in enumerate(cells, 1):
        print(f"[{i}/{len(cells)}] {kind:12s} {n:>7,} jobs ...", end=" ", file=sys.stderr, flush=True)
        r = run_cell(kind, n, requests, clicks, lists, cap(kind, n))
        results.append(r)
        print(f"{r['status']:10s} {r['cell_wall_s']:5.1f} s  p99 {r.get('execute', {}).get('p99_ms', float('nan')):.1f} ms"
              f"  load {r['load_end']:.2f}", file=sys.stderr, flush=True)
    total = time.perf_counter() - t_all
    body, verdicts = table(results)
    stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    header = (f"# nbsched in a real kernel: what the user feels\n\n{stamp} · {platform.machine()}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()} · {versions()} · {len(cells)} cells, {total:.0f} s · "
              f"load average at start {load0:.2f}\n")
    legend = (f"\nEach row is a fresh kernel. {requests} trivial execute requests (`pass`), {clicks} widget clicks "
              "(comm_msg to an ipywidgets Button, timed to its on_click handler), "
              f"{lists} `%schedule list` (nbsched rows). Jobs fire every second, phases spread over the second. "
              "'fires achieved' = runs counted by the jobs / (jobs x seconds) over the requests and clicks. "
              "'switch interval' = the kernel's `sys.getswitchinterval()` at the end of the requests and clicks "
              "(nbsched shortens Python's 5 ms to 0.5 ms while its jobs keep the loop busy). "
              "'longest full GC' = the kernel's longest generation-2 collection during the requests and clicks. "
              "`%schedule list` runs last (its first call imports the renderer and pandas). Ratios are to the idle kernel of this run. Raw numbers: the JSON file beside this one.\n")
    md = header + "\n" + body + "\n" + legend + ("\n" + "\n".join(f"- {v}" for v in verdicts) + "\n" if verdicts else "")
    print("\n" + md)
    partial = bool(args.quick or args.sizes or args.only or args.requests)
    out = Path(args.out) if args.out else HERE / ("results_kernel-partial.md" if partial else "results_kernel.md")
    out.write_text(md)
    out.with_suffix(".json").write_text(json.dumps({"when": stamp, "load_start": load0, "total_s": total,
                                                    "versions": versions(), "cells": results}, indent=1))
    print(f"wrote {out} and {out.with_suffix('.json').name} ({total:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
