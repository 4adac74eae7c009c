"""nbsched.store with real processes: SIGKILL mid-run, and two kernels sharing one file.

Each test starts child Python processes running a scheduler on the system clock with a store, and
polls the SQLite file (or the children's own progress files) instead of sleeping blindly.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kernel_harness import wait_until

from nbsched.store import SQLiteStore

pytestmark = pytest.mark.store
REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent('''
    import asyncio, json, os, sys, time
    import nbsched
    from nbsched.store import SQLiteStore

    role, db, progress = sys.argv[1], sys.argv[2], sys.argv[3]
    out = open(progress, "a", buffering=1)

    def make(i):
        def job():
            out.write(f"j{i}\\n")  # a completed run, as the job itself saw it
        async def ajob():
            await asyncio.sleep(0.02)  # in flight for a while: some runs are cut off by the kill
            out.write(f"a{i}\\n")
        return job if i % 2 else ajob

    def tick():
        return os.getpid()

    async def main():
        if role == "crash":
            sched = nbsched.Scheduler(tz="UTC", store=db)
            for i in range(20):
                name = f"j{i}" if i % 2 else f"a{i}"
                sched.add(make(i), "every 50ms", name=name)
        else:
            store = SQLiteStore(db, lease_ttl=2.0)
            sched = nbsched.Scheduler(tz="UTC", store=store)
            if role == "first":
                sched.add(tick, "every 0.2s")
            else:
                sched.restore(namespace=globals())
        print("ready", flush=True)
        while True:
            await asyncio.sleep(0.2)
            if role == "second":
                mine = sched.history("tick")
                with open(progress + ".tmp", "w") as fh:
                    json.dump({"rows_in_memory": len(mine)}, fh)
                os.replace(progress + ".tmp", progress)

    asyncio.run(main())
''')


def _start(tmp_path: Path, role: str, db: Path, progress: Path) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, str(script), role, str(db), str(progress)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"child {role} did not start: {line!r} {proc.stderr.read()[-2000:]}")
    return proc


def _records(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT coalesce(sum(n), 0) FROM history").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def _kill(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def test_sigkill_loses_at_most_the_runs_in_flight(tmp_path):
    db, progress = tmp_path / "crash.db", tmp_path / "progress.txt"
    child = _start(tmp_path, "crash", db, progress)
    try:
        wait_until(lambda: _records(db) >= 600, 20, "600 committed runs")
        lines_before_kill = len(progress.read_text().splitlines())
        os.kill(child.pid, signal.SIGKILL)
        kill_time = time.time()
        child.wait(timeout=10)
    finally:
        _kill(child)
    done = progress.read_text().splitlines()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with SQLiteStore(db) as store:  # opens cleanly; every committed record is readable
        history = store.history()
    success = history[history["outcome"] == "success"]
    per_job_db = success["job"].value_counts().to_dict()
    per_job_done = {}
    for name in done:
        per_job_done[name] = per_job_done.get(name, 0) + 1
    assert len(success) >= lines_before_kill - 40  # at most ~one commit interval of runs per job lost
    for name, count in per_job_done.items():
        recorded = per_job_db.get(name, 0)
        # never a record of a run that did not finish; lost: only runs in flight or in the last commit batch
        assert count - 5 <= recorded <= count, (name, recorded, count)
    late = history["finished_at"].max().timestamp()
    assert kill_time - late < 1.0


def test_two_kernels_share_a_store_and_take_over_from_a_stopped_one(tmp_path):
    db = tmp_path / "shared.db"
    first = _start(tmp_path, "first", db, tmp_path / "first.txt")
    second = None
    try:
        wait_until(lambda: _records(db) >= 5, 10, "the first kernel's runs")
        second = _start(tmp_path, "second", db, tmp_path / "second.json")
        wait_until(lambda: _records(db) >= 15, 10, "more runs")
        os.kill(first.pid, signal.SIGSTOP)  # alive but frozen: its lease must expire (TTL 2 s)
        stopped = time.time()
        with SQLiteStore(db) as probe:
            def taken_over():
                h = probe.history("tick")
                return (h["pid"] == second.pid).any()
            wait_until(taken_over, 15, "the second kernel to take the job over")
            takeover = time.time() - stopped
            os.kill(first.pid, signal.SIGCONT)  # thaws with stale timers: it must not run tick again
            wait_until(lambda: _records(db) >= 30, 10, "runs after the takeover")
            time.sleep(0.6)  # the thawed first kernel has had its chance to misbehave
            history = probe.history("tick")
        status = json.loads((tmp_path / "second.json").read_text())
    finally:
        _kill(first, *(p for p in (second,) if p is not None))
    runs = history[history["outcome"] == "success"]
    assert runs["scheduled_at"].is_unique, runs[runs["scheduled_at"].duplicated(keep=False)]
    assert takeover < 15
    by_first = runs[runs["pid"] == first.pid]
    by_second = runs[runs["pid"] == second.pid]
    assert len(by_first) >= 10 and len(by_second) >= 3
    assert by_first["scheduled_at"].max() < by_second["scheduled_at"].min()
    assert status["rows_in_memory"] >= len(by_first)  # the second kernel's history includes the first's runs
