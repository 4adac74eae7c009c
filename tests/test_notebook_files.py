"""Notebook files as jobs (Scheduler.add_notebook): real notebooks executed in real kernels (nbclient).

The runs use the real clock (a kernel takes a second or two to start); bad input is checked without
starting any kernel.
"""
import os

import nbformat
import pytest

import nbsched
from nbsched.notebook_files import (INJECTED_TAG, NotebookCellError, NotebookFileError, NotebookFileJob,
                                    inject_parameters)


def code(source, *tags):
    cell = nbformat.v4.new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def write(path, *cells, kernelspec=None):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    if kernelspec is not None:
        nb.metadata["kernelspec"] = kernelspec
    nbformat.write(nb, str(path))
    return path


def outputs(nb_path):
    """Every stream/result text of an executed notebook, cell by cell."""
    nb = nbformat.read(str(nb_path), as_version=4)
    texts = []
    for cell in nb.cells:
        parts = []
        for o in cell.get("outputs", []):
            if o["output_type"] == "stream":
                parts.append(o["text"])
            elif o["output_type"] in ("execute_result", "display_data"):
                parts.append(o["data"].get("text/plain", ""))
            elif o["output_type"] == "error":
                parts.append(f"{o['ename']}: {o['evalue']}")
        texts.append("".join(parts))
    return nb, texts


@pytest.fixture
async def real_sched():
    s = nbsched.Scheduler(tz="UTC")
    yield s
    s.shutdown(wait=False)


# ---------------------------------------------------------------------------------- injection (no kernel)
def test_parameters_go_after_the_tagged_cell_and_replace_an_earlier_injection():
    nb = nbformat.v4.new_notebook()
    nb.cells = [code("import os"), code("region = 'us'", "parameters"), code("# old", INJECTED_TAG), code("work()")]
    at = inject_parameters(nb, {"region": "eu", "days": [1, 2], "flag": True, "none": None}, " (test)")
    assert at == 2
    assert [c.source for c in nb.cells] == [
        "import os", "region = 'us'",
        "# Parameters (test)\nregion = 'eu'\ndays = [1, 2]\nflag = True\nnone = None", "work()"]
    assert nb.cells[2].metadata["tags"] == [INJECTED_TAG]


def test_without_a_parameters_cell_they_go_on_top_and_no_parameters_add_no_cell():
    nb = nbformat.v4.new_notebook()
    nb.cells = [code("print(region)")]
    assert inject_parameters(nb, {"region": "eu"}) == 0
    assert [c.source for c in nb.cells] == ["# Parameters\nregion = 'eu'", "print(region)"]
    nb.cells = [code("x = 1")]
    assert inject_parameters(nb, {}) is None
    assert [c.source for c in nb.cells] == ["x = 1"]


# ------------------------------------------------------------------------------- bad input (no kernel)
async def test_bad_input_is_refused_with_a_clear_error_and_nothing_is_added(sched, tmp_path):
    good = write(tmp_path / "good.ipynb", code("x = 1"))
    (tmp_path / "notes.txt").write_text("not a notebook")
    (tmp_path / "broken.ipynb").write_text("{\"cells\": [")
    (tmp_path / "out-file").write_text("")
    cases = [
        (dict(path=tmp_path / "missing.ipynb"), NotebookFileError, "no notebook at"),
        (dict(path=tmp_path), NotebookFileError, "is a directory, not a notebook"),
        (dict(path=tmp_path / "notes.txt"), NotebookFileError, "is not a Jupyter notebook"),
        (dict(path=tmp_path / "broken.ipynb"), NotebookFileError, "is not a Jupyter notebook"),
        (dict(path=good, parameters={"when": {1, 2}}), NotebookFileError, "parameter 'when' = {1, 2} (set) is not JSON-able"),
        (dict(path=good, parameters={"x": float("nan")}), NotebookFileError, "parameter 'x' = nan (float) is not JSON-able"),
        (dict(path=good, parameters={"class": 1}), NotebookFileError, "invalid parameter name 'class'"),
        (dict(path=good, parameters={"a b": 1}), NotebookFileError, "invalid parameter name 'a b'"),
        (dict(path=good, parameters=[("a", 1)]), NotebookFileError, "parameters must be a dict"),
        (dict(path=good, kernel_name="no-such-kernel"), NotebookFileError, "no kernel named 'no-such-kernel' is installed"),
        (dict(path=good, output_dir=tmp_path / "out-file"), NotebookFileError, "is a file: give a folder"),
        (dict(path=good, executor="thread"), nbsched.PolicyError, "a notebook job runs its notebook in a kernel"),
        (dict(path=good, trigger="every 5 parsecs"), nbsched.TriggerError, "every 5 parsecs"),
        (dict(path=good, trigger="after nothing"), nbsched.TriggerError, "unknown upstream job 'nothing'"),
    ]
    for kwargs, error, text in cases:
        kwargs = dict(kwargs)
        path, trigger = kwargs.pop("path"), kwargs.pop("trigger", "every 1h")
        with pytest.raises(error) as info:
            sched.add_notebook(path, trigger, **kwargs)
        assert text in str(info.value), (kwargs, str(info.value))
    assert len(sched) == 0 and sched.history().empty
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.ipynb", "good.ipynb", "notes.txt", "out-file"]


async def test_a_non_python_notebook_takes_no_parameters(sched, tmp_path):
    nb = write(tmp_path / "r.ipynb", code("x <- 1"),
               kernelspec={"name": "python3", "language": "R", "display_name": "R"})
    with pytest.raises(NotebookFileError, match="is a r notebook: parameters are injected as Python"):
        sched.add_notebook(nb, "every 1h", parameters={"x": 1})
    job = sched.add_notebook(nb, "every 1h")  # without parameters it is fine (the kernel is the spec's)
    assert job.name == "r" and isinstance(job.func, NotebookFileJob)


@pytest.mark.store
async def test_a_notebook_job_is_persisted_and_restored_with_its_parameters(tmp_path, clock):
    db = tmp_path / "jobs.db"
    etl = write(tmp_path / "etl.ipynb", code("region = 'us'", "parameters"))
    report = write(tmp_path / "report.ipynb", code("pass"))
    first = nbsched.Scheduler(clock=clock, tz="UTC", store=str(db))
    first.add_notebook(etl, "daily at 02:00", parameters={"region": "eu"}, output_dir=tmp_path / "runs")
    first.add_notebook(report, "after etl", trigger_rule="all_done")
    first.store.flush()
    first.shutdown()
    second = nbsched.Scheduler(clock=clock, tz="UTC")
    restored = second.restore(str(db))
    assert [j.name for j in restored] == ["etl", "report"]
    func = second.get("etl").func
    assert isinstance(func, NotebookFileJob)
    assert (func.path, func.parameters, func.output_dir) == (etl, {"region": "eu"}, tmp_path / "runs")
    assert second.get("report").upstreams == ("etl",) and second.downstream_of("etl") == ["report"]
    assert second.get("report").policy.trigger_rule == "all_done"
    second.shutdown()


# ------------------------------------------------------------------------------------ real kernels
@pytest.mark.kernel
@pytest.mark.realtime
async def test_runs_inject_parameters_keep_each_executed_notebook_and_chain_with_after(real_sched, tmp_path):
    sched = real_sched
    folder = tmp_path / "project"
    folder.mkdir()
    etl = write(folder / "etl.ipynb",
                code("region = 'us'\nn = 1", "parameters"),
                code("import os\nprint(region, n * 2)\nopen('etl-done.txt', 'w').write(region)\nos.getcwd()"))
    report = write(folder / "report.ipynb", code("print(open('etl-done.txt').read().upper())"))
    sched.add_notebook(etl, "daily at 02:00", name="etl", parameters={"region": "eu", "n": 21})
    sched.add_notebook(report, "after etl", output_dir=tmp_path / "reports")
    first = await sched.run_now("etl")
    await sched.wait_idle()
    second = await sched.run_now("etl")
    await sched.wait_idle()

    runs = sched.results("etl")
    assert list(runs["value"]) == [first, second]
    assert first != second and os.path.dirname(first) == str(folder / "nbsched-runs")
    nb, texts = outputs(first)
    assert [c.source.splitlines()[0] for c in nb.cells] == [
        "region = 'us'", "# Parameters (injected by nbsched for run 1 of job 'etl')", "import os"]
    assert texts == ["", "", f"eu 42\n'{folder}'"]  # injected after the tagged cell; cwd is the file's folder
    assert nb.metadata["nbsched"]["status"] == "completed" and nb.metadata["nbsched"]["parameters"] == {"region": "eu", "n": 21}
    assert nb.metadata["language_info"]["name"] == "python"
    assert nbformat.read(str(etl), as_version=4).cells[1].outputs == []  # the source file is untouched

    reports = sched.results("report")
    assert len(reports) == 2 and all(os.path.dirname(p) == str(tmp_path / "reports") for p in reports["value"])
    assert outputs(reports["value"].iloc[0])[1] == ["EU\n"]
    hist = sched.history("report")
    assert list(hist["outcome"].astype(str)) == ["success", "success"]
    assert list(hist["reason"].astype(str)) == ["upstream", "upstream"]
    assert list(hist["scheduled_at"]) == list(sched.history("etl")["scheduled_at"])  # the root's logical time


@pytest.mark.kernel
@pytest.mark.realtime
async def test_a_failing_cell_fails_the_run_with_the_cells_error_and_traceback(real_sched, tmp_path):
    sched = real_sched
    nb_path = write(tmp_path / "bad.ipynb", code("print('before')"), code("def f():\n    return 1 / 0\nf()"),
                    code("print('never')"))
    sched.add_notebook(nb_path, "every 1h", name="bad")
    sched.add(lambda: "alerted", after="bad", name="alert", trigger_rule="one_failed")
    with pytest.raises(NotebookCellError) as info:
        await sched.run_now("bad")
    await sched.wait_idle()
    err = info.value
    assert (err.ename, err.evalue, err.cell_index) == ("ZeroDivisionError", "division by zero", 1)
    row = sched.history("bad").iloc[0]
    assert row["outcome"] == "error" and row["error_type"] == "NotebookCellError"
    assert row["error"] == (f"NotebookCellError: cell 2 of bad.ipynb raised ZeroDivisionError: division by zero "
                            f"(executed notebook: {err.output})")
    assert "----> 3 f()" in row["traceback"] and "----> 2     return 1 / 0" in row["traceback"]
    assert "\x1b[" not in row["traceback"]
    nb, texts = outputs(err.output)
    assert texts == ["before\n", "ZeroDivisionError: division by zero", ""]
    assert nb.metadata["nbsched"]["status"] == "failed"
    assert list(sched.history("alert")["outcome"].astype(str)) == ["success"]  # the failure alert ran


@pytest.mark.kernel
@pytest.mark.realtime
async def test_retries_run_the_notebook_again_in_a_fresh_kernel(real_sched, tmp_path):
    sched = real_sched
    nb_path = write(tmp_path / "flaky.ipynb", code(
        "import os\nopen('pids.txt', 'a').write(f'{os.getpid()}\\n')\n"
        "if not os.path.exists('tried'):\n    open('tried', 'w').close()\n    raise RuntimeError('first attempt fails')"))
    sched.add_notebook(nb_path, "every 1h", retries=1, retry_delay=0)
    value = await sched.run_now("flaky")
    hist = sched.history("flaky")
    assert list(hist["outcome"].astype(str)) == ["error", "success"] and list(hist["attempt"]) == [1, 2]
    assert value.startswith(str(tmp_path / "nbsched-runs" / "flaky.")) and value.endswith(".run1.attempt2.ipynb")
    assert hist["error"].iloc[0] == ("NotebookCellError: cell 1 of flaky.ipynb raised RuntimeError: first attempt "
                                     f"fails (executed notebook: {value.replace('.attempt2', '')})")
    pids = (tmp_path / "pids.txt").read_text().split()
    assert len(pids) == 2 and pids[0] != pids[1]
    assert sorted(p.name.split(".", 2)[2] for p in (tmp_path / "nbsched-runs").iterdir()) == [
        "run1.attempt2.ipynb", "run1.ipynb"]


@pytest.mark.kernel
@pytest.mark.realtime
async def test_a_timeout_kills_the_kernel_and_max_instances_skips_an_overlapping_run(real_sched, tmp_path):
    psutil = pytest.importorskip("psutil")
    sched = real_sched
    nb_path = write(tmp_path / "slow.ipynb", code("import os, time\nopen('pid.txt', 'w').write(str(os.getpid()))"),
                    code("time.sleep(120)"))
    sched.add_notebook(nb_path, "every 1h", timeout="6s")
    first = sched.run_now("slow")
    second = sched.run_now("slow")
    with pytest.raises(nbsched.MaxInstancesReachedError):
        await second
    with pytest.raises(TimeoutError, match="job 'slow' timed out after 6s"):
        await first
    pid = int((tmp_path / "pid.txt").read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert list(sched.history("slow")["outcome"].astype(str)) == ["timeout", "skipped"]  # by run id
    kept = list((tmp_path / "nbsched-runs").iterdir())
    assert len(kept) == 1 and nbformat.read(str(kept[0]), as_version=4).metadata["nbsched"]["status"] == "cancelled"
