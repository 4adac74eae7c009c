"""A frontend that renders no widgets (``jupyter console``) sees what jobs print, as text lines.

Which frontend sent a request is read from the request itself (``kernel.frontend_kind``): JupyterLab,
Notebook 7 and VS Code name the cell (``metadata.cellId``), nbclient sends ``allow_stdin: false``, a
console neither. A job made from a console also writes its output to the kernel's stdout/stderr,
parented to the console's request (``kernel.TextEcho``); a job made from a notebook or an executor
does not, so nothing reaches another cell.

Checked three ways: the rule on request shapes (no kernel), real kernels (6.29 and 7.x) driven
with each request shape, and a real ``jupyter console`` process driven through a pseudo-terminal.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from nbsched.notebook import kernel as nbkernel

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[=>]")


# ------------------------------------------------------------------------------ the rule, no kernel
def request(metadata=None, **content):
    return {"header": {"msg_type": "execute_request"}, "msg_type": "execute_request",
            "metadata": metadata or {}, "content": {"code": "1", **content}}


def test_frontend_kind_from_the_request_shape():
    # JupyterLab 4 / Notebook 7: CodeCell.execute sends {...cell metadata, cellId}; VS Code sends cellId too
    assert nbkernel.frontend_kind(request({"cellId": "5f2a", "deletedCells": []}, allow_stdin=True)) == "notebook"
    # nbclient (nbconvert --execute, papermill, nbsched run): kc.allow_stdin = False, no metadata
    assert nbkernel.frontend_kind(request(allow_stdin=False)) == "executor"
    # jupyter console 6.6.3 (measured): allow_stdin true, empty metadata
    assert nbkernel.frontend_kind(request(allow_stdin=True)) == "console"
    assert nbkernel.frontend_kind(request()) == "executor"  # (no allow_stdin: it cannot answer input())
    assert nbkernel.frontend_kind({"header": {"msg_type": "comm_msg"}, "msg_type": "comm_msg"}) is None
    assert nbkernel.frontend_kind({}) is None


def test_frontend_kind_outside_a_kernel_is_none():
    assert nbkernel.frontend_kind() is None
    assert nbkernel.console_echo("job") is None


def test_text_echo_writes_text_lines(capsys):
    echo = nbkernel.TextEcho("prices")
    echo.write("stdout", "TICK 1\n")
    echo.display({"text/plain": "   a  b\n0  1  2", "text/html": "<table/>"})
    echo.display({"image/png": "iVBOR"})  # nothing to write
    echo.write("stderr", "careful\n")
    echo.failed(["Traceback (most recent call last):", "ValueError: BROKEN"])
    out, err = capsys.readouterr()
    assert out == "TICK 1\n   a  b\n0  1  2\n"
    assert err == "careful\n[nbsched] job 'prices' failed:\nTraceback (most recent call last):\nValueError: BROKEN\n"


# ------------------------------------------------------------------------------ real kernels
TICK_CELL = "%%schedule every 0.2s --name tick --max-runs 3\nn = globals().get('n', 0) + 1\nprint(f'TICK {n}')"
BAD_CELL = "%%schedule in 0.1s --name bad\nraise ValueError('BROKEN-JOB')"


def _streams(kernel, marker):
    return [m for m in kernel.messages("stream") if marker in m["content"]["text"]]


def _text(messages, name):
    return "".join(m["content"]["text"] for m in messages if m["content"]["name"] == name)


@pytest.mark.kernel
def test_a_job_made_from_a_console_prints_there(kernel):
    kernel.run("%load_ext nbsched\nimport nbsched", frontend="console")
    made = kernel.run(TICK_CELL, frontend="console")
    # the card: its text summary only (a console renders no widget)
    shown = made.of_type("display_data")
    assert len(shown) == 1 and "application/vnd.jupyter.widget-view+json" not in shown[0]["content"]["data"]
    assert shown[0]["content"]["data"]["text/plain"].startswith("job 'tick': every 200ms - scheduled")
    kernel.poll_until(lambda: kernel.value("nbsched.get_scheduler().get('tick').runs") == 3, timeout=20)
    echoed = lambda: kernel.messages("stream", parent=made.msg_id)  # noqa: E731
    kernel.poll_until(lambda: _text(echoed(), "stdout").count("\n") == 3, timeout=10)
    # to the console's own request (print's line end may travel in a message of its own)
    assert {m["parent_header"]["msg_id"] for m in _streams(kernel, "TICK")} == {made.msg_id}
    assert _text(echoed(), "stdout") == "TICK 1\nTICK 2\nTICK 3\n"
    assert _text(echoed(), "stderr") == ""
    assert kernel.value("nbsched.get_scheduler().get('tick').output.stream_text()") == "TICK 1\nTICK 2\nTICK 3\n"

    bad = kernel.run(BAD_CELL, frontend="console")
    kernel.poll_until(lambda: _streams(kernel, "BROKEN-JOB"), timeout=20)
    failed = _streams(kernel, "BROKEN-JOB")
    assert [m["parent_header"]["msg_id"] for m in failed] == [bad.msg_id]
    text = ANSI.sub("", _text(kernel.messages("stream", parent=bad.msg_id), "stderr"))
    assert text.startswith("[nbsched] job 'bad' failed:\n") and text.endswith("ValueError: BROKEN-JOB\n")
    assert text.count("ValueError: BROKEN-JOB") == 1


@pytest.mark.kernel
@pytest.mark.parametrize("frontend", ["notebook", "executor"])
def test_a_job_made_from_a_notebook_or_an_executor_prints_into_its_area_only(kernel, frontend):
    kernel.run("%load_ext nbsched\nimport nbsched", frontend=frontend)
    made = kernel.run(TICK_CELL, frontend=frontend)
    views = [m for m in made.of_type("display_data")
             if "application/vnd.jupyter.widget-view+json" in m["content"]["data"]]
    assert len(views) == 1  # the live card
    kernel.poll_until(lambda: kernel.value("nbsched.get_scheduler().get('tick').runs") == 3, timeout=20)
    kernel.poll_until(lambda: kernel.value("nbsched.get_scheduler().get('tick').output.stream_text()")
                      == "TICK 1\nTICK 2\nTICK 3\n", timeout=10)
    kernel.run("nbsched.get_scheduler().get('tick').output.flush()", frontend=frontend)
    kernel.run(BAD_CELL, frontend=frontend)
    kernel.poll_until(lambda: kernel.value("len(nbsched.get_scheduler().history('bad'))") == 1, timeout=20)
    kernel.run("print('after')", frontend=frontend)  # (a request whose end flushes the kernel's streams)
    assert _streams(kernel, "TICK") == []
    assert _streams(kernel, "BROKEN-JOB") == []
    assert [m for m in kernel.messages("error") if "BROKEN-JOB" in json.dumps(m["content"])] == []


# ------------------------------------------------------------------------------ a real jupyter console
def _console_kernelspec(tmp_path: Path, python: str) -> Path:
    spec = tmp_path / "jupyter" / "kernels" / "nbsched-console"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "nbsched console test", "language": "python"}))
    return spec.parent.parent


@pytest.mark.kernel
def test_jupyter_console_shows_job_output_as_text_lines(tmp_path, kernel_python):
    import pexpect

    from kernel_harness import REPO_ROOT

    jupyter_path = _console_kernelspec(tmp_path, kernel_python)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TERM="xterm", COLUMNS="120", LINES="40",
               JUPYTER_PATH=str(jupyter_path), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               IPYTHONDIR=str(tmp_path / "ipython"), PYDEVD_DISABLE_FILE_VALIDATION="1")
    env.pop("PYTHONSTARTUP", None)
    child = pexpect.spawn(sys.executable, ["-m", "jupyter_console", "--kernel", "nbsched-console",
                                           "--ZMQTerminalInteractiveShell.highlighting_style=bw"],
                          env=env, encoding="utf-8", dimensions=(40, 120), timeout=60, cwd=str(tmp_path))
    seen: list[str] = []
    child.logfile_read = type("Sink", (), {"write": lambda self, s: seen.append(s), "flush": lambda self: None})()
    codes = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"

    def prompt(n: int) -> None:
        child.expect(rf"In \[{codes}{n}{codes}\]:")

    def cell(*lines: str) -> None:  # a cell magic ends with an empty line, as typed
        for line in lines[:-1]:
            child.send(line + "\r")
            child.expect(rf"\.\.\.{codes}:")
        child.send(lines[-1] + "\r")

    try:
        prompt(1)
        cell("%load_ext nbsched")
        prompt(2)
        cell("%%schedule every 0.3s --name tick --max-runs 3", "n = globals().get('n', 0) + 1", "print(f'TICK {n}')",
             "", "")
        prompt(3)
        # the console reads the kernel's output while a cell of its own runs: wait in one
        cell("import asyncio, nbsched; sched = nbsched.get_scheduler()")
        prompt(4)
        cell("while sched.get('tick').runs < 3: await asyncio.sleep(0.05)")
        prompt(5)
        cell("%%schedule in 0.1s --name bad", "raise ValueError('BROKEN-JOB')", "", "")
        prompt(6)
        cell("while len(sched.history('bad')) < 1: await asyncio.sleep(0.05)")
        prompt(7)
        cell("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    text = ANSI.sub("", "".join(seen)).replace("\r", "")
    lines = text.split("\n")
    assert [line for line in lines if line.startswith("TICK")] == ["TICK 1", "TICK 2", "TICK 3"]
    # all printed before the prompt that follows the waiting cell
    assert text.index("TICK 3") < text.rindex("In [5]:")
    assert "job 'tick': every 300ms - scheduled" in text  # the card, as text
    assert "a live widget" not in text  # (no widget placeholder in a console)
    failure = lines.index("[nbsched] job 'bad' failed:")
    assert lines.count("[nbsched] job 'bad' failed:") == 1
    assert "ValueError: BROKEN-JOB" in lines[failure:]
    assert lines.count("ValueError: BROKEN-JOB") == 1
    assert child.exitstatus == 0
