"""JupyterLab (this venv's) and a direct kernel connection, for the browser tests.

Recipe and pitfalls: /work/shared/notes/browser-testing.md.  Everything started here is stopped by
pid; nothing is installed except Chromium when it is missing (as ``make chromium`` does).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/lib/chromium/chromium")  # the real binary; /usr/bin/chromium is a wrapper
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def find_chromium() -> Path:
    if not CHROMIUM.exists() and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
                       shell=True, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: run `make chromium` (apt-get install -y chromium)")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running JupyterLab server (this venv's), its token and temporary directories."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "notebooks"
        self.runtime = base / "runtime"
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = base / "lab.log"
        self.kernel_pids: list[int] = []  # kernels seen by tests: killed at stop() if still alive

    def start(self) -> "Lab":
        settings = self.base / "settings"
        for d in (self.root, self.runtime, settings, self.base / "config", self.base / "data",
                  self.base / "workspaces", self.base / "checkpoints", self.base / "notary"):
            d.mkdir(parents=True, exist_ok=True)
        for plugin, values in LAB_SETTINGS.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(self.runtime), JUPYTER_CONFIG_DIR=str(self.base / "config"),
                   JUPYTER_DATA_DIR=str(self.base / "data"), JUPYTER_PLATFORM_DIRS="1")
        args = [
            sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
            "--ServerApp.allow_root=True", "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly", f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={self.base / 'workspaces'}",
            f"--FileCheckpoints.checkpoint_dir={self.base / 'checkpoints'}",
            f"--NotebookNotary.data_dir={self.base / 'notary'}", "--LabApp.expose_app_in_browser=True",
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                self.api("/api/status")
                return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"JupyterLab did not answer within 60 s:\n{self.log.read_text()[-3000:]}")

    def api(self, path: str, method: str = "GET") -> object:
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # jupyter_server shuts its kernels down on SIGTERM
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for pid in self.kernel_pids:  # kernels run in their own session: make sure, by pid
            try:
                if b"ipykernel" in Path(f"/proc/{pid}/cmdline").read_bytes():  # still that kernel
                    os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass


class KernelProbe:
    """Asks the notebook's kernel directly (jupyter_client over its connection file), not via the page."""

    def __init__(self, lab: Lab, kernel_id: str):
        from jupyter_client import BlockingKernelClient

        self.client = BlockingKernelClient(connection_file=str(lab.runtime / f"kernel-{kernel_id}.json"))
        self.client.load_connection_file()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=30)
        self.pid = int(self.eval("__import__('os').getpid()"))

    def run(self, code: str, **expressions: str) -> dict[str, str]:
        msg_id = self.client.execute(code, store_history=False, user_expressions=expressions)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            reply = self.client.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                content = reply["content"]
                assert content["status"] == "ok", content
                out = {}
                for name, value in content["user_expressions"].items():
                    assert value["status"] == "ok", value
                    out[name] = value["data"]["text/plain"]
                return out
        raise TimeoutError(f"no reply from the kernel to {code!r}")

    def eval(self, expression: str) -> str:
        return self.run("", value=expression)["value"]

    def close(self) -> None:
        self.client.stop_channels()
