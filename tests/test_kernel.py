"""nbsched.notebook.kernel in this process, without a kernel: OutputSink (fake widget), router, interrupts.

The same pieces in real kernels: tests/test_kernel_router.py.
"""

import asyncio
import io
import os
import signal
import sys
import threading

import pytest

from nbsched.notebook import kernel as _kernel
from nbsched.notebook.kernel import OutputSink, route_output, run_routed


class FakeWidget:
    def __init__(self):
        self.outputs = ()
        self.updates = 0

    def __setattr__(self, name, value):
        if name == "outputs":
            object.__setattr__(self, "updates", getattr(self, "updates", 0) + 1)
        object.__setattr__(self, name, value)


def test_consecutive_stream_chunks_coalesce():
    sink = OutputSink(FakeWidget())
    for chunk in ["a", "b", "\n"]:
        sink.write("stdout", chunk)
    sink.write("stderr", "oops\n")
    sink.write("stdout", "c\n")
    assert sink.widget.outputs == (
        {"output_type": "stream", "name": "stdout", "text": "ab\n"},
        {"output_type": "stream", "name": "stderr", "text": "oops\n"},
        {"output_type": "stream", "name": "stdout", "text": "c\n"},
    )


def test_display_and_update_by_display_id():
    sink = OutputSink(FakeWidget())
    sink.display({"text/plain": "v1"}, transient={"display_id": "d"})
    sink.write("stdout", "x\n")
    sink.display({"text/plain": "v2"}, transient={"display_id": "d"}, update=True)
    sink.display({"text/plain": "ghost"}, transient={"display_id": "unknown"}, update=True)
    assert [o.get("data", {}).get("text/plain") for o in sink.outputs] == ["v2", None]


def test_stream_text_is_capped_oldest_first_with_a_note():
    sink = OutputSink(FakeWidget(), max_stream_chars=10)
    for i in range(20):
        sink.write("stdout", f"{i % 10}\n")  # 40 chars in all
    sink.flush()
    outputs = sink.widget.outputs
    assert "earlier output trimmed" in outputs[0]["data"]["text/plain"]
    assert outputs[1] == {"output_type": "stream", "name": "stdout", "text": "5\n6\n7\n8\n9\n"}


def test_entries_are_capped():
    sink = OutputSink(FakeWidget(), max_entries=3)
    for i in range(10):
        sink.display({"text/plain": str(i)})
    texts = [o["data"]["text/plain"] for o in sink.widget.outputs]
    assert "7 outputs" in texts[0]
    assert texts[1:] == ["7", "8", "9"]


def test_clear_output_wait_clears_before_next_output():
    sink = OutputSink(FakeWidget())
    sink.write("stdout", "old\n")
    sink.clear_output(wait=True)
    assert sink.outputs[0]["text"] == "old\n"
    sink.write("stdout", "new\n")
    assert sink.outputs == ({"output_type": "stream", "name": "stdout", "text": "new\n"},)


def test_show_exception_adds_error_output():
    sink = OutputSink(FakeWidget())
    try:
        1 / 0
    except ZeroDivisionError as exc:
        sink.show_exception(exc)
    (error,) = sink.widget.outputs
    assert error["output_type"] == "error" and error["ename"] == "ZeroDivisionError"
    assert any("1 / 0" in line for line in error["traceback"])


def test_invalid_caps_are_rejected():
    with pytest.raises(ValueError, match="max_entries=0"):
        OutputSink(FakeWidget(), max_entries=0)


async def test_updates_are_throttled_and_threads_hand_over_to_the_loop():
    sink = OutputSink(FakeWidget(), loop=asyncio.get_running_loop(), flush_interval=1.0)  # long: a loaded machine must not flush early
    for i in range(1000):
        print(i, file=_SinkFile(sink))
    await asyncio.to_thread(lambda: [sink.write("stdout", "t\n") for _ in range(100)])
    assert sink.widget.updates == 0  # nothing sent yet: a single flush is pending
    done = asyncio.Event()
    asyncio.get_running_loop().call_later(1.1, done.set)  # flush_interval has passed after this
    await done.wait()
    assert sink.widget.updates == 1
    assert sink.widget.outputs[-1]["text"].endswith("t\n" * 100)


class _SinkFile(io.TextIOBase):
    def __init__(self, sink):
        self.sink = sink

    def write(self, text):
        return self.sink.write("stdout", text)


async def test_router_sends_context_output_to_sink_and_leaves_others_alone(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)

    class Shell:
        class display_pub:  # noqa: N801 - stands in for an instance
            published = []

            @classmethod
            def publish(cls, data, metadata=None, **kwargs):
                cls.published.append(data)

            @classmethod
            def clear_output(cls, wait=False):
                pass

    _kernel.install_router(Shell)
    try:
        sink = OutputSink(FakeWidget())
        async def job():
            print("job line")
            await asyncio.to_thread(print, "thread line")
            Shell.display_pub.publish({"text/plain": "job display"})
            return 7

        task = asyncio.create_task(run_routed(sink, job))
        print("cell line")
        Shell.display_pub.publish({"text/plain": "cell display"})
        assert await task == 7
        with route_output(sink):
            # A plain Thread does not copy the context: its output is not routed.
            thread = threading.Thread(target=print, args=("plain thread",))
            thread.start()
        thread.join()
    finally:
        _kernel.uninstall_router()
    assert sys.stdout is buffer
    assert sink.stream_text() == "job line\nthread line\n"
    assert sink.outputs[-1]["data"] == {"text/plain": "job display"}
    assert buffer.getvalue() == "cell line\nplain thread\n"
    assert Shell.display_pub.published == [{"text/plain": "cell display"}]
    assert "publish" not in Shell.display_pub.__dict__ or not hasattr(
        Shell.display_pub.__dict__["publish"], "_nbsched_router"
    )


def test_install_router_is_idempotent_and_rewraps_a_replaced_stream(monkeypatch):
    class Shell:
        display_pub = None

    first = io.StringIO()
    monkeypatch.setattr(sys, "stdout", first)
    _kernel.install_router(Shell)
    try:
        wrapped = sys.stdout
        _kernel.install_router(Shell)
        assert sys.stdout is wrapped  # not wrapped twice
        second = io.StringIO()
        sys.stdout = second  # e.g. someone re-created the stream
        _kernel.install_router(Shell)
        assert sys.stdout is not second and sys.stdout._nbsched_stream is second
    finally:
        _kernel.uninstall_router()
    assert sys.stdout is second


def test_stream_write_patch_is_kept_on_the_proxy(monkeypatch):
    # IPython 9 patches sys.stdout.write around every cell and calls the previous write from it.
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)

    class Shell:
        display_pub = None

    _kernel.install_router(Shell)
    try:
        stream = sys.stdout
        original = stream.write
        seen = []

        def tee(data):
            seen.append(data)
            return original(data)

        stream.write = tee
        print("through tee")
        stream.write = original
        print("after")
    finally:
        _kernel.uninstall_router()
    assert seen == ["through tee", "\n"]
    assert buffer.getvalue() == "through tee\nafter\n"


async def test_interruptible_passes_values_and_raises_keyboard_interrupt_in_the_job():
    before = signal.getsignal(signal.SIGINT)
    handlers_during_steps = []

    async def job():
        for _ in range(2):
            handlers_during_steps.append(signal.getsignal(signal.SIGINT))
            await asyncio.sleep(0)
        return "value"

    assert await _kernel.interruptible(job()) == "value"
    assert handlers_during_steps == [_kernel._handle_sigint_in_job] * 2
    assert signal.getsignal(signal.SIGINT) is before

    async def runaway():
        await asyncio.sleep(0)
        os.kill(os.getpid(), signal.SIGINT)
        while True:
            pass

    with pytest.raises(KeyboardInterrupt):
        await _kernel.interruptible(runaway())
    assert signal.getsignal(signal.SIGINT) is before
    assert _kernel._interrupts.sync_jobs == 0


def test_interruptible_needs_a_coroutine():
    with pytest.raises(TypeError, match="needs a coroutine, got function"):
        _kernel.interruptible(lambda: None)


def test_kernel_loop_is_none_outside_a_kernel():
    assert _kernel.kernel_loop() is None
