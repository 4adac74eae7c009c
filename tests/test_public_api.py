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
        "SchedulerStatistics", "Trigger", "Interval", "Cron", "Date", "parse_trigger", "parse_duration",
        "Clock", "SystemClock", "Executor", "LoopExecutor", "ThreadExecutor", "ProcessExecutor", "DaskExecutor",
        "events", "NbschedError", "TriggerError", "DurationError", "PolicyError", "JobLookupError", "NoEventLoopError",
        "SchedulerShutdownError", "MaxInstancesReachedError", "NbschedWarning", "StoreError",
        "ClusterUnreachableError", "WorkerDiedError", "dashboard", "load_ipython_extension", "unload_ipython_extension", "__version__",
    }
    assert set(nbsched.__all__) == expected
    for name in nbsched.__all__:
        assert hasattr(nbsched, name), name


def test_import_is_cheap_and_never_pulls_ipython_or_widgets():
    code = ("import sys, nbsched; s = nbsched.Scheduler; "
            "bad = [m for m in ('IPython', 'ipywidgets', 'pandas', 'ipykernel', 'distributed', 'dask') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_scheduler_and_store_never_import_ipython():
    for name in ["scheduler.py", "job.py", "triggers.py", "history.py", "events.py", "executors.py", "clock.py",
                 "store.py"]:
        path = ROOT / "nbsched" / name
        if not path.exists():
            continue
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(IPython|ipywidgets|ipykernel|anywidget)", text, re.M), name


def test_one_module_owns_time():
    offenders = []
    for path in (ROOT / "nbsched").glob("*.py"):
        if path.name in ("clock.py", "testing.py"):
            continue
        text = path.read_text()
        if re.search(r"datetime\.now\(|datetime\.utcnow\(|time\.time\(\)|time\.sleep\(|time\.monotonic\(", text):
            offenders.append(path.name)
    assert offenders == []


def test_croniter_imported_in_one_place():
    users = [p.name for p in (ROOT / "nbsched").glob("*.py") if re.search(r"^\s*from croniter|^\s*import croniter", p.read_text(), re.M)]
    assert users == ["triggers.py"]


def test_no_nest_asyncio():
    for path in (ROOT / "nbsched").glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+nest_asyncio", path.read_text(), re.M), path.name
