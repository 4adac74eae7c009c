"""``nbsched run``: the executed notebook keeps each job's output, and a self-contained report is written."""
import subprocess
import sys

import nbformat
import pytest

from kernel_harness import REPO_ROOT, write_notebook

pytestmark = pytest.mark.kernel


def test_run_writes_the_executed_notebook_and_a_report(tmp_path):
    source = write_notebook(tmp_path / "jobs.ipynb",
                            "%load_ext nbsched",
                            "%%schedule every 0.5s --name hello --max-runs 4\n"
                            "count = globals().get('count', 0) + 1\nprint('HELLO', count)\n{'count': count}",
                            "%%schedule every 1s --name flaky --retries 2 --retry-delay 0.1s\n"
                            "tries = globals().get('tries', 0) + 1\n"
                            "if tries % 3:\n    raise ConnectionError(f'not yet {tries}')\n'ok'",
                            "x = 1")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "nbsched", "run", str(source), "--for", "3.5s", "--out", str(out)],
                          capture_output=True, text=True, timeout=240, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"report:            {out / 'report.html'}" in done.stdout
    assert f"executed notebook: {out / 'jobs.ipynb'}" in done.stdout

    executed = nbformat.read(str(out / "jobs.ipynb"), as_version=4)
    assert len(executed.cells) == 4  # the hidden waiting cells are gone
    static = executed.cells[1].outputs[1]["data"]["text/plain"]
    # it ran on after the last cell, and its card kept up: the saved state is the final one
    assert static.startswith("job 'hello': every 500ms - finished; next run - (-); runs 4, errors 0")
    assert static.endswith("output:\n    HELLO 1\n    HELLO 2\n    HELLO 3\n    HELLO 4")
    count = 4
    flaky = executed.cells[2].outputs[1]["data"]["text/plain"]
    assert "ConnectionError: not yet 1" in flaky
    assert executed.cells[3].outputs == []

    page = (out / "report.html").read_text()
    assert page.count("<div class='nbsched-timeline'") == 2
    assert "retries" in page and "recovered" in page  # flaky's retries, grouped with their runs
    assert "<h3>Last output</h3>" in page and f"HELLO {count}" in page
    assert "<script" not in page
    assert (out / "hello.history.csv").exists() and (out / "flaky.results.csv").exists()


def test_schedule_timeline_in_a_kernel(kernel):
    kernel.run("%load_ext nbsched")
    kernel.run("%%schedule every 0.2s --name tl --quiet\n1")
    kernel.poll_until(lambda: kernel.value("len(__import__('nbsched').get_scheduler().history('tl'))") >= 3, timeout=15)
    shown = kernel.run("%schedule timeline tl").of_type("execute_result")[0]["content"]["data"]
    assert shown["text/plain"].startswith("tl: ") and "+" in shown["text/plain"].splitlines()[0]
    assert "<div class='nbsched-timeline' data-job='tl'>" in shown["text/html"]
    wrong = kernel.execute("%schedule timeline tl extra")
    assert wrong.error["evalue"] == "usage: %schedule timeline [NAME]  (every job when no name is given)"
