"""The README's runnable code blocks, executed as a reader would run them, so they cannot drift.

Runnable blocks: those of the "Quick start" and "Outside a kernel" sections.  Notebook blocks (the ones
after "In a notebook") run in order in one real kernel; script blocks run as ``python -c``.  The
reference blocks elsewhere (Python API, Persistence, Executors, ...) name placeholder functions
(``fetch``, ``report``) and are not executed.
"""
import re
import subprocess
import sys

import pytest

from kernel_harness import REPO_ROOT, KernelHarness

README = (REPO_ROOT / "README.md").read_text()


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def test_the_quick_start_has_the_blocks_this_test_runs():
    blocks = python_blocks(section("Quick start"))
    assert len(blocks) == 6
    assert blocks[0].startswith("%load_ext nbsched\n") and "import os, nbsched" in blocks[0]
    assert blocks[4].startswith("nbsched.dashboard()")
    assert "asyncio.run(main())" in blocks[5]


@pytest.mark.kernel
def test_quick_start_notebook_blocks_run_in_a_real_kernel():
    setup, job, tail, history, dashboard, _script = python_blocks(section("Quick start"))
    with KernelHarness() as kernel:
        kernel.run(setup)
        kernel.run(job)
        kernel.poll_until(lambda: kernel.value("len(samples)") >= 1, timeout=20, message="the sample job never ran")
        frame = kernel.run(tail).of_type("execute_result")[0]["content"]["data"]["text/plain"]
        assert "load1" in frame and "run_id" in frame
        rows = kernel.run(history).of_type("execute_result")[0]["content"]["data"]["text/plain"]
        assert "success" in rows
        shown = kernel.run(dashboard)
        # nbsched.dashboard() displays the live widget and its static table (which names the job)
        widget, static = (m["content"]["data"] for m in shown.of_type("display_data"))
        assert "application/vnd.jupyter.widget-view+json" in widget
        assert "sample" in static["text/plain"] and "nbsched-static" in static["text/html"]
        kernel.run("%unload_ext nbsched")


@pytest.mark.realtime
def test_quick_start_script_block_runs_as_a_script():
    script = python_blocks(section("Quick start"))[5]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tick\n")
    assert done.stdout.count("tick\n") >= 4  # every 1s for 5 s, the first at 1 s


@pytest.mark.realtime
def test_outside_a_kernel_block_runs_as_a_script():
    (script,) = python_blocks(section("Outside a kernel"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == ["tick", "tick", "tick"]
    assert [line.split()[-1] for line in lines[4:]] == ["success", "success", "success"]
