"""Pins the public API and the dependency rules."""
import pathlib
import re
import subprocess
import sys

import nbsched

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_public_names():
    expected = {
        "Scheduler", "get_scheduler", "Job", "JobPolicy", "JobState", "RunHandle", "RunRecord", "Outcome",
        "SchedulerStatistics", "Trigger", "Interval", "Cron", "Date", "After", "OnFile", "parse_trigger", "parse_duration",
        "current_run", "RunContext", "Branch", "Skip",
        "Clock", "SystemClock", "Executor", "LoopExecutor", "ThreadExecutor", "ProcessExecutor", "DaskExecutor",
        "events", "NbschedError", "TriggerError", "DurationError", "PolicyError", "JobLookupError", "NoEventLoopError",
        "SchedulerShutdownError", "MaxInstancesReachedError", "NbschedWarning", "StoreError",
        "NotebookFileError", "NotebookCellError", "ClusterUnreachableError", "WorkerDiedError",
        "dashboard", "load_ipython_extension", "unload_ipython_extension", "__version__",
    }
    assert set(nbsched.__all__) == expected
    kinds = {name: type(getattr(nbsched, name)).__name__ for name in nbsched.__all__}
    assert kinds["dashboard"] == "function" and kinds["events"] == "module" and kinds["__version__"] == "str"
    assert kinds["Scheduler"] == "type" and kinds["get_scheduler"] == "function"


def test_dashboard_stays_a_function_after_use():
    """nbsched.dashboard() used to work once: the lazy import rebound the name to a submodule."""
    code = ("import asyncio, nbsched\n"
            "async def main():\n"
            "    s = nbsched.Scheduler()\n"
            "    first = nbsched.dashboard(s)\n"
            "    second = nbsched.dashboard(s)\n"
            "    print(type(first).__name__, type(second).__name__, callable(nbsched.dashboard))\n"
            "    first.close(); second.close(); s.shutdown()\n"
            "asyncio.run(main())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["Dashboard", "Dashboard", "True"]


def test_import_is_cheap_and_never_pulls_ipython_or_widgets():
    code = ("import sys, nbsched; s = nbsched.Scheduler; "
            "bad = [m for m in ('IPython', 'ipywidgets', 'pandas', 'ipykernel', 'distributed', 'dask') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_one_module_owns_time():
    offenders = []
    for path in (ROOT / "nbsched").rglob("*.py"):
        if path.name in ("clock.py", "testing.py") and path.parent.name == "nbsched":
            continue
        text = path.read_text()
        if re.search(r"datetime\.now\(|datetime\.utcnow\(|time\.time\(\)|time\.sleep\(|time\.monotonic\(", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_croniter_imported_in_one_place():
    users = [str(p.relative_to(ROOT)) for p in (ROOT / "nbsched").rglob("*.py")
             if re.search(r"^\s*from croniter|^\s*import croniter", p.read_text(), re.M)]
    assert users == ["nbsched/triggers.py"]


def test_no_nest_asyncio():
    users = [p.name for p in (ROOT / "nbsched").rglob("*.py")
             if re.search(r"^\s*(import|from)\s+nest_asyncio", p.read_text(), re.M)]
    assert users == []
