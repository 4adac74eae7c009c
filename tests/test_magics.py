"""%%schedule and %schedule end to end, in real kernels (ipykernel 7.x and 6.29), through jupyter_client.

Assertions read kernel-side state and iopub messages; waiting is polling, never blind sleeping.
"""
import json
import subprocess
import sys

import pytest

from kernel_harness import REPO_ROOT, parent_id

pytestmark = pytest.mark.kernel

JOBS = "[j.name for j in __import__('nbsched').get_scheduler().jobs]"


def outcomes(kernel, name):
    return kernel.value(f"list(__import__('nbsched').get_scheduler().history({name!r})['outcome'].astype(str))")


def test_job_fires_while_idle_and_during_await_cell(kernel):
    kernel.run("%load_ext nbsched")
    kernel.run("%%schedule every 0.2s --name tick --quiet\nticks = globals().get('ticks', 0) + 1")
    kernel.poll_until(lambda: kernel.value("globals().get('ticks', 0)") >= 3, timeout=15, message="job never fired while idle")
    before = kernel.value("ticks")
    kernel.run("import asyncio\nawait asyncio.sleep(1.0)\nduring = ticks")
    assert kernel.value("during") >= before + 3  # it kept firing while the cell awaited


def test_output_goes_only_to_the_jobs_area(kernel):
    kernel.run("%load_ext nbsched")
    defining = kernel.run(
        "%%schedule every 0.1s --name chatty\n"
        "print('JOB-OUT', globals().setdefault('k', [0]).__setitem__(0, k[0] + 1) or k[0])\n"
        "from IPython.display import display\n"
        "display({'text/plain': 'JOB-DISPLAY'}, raw=True)"
    )
    kernel.poll_until(lambda: kernel.value("globals().get('k', [0])[0]") >= 3, timeout=15)
    # a cell printing concurrently keeps its own output clean
    other = kernel.run("import asyncio\nfor i in range(5):\n    print('CELL', i)\n    await asyncio.sleep(0.1)")
    assert other.stdout == "".join(f"CELL {i}\n" for i in range(5))
    kernel.poll_until(lambda: kernel.value("globals().get('k', [0])[0]") >= 8, timeout=15)
    # the card's static summary (the job's own cell) is updated in place within about a second
    kernel.poll_until(lambda: any("JOB-OUT" in json.dumps(m["content"]) for m in kernel.messages("update_display_data")),
                      timeout=15, message="the card's static summary never showed the job's output")
    card_updates = 0
    for msg in kernel.messages(("stream", "display_data", "update_display_data", "execute_result")):
        text = json.dumps(msg["content"])
        display_id = (msg["content"].get("transient") or {}).get("display_id", "")
        if msg["msg_type"] == "update_display_data" and display_id.startswith("nbsched-card-"):
            card_updates += "JOB-OUT" in text  # the job's own card's static summary, updated in place
            continue
        if "JOB-OUT" in text or "JOB-DISPLAY" in text:
            raise AssertionError(f"job output escaped to cell {parent_id(msg)}: {msg['msg_type']} {text[:200]}")
    assert card_updates >= 1
    area = kernel.value("__import__('nbsched').get_scheduler().get('chatty').output.stream_text()")
    assert "JOB-OUT 1" in area
    assert kernel.value("any('JOB-DISPLAY' in str(o) for o in __import__('nbsched').get_scheduler().get('chatty').output.outputs)")
    assert defining.status == "ok"


def test_thread_executor_keeps_routing(kernel):
    kernel.run("%load_ext nbsched")
    kernel.run("%%schedule every 0.2s --name threaded --executor thread --quiet\n"
               "import threading\nprint('FROM-THREAD', threading.current_thread().name)")
    kernel.poll_until(lambda: "FROM-THREAD nbsched" in kernel.value(
        "__import__('nbsched').get_scheduler().get('threaded').output.stream_text()"), timeout=15)
    assert not [m for m in kernel.messages("stream") if "FROM-THREAD" in m["content"]["text"]]


def test_rerunning_the_cell_replaces_the_job_and_into_binds_a_frame(kernel):
    kernel.run("%load_ext nbsched")
    cell = "%%schedule every 0.2s --into frame --quiet\nvalue = globals().get('value', 0) + 1\n{'value': value}"
    kernel.run(cell)
    kernel.run(cell)
    assert len(kernel.value(JOBS)) == 1
    kernel.poll_until(lambda: kernel.value("len(frame)") >= 2, timeout=15)
    assert kernel.value("list(frame.columns)")[:3] == ["run_id", "scheduled_at", "value"]
    assert kernel.value("type(frame).__name__") == "DataFrame"
    # the name is derived from the cell and shown on the card
    name = kernel.value(JOBS)[0]
    assert name.startswith("value-")


def test_blocking_cell_delays_jobs_and_missed_runs_are_recorded(kernel):
    kernel.run("%load_ext nbsched")
    kernel.run("%%schedule every 0.2s --name steady --quiet\nsteady = globals().get('steady', 0) + 1")
    kernel.poll_until(lambda: kernel.value("globals().get('steady', 0)") >= 2, timeout=15)
    kernel.run("import time\ntime.sleep(1.5)")  # blocks the loop
    kernel.poll_until(lambda: "missed" in outcomes(kernel, "steady"), timeout=15)
    got = outcomes(kernel, "steady")
    assert got.count("missed") >= 4
    card = kernel.user_expression("repr(__import__('nbsched.notebook.magics', fromlist=['_state'])._state().cards['steady'])")
    assert "missed while the kernel was busy" in card


def test_interrupt_stops_a_runaway_job_and_kernel_stays_usable(kernel, tmp_path):
    marker = tmp_path / "started"
    kernel.run("%load_ext nbsched")
    kernel.run(f"%%schedule every 0.5s --name runaway --quiet\nopen({str(marker)!r}, 'w').close()\nwhile True:\n    pass")
    kernel.poll_until(marker.exists, timeout=15, message="the runaway job never started")
    # the job now blocks the loop: interrupt until the kernel answers again
    kernel.poll_until(lambda: kernel.interrupt() or _idle_and_answers(kernel), timeout=20, interval=0.5,
                      message="kernel did not come back after interrupting the runaway job")
    assert "interrupted" in outcomes(kernel, "runaway")
    assert kernel.value("str(__import__('nbsched').get_scheduler().get('runaway').state)") == "paused"
    card = kernel.user_expression("repr(__import__('nbsched.notebook.magics', fromlist=['_state'])._state().cards['runaway'])")
    assert "interrupted by you and paused" in card
    # normal cells are still interrupted as before
    msg_id = kernel.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(30)", wait=False)
    kernel.poll_until(lambda: kernel.messages("stream", parent=msg_id), timeout=10)
    kernel.interrupt()
    reply = kernel.wait_for_reply(msg_id, timeout=15)
    assert reply.reply["content"].get("ename") == "KeyboardInterrupt"
    assert kernel.run("1 + 1").status == "ok"


def _idle_and_answers(kernel):
    try:
        return kernel.value("1 + 1", timeout=1.5) == 2
    except Exception:
        return False


BAD_INPUTS = [
    ("%%schedule every 5 parsecs\nx = 1", "unknown unit 'parsecs'"),
    ("%%schedule every 0s\nx = 1", "more than zero"),
    ("%%schedule every -1m\nx = 1", "more than zero"),
    ("%%schedule cron 61 * * * *\nx = 1", "minute field '61'"),
    ("%%schedule cron * * *\nx = 1", "expected 5 fields"),
    ("%%schedule at 2025-13-01\nx = 1", "month must be in 1..12"),
    ("%%schedule every 5m --tz Mars/Olympus\nx = 1", "unknown time zone"),
    ("%%schedule sometimes\nx = 1", "unknown trigger spec"),
    ("%%schedule\nx = 1", "needs a SPEC"),
    ("%%schedule every 5m --coalesce sometimes\nx = 1", "invalid choice"),
    ("%%schedule every 5m --retries -2\nx = 1", "retries -2"),
    ("%%schedule every 5m --max-instances 0\nx = 1", "max_instances 0"),
    ("%%schedule every 5m --timeout forever\nx = 1", "invalid timeout"),
    ("%%schedule every 5m --colour red\nx = 1", "unknown %%schedule option '--colour': (options: --name, --tz"),
    ("%%schedule every 5m --into 2fast\nx = 1", "invalid --into"),
    ("%%schedule every 5m --executor gpu\nx = 1", "unknown executor 'gpu'"),
    ("%%schedule every 5m --executor process\nx = 1", "process executor"),
    ("%%schedule every 5m\nx = (", "syntax error"),
    ("%%schedule every 5m\n   \n", "cell is empty"),
    ("%%schedule at 2020-01-01 09:00\nx = 1", "never fires"),
    ("%schedule frobnicate", "unknown %schedule subcommand 'frobnicate'"),
    ("%schedule pause nosuchjob", "no job named 'nosuchjob'"),
    ("%schedule results nosuchjob", "no job named 'nosuchjob'"),
    ("%schedule preview keeper zero", "invalid N"),
    ("%schedule", "needs a subcommand"),
    ("%%schedule every 100000000000000000000s\nx = 1",
     "invalid interval 'every 100000000000000000000s': too long; the largest allowed is 100 years"),
    ("%%schedule every 3000000000000s\nx = 1", "the largest allowed is 100 years"),
    ("%%schedule in 99999999999999d\nx = 1", "invalid delay 'in 99999999999999d': too long"),
    ("%%schedule every 1e308s\nx = 1", "invalid interval 'every 1e308s': too long; the largest allowed is 100 years"),
    ("%%schedule every 0.000000001s\nx = 1", "the smallest allowed interval is 1ms"),
    ("%%schedule every 1h --until 1970-01-01\nx = 1", "it is in the past, so the job would never run"),
    ("%%schedule every 1h --until 99999999999999d\nx = 1", "invalid --until '99999999999999d'"),
    ("%%schedule every 5m --timeout 1e400s\nx = 1", "invalid timeout '1e400s': too long"),
]


def test_bad_inputs_raise_usage_error_and_change_nothing(kernel):
    kernel.run("%load_ext nbsched")
    kernel.run("%%schedule every 1h --name keeper --quiet\nkept = 1")
    before = kernel.value(JOBS)
    for code, fragment in BAD_INPUTS:
        result = kernel.execute(code)
        content = result.reply["content"]
        assert content["status"] == "error", code
        assert content["ename"] == "UsageError", (code, content["ename"], content["evalue"])
        assert fragment in content["evalue"], (code, content["evalue"])
        assert kernel.value(JOBS) == before, code
    assert len(BAD_INPUTS) >= 15


def test_quoted_name_loses_its_shell_quotes(kernel):
    kernel.run("%load_ext nbsched")
    kernel.run('%%schedule every 1h --name "my job" --quiet\nkept = 1')
    kernel.run("%%schedule every 1h --name 'its job' --quiet\nkept = 2")
    assert kernel.value(JOBS) == ["my job", "its job"]
    kernel.run('%schedule remove "my job"')
    assert kernel.value(JOBS) == ["its job"]


def test_sys_exit_in_listeners_and_jobs_does_not_end_the_kernel(kernel):
    kernel.run("%load_ext nbsched")
    kernel.run("import sys, nbsched\n"
               "sched = nbsched.get_scheduler()\n"
               "sched.subscribe(lambda e: sys.exit(7))\n"
               "async def leave(e):\n    raise SystemExit(8)\n"
               "sched.subscribe(leave)\n"
               "def thread_exit():\n    raise SystemExit(9)\n"
               "sched.add(thread_exit, 'every 100ms', name='thread_exit', executor='thread')")
    kernel.run("%%schedule every 100ms --name quitter --quiet\nimport sys\nsys.exit(3)")
    errors = "(lambda h: h.loc[h['outcome'].astype(str) == 'error', 'error_type'].tolist())(sched.history({!r}))"
    kernel.poll_until(lambda: len(kernel.value(errors.format("quitter"))) >= 3, timeout=15)
    kernel.poll_until(lambda: len(kernel.value(errors.format("thread_exit"))) >= 3, timeout=15)
    assert set(kernel.value(errors.format("quitter"))) == {"SystemExit"}
    assert set(kernel.value(errors.format("thread_exit"))) == {"SystemExit"}
    assert kernel.value("1 + 1") == 2 and kernel.value("sched.running") is True


def test_line_magic_subcommands(kernel):
    kernel.run("%load_ext nbsched")
    kernel.run("%%schedule every 0.2s --name sub --quiet\n{'n': 1}")
    kernel.poll_until(lambda: kernel.value("len(__import__('nbsched').get_scheduler().history('sub'))") >= 1, timeout=15)
    for code, needle in [("%schedule list", "sub"), ("%schedule history sub", "run_id"),
                         ("%schedule results sub", "run_id"), ("%schedule preview sub 3", "fire_time"),
                         ("%schedule pause sub", "paused"), ("%schedule resume sub", "sub"),
                         ("%schedule run sub", "sub")]:
        result = kernel.run(code)
        shown = " ".join(m["content"]["data"].get("text/plain", "")
                         for m in result.of_type("execute_result", "display_data"))
        assert needle in shown, (code, shown[:300])
    kernel.run("%schedule remove sub")
    assert kernel.value(JOBS) == []
    kernel.run("%schedule stop")
    assert kernel.value("__import__('nbsched.engine.scheduler', fromlist=['x'])._default is None")


def test_unload_stops_every_job_and_leaves_no_tasks(kernel):
    kernel.run("%load_ext nbsched")
    kernel.run("%%schedule every 0.1s --name a --quiet\nimport asyncio\nawait asyncio.sleep(0.05)")
    kernel.poll_until(lambda: kernel.value("len(__import__('nbsched').get_scheduler().history('a'))") >= 2, timeout=15)
    kernel.run("%unload_ext nbsched")
    kernel.run("import asyncio\nawait asyncio.sleep(0.3)")
    left = kernel.value("[t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith('nbsched:') and not t.done()]")
    assert left == []


@pytest.mark.parametrize("kernel_python", ["ipykernel-current"], indirect=True)
def test_nbsched_run_on_quickstart_produces_frames(tmp_path, kernel_python):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "nbsched", "run", str(REPO_ROOT / "notebooks" / "quickstart.ipynb"),
                           "--for", "3s", "--out", str(out)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sample" in proc.stdout and "flaky" in proc.stdout
    import pandas as pd

    for name in ["sample", "flaky", "aggregate", "ping"]:
        hist = pd.read_csv(out / f"{name}.history.csv")
        assert len(hist) > 0, name
    assert len(pd.read_csv(out / "sample.results.csv")) >= 2
    flaky = pd.read_csv(out / "flaky.history.csv")
    assert {"error", "success"} <= set(flaky["outcome"])


def test_every_notebook_executes(tmp_path):
    """Every notebook in notebooks/ runs top to bottom in a real kernel without error."""
    for nb in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        proc = subprocess.run([sys.executable, "-m", "nbsched", "run", str(nb), "--for", "1s",
                               "--out", str(tmp_path / nb.stem)], capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, f"{nb.name}:\n{proc.stdout}\n{proc.stderr}"


def test_help_is_generated(kernel):
    kernel.run("%load_ext nbsched")
    result = kernel.run("%%schedule?")
    text = json.dumps(result.reply["content"].get("payload", [])) + result.stdout
    assert "--into" in text and "--retries" in text and "every 5m" in text


def test_magic_from_another_thread_runs_job_on_the_kernel_loop(kernel):
    kernel.run("%load_ext nbsched")
    kernel.run(
        "import asyncio, threading\n"
        "def define():\n"
        "    get_ipython().run_cell_magic('schedule', 'every 0.2s --name fromthread --quiet',\n"
        "        'on_main = threading.current_thread() is threading.main_thread()')\n"
        "await asyncio.to_thread(define)"
    )
    kernel.poll_until(lambda: kernel.value("globals().get('on_main', None)") is not None, timeout=15)
    assert kernel.value("on_main") is True


def test_extension_listed_in_config_loads_at_startup(tmp_path, kernel_python):
    from kernel_harness import KernelHarness

    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_kernel_config.py").write_text("c.InteractiveShellApp.extensions = ['nbsched']\n")
    harness = KernelHarness(kernel_python, env={"IPYTHONDIR": str(tmp_path / "ipython")}).start()
    try:
        harness.run("%%schedule every 0.2s --name boot --quiet\nbooted = True")
        harness.poll_until(lambda: harness.value("globals().get('booted', False)"), timeout=15)
    finally:
        harness.shutdown()


@pytest.mark.store
def test_persisted_cell_job_survives_a_kernel_restart(tmp_path, kernel_python):
    from kernel_harness import KernelHarness

    db = tmp_path / "jobs.db"
    first = KernelHarness(kernel_python).start()
    try:
        first.run("%load_ext nbsched")
        first.run(f"%schedule store {str(db)!r}")
        first.run("%%schedule every 0.2s --name keeper --quiet\ncount = globals().get('count', 0) + 1\n{'count': count}")
        first.poll_until(lambda: first.value("globals().get('count', 0)") >= 3, timeout=15)
        first.run("__import__('nbsched').get_scheduler().store.flush()")
        before = first.value("len(__import__('nbsched').get_scheduler().history('keeper'))")
    finally:
        first.shutdown()  # the kernel dies: everything in memory is gone
    assert db.exists() and oct(db.stat().st_mode & 0o777) == "0o600"
    second = KernelHarness(kernel_python).start()
    try:
        second.run("%load_ext nbsched")
        listing = second.run(f"%schedule restore {str(db)!r}")
        assert "keeper" in listing.stdout + json.dumps([m["content"] for m in listing.of_type("execute_result")])
        second.poll_until(lambda: second.value("globals().get('count', 0)") >= 2, timeout=15)
        rows = second.value("len(__import__('nbsched').get_scheduler().history('keeper'))")
        assert rows > before  # the old history came back, and new runs were added to it
        assert second.value("len(__import__('nbsched').get_scheduler().results('keeper'))") >= before
        bad = second.execute("%schedule restore /nonexistent/nbsched.db")
        assert bad.reply["content"]["ename"] == "UsageError"
    finally:
        second.shutdown()


@pytest.mark.parametrize("kernel_python", ["ipykernel-current"], indirect=True)
def test_magic_in_an_ipykernel7_subshell_runs_the_job_on_the_main_loop(kernel):
    import ipykernel

    if int(ipykernel.__version__.split(".")[0]) < 7:
        pytest.skip("subshells are new in ipykernel 7")
    kc = kernel.kc
    kernel.run("%load_ext nbsched")
    request = kc.session.msg("create_subshell_request", {})
    kc.control_channel.send(request)
    reply = kc.control_channel.get_msg(timeout=10)
    while reply["parent_header"].get("msg_id") != request["header"]["msg_id"]:
        reply = kc.control_channel.get_msg(timeout=10)
    subshell_id = reply["content"]["subshell_id"]
    code = ("%%schedule every 0.2s --name fromsubshell --quiet\n"
            "import threading\nsub_on_main = threading.current_thread() is threading.main_thread()")
    msg = kc.session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                             "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
    msg["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(msg)
    result = kernel.wait_for_reply(msg["header"]["msg_id"], timeout=20)
    assert result.status == "ok", result.reply["content"]
    kernel.poll_until(lambda: kernel.value("globals().get('sub_on_main', None)") is not None, timeout=15)
    assert kernel.value("sub_on_main") is True
