"""``nbsched run NOTEBOOK.ipynb --for DURATION [--out DIR]``: run a notebook's schedules headless.

Executes the notebook's code cells in a real kernel (through nbclient), keeps the kernel alive for
DURATION while its scheduled jobs run, then writes to DIR:

* ``NOTEBOOK.ipynb`` - the executed notebook, each job's output in its own cell (the cards' static
  summaries and the widget state are kept current while the jobs run; see
  :func:`nbsched.notebook.kernel.in_latest_request`);
* ``report.html`` - a self-contained report: per job a timeline of runs coloured by outcome
  (retries grouped with their run), lateness and duration distributions, last results rows and
  last output (:mod:`nbsched.notebook.report`);
* ``JOB.history.csv`` / ``JOB.results.csv`` for every job (plus Parquet when pyarrow is installed);

and prints a summary table (jobs, runs, outcomes, lateness).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

#: A hidden last cell: keeps the kernel busy while the jobs run, so a notebook executor keeps
#: their updates (it drops messages parented to no running cell).  Removed before saving.
_WAIT = "import asyncio as __nbsched_asyncio\nawait __nbsched_asyncio.sleep({duration!r})"
_EXPORT = ("import nbsched.notebook.report as __nbsched_report\n"
           "print(__nbsched_report.export(__import__('nbsched').get_scheduler(), {out!r}, title={title!r}))")


def _parse_duration(text: str) -> float:
    from .._durations import parse_duration

    return parse_duration(text, what="--for")


class NotebookFailed(RuntimeError):
    """A cell of the notebook raised: the message names the cell and the error."""


def _run_hidden(client, nb, source: str, timeout: float) -> str:
    """Execute ``source`` as a temporary last cell; return its stdout (the cell is removed again)."""
    import nbformat

    cell = nbformat.v4.new_code_cell(source)
    nb.cells.append(cell)
    saved = client.timeout
    client.timeout = int(-(-timeout // 1))  # (an Integer trait)
    try:
        client.execute_cell(cell, len(nb.cells) - 1, store_history=False)
    finally:
        client.timeout = saved
        nb.cells.pop()
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream" and o.get("name") == "stdout")


def run_notebook(path: Path, duration: float, out: Path | None, *, kernel_name: str | None = None,
                 timeout: float = 300, cluster: str | None = None, echo=print) -> list[dict]:
    """Execute ``path``, let its jobs run for ``duration`` seconds, write everything to ``out``.

    ``cluster``: a Dask scheduler's address; the kernel connects to it first (``%schedule cluster
    ADDRESS``), so the notebook's ``--executor dask`` jobs run there."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(str(path), as_version=4)
    out_dir = (out or Path("nbsched-out")).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    cwd = str(path.resolve().parent)
    from jupyter_client.manager import AsyncKernelManager

    # IPC sockets in a private directory: no TCP ports, nothing another user could connect to
    km = AsyncKernelManager(kernel_name=kernel_name or "python3", transport="ipc",
                            ip=str(Path(tempfile.mkdtemp(prefix="nbsched-kernel-")) / "kernel"))
    client = NotebookClient(nb, km=km, kernel_name=kernel_name or "python3", timeout=timeout,
                            resources={"metadata": {"path": cwd}})
    with client.setup_kernel(cwd=cwd):
        if cluster is not None:
            printed = _run_hidden(client, nb, _CLUSTER.format(address=cluster), timeout)
            if "nbsched-cluster-ok" not in printed:
                raise NotebookFailed(f"could not connect to the Dask cluster at {cluster!r}: {printed.strip()[-500:]}")
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as exc:
                raise NotebookFailed(f"cell {index} of {path} failed:\n{exc}") from None
        echo(f"nbsched: executed {path.name}; letting its jobs run for {duration:g}s ...")
        _run_hidden(client, nb, _WAIT.format(duration=float(duration)), timeout + duration)
        printed = _run_hidden(client, nb, _EXPORT.format(out=str(out_dir), title=f"nbsched run {path.name}"), timeout)
        client.set_widgets_metadata()
    nbformat.write(nb, str(out_dir / path.name))
    lines = [line for line in printed.splitlines() if line.startswith("[")]
    if not lines:
        raise RuntimeError(f"could not read the jobs back from the kernel; it printed: {printed[-500:]!r}")
    return json.loads(lines[-1])


def _print_table(summary: list[dict], echo=print) -> None:
    import pandas as pd

    if not summary:
        echo("no jobs were scheduled")
        return
    frame = pd.DataFrame(summary)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        echo(frame.to_string(index=False))


_NEEDS = "pip install 'nbsched[notebook]'"


def _check_notebook_deps() -> str | None:
    """What ``nbsched run`` lacks to run a notebook (nbformat, jupyter_client, ipykernel), as a message."""
    import importlib.util

    missing = []
    for module in ("nbformat", "nbclient", "jupyter_client", "ipykernel"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # e.g. sys.modules[module] is None
            found = False
        if not found:
            missing.append(module)
    if not missing:
        return None
    return (f"nbsched run needs {', '.join(missing)} to execute notebooks, and "
            f"{'it is' if len(missing) == 1 else 'they are'} not installed: {_NEEDS} "
            "(or pip install nbformat nbclient jupyter_client ipykernel)")


_CLUSTER = """
import asyncio as _asyncio
_ip = get_ipython()
_ip.run_line_magic("load_ext", "nbsched")
try:
    _ip.run_line_magic("schedule", "cluster {address}")
    _executor = __import__("nbsched").get_scheduler().executors["dask"]
    for _ in range(600):  # the client connects on the kernel's loop: wait for it (60 s at most)
        if _executor.client.status == "running":
            break
        await _asyncio.sleep(0.1)
    if _executor.client.status != "running":
        raise TimeoutError("no connection within 60 s")
    print("nbsched-cluster-ok", _executor.client.scheduler.address)
except Exception as _exc:
    print("nbsched-cluster-failed", type(_exc).__name__, _exc)
"""


def build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The top-level parser and the ``run`` subcommand's parser (errors in ``run`` print its usage)."""
    from .._version import __version__

    parser = argparse.ArgumentParser(prog="nbsched", description="notebook-native scheduling")
    parser.add_argument("--version", action="version", version=f"nbsched {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute a notebook and let its scheduled jobs run headless",
                         description="Execute NOTEBOOK in a real kernel, let its scheduled jobs run for a while, "
                                     "then write the executed notebook, an HTML report and each job's "
                                     "history/results frames to --out.")
    run.add_argument("notebook", type=Path)
    run.add_argument("--for", dest="duration", default="30s", help="how long to keep the kernel alive (e.g. 30s, 5m)")
    run.add_argument("--out", type=Path, default=Path("nbsched-out"),
                     help="where to write the executed notebook, the report and the frames")
    run.add_argument("--kernel", default=None, help="kernel name (default python3)")
    run.add_argument("--cluster", default=None, metavar="ADDRESS",
                     help="run the notebook's '--executor dask' jobs on this Dask cluster (e.g. tcp://host:8786)")
    return parser, run


def main(argv: list[str] | None = None) -> int:
    parser, run = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        if not args.notebook.exists():
            run.error(f"no such notebook: {args.notebook}")
        try:
            duration = _parse_duration(args.duration)
        except ValueError as exc:
            run.error(str(exc))
        problem = _check_notebook_deps()
        if problem is not None:
            run.error(problem)
        try:
            summary = run_notebook(args.notebook, duration, args.out, kernel_name=args.kernel, cluster=args.cluster)
        except NotebookFailed as exc:
            print(f"nbsched run: {exc}", file=sys.stderr)
            return 1
        _print_table(summary)
        out = args.out.resolve()
        print(f"\nexecuted notebook: {out / args.notebook.name}")
        print(f"report:            {out / 'report.html'}")
        print(f"frames (CSV):      {out}/<job>.history.csv, <job>.results.csv")
        empty = [s["job"] for s in summary if s["rows"] == 0]
        return 1 if not summary or len(empty) == len(summary) else 0
    return 2

if __name__ == "__main__":
    sys.exit(main())
