"""What a new user meets first: the command line, the install, the magic's help and its hints.

The README's own code blocks are executed by tests/test_readme.py.
"""
import os
import re
import subprocess
import sys
import warnings

import pytest

import nbsched
from nbsched.errors import JobLookupError
from nbsched.notebook import run as cli

from kernel_harness import REPO_ROOT


def _python(*args, **kwargs):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, **kwargs)


def test_version_from_the_script_and_from_python_m():
    assert _python("-m", "nbsched", "--version").stdout == f"nbsched {nbsched.__version__}\n"
    script = os.path.join(os.path.dirname(sys.executable), "nbsched")
    done = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, f"nbsched {nbsched.__version__}\n")


def test_run_without_the_notebook_extra_says_what_to_install(tmp_path):
    nb = tmp_path / "empty.ipynb"
    nb.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    # nbformat and jupyter_client made unimportable, as after a bare `pip install nbsched`
    code = ("import sys; sys.modules['nbformat'] = None; sys.modules['jupyter_client'] = None\n"
            "from nbsched.notebook.run import main\n"
            f"sys.exit(main(['run', {str(nb)!r}, '--for', '1s']))")
    done = _python("-c", code)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("usage: nbsched run ")
    assert ("nbsched run: error: nbsched run needs nbformat, jupyter_client to execute notebooks, and they are "
            "not installed: pip install 'nbsched[notebook]'") in done.stderr


@pytest.mark.parametrize("argv, message", [
    (["run", "no-such.ipynb"], "nbsched run: error: no such notebook: no-such.ipynb"),
    (["run", "README.md", "--for", "5 parsecs"], "nbsched run: error: invalid --for '5 parsecs'"),
])
def test_run_errors_print_the_run_usage(argv, message, capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    usage = err[:err.index("nbsched run: error")].split()
    assert usage == ("usage: nbsched run [-h] [--for DURATION] [--out OUT] [--kernel KERNEL] [--cluster ADDRESS] "
                     "notebook").split()
    assert message in err


def test_make_demo_installs_only_the_notebook_extra():
    done = subprocess.run(["make", "-n", "-B", "demo"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    installs = [line for line in done.stdout.splitlines() if " pip install " in line and " -e " in line]
    assert installs == [line for line in installs if line.endswith("-e '.[notebook]'")] and len(installs) == 1
    assert "nbsched run notebooks/quickstart.ipynb" in done.stdout


def test_make_test_still_installs_every_extra():
    done = subprocess.run(["make", "-n", "-B", "setup"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert "-e '.[test,notebook,browser,bench]'" in done.stdout


def test_license_is_an_spdx_expression_without_deprecation_warnings(tmp_path):
    import tomllib

    from setuptools import build_meta

    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "MIT"
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            info = build_meta.prepare_metadata_for_build_wheel(str(tmp_path))
    finally:
        os.chdir(cwd)
    deprecations = [str(w.message) for w in caught if "Deprecat" in type(w.message).__name__]
    assert deprecations == []
    text = (tmp_path / info / "METADATA").read_text()
    assert "License-Expression: MIT" in text


async def test_history_of_an_unknown_job_after_a_removal_names_the_jobs_with_history(sched, clock):
    with pytest.raises(JobLookupError, match=r"there are no jobs yet"):
        sched.history("nosuch")
    sched.add(lambda: 1, "every 10s", name="gone")
    await clock.advance(10)
    sched.remove("gone")
    for lookup in (sched.history, sched.results):
        with pytest.raises(JobLookupError) as caught:
            lookup("nosuch")
        assert str(caught.value) == "no job named 'nosuch': the jobs with history are 'gone'"
    with pytest.raises(JobLookupError, match=r"^no job named 'nosuch': every job was removed"):
        sched.get("nosuch")


@pytest.mark.kernel
def test_magic_help_hints_and_lookups_in_a_kernel(kernel):
    kernel.run("%load_ext nbsched")
    usage = kernel.value("__import__('nbsched').notebook.magics.ScheduleMagics.schedule.__doc__")
    assert re.search(r"^  %%schedule \[--name NAME\]", usage, re.M), usage[:200]
    assert not re.search(r"^  %schedule ", usage, re.M)

    mistyped = kernel.execute("%%schedule every 1h --retires 3\nx = 1")
    assert mistyped.error["ename"] == "UsageError"
    assert mistyped.error["evalue"].startswith("unknown %%schedule option '--retires': did you mean --retries? ")
    assert kernel.value("len(__import__('nbsched').get_scheduler().jobs)") == 0  # nothing half-registered

    kernel.run("%%schedule every 1h --name gone --now --quiet\n1")
    kernel.poll_until(lambda: kernel.value("len(__import__('nbsched').get_scheduler().history('gone'))") >= 1, timeout=15)
    kernel.run("%schedule remove gone")
    lookup = kernel.execute("%schedule history nosuch")
    assert lookup.error["ename"] == "UsageError"
    assert lookup.error["evalue"] == "no job named 'nosuch': the jobs with history are 'gone'"
