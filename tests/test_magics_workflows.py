"""Workflows from the notebook, in real kernels (ipykernel 7.x and 6.29): ``%%schedule after ...`` cells,
``%schedule list``/``graph``, and ``%schedule notebook`` (which starts a kernel of its own per run).

Assertions read kernel-side state and iopub messages; waiting is polling, never blind sleeping.
"""
import json

import nbformat
import pytest

from kernel_harness import parent_id

pytestmark = pytest.mark.kernel

SCHED = "__import__('nbsched').get_scheduler()"


def area(kernel, name):
    return kernel.value(f"{SCHED}.get({name!r}).output.stream_text()")


def test_three_cells_a_time_root_and_two_after_cells_run_in_order_each_in_its_own_area(kernel):
    kernel.run("%load_ext nbsched")
    cells = {
        "fetch": "%%schedule every 0.5s --name fetch\nn = globals().get('n', 0) + 1\nprint('FETCH', n)\n{'rows': n}",
        "clean": "%%schedule after fetch --name clean\nimport nbsched\nup = nbsched.current_run().upstream['fetch']\n"
                 "print('CLEAN got', up)\nup['rows'] * 10",
        "report": "%%schedule after clean --name report --rule all_done\n"
                  "print('REPORT', nbsched.current_run().upstream['clean'], nbsched.current_run().reason)",
    }
    defining = {name: kernel.run(code) for name, code in cells.items()}
    kernel.poll_until(lambda: kernel.value(f"len({SCHED}.history('report'))") >= 3, timeout=30,
                      message="the chain did not run three times")
    kernel.run(f"{SCHED}.pause('fetch')")
    kernel.run("import asyncio\nawait asyncio.sleep(0)\nawait __import__('nbsched').get_scheduler().wait_idle()")

    hist = kernel.value(f"[(r.job, r.run_id, str(r.outcome), r.reason, r.scheduled_at.timestamp(), "
                        f"r.started_at.timestamp() if r.started_at == r.started_at else None, "
                        f"r.finished_at.timestamp() if r.finished_at == r.finished_at else None) "
                        f"for r in {SCHED}.history().sort_values('run_id').itertuples()]")
    rounds = {}
    for job, _, outcome, reason, scheduled, started, finished in hist:
        if job == "fetch" and outcome == "missed":
            continue  # a loaded machine may delay a fire past its grace: a missed fire delivers nothing
        assert outcome == "success", hist
        assert reason == ("schedule" if job == "fetch" else "upstream")
        rounds.setdefault(scheduled, []).append((job, started, finished))
    assert len(rounds) >= 3
    for scheduled, runs in rounds.items():
        if len(runs) < 3:
            continue  # (the last fetch may still have been delivering when paused)
        assert [j for j, *_ in runs] == ["fetch", "clean", "report"]  # in order, sharing the root's logical time
        assert runs[0][2] <= runs[1][1] and runs[1][2] <= runs[2][1]
    # each job printed into its own area, with the upstream values handed down
    fetched = area(kernel, "fetch")
    assert fetched.startswith("FETCH 1\nFETCH 2\nFETCH 3\n")
    assert area(kernel, "clean").startswith("CLEAN got {'rows': 1}\nCLEAN got {'rows': 2}\n")
    assert area(kernel, "report").startswith("REPORT 10 upstream\nREPORT 20 upstream\n")
    assert "CLEAN" not in fetched and "REPORT" not in area(kernel, "clean")
    for msg in kernel.messages(("stream", "display_data", "execute_result")):
        text = json.dumps(msg["content"])
        for marker in ("FETCH ", "CLEAN got", "REPORT "):
            assert marker not in text, f"job output escaped to cell {parent_id(msg)}: {text[:200]}"
    assert all(result.status == "ok" for result in defining.values())

    listing = kernel.run("table = get_ipython().run_line_magic('schedule', 'list')")
    assert listing.status == "ok"
    assert kernel.value("list(table['job'])") == ["fetch", "clean", "report"]
    assert kernel.value("list(table['after'])") == ["", "fetch", "clean (all_done)"]
    graph = kernel.run("%schedule graph")
    shown = graph.of_type("execute_result")[0]["content"]["data"]
    assert set(shown) >= {"image/svg+xml", "text/plain"}
    assert 'data-job="report"' in shown["image/svg+xml"] and ">all_done</text>" in shown["image/svg+xml"]
    assert shown["text/plain"].splitlines()[1:] == ["  fetch -> clean", "  clean -> report [all_done]"]
    removed = kernel.execute("%schedule remove fetch")
    assert removed.reply["content"]["ename"] == "UsageError"
    assert "%schedule remove fetch --cascade" in removed.reply["content"]["evalue"]
    kernel.run("%schedule remove fetch --cascade")
    assert kernel.value(f"[j.name for j in {SCHED}.jobs]") == []


def test_schedule_notebook_runs_a_file_after_a_cell_and_refuses_bad_input(kernel, tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("days = 1\nregion = 'us'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print(region.upper(), days * 2)")]
    path = tmp_path / "etl.ipynb"
    nbformat.write(nb, str(path))
    (tmp_path / "plain.txt").write_text("hello")

    kernel.run("%load_ext nbsched")
    kernel.run("%%schedule every 1h --name root --quiet\n'root value'")
    kernel.run(f"%schedule notebook {path} after root --param region=eu --param days=21 --name etl --quiet")
    assert kernel.value(f"{SCHED}.get('etl').upstreams") == ("root",)
    kernel.run(f"await {SCHED}.run_now('root')\nawait {SCHED}.wait_idle()", timeout=120)
    results = kernel.value(f"list({SCHED}.results('etl')['value'])")
    assert len(results) == 1 and results[0].startswith(str(tmp_path / "nbsched-runs" / "etl."))
    executed = nbformat.read(results[0], as_version=4)
    assert executed.cells[1].source.splitlines()[1:] == ["region = 'eu'", "days = 21"]
    assert executed.cells[2].outputs[0]["text"] == "EU 42\n"

    bad = [
        (f"%schedule notebook {tmp_path / 'missing.ipynb'} every 1h", "no notebook at"),
        (f"%schedule notebook {tmp_path / 'plain.txt'} every 1h", "is not a Jupyter notebook"),
        (f"%schedule notebook {path} every 1h --param region", "invalid --param 'region': write NAME=VALUE"),
        (f"%schedule notebook {path} after nothing", "unknown upstream job 'nothing'"),
        (f"%schedule notebook {path}", "needs a SPEC after the path"),
        (f"%schedule notebook {path} every 1h --rule sometimes", "invalid choice: 'sometimes'"),
        ("%schedule graph a b", "usage: %schedule graph [NAME]"),
    ]
    for code, fragment in bad:
        content = kernel.execute(code).reply["content"]
        assert content["status"] == "error" and content["ename"] == "UsageError", (code, content)
        assert fragment in content["evalue"], (code, content["evalue"])
    assert kernel.value(f"[j.name for j in {SCHED}.jobs]") == ["root", "etl"]
