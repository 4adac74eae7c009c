"""The benchmark scripts still run against the current code (smallest sizes; no figure is judged here).

A benchmark that breaks when a column or a table changes is found by ``make test``, not by the next
``make bench``.  Performance itself is measured by ``make bench`` only, never asserted in tests.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"

pytestmark = pytest.mark.realtime


def _run(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=240, cwd=BENCH)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_store_restore_bench_builds_a_file_the_store_restores(tmp_path):
    proc = _run(str(BENCH / "bench_store.py"), "--one", "restore", "50", "4")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("@@RESULT "))
    out = json.loads(line[len("@@RESULT "):])
    assert (out["jobs"], out["rows"], out["restored"], out["history_rows"], out["result_rows"]) == (50, 200, 50, 200, 50)


def test_history_bench_frame_matches_the_ready_columns_frame(tmp_path):
    raw = tmp_path / "history.json"
    _run(str(BENCH / "bench_history.py"), "--quick", "--json", str(raw))
    (res,) = json.loads(raw.read_text())["results"]
    assert (res["jobs"], res["rows"]) == (10_000, 130_000)
