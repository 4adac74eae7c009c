"""A small driver for real ipykernel processes, for tests marked ``kernel``.

``KernelHarness(python)`` starts a kernel with the given interpreter (through a throw-away
kernelspec, so any venv works) and ``PYTHONPATH`` pointing at this checkout, so the kernel imports
``nbsched`` from the working tree. A background thread collects *every* iopub message (with its
parent msg id), so tests can check where background output went, not only what a request saw.

Never sleep blindly in kernel tests: use :meth:`KernelHarness.poll_until`.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IPYKERNEL6_PYTHON = REPO_ROOT / ".venv-ipykernel6" / "bin" / "python"
FRONTENDS = ("notebook", "executor", "console")


def ipykernel6_python() -> str | None:
    """The interpreter of the ipykernel 6.29 environment, or None if there is none.

    ``NBSCHED_IPYKERNEL6_PYTHON`` wins; otherwise ``.venv-ipykernel6`` (``make setup-ipykernel6``).
    """
    configured = os.environ.get("NBSCHED_IPYKERNEL6_PYTHON")
    if configured:
        return configured if Path(configured).exists() else None
    return str(DEFAULT_IPYKERNEL6_PYTHON) if DEFAULT_IPYKERNEL6_PYTHON.exists() else None


class KernelError(AssertionError):
    """A request to the test kernel failed or timed out."""


@dataclass
class ExecuteResult:
    """The reply to one execute request plus every iopub message whose parent is that request."""

    msg_id: str
    reply: dict[str, Any]
    iopub: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.reply["content"]["status"]

    @property
    def stdout(self) -> str:
        return self.stream_text("stdout")

    @property
    def stderr(self) -> str:
        return self.stream_text("stderr")

    def stream_text(self, name: str) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.iopub
            if m["msg_type"] == "stream" and m["content"]["name"] == name
        )

    def of_type(self, *msg_types: str) -> list[dict[str, Any]]:
        return [m for m in self.iopub if m["msg_type"] in msg_types]

    @property
    def error(self) -> dict[str, Any] | None:
        content = self.reply["content"]
        return content if content["status"] == "error" else None


class KernelHarness:
    """One real kernel process and a blocking client to it.

    Use as a context manager, or call :meth:`start` and :meth:`shutdown`.
    """

    def __init__(self, python: str | None = None, *, env: dict[str, str] | None = None) -> None:
        self.python = python or sys.executable
        self._extra_env = dict(env or {})
        self._spec_dir: str | None = None
        self.km: KernelManager | None = None
        self.kc = None
        self.pid: int | None = None
        self._messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._collector: threading.Thread | None = None
        self.log_path: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> KernelHarness:
        self._spec_dir = tempfile.mkdtemp(prefix="nbsched-kernelspec-")
        spec = Path(self._spec_dir) / "kernels" / "nbsched-test"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [self.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "nbsched test kernel",
                    "language": "python",
                }
            )
        )
        ksm = KernelSpecManager(kernel_dirs=[str(spec.parent)])
        self.km = KernelManager(kernel_name="nbsched-test", kernel_spec_manager=ksm)
        env = os.environ.copy()
        env.pop("PYTHONSTARTUP", None)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p
        )
        env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        env.update(self._extra_env)
        self.log_path = str(Path(self._spec_dir) / "kernel.log")
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.km.start_kernel(env=env, stdout=log, stderr=log)
        log.close()
        self.pid = self.km.provisioner.pid if self.km.provisioner else None
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=timeout)
        except RuntimeError as exc:
            self.shutdown()
            raise KernelError(f"kernel did not start: {exc}\n{self.kernel_log()}") from exc
        self._collector = threading.Thread(target=self._collect, name="iopub-collector", daemon=True)
        self._collector.start()
        return self

    def shutdown(self) -> None:
        """Stop the client and the kernel; kill the process (by pid, if still ours) if it lingers."""
        self._stop.set()
        if self._collector is not None:
            self._collector.join(timeout=5)
        if self.kc is not None:
            self.kc.stop_channels()
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=True)
            except Exception:  # noqa: BLE001 - killed below anyway
                pass
        # Popen knows whether it already reaped the pid, so this never hits a recycled pid.
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        if self.km is not None:
            self.km.cleanup_resources()
        if self._spec_dir is not None:
            shutil.rmtree(self._spec_dir, ignore_errors=True)
            self._spec_dir = None

    def __enter__(self) -> KernelHarness:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def kernel_log(self) -> str:
        """What the kernel process wrote to its own stdout/stderr (for failure messages)."""
        try:
            return Path(self.log_path).read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""

    # -- iopub ------------------------------------------------------------------------------

    def _collect(self) -> None:
        try:
            self._collect_until_stopped()
        finally:
            # The blocking client ran its calls on an event loop it made for this thread.
            try:
                loop = asyncio.get_event_loop_policy().get_event_loop()
            except RuntimeError:
                loop = None
            if loop is not None and not loop.is_running():
                loop.close()

    def _collect_until_stopped(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                continue
            except Exception:  # noqa: BLE001 - channel closed during shutdown
                if self._stop.is_set():
                    return
                raise
            with self._changed:
                self._messages.append(msg)
                self._changed.notify_all()

    def messages(
        self, msg_type: str | tuple[str, ...] | None = None, *, parent: str | None = None
    ) -> list[dict[str, Any]]:
        """A snapshot of all iopub messages received so far, optionally filtered."""
        types = (msg_type,) if isinstance(msg_type, str) else msg_type
        with self._lock:
            snapshot = list(self._messages)
        return [
            m
            for m in snapshot
            if (types is None or m["msg_type"] in types)
            and (parent is None or parent_id(m) == parent)
        ]

    # -- requests ---------------------------------------------------------------------------

    def execute(
        self,
        code: str,
        timeout: float = 30,
        *,
        user_expressions: dict[str, str] | None = None,
        silent: bool = False,
        wait: bool = True,
        frontend: str = "notebook",
    ) -> ExecuteResult | str:
        """Run ``code``; return the reply and the request's own iopub messages.

        The request is shaped like one from ``frontend``: ``"notebook"`` (JupyterLab, Notebook 7,
        VS Code: the cell's id in the metadata), ``"executor"`` (nbclient: ``allow_stdin`` false) or
        ``"console"`` (jupyter console: neither); see ``nbsched.notebook.kernel.frontend_kind``.
        With ``wait=False`` return the msg id at once (collect later with :meth:`wait_for_reply`).
        """
        if frontend not in FRONTENDS:
            raise ValueError(f"frontend={frontend!r}: choose one of {', '.join(FRONTENDS)}")
        content = {"code": code, "silent": silent, "store_history": not silent,
                   "user_expressions": user_expressions or {}, "allow_stdin": frontend != "executor",
                   "stop_on_error": True}
        # a stable id per cell text, as a notebook's cell keeps its id when it is run again
        metadata = {"cellId": "harness-" + hashlib.sha1(code.encode()).hexdigest()[:12]} \
            if frontend == "notebook" else {}
        msg = self.kc.session.msg("execute_request", content, metadata=metadata)
        self.kc.shell_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
        if not wait:
            return msg_id
        return self.wait_for_reply(msg_id, timeout)

    def wait_for_reply(self, msg_id: str, timeout: float = 30) -> ExecuteResult:
        deadline = time.monotonic() + timeout
        reply = None
        while reply is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KernelError(f"no execute_reply for {msg_id} within {timeout}s")
            try:
                msg = self.kc.get_shell_msg(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                reply = msg
        # The reply can overtake the request's last iopub messages: wait for its idle status.
        self.poll_until(
            lambda: any(
                m["content"].get("execution_state") == "idle"
                for m in self.messages("status", parent=msg_id)
            ),
            timeout=max(deadline - time.monotonic(), 5),
            message=f"no idle status for {msg_id}",
        )
        return ExecuteResult(msg_id, reply, self.messages(parent=msg_id))

    def run(self, code: str, timeout: float = 30, *, frontend: str = "notebook") -> ExecuteResult:
        """Like :meth:`execute` but fail the test, with the traceback, if the cell raised."""
        result = self.execute(code, timeout, frontend=frontend)
        if result.status != "ok":
            content = result.reply["content"]
            tb = "\n".join(content.get("traceback", []))
            raise KernelError(f"cell failed: {content.get('ename')}: {content.get('evalue')}\n{tb}\n--- code:\n{code}")
        return result

    def user_expression(self, expr: str, timeout: float = 30) -> str:
        """The ``text/plain`` repr of ``expr`` evaluated in the kernel (a silent request)."""
        result = self.execute("", timeout, user_expressions={"value": expr}, silent=True)
        value = result.reply["content"]["user_expressions"]["value"]
        if value["status"] != "ok":
            raise KernelError(f"{expr!r} failed in the kernel: {value['ename']}: {value['evalue']}")
        return value["data"]["text/plain"]

    def value(self, expr: str, timeout: float = 30) -> Any:
        """``expr`` evaluated in the kernel and read back with ``ast.literal_eval``."""
        return ast.literal_eval(self.user_expression(expr, timeout))

    def interrupt(self) -> None:
        self.km.interrupt_kernel()

    # -- waiting ----------------------------------------------------------------------------

    def poll_until(
        self,
        predicate: Callable[[], Any],
        timeout: float = 10,
        *,
        interval: float = 0.02,
        message: str = "condition not met",
    ) -> Any:
        """Call ``predicate`` until it returns something truthy (returned); fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise KernelError(f"{message} within {timeout}s")
            with self._changed:  # wake early when a message arrives
                self._changed.wait(interval)


def parent_id(msg: dict[str, Any]) -> str | None:
    """The msg id of a message's parent request, or None for an empty parent header."""
    return (msg.get("parent_header") or {}).get("msg_id")


def wait_until(predicate, timeout: float, what: str):
    """Poll ``predicate`` (every 50 ms, real time) until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def write_notebook(path: Path, *sources: str, kernelspec: str | None = None) -> Path:
    """Write a notebook of code cells (``sources``, in order) to ``path``; with ``kernelspec``, the
    kernel it names (the saved-notebook tests run it on each ipykernel version).  Returns ``path``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    if kernelspec is not None:
        nb.metadata["kernelspec"] = {"name": kernelspec, "display_name": "nbsched test", "language": "python"}
    nbformat.write(nb, str(path))
    return path
