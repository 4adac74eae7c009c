"""``nbsched run NOTEBOOK.ipynb --for DURATION [--out DIR]``: run a notebook's schedules headless.

Executes the notebook's code cells in a real kernel, keeps the kernel alive for DURATION while its
scheduled jobs run, then prints a summary (jobs, runs, outcomes, lateness) and writes each job's
history and results frames to DIR (CSV, plus Parquet when pyarrow is installed).

Background output is not lost: unlike nbclient (which keeps only output whose parent is the cell
executing now), everything is read back from the kernel's own state at the end.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

_EXPORT = r'''
def __nbsched_export(out_dir):
    import json, os, re
    import nbsched
    sched = nbsched.get_scheduler()
    os.makedirs(out_dir, exist_ok=True)
    try:
        import pyarrow  # noqa: F401
        parquet = True
    except ImportError:
        parquet = False
    hist = sched.history()
    summary = []
    names = sched.history_names()
    for name in names:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        h = sched.history(name)
        r = sched.results(name)
        h.to_csv(os.path.join(out_dir, f"{safe}.history.csv"), index=False)
        r.to_csv(os.path.join(out_dir, f"{safe}.results.csv"), index=False)
        if parquet:
            h.to_parquet(os.path.join(out_dir, f"{safe}.history.parquet"), index=False)
            r.to_parquet(os.path.join(out_dir, f"{safe}.results.parquet"), index=False)
        counts = h["outcome"].value_counts()
        late = h.loc[h["started_at"].notna(), "lateness"].dt.total_seconds() * 1000
        job = sched.find(name)
        summary.append({
            "job": name,
            "trigger": job.describe() if job else "(removed)",
            "state": job.state.value if job else "removed",
            "rows": int(len(h)),
            **{o: int(counts.get(o, 0)) for o in ("success", "error", "missed", "skipped", "timeout", "interrupted")},
            "lateness_p50_ms": round(float(late.median()), 2) if len(late) else None,
            "lateness_p99_ms": round(float(late.quantile(0.99)), 2) if len(late) else None,
            "result_rows": int(len(r)),
        })
    return json.dumps(summary)
'''


def _parse_duration(text: str) -> float:
    from .._durations import parse_duration

    return parse_duration(text, what="--for")


def run_notebook(path: Path, duration: float, out: Path | None, *, kernel_name: str | None = None,
                 timeout: float = 300, echo=print) -> list[dict]:
    import nbformat
    from jupyter_client import KernelManager

    nb = nbformat.read(str(path), as_version=4)
    km = KernelManager(kernel_name=kernel_name or "python3", transport="ipc",
                       ip=str(Path(tempfile.mkdtemp(prefix="nbsched-kernel-")) / "kernel"))
    cwd = str(path.resolve().parent)
    km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            reply = kc.execute_interactive(cell.source, timeout=timeout, output_hook=lambda msg: None)
            content = reply["content"]
            if content["status"] != "ok":
                raise RuntimeError(f"cell {index} of {path} failed: {content.get('ename')}: {content.get('evalue')}\n"
                                   + "\n".join(content.get("traceback", [])))
        echo(f"nbsched: executed {path.name}; letting its jobs run for {duration:g}s ...")
        from ..clock import monotonic, sleep_blocking

        deadline = monotonic() + duration
        while monotonic() < deadline:
            sleep_blocking(min(1.0, deadline - monotonic()))
        out_dir = str((out or Path("nbsched-out")).resolve())
        reply = kc.execute_interactive(_EXPORT, timeout=timeout, output_hook=lambda msg: None, silent=True,
                                       user_expressions={"summary": f"__nbsched_export({out_dir!r})"})
        expr = reply["content"]["user_expressions"]["summary"]
        if expr["status"] != "ok":
            raise RuntimeError(f"could not read the jobs back from the kernel: {expr.get('ename')}: {expr.get('evalue')}")
        import ast

        summary = json.loads(ast.literal_eval(expr["data"]["text/plain"]))
        return summary
    finally:
        try:
            kc.execute_interactive("%unload_ext nbsched", timeout=10, output_hook=lambda msg: None)
        except Exception:
            pass
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _print_table(summary: list[dict], echo=print) -> None:
    import pandas as pd

    if not summary:
        echo("no jobs were scheduled")
        return
    frame = pd.DataFrame(summary)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        echo(frame.to_string(index=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbsched", description="notebook-native scheduling")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute a notebook and let its scheduled jobs run headless")
    run.add_argument("notebook", type=Path)
    run.add_argument("--for", dest="duration", default="30s", help="how long to keep the kernel alive (e.g. 30s, 5m)")
    run.add_argument("--out", type=Path, default=Path("nbsched-out"), help="where to write history/results frames")
    run.add_argument("--kernel", default=None, help="kernel name (default python3)")
    args = parser.parse_args(argv)
    if args.command == "run":
        if not args.notebook.exists():
            parser.error(f"no such notebook: {args.notebook}")
        try:
            duration = _parse_duration(args.duration)
        except ValueError as exc:
            parser.error(str(exc))
        summary = run_notebook(args.notebook, duration, args.out, kernel_name=args.kernel)
        _print_table(summary)
        print(f"\nhistory and results frames written to {args.out.resolve()}/")
        empty = [s["job"] for s in summary if s["rows"] == 0]
        return 1 if not summary or len(empty) == len(summary) else 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
