#!/usr/bin/env python
"""History memory and ``history()`` speed: packed rows vs the frame built from ready columns.

    .venv/bin/python bench/bench_history.py          # 100,000 jobs x 13 rows and 1,000 x 1,000 (~1 min)
    .venv/bin/python bench/bench_history.py --quick  # 10,000 jobs x 13 rows

Rows are recorded through ``RunLog.record`` (what the engine's recorder calls) into a fresh
scheduler's logs: 2% errors with a traceback, 3% missed fire times, the rest successes; phases spread
over the second, one row per job per second; lateness is started - scheduled, as the engine
records a run started on its fire time.  Then, in the same process:

* **bytes per stored row**: the growth of ``tracemalloc``'s traced memory while rows are recorded,
  divided by the rows (the job objects are created before tracing starts).  Tracing slows allocation
  down, so it is measured on a tenth of the jobs with the same rows per job (bytes per row depend on
  rows per job, not on the number of jobs);
* **record**: CPU time per recorded row (the loop calling ``RunLog.record``);
* **history()**: ``sched.history()`` wall time (best of 3, each on a fresh cache);
* **baseline**: the same frame (same columns, dtypes, order) built by pandas from columns that are
  already numpy arrays in frame order - what no loop per row costs at the least.  Ratio =
  history() / baseline (target <= 1.5x; and <= 0.3 s at 1.3 million rows).
* **GC**: objects the garbage collector tracks, before and after recording (must not grow per row).
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))


def record(logs, rows_per_job: int) -> int:
    """Record rows_per_job rows in every log (2% errors, 3% missed, the rest successes); returns the rows."""
    from nbsched.history import ErrorInfo

    err = ErrorInfo("ValueError", "boom", "Traceback (most recent call last):\n  ...\nValueError: boom\n")
    jobs = len(logs)
    run_id = 0
    base = 1.7e9
    for r in range(rows_per_job):
        for i, log in enumerate(logs):
            run_id += 1
            s = base + r + i / jobs
            k = run_id % 100
            started = s + 0.0004
            if k < 2:
                log.record(run_id, s, started, s + 0.0009, started - s, "error", 1, err, "schedule")
            elif k < 5:
                log.record(run_id, s, None, None, 0.2, "missed", 0, None, "schedule")
            else:
                log.record(run_id, s, started, s + 0.0005, started - s, "success", 1, None, "schedule")
    return run_id


def bytes_per_row(jobs: int, rows_per_job: int) -> float:
    import nbsched

    sched = nbsched.Scheduler(tz="UTC")
    try:
        logs = [sched._log_for(f"j{i}", nbsched.JobPolicy()) for i in range(jobs)]
        gc.collect()
        tracemalloc.start()
        mem0 = tracemalloc.get_traced_memory()[0]
        rows = record(logs, rows_per_job)
        mem1 = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return (mem1 - mem0) / rows
    finally:
        sched.shutdown()


def baseline_frame(h, tz):
    """The same frame from ready numpy columns (frame order): the floor for building it."""
    import numpy as np
    import pandas as pd

    epoch = pd.Timestamp(0, tz="UTC")
    categorical_job = isinstance(h["job"].dtype, pd.CategoricalDtype)
    job = h["job"] if categorical_job else h["job"].astype("category")
    cols = {
        "job_codes": job.cat.codes.to_numpy(), "job_names": list(job.cat.categories),
        "run_id": h["run_id"].to_numpy(),
        **{k: ((h[k] - epoch).dt.total_seconds()).to_numpy(dtype=np.float64, na_value=np.nan)
           for k in ("scheduled_at", "started_at", "finished_at")},
        "lateness": h["lateness"].dt.total_seconds().to_numpy(),
        "outcome": h["outcome"].cat.codes.to_numpy(), "attempt": h["attempt"].to_numpy(),
        **({"reason": h["reason"].cat.codes.to_numpy()} if "reason" in h else {}),
        **{k: h[k].to_numpy() for k in ("worker", "error", "error_type", "traceback") if k in h},
    }
    cats = list(h["outcome"].cat.categories)
    t0 = time.perf_counter()
    ts = {k: pd.to_datetime(cols[k], unit="s", utc=True).tz_convert(tz) for k in ("scheduled_at", "started_at", "finished_at")}
    frame = pd.DataFrame({
        "job": pd.Categorical.from_codes(cols["job_codes"], categories=cols["job_names"]) if categorical_job else
               pd.Series(np.asarray(cols["job_names"], dtype=object)[cols["job_codes"]], dtype="string"),
        "run_id": cols["run_id"], "scheduled_at": ts["scheduled_at"], "started_at": ts["started_at"],
        "finished_at": ts["finished_at"], "duration": ts["finished_at"] - ts["started_at"],
        "lateness": pd.to_timedelta(cols["lateness"], unit="s"),
        "outcome": pd.Categorical.from_codes(cols["outcome"], categories=cats), "attempt": cols["attempt"],
        **({"reason": pd.Categorical.from_codes(cols["reason"], categories=list(h["reason"].cat.categories))}
           if "reason" in h else {}),
        **{k: pd.Series(cols[k], dtype="object", copy=False) for k in ("worker", "error", "error_type", "traceback")
           if k in cols},
    })
    return time.perf_counter() - t0, frame


def measure(jobs: int, rows_per_job: int) -> dict:
    import pandas as pd  # noqa: F401 - imported before timing (history() imports it lazily)

    import nbsched
    sched = nbsched.Scheduler(tz="UTC")
    try:
        logs = [sched._log_for(f"j{i}", nbsched.JobPolicy()) for i in range(jobs)]  # bench: the engine's own logs
        gc.collect()
        tracked0 = len(gc.get_objects())
        t_cpu = time.process_time()
        run_id = record(logs, rows_per_job)
        record_us = (time.process_time() - t_cpu) / run_id * 1e6
        gc.collect()
        tracked1 = len(gc.get_objects())
        times = []
        for _ in range(3):
            sched._version += 1  # a fresh cache each time (bench only)
            t0 = time.perf_counter()
            h = sched.history()
            times.append(time.perf_counter() - t0)
        base_s = min(baseline_frame(h, sched.tz)[0] for _ in range(3))
        _, ref = baseline_frame(h, sched.tz)
        import pandas as pd

        # the baseline builds the very same frame (DataFrame.equals: vectorised, unlike assert_frame_equal
        # which walks the object columns row by row and took most of this script's two minutes)
        assert list(h.columns) == list(ref.columns) and h.dtypes.equals(ref.dtypes) and h.equals(ref), \
            "the ready-columns baseline does not build the frame history() returns"
        return {"jobs": jobs, "rows": int(len(h)), "bytes_per_row": bytes_per_row(max(1, jobs // 10), rows_per_job),
                "record_us_per_row": record_us, "history_s": min(times), "history_s_all": times,
                "baseline_s": base_s, "ratio": min(times) / base_s,
                "gc_tracked_before": tracked0, "gc_tracked_after": tracked1}
    finally:
        sched.shutdown()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", help="write the raw numbers here too")
    args = ap.parse_args(argv)
    shapes = [(10_000, 13)] if args.quick else [(100_000, 13), (1_000, 1_000)]
    load = open("/proc/loadavg").read().split()[0]
    results = [measure(j, r) for j, r in shapes]
    print(f"\n## History: packed rows and history()  (load average {load})\n")
    print("| jobs x rows each | rows | bytes per stored row | record (us/row) | history() (s) | same frame from ready columns (s) "
          "| ratio | GC-tracked objects before -> after recording |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['jobs']:,} x {r['rows'] // r['jobs']:,} | {r['rows']:,} | {r['bytes_per_row']:.1f} | {r['record_us_per_row']:.2f} "
              f"| {r['history_s']:.3f} | {r['baseline_s']:.3f} | {r['ratio']:.2f}x | {r['gc_tracked_before']:,} -> {r['gc_tracked_after']:,} |")
    print("\nTargets: <= 48 bytes per row; history() <= 1.5x the ready-columns baseline and <= 0.3 s at 1.3 million rows.")
    if args.json:
        Path(args.json).write_text(json.dumps({"load": load, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
