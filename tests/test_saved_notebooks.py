"""Executed notebooks keep each job's output in its own cell: nbclient, papermill and nbconvert, on
ipykernel 7.x and 6.29, read back from the saved JSON (and exported to HTML without network).

A notebook executor keeps only messages parented to the cell it is executing now; a job's output
arrives while a *later* cell runs, so nbsched parents its updates to that cell (see
nbsched.notebook.kernel.in_latest_request) and updates its own cell's outputs by display id.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from kernel_harness import REPO_ROOT, write_notebook

pytestmark = pytest.mark.kernel

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def make_notebook(path: Path) -> None:
    write_notebook(path,
                   "%load_ext nbsched",
                   "%%schedule every 0.4s --name ticker --max-runs 3\n"
                   "n = globals().get('n', 0) + 1\nprint('TICK', n)\nn",
                   "%%schedule every 0.5s --name broken --max-runs 1\n"
                   "raise ValueError('BROKEN-JOB')",
                   "import nbsched\nnbsched.dashboard()",
                   "import asyncio\nawait asyncio.sleep(3.5)",
                   "'done'",
                   kernelspec="nbsched-test")


@pytest.fixture
def kernelspec(kernel_python, tmp_path, monkeypatch):
    """A kernelspec 'nbsched-test' for the interpreter under test, found through JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / "nbsched-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [kernel_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "nbsched test", "language": "python",
        "env": {"PYTHONPATH": str(REPO_ROOT)},
    }))
    path = str(tmp_path / "jupyter") + os.pathsep + os.environ.get("JUPYTER_PATH", "")
    monkeypatch.setenv("JUPYTER_PATH", path)
    return "nbsched-test"


def execute_with(tool: str, source: Path, target: Path, kernel_name: str) -> None:
    if tool == "nbclient":
        from nbclient import NotebookClient

        nb = nbformat.read(str(source), as_version=4)
        NotebookClient(nb, kernel_name=kernel_name, timeout=120).execute()
        nbformat.write(nb, str(target))
    elif tool == "papermill":
        import papermill

        papermill.execute_notebook(str(source), str(target), kernel_name=kernel_name, progress_bar=False)
    else:
        done = subprocess.run(
            [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
             f"--ExecutePreprocessor.kernel_name={kernel_name}", "--output", str(target), str(source)],
            capture_output=True, text=True, timeout=180, env=os.environ.copy())
        assert done.returncode == 0, done.stderr


def text_of(output: dict) -> str:
    if output["output_type"] == "stream":
        return output["text"]
    return json.dumps(output.get("data", {})) + json.dumps(output.get("evalue", ""))


@pytest.mark.parametrize("tool", ["nbclient", "papermill", "nbconvert"])
def test_each_jobs_output_is_saved_in_its_own_cell(tool, kernelspec, tmp_path):
    source, target = tmp_path / "jobs.ipynb", tmp_path / "jobs.out.ipynb"
    make_notebook(source)
    execute_with(tool, source, target, kernelspec)
    nb = nbformat.read(str(target), as_version=4)  # (multi-line strings joined)
    cells = nb["cells"]

    # the ticker's cell: the live widget, then the static summary kept current by display id
    widget, static = cells[1]["outputs"]
    assert widget["output_type"] == static["output_type"] == "display_data"
    assert "application/vnd.jupyter.widget-view+json" in widget["data"]
    plain, html = static["data"]["text/plain"], static["data"]["text/html"]
    assert "job 'ticker': every 400ms - finished" in plain
    assert "runs 3, errors 0" in plain
    assert plain.endswith("output:\n    TICK 1\n    TICK 2\n    TICK 3")
    assert "TICK 1\nTICK 2\nTICK 3\n" in html and "nbsched-static" in html

    # the broken job's cell shows its error
    assert "ValueError: BROKEN-JOB" in cells[2]["outputs"][1]["data"]["text/plain"]
    assert "errors 1" in cells[2]["outputs"][1]["data"]["text/plain"]

    # the dashboard's static table has the last state of every job (not the creation snapshot)
    dash_widget, dash_static = cells[3]["outputs"]
    assert "application/vnd.jupyter.widget-view+json" in dash_widget["data"]
    table = dash_static["data"]["text/plain"].splitlines()
    assert table[0] == "nbsched dashboard: 2 jobs, 0 failing, scheduler running"
    ticker_row = next(line.split() for line in table if line.startswith("ticker"))
    assert ticker_row[:4] == ["ticker", "every", "400ms", "finished"]
    assert ticker_row[-4:] == ["3", "0", "TICK", "3"]  # runs, errors, last output
    assert "<td style='padding:2px 8px;text-align:left;border-bottom:1px solid #e5e7eb'>TICK 3</td>" in \
        dash_static["data"]["text/html"]

    # nothing of any job anywhere else
    assert cells[4]["outputs"] == []
    assert [o["data"]["text/plain"] for o in cells[5]["outputs"]] == ["'done'"]
    for i, cell in enumerate(cells):
        if i not in (1, 2, 3):
            assert not any("TICK" in text_of(o) or "BROKEN-JOB" in text_of(o) for o in cell.get("outputs", [])), i

    # the widget state saved with the notebook has the job's output area, up to date
    state = nb["metadata"]["widgets"][WIDGET_STATE]["state"]
    areas = [m["state"]["outputs"] for m in state.values() if m["model_name"] == "OutputModel"]
    ticker_area = [a for a in areas if any("TICK" in o.get("text", "") for o in a)]
    assert ticker_area == [[{"output_type": "stream", "name": "stdout", "text": "TICK 1\nTICK 2\nTICK 3\n"}]]


def test_html_export_offline_shows_the_cards(kernelspec, tmp_path):
    source, target = tmp_path / "jobs.ipynb", tmp_path / "jobs.out.ipynb"
    make_notebook(source)
    execute_with("nbclient", source, target, kernelspec)
    done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(target)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "jobs.out.html").read_text()
    # without network the widget scripts render nothing; the static summaries are plain HTML
    assert page.count("nbsched-card-static") == 2
    assert page.count("nbsched-dashboard-static") == 1
    assert "TICK 1\nTICK 2\nTICK 3\n" in page
    assert "finished" in page and "ValueError: BROKEN-JOB" in page


def test_backfill_progress_is_saved_at_its_last_state(kernelspec, tmp_path):
    """The bar's updates come from runs that end while a later cell runs: the saved widget state
    must hold the finished bar, not the state it had when its own cell ran."""
    source, target = tmp_path / "backfill.ipynb", tmp_path / "backfill.out.ipynb"
    write_notebook(source,
                   "%load_ext nbsched",
                   "%%schedule daily at 02:00 --name daily --quiet\n"
                   "import asyncio\nawait asyncio.sleep(0.05)",
                   "progress = %schedule backfill daily --start 2026-10-01 --end 2026-10-05\n"
                   "progress",
                   "while not progress.backfill.finished:\n    await asyncio.sleep(0.05)",
                   "'done'",
                   kernelspec=kernelspec)
    execute_with("nbclient", source, target, kernelspec)
    cells = nbformat.read(str(target), as_version=4)["cells"]
    saved = nbformat.read(str(target), as_version=4)["metadata"]["widgets"][WIDGET_STATE]["state"]

    (shown,) = cells[2]["outputs"]
    assert shown["data"]["text/plain"].startswith("backfill of 'daily': 0/5 runs, 0 failed")  # as the cell ran
    bar_id = shown["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    bar_box = saved[bar_id]["state"]["children"]
    bar, label = (saved[ref.removeprefix("IPY_MODEL_")]["state"] for ref in bar_box)
    assert (bar["value"], bar["max"], bar["bar_style"]) == (5, 5, "success")
    assert label["value"].startswith("backfill of 'daily' done: 5 of 5 runs, 0 failed, ")
    assert cells[3]["outputs"] == []
    assert [o["data"]["text/plain"] for o in cells[4]["outputs"]] == ["'done'"]


def test_a_job_added_with_the_python_api_keeps_its_output_in_its_cell(kernelspec, tmp_path):
    """``sched.add(fn, ...)`` in a cell: the job's card and its prints are saved in that cell."""
    source, target = tmp_path / "api.ipynb", tmp_path / "api.out.ipynb"
    write_notebook(source,
                   "%load_ext nbsched",
                   "import nbsched\nsched = nbsched.get_scheduler()\ncount = 0\n\n"
                   "def tock():\n    global count\n    count += 1\n    print('TOCK', count)\n\n"
                   "job = sched.add(tock, 'every 0.4s', name='tock', max_runs=3)",
                   "import asyncio\nwhile sched.get('tock').runs < 3:\n    await asyncio.sleep(0.05)",
                   "'done'",
                   kernelspec=kernelspec)
    execute_with("nbclient", source, target, kernelspec)
    saved = nbformat.read(str(target), as_version=4)
    cells = saved["cells"]

    widget, static = cells[1]["outputs"]  # the job's card, as for a %%schedule cell
    assert "application/vnd.jupyter.widget-view+json" in widget["data"]
    plain = static["data"]["text/plain"]
    assert plain.startswith("job 'tock': every 400ms - finished")
    assert "runs 3, errors 0" in plain
    assert plain.endswith("output:\n    TOCK 1\n    TOCK 2\n    TOCK 3")
    assert cells[2]["outputs"] == []
    assert [o["data"]["text/plain"] for o in cells[3]["outputs"]] == ["'done'"]
    state = saved["metadata"]["widgets"][WIDGET_STATE]["state"]
    areas = [m["state"]["outputs"] for m in state.values() if m["model_name"] == "OutputModel"]
    assert areas == [[{"output_type": "stream", "name": "stdout", "text": "TOCK 1\nTOCK 2\nTOCK 3\n"}]]
