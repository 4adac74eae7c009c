"""What nbsched needs from a live ipykernel: its loop, per-job output routing, interrupts.

Imported only inside a kernel (by the magics and the dashboard); the scheduler core never imports
it. Works with ipykernel 6.29 and 7.x (behaviour measured in ``tests/test_kernel_router.py``).

Output routing
    ipykernel tags background output with whichever cell happens to be the "parent" (creating cell
    on 7.x, latest cell for some paths on 6.29), so job output lands in random cells or nowhere. The
    router fixes that: a :class:`~contextvars.ContextVar` holds the current job's sink, proxies over
    ``sys.stdout``/``sys.stderr`` and a wrapper over ``shell.display_pub.publish`` send output to
    that sink; with no sink set, everything behaves exactly as before. Tasks created with
    ``asyncio.create_task`` and threads started with ``asyncio.to_thread`` copy the context and so
    keep routing; plain ``threading.Thread`` and ``loop.run_in_executor`` do *not* (run them through
    ``contextvars.copy_context().run``). A job added with the Python API runs the user's function
    unwrapped: its sink is found through the run it belongs to (:func:`keep_job_output`).

Frontends
    :func:`frontend_kind` tells from the execute request who sent the cell running now: a notebook
    (``metadata.cellId``: JupyterLab, Notebook 7, VS Code), an executor (``allow_stdin`` false:
    nbclient, so nbconvert, papermill, ``nbsched run``) or a console (neither: ``jupyter console``,
    qtconsole). A console renders no widgets, so a job made there gets a :class:`TextEcho` on its
    sink: its output is also written as plain stream text, parented to that console's request.

Interrupts
    Measured on 6.29.5 and 7.4.0: while idle the SIGINT handler is ``SIG_IGN`` (the interrupt button
    does nothing); while a shell request runs ipykernel swaps in ``default_int_handler``
    (``pre_handler_hook``) and restores the saved handler afterwards (``post_handler_hook``); an
    ``await`` cell additionally installs ``handle_sigint``, which cancels the cell from a loop
    callback and so can never stop code that blocks the loop. Hence two pieces:

    * :func:`install_interrupt_handler` puts our handler in place from a loop callback (i.e. while
      idle), so the kernel's save/restore keeps bringing it back: it raises ``KeyboardInterrupt``
      when a job is running and otherwise does what the replaced handler (``SIG_IGN``) did.
    * :func:`interruptible` / :func:`sync_job_running` put our handler in place for exactly the
      duration of each step of a job (and put back whatever was there), so a runaway job is
      interruptible even while an ``await`` cell is running.

    ``KeyboardInterrupt`` raised inside a task that does not catch it escapes the event loop and
    stops the kernel: whoever runs a job must catch it around the job body.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import signal
import sys
import threading
import traceback
import weakref
from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import Any, TypeVar

__all__ = [
    "CONSOLE",
    "EXECUTOR",
    "NOTEBOOK",
    "OutputSink",
    "TextEcho",
    "console_echo",
    "frontend_kind",
    "in_latest_request",
    "remember_request",
    "request_finished",
    "request_running",
    "current_sink",
    "forget_job_output",
    "keep_job_output",
    "install_interrupt_handler",
    "install_router",
    "interruptible",
    "kernel_loop",
    "route_output",
    "run_routed",
    "sync_job_running",
    "uninstall_interrupt_handler",
    "uninstall_router",
]

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# The kernel loop


def _get_ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def kernel_loop() -> asyncio.AbstractEventLoop | None:
    """The kernel's main asyncio loop, or ``None`` outside an ipykernel.

    The same loop in every cell, also when called from a subshell thread (ipykernel 7), where the
    running loop is a different one: always schedule jobs here, from other threads with
    ``call_soon_threadsafe`` / ``asyncio.run_coroutine_threadsafe``.
    """
    kernel = getattr(_get_ipython(), "kernel", None)
    io_loop = getattr(kernel, "io_loop", None)
    return getattr(io_loop, "asyncio_loop", None)


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


# --------------------------------------------------------------------------------------------
# The request running now
#
# Notebook executors (nbclient, so nbconvert --execute and papermill) keep only iopub messages whose
# parent is the request they are executing now; everything else is dropped from the saved notebook.
# ipykernel 7 keeps the parent header in context variables, so a widget update or display update
# made from a job (a task created while an earlier cell ran, or a timer armed then) is parented to
# that earlier, finished cell and is lost.  (6.29 keeps one global parent: the latest request.)
# So the kernel-side updates that must survive - the job's output area, the card, the static
# fallbacks - are made inside a copy of the context of the latest cell, captured when it starts.


# An update sent between two cells is parented to the finished one and dropped by the executor:
# static fallbacks are therefore re-sent once per request (their keys include request_serial()).


class _LatestRequest:
    context: contextvars.Context | None = None
    serial = 0
    running = False  # a cell is executing now (between pre_run_cell and post_run_cell)


_latest = _LatestRequest()


def remember_request(*_info: Any) -> None:
    """IPython ``pre_run_cell`` hook: remember the context of the cell that starts now."""
    _latest.context = contextvars.copy_context()
    _latest.serial += 1
    _latest.running = True


def request_finished(*_info: Any) -> None:
    """IPython ``post_run_cell`` hook: no cell is executing any more."""
    _latest.running = False


def request_running() -> bool:
    """Whether a cell is executing now (a notebook executor keeps only what is sent meanwhile)."""
    return _latest.running


def request_serial() -> int:
    """How many cells have started (changes with every new request)."""
    return _latest.serial


def in_latest_request(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` with the parent request of the latest cell (so its messages are kept).

    Outside a kernel, or before any cell ran, just calls it.
    """
    context = _latest.context
    if context is None:
        return fn(*args, **kwargs)
    return context.copy().run(fn, *args, **kwargs)


# --------------------------------------------------------------------------------------------
# Which kind of frontend sent the request running now
#
# A kernel is told nothing about its frontend's abilities, but the execute_request says enough
# (measured with JupyterLab 4.6's source, vscode-jupyter's source, nbclient 0.11 and a real
# jupyter_console 6.6.3 session):
#
# * JupyterLab, Notebook 7 (also JupyterLab's own console) and VS Code put the cell's id in the
#   request's metadata (``cellId``); they render widgets and keep output per cell.
# * nbclient - so nbconvert --execute, papermill and ``nbsched run`` - sends ``allow_stdin: false``
#   and no metadata; it saves the widget state and each cell's outputs.
# * ``jupyter console`` (and qtconsole) send ``allow_stdin: true`` and no metadata; they render no
#   widgets, and show stream, error and display text/plain from their own session only.

NOTEBOOK = "notebook"
EXECUTOR = "executor"
CONSOLE = "console"


def frontend_kind(request: dict[str, Any] | None = None) -> str | None:
    """What sent ``request`` (default: the request running now): ``"notebook"``, ``"executor"``,
    ``"console"``, or ``None`` outside a kernel (or when no request is known).

    ``"notebook"``: the request names its cell (``metadata.cellId``: JupyterLab, Notebook 7, VS Code);
    ``"executor"``: it cannot answer ``input()`` (``allow_stdin`` false: nbclient, nbconvert,
    papermill, ``nbsched run``); ``"console"``: neither (``jupyter console``, qtconsole), a frontend
    that renders no widgets.
    """
    if request is None:
        kernel = getattr(_get_ipython(), "kernel", None)
        get_parent = getattr(kernel, "get_parent", None)
        if get_parent is None:
            return None
        try:
            request = get_parent("shell")
        except Exception:  # noqa: BLE001 - an unusual kernel: say we do not know
            return None
    if not request or request.get("msg_type", request.get("header", {}).get("msg_type")) != "execute_request":
        return None
    if (request.get("metadata") or {}).get("cellId"):
        return NOTEBOOK
    if not (request.get("content") or {}).get("allow_stdin", False):
        return EXECUTOR
    return CONSOLE


class TextEcho:
    """Copies one job's output, as plain text lines, to the console whose request made the job.

    A console (``jupyter console``, qtconsole) renders no widgets, so a job's output area shows
    nothing there. This echo writes the same text to the kernel's own ``stdout``/``stderr``, with
    the parent header of the request that was running when the echo was made (the ``%%schedule``
    cell, typed in that console): the console shows stream messages of its own session, so the lines
    appear there - while a cell runs, and otherwise the next time it reads the kernel's output
    (Enter at an empty prompt, or at once with ``include_other_output=True``) - and in no notebook
    or executor, which keep nothing parented to that console's finished request.

    A display is echoed as its ``text/plain`` line; a failure as ``[nbsched] job 'NAME' failed:``
    and its traceback on stderr.  Any thread may write.
    """

    def __init__(self, name: str, context: contextvars.Context | None = None) -> None:
        self.name = name
        self._context = context if context is not None else contextvars.copy_context()

    def write(self, stream: str, text: str) -> None:
        """Write ``text`` to the kernel's ``stream`` (``"stdout"`` or ``"stderr"``) for the console."""
        if text:
            self._context.copy().run(_kernel_stream(stream).write, text)

    def display(self, data: dict[str, Any]) -> None:
        """Echo a display as its ``text/plain`` line (nothing if it has none)."""
        text = data.get("text/plain")
        if isinstance(text, list):  # (nbformat may split text into lines)
            text = "".join(text)
        if text:
            self.write("stdout", text if text.endswith("\n") else text + "\n")

    def failed(self, lines: list[str]) -> None:
        """Echo a failure: a header naming the job, then its traceback, on stderr."""
        body = "\n".join(lines)
        self.write("stderr", f"[nbsched] job {self.name!r} failed:\n{body}\n")

    def __repr__(self) -> str:
        return f"<nbsched TextEcho for job {self.name!r}>"


def console_echo(name: str) -> TextEcho | None:
    """A :class:`TextEcho` for job ``name`` if the request running now came from a console, else None."""
    return TextEcho(name) if frontend_kind() == CONSOLE else None


def _kernel_stream(name: str) -> Any:
    # the kernel's own stream (not our routing proxy: the echo must never land in a sink)
    stream = getattr(sys, name)
    return stream._nbsched_stream if isinstance(stream, _RoutedStream) else stream


# --------------------------------------------------------------------------------------------
# Output sinks


class OutputSink:
    """Collects one job's output into an ``ipywidgets.Output`` widget, written from the kernel side.

    Nothing here uses ``with widget:`` (which only tags messages for the frontend and goes to the
    wrong cell from tasks and threads): the widget's ``outputs`` tuple is set directly, so the area
    fills in whatever cell it is displayed, and kernel-side code can read it.

    * Consecutive stream chunks of the same stream are coalesced into one entry.
    * At most ``max_entries`` entries and ``max_stream_chars`` characters of stream text are kept;
      the oldest go first and a note at the top says how much was trimmed.
    * Updates are throttled: the widget is re-sent at most once per ``flush_interval`` seconds
      (each change re-sends the whole ``outputs`` list, and jupyter_server drops iopub traffic
      above 1000 msg/s). :meth:`flush` sends at once.
    * Thread-safe: any thread may write; the widget itself is only touched on ``loop``.

    Without a loop (outside a kernel) every change is flushed synchronously.
    """

    def __init__(
        self,
        widget: Any = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        max_entries: int = 100,
        max_stream_chars: int = 20_000,
        flush_interval: float = 0.1,
    ) -> None:
        if max_entries < 1 or max_stream_chars < 1:
            raise ValueError(
                f"max_entries={max_entries!r} and max_stream_chars={max_stream_chars!r} "
                "must both be at least 1"
            )
        if widget is None:
            import ipywidgets

            widget = ipywidgets.Output()
        self.widget = widget
        self.loop = loop if loop is not None else kernel_loop()
        self.max_entries = max_entries
        self.max_stream_chars = max_stream_chars
        self.flush_interval = flush_interval
        self._lock = threading.Lock()
        # Entries: stream entries keep their text as a list of chunks (joined lazily) so that a
        # tight print loop does not copy the whole text on every write.
        self._entries: list[dict[str, Any]] = []
        self._display_ids: list[str | None] = []
        self._stream_chars = 0
        self._trimmed_entries = 0
        self._trimmed_chars = 0
        self._clear_on_next = False
        self._dirty = False
        self._flush_scheduled = False
        self._flush_handle: asyncio.TimerHandle | None = None
        #: Increases every time the widget is sent new outputs (cheap change detection for the card).
        self.version = 0
        #: A :class:`TextEcho` when the job was made from a console: its output is also written there
        #: as text (a console renders no widget). Set by whoever makes the job (``%%schedule``).
        self.echo: TextEcho | None = None

    # -- writing (any thread) ---------------------------------------------------------------

    def write(self, name: str, text: str) -> int:
        """Append ``text`` to stream ``name`` (``"stdout"`` or ``"stderr"``)."""
        if not text:
            return 0
        with self._lock:
            self._apply_pending_clear()
            last = self._entries[-1] if self._entries else None
            if last is not None and last["output_type"] == "stream" and last["name"] == name:
                last["_chunks"].append(text)
            else:
                self._append({"output_type": "stream", "name": name, "_chunks": [text]}, None)
            self._stream_chars += len(text)
            if self._stream_chars > 2 * self.max_stream_chars:
                self._trim()
            self._dirty = True
        self._schedule_flush()
        echo = self.echo
        if echo is not None:
            echo.write(name, text)
        return len(text)

    def display(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        *,
        transient: dict[str, Any] | None = None,
        update: bool = False,
    ) -> None:
        """Add a display (a mime bundle); ``update=True`` replaces the one with the same display_id."""
        data, metadata = _clean_bundle(data, metadata or {})
        entry = {"output_type": "display_data", "data": data, "metadata": metadata}
        display_id = (transient or {}).get("display_id")
        with self._lock:
            if update:
                # As in a notebook: updating an unknown display id shows nothing.
                for index, known in enumerate(self._display_ids):
                    if display_id is not None and known == display_id:
                        self._entries[index] = entry
                        self._dirty = True
            else:
                self._apply_pending_clear()
                self._append(entry, display_id)
                self._dirty = True
        self._schedule_flush()
        echo = self.echo
        if echo is not None and not update:
            echo.display(data)

    def clear_output(self, wait: bool = False) -> None:
        """Clear the area, now or (``wait=True``) just before the next output arrives."""
        with self._lock:
            if wait:
                self._clear_on_next = True
                return
            self._clear_locked()
        self._schedule_flush()

    def clear(self) -> None:
        """Forget everything, including the trimmed counts (e.g. before a new run)."""
        with self._lock:
            self._clear_locked()
            self._trimmed_entries = self._trimmed_chars = 0
        self._schedule_flush()

    def show_exception(self, exc: BaseException) -> None:
        """Put ``exc``'s traceback in the area as an ``error`` output (as a failing cell shows it)."""
        lines = _format_traceback(exc)
        entry = {
            "output_type": "error",
            "ename": type(exc).__name__,
            "evalue": str(exc),
            "traceback": lines,
        }
        with self._lock:
            self._apply_pending_clear()
            self._append(entry, None)
            self._dirty = True
        self.flush()
        echo = self.echo
        if echo is not None:
            echo.failed(lines)

    # -- reading ------------------------------------------------------------------------------

    @property
    def outputs(self) -> tuple[dict[str, Any], ...]:
        """What the area shows (or will show after the next flush), in nbformat output dicts."""
        with self._lock:
            return self._snapshot()

    def stream_text(self, name: str | None = None) -> str:
        """The kept stream text, of one stream or of both (trimmed text excluded)."""
        with self._lock:
            return "".join(
                "".join(e["_chunks"])
                for e in self._entries
                if e["output_type"] == "stream" and (name is None or e["name"] == name)
            )

    # -- flushing -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Send pending changes to the widget now (from another thread: as soon as the loop can)."""
        loop = self.loop
        if loop is None or loop.is_closed() or _on_loop_thread(loop):
            self._flush_now()
        else:
            loop.call_soon_threadsafe(self._flush_now)

    def _schedule_flush(self) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            self._flush_now()
            return
        with self._lock:
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        if _on_loop_thread(loop):
            self._start_timer()
        else:
            loop.call_soon_threadsafe(self._start_timer)

    def _start_timer(self) -> None:
        assert self.loop is not None
        self._flush_handle = self.loop.call_later(self.flush_interval, self._flush_now)

    def _flush_now(self) -> None:
        with self._lock:
            if self._flush_handle is not None:
                self._flush_handle.cancel()
                self._flush_handle = None
            self._flush_scheduled = False
            if not self._dirty:
                return
            self._dirty = False
            self._trim()
            outputs = self._snapshot()
            self.version += 1
        in_latest_request(setattr, self.widget, "outputs", outputs)

    # -- internals (lock held) ----------------------------------------------------------------

    def _append(self, entry: dict[str, Any], display_id: str | None) -> None:
        self._entries.append(entry)
        self._display_ids.append(display_id)
        if len(self._entries) > 2 * self.max_entries:
            self._trim()

    def _apply_pending_clear(self) -> None:
        if self._clear_on_next:
            self._clear_locked()

    def _clear_locked(self) -> None:
        self._entries.clear()
        self._display_ids.clear()
        self._stream_chars = 0
        self._clear_on_next = False
        self._dirty = True

    def _trim(self) -> None:
        excess = len(self._entries) - self.max_entries
        if excess > 0:
            for entry in self._entries[:excess]:
                if entry["output_type"] == "stream":
                    size = sum(map(len, entry["_chunks"]))
                    self._stream_chars -= size
                    self._trimmed_chars += size
            del self._entries[:excess]
            del self._display_ids[:excess]
            self._trimmed_entries += excess
        index = 0
        while self._stream_chars > self.max_stream_chars and index < len(self._entries):
            entry = self._entries[index]
            if entry["output_type"] != "stream":
                index += 1
                continue
            text = "".join(entry["_chunks"])
            cut = self._stream_chars - self.max_stream_chars
            if cut >= len(text):
                del self._entries[index]
                del self._display_ids[index]
                self._trimmed_entries += 1
                cut = len(text)
            else:
                entry["_chunks"] = [text[cut:]]
                index += 1
            self._stream_chars -= cut
            self._trimmed_chars += cut

    def _snapshot(self) -> tuple[dict[str, Any], ...]:
        outputs = []
        if self._trimmed_entries or self._trimmed_chars:
            note = (
                f"[nbsched: earlier output trimmed ({self._trimmed_entries} outputs, "
                f"{self._trimmed_chars} characters of text); keeping the last "
                f"{self.max_entries} outputs / {self.max_stream_chars} characters]"
            )
            outputs.append(
                {"output_type": "display_data", "data": {"text/plain": note}, "metadata": {}}
            )
        for entry in self._entries:
            if entry["output_type"] == "stream":
                text = "".join(entry["_chunks"])
                entry["_chunks"] = [text]
                outputs.append({"output_type": "stream", "name": entry["name"], "text": text})
            else:
                outputs.append(entry)
        return tuple(outputs)

    def __repr__(self) -> str:
        return f"<OutputSink {len(self._entries)} outputs, {self._stream_chars} chars>"


def _clean_bundle(data: dict[str, Any], metadata: dict[str, Any]) -> tuple[dict, dict]:
    # What ZMQDisplayPublisher does before sending: base64 for bytes images, JSON-safe values.
    try:
        from ipykernel.jsonutil import encode_images, json_clean
    except ImportError:
        return data, metadata
    return json_clean(encode_images(data)), json_clean(metadata)


def _format_traceback(exc: BaseException) -> list[str]:
    shell = _get_ipython()
    formatter = getattr(shell, "InteractiveTB", None)
    if formatter is not None:
        try:
            return list(formatter.structured_traceback(type(exc), exc, exc.__traceback__))
        except Exception:  # noqa: BLE001 - fall back to the plain formatter
            pass
    return "".join(traceback.format_exception(exc)).splitlines()


# --------------------------------------------------------------------------------------------
# Routing


_current_sink: contextvars.ContextVar[OutputSink | None] = contextvars.ContextVar(
    "nbsched_output_sink", default=None
)


def current_sink() -> OutputSink | None:
    """The sink output goes to in the current context, or None (normal cell output)."""
    return _current_sink.get()


# Jobs added with the Python API (``sched.add(fn, ...)`` in a cell) run the user's own function, so
# no wrapper sets the sink for them: the router finds their sink through the run they belong to
# (``nbsched.current_run()``), by job name, among the jobs registered here.
_job_outputs: dict[str, weakref.ref] = {}


def keep_job_output(job: Any) -> None:
    """Route what ``job`` prints to ``job.output`` (an :class:`OutputSink`) in each of its runs.

    For jobs whose function is not wrapped by nbsched (added with the Python API); a ``%%schedule``
    cell's job routes its own output.  Registered by name: a later job of the same name replaces it.
    """
    if not isinstance(getattr(job, "output", None), OutputSink):
        raise TypeError(f"keep_job_output() needs a job whose .output is an OutputSink, got {job.output!r}")
    _job_outputs[job.name] = weakref.ref(job)


def forget_job_output(name: str) -> None:
    """Stop routing the output of the job called ``name`` (see :func:`keep_job_output`)."""
    _job_outputs.pop(name, None)


def _run_sink() -> OutputSink | None:
    """The sink of the registered job whose run this code is part of, if any."""
    from ..context import current_job_name

    name = current_job_name()
    if name is None:
        return None
    ref = _job_outputs.get(name)
    job = ref() if ref is not None else None
    if job is None or job.scheduler.find(name) is not job:  # (removed, or replaced by another job)
        return None
    sink = job.output
    return sink if isinstance(sink, OutputSink) else None


def _sink_now() -> OutputSink | None:
    sink = _current_sink.get()
    if sink is None and _job_outputs:
        sink = _run_sink()
    return sink


@contextlib.contextmanager
def route_output(sink: OutputSink | None) -> Iterator[OutputSink | None]:
    """Send stdout/stderr/display output of this context to ``sink`` (None: back to normal).

    Tasks and ``asyncio.to_thread`` threads started inside inherit the sink.
    """
    token = _current_sink.set(sink)
    try:
        yield sink
    finally:
        _current_sink.reset(token)


def run_routed(sink: OutputSink | None, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` with its output routed to ``sink``.

    If ``fn`` returns an awaitable (an ``async def`` job), return a coroutine that awaits it with
    the sink set in the awaiting task, so the whole run is routed.
    """
    with route_output(sink):
        result = fn(*args)
    if inspect.isawaitable(result):
        return _await_routed(sink, result)
    return result


async def _await_routed(sink: OutputSink | None, awaitable: Awaitable[T]) -> T:
    with route_output(sink):
        return await awaitable


class _RoutedStream:
    """Proxy over ``sys.stdout``/``sys.stderr``: writes go to the current sink, if any.

    Everything else (``flush``, ``fileno``, ``set_parent``, ``echo``...) is delegated to the stream
    it wraps, so with no sink set the kernel sees its own stream.
    """

    def __init__(self, stream: Any, name: str) -> None:
        object.__setattr__(self, "_nbsched_stream", stream)
        object.__setattr__(self, "_nbsched_name", name)

    def write(self, text: str) -> int:
        sink = _sink_now()
        if sink is None:
            return self._nbsched_stream.write(text)
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        return sink.write(self._nbsched_name, text)

    def writelines(self, lines: Any) -> None:
        sink = _sink_now()
        if sink is None:
            return self._nbsched_stream.writelines(lines)
        for line in lines:
            self.write(line)
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nbsched_stream, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # IPython 9 patches ``sys.stdout.write`` around every cell (``InteractiveShell._tee``,
        # to record output in history) and calls the previous ``write`` from its patch: keep that
        # patch on the proxy, or it would call the proxy from the stream it wraps (recursion).
        if name in ("write", "writelines"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._nbsched_stream, name, value)

    def __repr__(self) -> str:
        return f"<nbsched routed {self._nbsched_name}: {self._nbsched_stream!r}>"


class _RouterState:
    def __init__(self) -> None:
        self.shell: Any = None
        self.display_pub: Any = None
        self.saved_display_attrs: dict[str, Any] = {}
        self.installed = False


_router = _RouterState()
_router_lock = threading.Lock()
_MISSING = object()


def install_router(shell: Any = None) -> None:
    """Route output of contexts that hold a sink; idempotent.

    Safe to call again at any time (e.g. before each run): it re-wraps ``sys.stdout``/``sys.stderr``
    or the display publisher if something replaced them since.
    """
    shell = shell if shell is not None else _get_ipython()
    with _router_lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is not None and not isinstance(stream, _RoutedStream):
                setattr(sys, name, _RoutedStream(stream, name))
        display_pub = getattr(shell, "display_pub", None)
        if display_pub is not None and display_pub is not _router.display_pub:
            _restore_display_pub()
            _wrap_display_pub(display_pub)
        _router.shell = shell
        _router.installed = True


def uninstall_router() -> None:
    """Undo :func:`install_router` (streams replaced by someone else since are left alone)."""
    with _router_lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, _RoutedStream):
                setattr(sys, name, stream._nbsched_stream)
        _restore_display_pub()
        _router.shell = None
        _router.installed = False


def _wrap_display_pub(display_pub: Any) -> None:
    original_publish = display_pub.publish
    original_clear = display_pub.clear_output

    def publish(data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
        sink = _sink_now()
        if sink is None:
            return original_publish(data, metadata, *args, **kwargs)
        sink.display(
            data,
            metadata,
            transient=kwargs.get("transient"),
            update=bool(kwargs.get("update", False)),
        )
        return None

    def clear_output(*args: Any, **kwargs: Any) -> Any:
        sink = _sink_now()
        if sink is None:
            return original_clear(*args, **kwargs)
        wait = kwargs.get("wait", args[0] if args else False)
        sink.clear_output(wait=bool(wait))
        return None

    publish._nbsched_router = True  # type: ignore[attr-defined]
    # Instance attributes shadow the class's methods; remember what was there to restore it.
    _router.saved_display_attrs = {
        name: display_pub.__dict__.get(name, _MISSING) for name in ("publish", "clear_output")
    }
    display_pub.publish = publish
    display_pub.clear_output = clear_output
    _router.display_pub = display_pub


def _restore_display_pub() -> None:
    display_pub = _router.display_pub
    if display_pub is None:
        return
    if getattr(display_pub.__dict__.get("publish"), "_nbsched_router", False):
        for name, saved in _router.saved_display_attrs.items():
            if saved is _MISSING:
                display_pub.__dict__.pop(name, None)
            else:
                setattr(display_pub, name, saved)
    _router.display_pub = None
    _router.saved_display_attrs = {}


# --------------------------------------------------------------------------------------------
# Interrupts


class _InterruptState:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.is_job_task: Callable[[asyncio.Task | None], bool] = lambda task: False
        self.on_interrupt: Callable[[asyncio.Task | None], None] | None = None
        self.previous: Any = None  # what our idle-time handler replaced
        self.installed = False
        self.sync_jobs = 0  # > 0 while a job runs synchronously on the loop (or a job step runs)


_interrupts = _InterruptState()


def _job_running_now(loop: asyncio.AbstractEventLoop | None) -> tuple[bool, asyncio.Task | None]:
    task = None
    if loop is not None:
        try:
            task = asyncio.current_task(loop)
        except RuntimeError:
            task = None
    if _interrupts.sync_jobs > 0:
        return True, task
    try:
        return bool(_interrupts.is_job_task(task)), task
    except Exception:  # noqa: BLE001 - never raise something else from a signal handler
        return False, task


def _notify(task: asyncio.Task | None) -> None:
    callback = _interrupts.on_interrupt
    loop = _interrupts.loop
    if callback is None:
        return
    if loop is not None and not loop.is_closed():
        # Run it from the loop, not inside the signal handler.
        loop.call_soon_threadsafe(callback, task)


def _call_previous(previous: Any, signum: int, frame: Any) -> None:
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        raise KeyboardInterrupt
    # SIG_IGN (the kernel while idle) or None (not installed from Python): nothing to do.


def _handle_sigint(signum: int, frame: Any) -> None:
    """Our idle-time handler: interrupt a running job, otherwise behave like the handler we replaced."""
    if not _interrupts.installed:
        _call_previous(_interrupts.previous, signum, frame)
        return
    is_job, task = _job_running_now(_interrupts.loop)
    if is_job:
        _notify(task)
        raise KeyboardInterrupt("interrupted by the kernel's interrupt (nbsched job)")
    _notify(None)
    _call_previous(_interrupts.previous, signum, frame)


def install_interrupt_handler(
    loop: asyncio.AbstractEventLoop,
    is_job_task: Callable[[asyncio.Task | None], bool],
    on_interrupt: Callable[[asyncio.Task | None], None] | None = None,
) -> None:
    """Make the kernel's interrupt stop a job that is running on ``loop``, even while idle.

    The handler is installed from a callback on ``loop`` (the main thread, between requests), so
    ipykernel's own save/restore around each request keeps bringing it back. On SIGINT it raises
    ``KeyboardInterrupt`` if ``is_job_task(asyncio.current_task(loop))`` is true or a sync job is
    running (:func:`sync_job_running`); otherwise it does what the replaced handler did (nothing,
    while idle). ``on_interrupt(task)`` is then called soon on the loop, with the interrupted job's
    task or None. Calling it again replaces the callbacks and re-asserts the handler (cheap:
    e.g. before each run). If a request is in flight when the callback runs, the handler is
    handed to ipykernel to restore when that request ends, so the cell keeps its own handler.
    """
    _interrupts.loop = loop
    _interrupts.is_job_task = is_job_task
    _interrupts.on_interrupt = on_interrupt
    _interrupts.installed = True
    loop.call_soon_threadsafe(_install_from_loop)


def _install_from_loop() -> None:
    if not _interrupts.installed:
        return
    current = signal.getsignal(signal.SIGINT)
    if current is _handle_sigint:
        return
    kernel = getattr(_get_ipython(), "kernel", None)
    if current != signal.SIG_IGN and hasattr(kernel, "saved_sigint_handler"):
        # A request is in flight (its handler is ipykernel's, e.g. an await cell's): swapping it
        # now would break that cell's interrupt. ipykernel restores `saved_sigint_handler` when
        # the request ends, so put ours there instead.
        if _interrupts.previous is None:
            _interrupts.previous = kernel.saved_sigint_handler
        kernel.saved_sigint_handler = _handle_sigint
        return
    if _interrupts.previous is None:
        _interrupts.previous = current
    signal.signal(signal.SIGINT, _handle_sigint)


def uninstall_interrupt_handler() -> None:
    """Undo :func:`install_interrupt_handler`; from any thread.

    Our handler becomes inert at once; it is swapped back for the replaced one from a loop
    callback (a cell runs under ipykernel's own handler, which restores ours when it ends).
    """
    _interrupts.installed = False
    _interrupts.on_interrupt = None
    _interrupts.is_job_task = lambda task: False
    loop = _interrupts.loop
    if loop is not None and not loop.is_closed():
        loop.call_soon_threadsafe(_uninstall_from_loop)
    elif threading.current_thread() is threading.main_thread():
        _uninstall_from_loop()


def _uninstall_from_loop() -> None:
    if _interrupts.installed:  # installed again meanwhile
        return
    previous = _interrupts.previous if _interrupts.previous is not None else signal.SIG_IGN
    if signal.getsignal(signal.SIGINT) is _handle_sigint:
        signal.signal(signal.SIGINT, previous)
    kernel = getattr(_get_ipython(), "kernel", None)
    if getattr(kernel, "saved_sigint_handler", None) is _handle_sigint:
        kernel.saved_sigint_handler = previous  # a request is in flight: restored when it ends
    _interrupts.previous = None


def _handle_sigint_in_job(signum: int, frame: Any) -> None:
    # Installed only while a job step runs: a job is running by definition.
    _notify(asyncio.current_task(_interrupts.loop) if _interrupts.loop else None)
    raise KeyboardInterrupt("interrupted by the kernel's interrupt (nbsched job)")


@contextlib.contextmanager
def sync_job_running() -> Generator[None, None, None]:
    """Mark that job code runs on the loop right now; SIGINT raises ``KeyboardInterrupt`` in it.

    Use it around a synchronous job body run on the loop thread, and around each step of an async
    job (what :func:`interruptible` does). Whatever SIGINT handler was active (ipykernel's, e.g.
    during an ``await`` cell) is put back afterwards. A no-op outside the main thread, where
    Python delivers no signals.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    _interrupts.sync_jobs += 1
    signal.signal(signal.SIGINT, _handle_sigint_in_job)
    try:
        yield
    finally:
        _interrupts.sync_jobs -= 1
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_IGN)


class _Interruptible:
    """Awaitable that runs every step of ``coro`` inside :func:`sync_job_running`."""

    __slots__ = ("_coro",)

    def __init__(self, coro: Any) -> None:
        self._coro = coro

    def __await__(self) -> _Interruptible:
        return self

    def __iter__(self) -> _Interruptible:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        with sync_job_running():
            return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        with sync_job_running():
            return self._coro.throw(*args)

    def close(self) -> None:
        self._coro.close()


def interruptible(coro: Awaitable[T]) -> Awaitable[T]:
    """Wrap a job's coroutine so the kernel's interrupt raises ``KeyboardInterrupt`` inside it.

    Needed for jobs that may block the loop while an ``await`` cell runs (ipykernel's handler would
    only schedule a cancellation that never runs). Usage, in the task running the job::

        try:
            value = await interruptible(cell())
        except KeyboardInterrupt:
            ...  # record the run as interrupted; never let it escape the task
    """
    if not inspect.iscoroutine(coro):
        raise TypeError(f"interruptible() needs a coroutine, got {type(coro).__name__}")
    return _Interruptible(coro)
