"""nbsched.notebook.kernel in real kernels (ipykernel 7.x and 6.29): output routing and interrupts.

Background output must end up in the job's sink and never on iopub as stream/display output of
some cell; the cells' own output must be untouched. Interrupts must stop a runaway job and still
interrupt ordinary cells. No blind sleeps: the tests poll kernel state or marker files.
"""

from __future__ import annotations

import json
import textwrap

import pytest

pytestmark = pytest.mark.kernel

OUTPUT_TYPES = ("stream", "display_data", "update_display_data", "execute_result", "error")


def code(source: str) -> str:
    return textwrap.dedent(source).strip("\n")


def leaked(kernel, marker: str) -> list[dict]:
    """iopub output messages (any parent) whose content mentions ``marker``."""
    return [m for m in kernel.messages(OUTPUT_TYPES) if marker in json.dumps(m["content"])]


ROUTED_SETUP = code(
    """
    import asyncio, sys, threading, time
    from IPython.display import display
    from nbsched.notebook import kernel as _kernel
    _kernel.install_router()
    """
)


def test_kernel_version_and_loop(kernel, kernel_python):
    version = kernel.value("__import__('ipykernel').__version__")
    if "ipykernel6" in kernel_python or "IPYKERNEL6" in kernel_python:
        assert version.startswith("6.29")
    assert kernel.value("__import__('nbsched.notebook.kernel').__file__").startswith(
        str(__import__("kernel_harness").REPO_ROOT)
    )
    loop_check = "from nbsched.notebook import kernel as _kernel; import asyncio\n_kernel.kernel_loop() is asyncio.get_running_loop()"
    assert kernel.run(loop_check).of_type("execute_result")[0]["content"]["data"]["text/plain"] == "True"


def test_task_job_output_goes_to_its_sink_only(kernel):
    kernel.run(ROUTED_SETUP)
    create = kernel.run(
        code(
            """
            sink = _kernel.OutputSink(flush_interval=0.02, max_entries=100_000, max_stream_chars=10**7)
            stop = asyncio.Event()
            count = 0

            async def job():
                global count
                while not stop.is_set():
                    count += 1
                    print(f"JOBPRINT {count}")
                    display({"text/plain": f"JOBDISPLAY {count}"}, raw=True)
                    await asyncio.sleep(0.002)
                return count

            task = asyncio.create_task(_kernel.run_routed(sink, job))
            print("cell A done")
            """
        )
    )
    assert create.stdout == "cell A done\n"
    kernel.poll_until(lambda: kernel.value("count") >= 20, message="job did not run")

    sync_cell = kernel.run("for i in range(3):\n    print(f'CELLB {i}')")
    await_cell = kernel.run(
        code(
            """
            start = count
            for i in range(5):
                print(f"CELLC {i}")
                display({"text/plain": f"CELLC display {i}"}, raw=True)
                await asyncio.sleep(0.01)
            print("job ran meanwhile:", count > start)
            """
        )
    )
    kernel.run("stop.set()\ntotal = await task\nsink.flush()")

    # The concurrent cells' own output is intact and contains nothing of the job.
    assert sync_cell.stdout == "CELLB 0\nCELLB 1\nCELLB 2\n"
    assert await_cell.stdout == "".join(f"CELLC {i}\n" for i in range(5)) + "job ran meanwhile: True\n"
    assert [m["content"]["data"]["text/plain"] for m in await_cell.of_type("display_data")] == [
        f"CELLC display {i}" for i in range(5)
    ]
    # No job output reached iopub as cell output, under any parent.
    assert leaked(kernel, "JOBPRINT") == [] and leaked(kernel, "JOBDISPLAY") == []
    # ...it is in the sink (kernel side), complete for text, the newest displays kept.
    total = kernel.value("total")
    assert total >= 20
    assert kernel.value("sink.stream_text()") == "".join(f"JOBPRINT {i}\n" for i in range(1, total + 1))
    assert kernel.value("sink.widget.outputs[-1]['data']['text/plain']") == f"JOBDISPLAY {total}"
    # Widget updates were throttled: far fewer comm messages than prints.
    updates = [m for m in kernel.messages("comm_msg") if "JOBPRINT" in json.dumps(m["content"])]
    assert 0 < len(updates) < total


def test_thread_job_output_goes_to_its_sink_only(kernel):
    kernel.run(ROUTED_SETUP)
    kernel.run(
        code(
            """
            sink = _kernel.OutputSink(flush_interval=0.02, max_entries=100_000, max_stream_chars=10**7)
            stop = threading.Event()
            written = 0

            def work():
                global written
                while not stop.is_set():
                    written += 1
                    print(f"THREADPRINT {written}")
                    display({"text/plain": f"THREADDISPLAY {written}"}, raw=True)
                    time.sleep(0.002)  # in the kernel's worker thread, not in the test
                return written

            async def job():
                return await asyncio.to_thread(work)

            task = asyncio.create_task(_kernel.run_routed(sink, job))
            """
        )
    )
    kernel.poll_until(lambda: kernel.value("written") >= 20, message="thread job did not run")
    during = kernel.run(
        code(
            """
            start = written
            for i in range(5):
                print(f"CELLT {i}")
                time.sleep(0.005)
            print("thread ran meanwhile:", written > start)
            """
        )
    )
    kernel.run("stop.set()\ntotal = await task\nsink.flush()")

    assert during.stdout == "".join(f"CELLT {i}\n" for i in range(5)) + "thread ran meanwhile: True\n"
    assert leaked(kernel, "THREADPRINT") == [] and leaked(kernel, "THREADDISPLAY") == []
    total = kernel.value("total")
    assert kernel.value("sink.stream_text()") == "".join(f"THREADPRINT {i}\n" for i in range(1, total + 1))
    assert kernel.value("sink.widget.outputs[-1]['data']['text/plain']") == f"THREADDISPLAY {total}"


def test_no_sink_means_unchanged_output_and_uninstall_restores(kernel):
    kernel.run(ROUTED_SETUP)
    before = kernel.run("print('plain'); display({'text/plain': 'shown'}, raw=True)")
    assert before.stdout == "plain\n"
    assert [m["content"]["data"] for m in before.of_type("display_data")] == [{"text/plain": "shown"}]
    assert kernel.value("type(sys.stdout).__name__") == "_RoutedStream"
    kernel.run("_kernel.uninstall_router()")
    assert kernel.value("type(sys.stdout).__name__") == "OutStream"
    assert kernel.value("'publish' in get_ipython().display_pub.__dict__") is False


def test_job_exception_shown_in_sink(kernel):
    kernel.run(ROUTED_SETUP)
    kernel.run(
        code(
            r"""
            import re
            sink = _kernel.OutputSink()
            def failing_job():
                return 1 / 0
            try:
                failing_job()
            except ZeroDivisionError as exc:
                sink.show_exception(exc)
            shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(sink.widget.outputs[0]["traceback"]))
            """
        )
    )
    assert kernel.value("sink.widget.outputs[0]['ename']") == "ZeroDivisionError"
    shown = kernel.value("shown")
    assert "return 1 / 0" in shown and "ZeroDivisionError: division by zero" in shown


# --- interrupts -------------------------------------------------------------------------------

INTERRUPT_SETUP = """
import asyncio, pathlib, signal, time
from nbsched.notebook import kernel as _kernel
loop = _kernel.kernel_loop()
job_tasks, interrupted, outcomes, idle_handlers = set(), [], [], []
_kernel.install_interrupt_handler(loop, lambda task: task in job_tasks, interrupted.append)

async def run_job(body, guard):
    try:
        await (_kernel.interruptible(body()) if guard else body())
        outcomes.append("ok")
    except KeyboardInterrupt:
        outcomes.append("KeyboardInterrupt")
        pathlib.Path(DONE).touch()

def start_job(body, guard=False):
    task = asyncio.create_task(run_job(body, guard))
    job_tasks.add(task)
    return task

def handler_name():
    handler = signal.getsignal(signal.SIGINT)
    return handler.name if isinstance(handler, signal.Handlers) else handler.__qualname__

def record_idle_handler():
    # A loop callback runs between requests: this is the handler while the kernel is idle.
    loop.call_soon(lambda: idle_handlers.append(handler_name()))

go = asyncio.Event()
async def runaway():
    await go.wait()
    pathlib.Path(SPINNING).touch()
    while True:
        pass
"""


# Measured on 6.29 and 7.4: interrupting an await cell cancels it only when the loop next wakes up
# (ipykernel's handler schedules the cancellation with a plain add_callback), so `await
# asyncio.sleep(30)` would take 30 s to fail. A loop that wakes often is cancelled at once.
AWAIT_30S = "for _ in range(3000):\n    await asyncio.sleep(0.01)"


@pytest.fixture
def interrupt_kernel(kernel, tmp_path):
    spinning, done = tmp_path / "spinning", tmp_path / "done"
    kernel.run(f"SPINNING, DONE = {str(spinning)!r}, {str(done)!r}\n" + code(INTERRUPT_SETUP))
    kernel.run("record_idle_handler()")
    kernel.poll_until(lambda: kernel.value("idle_handlers") == ["_handle_sigint"])
    return kernel, spinning, done


def test_runaway_job_task_is_interrupted_while_idle(interrupt_kernel):
    kernel, spinning, done = interrupt_kernel
    kernel.run("task = start_job(runaway)")
    go = kernel.execute("go.set()", wait=False)
    kernel.poll_until(spinning.exists, message="job never started spinning")
    kernel.interrupt()
    kernel.poll_until(done.exists, message="runaway job was not interrupted")
    assert kernel.wait_for_reply(go).status == "ok"
    assert kernel.value("outcomes") == ["KeyboardInterrupt"]
    assert kernel.value("interrupted == [task]") is True
    assert kernel.run("print(6 * 7)").stdout == "42\n"  # the kernel is usable


def test_cells_are_still_interrupted_normally(interrupt_kernel):
    kernel, spinning, _ = interrupt_kernel
    sleeper = kernel.execute(
        f"import pathlib, time\npathlib.Path({str(spinning)!r}).touch()\ntime.sleep(30)", wait=False
    )
    kernel.poll_until(spinning.exists)
    kernel.interrupt()
    reply = kernel.wait_for_reply(sleeper, timeout=10)
    assert reply.status == "error" and reply.reply["content"]["ename"] == "KeyboardInterrupt"

    spinning.unlink()
    waiter = kernel.execute(f"pathlib.Path({str(spinning)!r}).touch()\n{AWAIT_30S}", wait=False)
    kernel.poll_until(spinning.exists)
    kernel.interrupt()
    reply = kernel.wait_for_reply(waiter, timeout=10)
    assert reply.status == "error"  # the await cell is cancelled, as without nbsched
    assert kernel.value("outcomes") == []
    kernel.run("record_idle_handler()")
    kernel.poll_until(lambda: kernel.value("idle_handlers[-1]") == "_handle_sigint")


def test_idle_interrupt_without_job_does_nothing(interrupt_kernel):
    kernel, _, _ = interrupt_kernel
    kernel.interrupt()
    kernel.poll_until(lambda: kernel.value("interrupted") == [None], message="handler not called")
    assert kernel.run("print('alive')").stdout == "alive\n"


def test_runaway_job_is_interrupted_during_an_await_cell(interrupt_kernel):
    kernel, spinning, done = interrupt_kernel
    kernel.run("task = start_job(runaway, guard=True)")
    # ipykernel's await-cell handler only schedules a cancellation, which a loop-blocking job
    # would never let run; interruptible() puts our handler in place for each job step.
    waiting = kernel.execute(f"go.set()\n{AWAIT_30S}", wait=False)
    kernel.poll_until(spinning.exists, message="job never started spinning")
    kernel.interrupt()
    kernel.poll_until(done.exists, message="runaway job was not interrupted")
    kernel.interrupt()  # now the await cell itself, the normal way
    reply = kernel.wait_for_reply(waiting, timeout=10)
    assert reply.status == "error"
    assert kernel.value("outcomes") == ["KeyboardInterrupt"]
    assert kernel.run("print('alive')").stdout == "alive\n"
    kernel.run("record_idle_handler()")
    kernel.poll_until(lambda: kernel.value("idle_handlers[-1]") == "_handle_sigint")


def test_uninstall_interrupt_handler_restores_idle_behaviour(interrupt_kernel):
    kernel, _, _ = interrupt_kernel
    kernel.run("_kernel.uninstall_interrupt_handler()")
    kernel.run("record_idle_handler()")
    kernel.poll_until(lambda: kernel.value("idle_handlers[-1]") == "SIG_IGN")


def test_install_during_an_await_cell_waits_for_the_cell_to_end(kernel, tmp_path):
    # The install callback runs while the await cell is still in flight: the cell must keep
    # ipykernel's handler, and ours must be in place once the kernel is idle again.
    setup = f"SPINNING, DONE = {str(tmp_path / 's')!r}, {str(tmp_path / 'd')!r}\n" + code(INTERRUPT_SETUP)
    during = kernel.run(setup + "\nawait asyncio.sleep(0.05)\nprint(handler_name())")
    assert during.stdout.strip().endswith("handle_sigint")
    kernel.run("record_idle_handler()")
    kernel.poll_until(lambda: kernel.value("idle_handlers") == ["_handle_sigint"])
    assert kernel.value("_kernel._interrupts.previous == signal.SIG_IGN") is True
    kernel.interrupt()  # idle, no job: ignored as before
    kernel.poll_until(lambda: kernel.value("interrupted") == [None])
    assert kernel.run("print('alive')").stdout == "alive\n"
