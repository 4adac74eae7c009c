"""Outside a kernel the scheduler runs on a loop of its own in a background thread.

Terminal IPython and the python REPL are driven for real through a pseudo-terminal (pexpect): the
prompt is prompt_toolkit's, as a user sees it.  Waiting is expect()/polling, never a blind sleep.
"""
import os
import re
import subprocess
import sys
import textwrap

import pexpect
import pytest

import nbsched
from kernel_harness import REPO_ROOT

pytestmark = pytest.mark.realtime

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def spawn(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TERM="xterm", COLUMNS="120", LINES="40")
    env.pop("PYTHONSTARTUP", None)
    child = pexpect.spawn(sys.executable, list(args), env=env, encoding="utf-8", dimensions=(40, 120), timeout=60,
                          cwd=str(REPO_ROOT))
    return child


def test_load_ext_in_terminal_ipython_runs_jobs_above_the_prompt(tmp_path):
    child = spawn("-m", "IPython", "--no-banner", "--colors=NoColor", "--HistoryManager.enabled=False",
                  f"--ipython-dir={tmp_path}")
    seen = []
    child.logfile_read = type("Sink", (), {"write": lambda self, s: seen.append(s), "flush": lambda self: None})()
    try:
        child.expect(r"In \[1\]:")
        child.sendline("%load_ext nbsched")
        child.expect(r"In \[2\]:")
        for line in ("%%schedule every 0.3s --name tick --max-runs 3", "n = globals().get('n', 0) + 1",
                     "print('TICK', n)", ""):
            child.send(line + "\r")
            child.expect(r"\.\.\.:")
        child.send("\r")  # an empty line ends the cell
        child.expect(r"Out\[2\]:")
        child.expect(r"In \[3\]:")
        child.expect("TICK 3", timeout=30)  # printed while the prompt waits for input
        child.expect(r"In \[3\]:")  # ... and the prompt is drawn again below it
        child.sendline("import nbsched; list(nbsched.get_scheduler().history('tick')['outcome'].astype(str))")
        child.expect(r"Out\[3\]:")
        child.expect(r"In \[4\]:")
        for line in ("%%schedule every 1h --name bad --now --quiet", "1 / 0", ""):
            child.send(line + "\r")
            child.expect(r"\.\.\.:")
        child.send("\r")
        child.expect(r"\[nbsched\] job 'bad' failed:")  # a failing job is not silent
        child.expect("ZeroDivisionError")
        child.expect(r"In \[5\]:")
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    text = ANSI.sub("", "".join(seen))
    assert "job 'tick': every 300ms - scheduled" in text  # the magic shows the job as text
    out3 = text[text.index("Out[3]:"):]
    assert out3.split("\n")[0].strip() == "Out[3]: ['success', 'success', 'success']"
    # not garbled: before each job line the prompt is erased (cursor to column 0, erase below), the
    # line is written, and the prompt is drawn again after it (prompt_toolkit's patch_stdout)
    raw = "".join(seen)
    for n in (1, 2, 3):
        assert re.search(rf"\x1b\[8D\x1b\[J(?:\x1b\[[0-9;?]*[A-Za-z])*TICK {n}\r\n?(?:\x1b\[[0-9;?]*[A-Za-z])*"
                         rf"(?:\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07)*In \[3\]:", raw), repr(raw[-1500:])
    failure = text.index("[nbsched] job 'bad' failed:")
    assert "Traceback" not in text[:failure]  # the only traceback is the failing job's, on stderr
    assert "1 / 0" in text[failure:] and text.count("Traceback") == 1
    assert child.exitstatus == 0


def test_python_repl_with_a_background_scheduler():
    child = spawn("-i", "-q")
    out = []
    child.logfile_read = type("Sink", (), {"write": lambda self, s: out.append(s), "flush": lambda self: None})()
    try:
        child.expect(">>> ")
        child.sendline("import nbsched, threading; sched = nbsched.Scheduler(background=True)")
        child.expect(">>> ")
        child.sendline("job = sched.add(lambda: print('TOCK'), 'every 0.2s', name='tock', max_runs=3)")
        child.expect(">>> ")
        for _ in range(3):
            child.expect("TOCK")
        child.sendline("print(sorted(sched.history('tock')['outcome'].astype(str)), job.state.value)")
        child.expect(r"\['success', 'success', 'success'\] finished")
        child.sendline("sched.shutdown(); print('threads', [t.name for t in threading.enumerate()])")
        child.expect(r"threads \['MainThread'\]")
        child.sendline("exit()")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert "Traceback" not in "".join(out)


def run_script(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60,
                          cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))


def test_script_form_waits_for_running_jobs_on_shutdown():
    done = run_script("""
        import nbsched
        from nbsched.clock import monotonic, sleep_blocking

        sched = nbsched.Scheduler(background=True)
        sched.add(lambda: print("tick", flush=True), "every 0.1s", name="tick", max_runs=3, coalesce="all")
        deadline = monotonic() + 20
        while len(sched.history("tick")) < 3 and monotonic() < deadline:
            sleep_blocking(0.05)
        sched.shutdown(wait=True)
        print(list(sched.history("tick")["outcome"].astype(str)))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "tick\ntick\ntick\n['success', 'success', 'success']\n"


def test_script_exiting_without_shutdown_records_the_running_job_cancelled(tmp_path):
    marker = tmp_path / "history.txt"
    done = run_script(f"""
        import asyncio, atexit, nbsched
        import pandas  # noqa: F401 - (importing it inside an exit hook is refused by threading)
        from nbsched.clock import monotonic, sleep_blocking

        # registered before the scheduler's own exit hook, so it runs after it (atexit is LIFO)
        atexit.register(lambda: open({str(marker)!r}, "w").write(
            ",".join(sched.history("slow")["outcome"].astype(str))))
        sched = nbsched.Scheduler(background=True)

        async def slow():
            await asyncio.sleep(30)

        sched.add(slow, "every 0.1s", name="slow")
        deadline = monotonic() + 20
        while sched.get("slow").running == 0 and monotonic() < deadline:
            sleep_blocking(0.02)
    """)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "cancelled"


def test_background_and_loop_together_is_refused():
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(nbsched.PolicyError, match=r"give either loop= or background=True, not both"):
            nbsched.Scheduler(loop=loop, background=True)
    finally:
        loop.close()


def test_without_a_loop_the_error_names_the_background_form():
    sched = nbsched.Scheduler()
    with pytest.raises(nbsched.NoEventLoopError, match=r"nbsched.Scheduler\(background=True\)"):
        sched.add(lambda: None, "every 1s")
