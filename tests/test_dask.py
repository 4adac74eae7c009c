"""The dask executor against real Dask clusters (never a fake).

* ``local_cluster``: a ``LocalCluster`` with two worker processes (module-scoped, reused).
* ``cli_cluster``: a scheduler and two workers started the way a user starts them
  (``dask scheduler`` / ``dask worker`` as separate processes, connected by address); one worker
  offers ``GPU=1``.  The scheduler gives up on a task at the first dead worker (allowed-failures 0), so
  a killed worker surfaces to nbsched at once and nbsched's own retry policy takes over.
* ``restartable``: a CLI scheduler + worker of its own, stopped and started again by the test.

Each test opens its own asynchronous client on its own event loop (the scheduler's loop), as a
notebook does.  The first few tests need no cluster (option checking, the missing-package error).
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernel_harness import wait_until

import nbsched
from nbsched import ClusterUnreachableError, DaskExecutor, PolicyError, WorkerDiedError

DASK_CLI = str(Path(sys.executable).with_name("dask"))


# ------------------------------------------------------------------ no cluster needed
def test_resources_option_is_validated_and_held_as_sorted_pairs():
    policy = nbsched.JobPolicy.build(resources={"MEM": 2e9, "GPU": 1})
    assert policy.resources == (("GPU", 1.0), ("MEM", 2e9))
    assert policy.resource_dict() == {"GPU": 1.0, "MEM": 2e9}
    assert nbsched.JobPolicy.build(resources={}).resources is None
    for bad in ({"GPU": 0}, {"GPU": "lots"}, {"": 1}, "GPU=1", {"GPU": True}):
        with pytest.raises(PolicyError) as info:
            nbsched.JobPolicy.build(resources=bad)
        assert str(info.value) == (
            f"invalid resources {bad!r}: a dict of resource name to a positive amount, e.g. {{'GPU': 1}}")


async def test_resources_on_a_local_executor_are_refused_and_nothing_is_added(sched):
    with pytest.raises(PolicyError) as info:
        sched.add(lambda: 1, "every 1m", name="gpu", executor="thread", resources={"GPU": 1})
    assert str(info.value) == (
        "resources={'GPU': 1.0} needs an executor that places work on workers (e.g. 'dask'), but the job runs "
        "on 'thread': register one with sched.add_executor('dask', nbsched.DaskExecutor(client)) and pass "
        "executor='dask'")
    assert "gpu" not in sched


def test_without_distributed_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ImportError) as info:
        DaskExecutor(object())
    assert str(info.value) == (
        "DaskExecutor needs Dask's 'distributed' package, which is not installed: "
        "pip install 'nbsched[dask]' (and install the same on the cluster's workers)")


def test_something_other_than_a_client_is_refused():
    with pytest.raises(TypeError) as info:
        DaskExecutor("tcp://127.0.0.1:8786")
    assert "DaskExecutor needs a dask.distributed.Client, got 'tcp://127.0.0.1:8786'" in str(info.value)


# ------------------------------------------------------------------ clusters
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _n_workers(address: str) -> int:
    from distributed import Client

    with Client(address, timeout=5) as c:
        return len(c.scheduler_info()["workers"])


class CliCluster:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1."""

    def __init__(self, tmp: Path, env: dict[str, str]):
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.env = {**os.environ, **env}
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        out = open(self.tmp / log, "ab")
        return subprocess.Popen([DASK_CLI, *args], stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                start_new_session=True)

    def start_scheduler(self) -> None:
        self.scheduler = self._spawn(["scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--no-dashboard"], "scheduler.log")
        wait_until(lambda: _port_open(self.port), 30, "the dask scheduler to listen")

    def start_worker(self, *extra: str) -> None:
        self.workers.append(self._spawn(["worker", self.address, "--nthreads", "1", "--no-dashboard",
                                         "--host", "127.0.0.1", *extra], f"worker{len(self.workers)}.log"))

    def wait_workers(self, n: int) -> None:
        wait_until(lambda: _n_workers(self.address) >= n, 60, f"{n} dask workers")

    def stop_scheduler(self) -> None:
        _stop(self.scheduler)

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            _stop(proc)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: a worker's nanny and its worker process
    proc.wait(10)


@pytest.fixture(scope="module")
def local_cluster():
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
                           worker_dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory):
    cluster = CliCluster(tmp_path_factory.mktemp("cli-cluster"),
                         {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"})
    try:
        cluster.start_scheduler()
        cluster.start_worker("--resources", "GPU=1", "--name", "gpu-worker")
        cluster.start_worker("--name", "cpu-worker")
        cluster.wait_workers(2)
        yield cluster
    finally:
        cluster.close()


async def _scheduler_on(address: str, **defaults) -> tuple[nbsched.Scheduler, object, DaskExecutor]:
    from distributed import Client

    client = await Client(address, asynchronous=True, set_as_default=False)
    sched = nbsched.Scheduler(tz="UTC", **defaults)
    executor = DaskExecutor(client)
    sched.add_executor("dask", executor)
    return sched, client, executor


@pytest.fixture
async def on_local(local_cluster):
    sched, client, executor = await _scheduler_on(local_cluster.scheduler_address)
    yield sched, client
    sched.shutdown()
    await sched.wait_idle()
    await executor.client.close()


@pytest.fixture
async def on_cli(cli_cluster):
    sched, client, executor = await _scheduler_on(cli_cluster.address)
    yield sched, client
    sched.shutdown()
    await sched.wait_idle()
    await executor.client.close()


async def _nbsched_keys(client) -> list[str]:
    """Keys of nbsched's tasks the Dask scheduler still holds."""
    keys = await client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])
    return sorted(k for k in keys if "-nbsched-" in k)


async def _prefixes(client) -> list[str]:
    return [k.split("-nbsched-")[0] for k in await _nbsched_keys(client)]


async def _until(predicate, timeout: float, what: str):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# ------------------------------------------------------------------ LocalCluster with worker processes
# Job functions are defined inside functions so cloudpickle ships them by value, as it does for a
# notebook's functions (module-level functions here would need this test module on the workers).
def _pid_job():
    def worker_pid() -> int:
        return os.getpid()

    return worker_pid


@pytest.mark.dask
async def test_a_function_runs_in_a_worker_process(on_local):
    sched, client = on_local
    sched.add(_pid_job(), "every 1h", executor="dask")
    pid = await sched.run_now("worker_pid")
    workers = await client.run(os.getpid)  # {address: pid}
    assert pid in workers.values() and pid != os.getpid()
    assert list(sched.history("worker_pid")["outcome"]) == ["success"]
    address = next(a for a, p in workers.items() if p == pid)
    assert list(sched.history("worker_pid")["worker"]) == [address]  # the history says where it ran
    sched.add(_pid_job(), "every 1h", name="here")
    await sched.run_now("here")
    assert list(sched.history("here")["worker"]) == [None]  # local runs: empty
    assert list(sched.results("worker_pid")["value"]) == [pid]
    assert await _nbsched_keys(client) == []  # the result was collected and released


@pytest.mark.dask
async def test_a_notebook_closure_is_shipped_by_value(on_local):
    sched, _ = on_local
    factor = 7

    def scaled():
        return [factor * n for n in range(3)]

    sched.add(scaled, "every 1h", executor="dask")
    assert await sched.run_now("scaled") == [0, 7, 14]


@pytest.mark.dask
async def test_errors_on_the_worker_are_recorded_and_retried_by_nbsched(on_local, tmp_path):
    sched, client = on_local
    counter = tmp_path / "attempts"

    def flaky():
        n = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(n))
        if n < 3:
            raise ValueError(f"attempt {n} failed")
        return n

    sched.add(flaky, "every 1h", executor="dask", retries=2, retry_delay=0)
    assert await sched.run_now("flaky") == 3
    frame = sched.history("flaky")
    assert list(frame["outcome"]) == ["error", "error", "success"]
    assert list(frame["attempt"]) == [1, 2, 3]
    assert list(frame["error"])[:2] == ["ValueError: attempt 1 failed", "ValueError: attempt 2 failed"]
    workers = set((await client.run(os.getpid)).keys())
    assert set(frame["worker"]) <= workers and frame["worker"].notna().all()  # failed attempts too


@pytest.mark.dask
async def test_timeout_cancels_the_task_on_the_cluster(on_local, tmp_path):
    sched, client = on_local
    started = tmp_path / "started"

    def stuck():
        started.write_text("1")
        time.sleep(20)

    sched.add(stuck, "every 1h", executor="dask", timeout=1)
    with pytest.raises(TimeoutError):
        await sched.run_now("stuck")
    assert started.exists()  # it was running on the worker when the timeout hit
    frame = sched.history("stuck")
    assert list(frame["outcome"]) == ["timeout"]
    assert list(frame["error"]) == ["TimeoutError: job 'stuck' timed out after 1s"]
    await _until_async(lambda: _nbsched_keys(client), [], 10, "the Dask scheduler to release the task")


async def _until_async(get, expected, timeout: float, what: str):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    value = None
    while loop.time() < deadline:
        value = await get()
        if value == expected:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: last {value!r}")


@pytest.mark.dask
async def test_interrupt_cancels_the_task_on_the_cluster_and_pauses_the_job(on_local, tmp_path):
    sched, client = on_local
    started = tmp_path / "started"

    def long_pull():
        started.write_text("1")
        time.sleep(20)

    sched.add(long_pull, "every 1h", executor="dask")
    handle = sched.run_now("long_pull")
    await _until(started.exists, 20, "the run to start on a worker")
    assert await _nbsched_keys(client) != []
    assert sched.interrupt("long_pull") == 1
    with pytest.raises(KeyboardInterrupt):
        await handle
    assert list(sched.history("long_pull")["outcome"]) == ["interrupted"]
    assert sched.get("long_pull").paused
    await _until_async(lambda: _nbsched_keys(client), [], 10, "the Dask scheduler to release the task")


@pytest.mark.dask
async def test_a_function_that_cannot_be_shipped_is_refused_at_add_time(on_local):
    import threading

    sched, _ = on_local
    lock = threading.Lock()

    def uses_lock():
        with lock:
            return 1

    with pytest.raises(PolicyError) as info:
        sched.add(uses_lock, "every 1h", executor="dask")
    message = str(info.value)
    assert message.startswith(f"{uses_lock!r} cannot be shipped to the Dask cluster: ")
    assert "cannot pickle '_thread.lock' object" in message
    assert "uses_lock" not in sched


# ------------------------------------------------------------------ a CLI cluster: dask scheduler / dask worker
def _name_job():
    def worker_name() -> str:
        from distributed import get_worker

        return get_worker().name

    return worker_name


@pytest.mark.dask
async def test_resources_send_the_job_to_a_worker_that_offers_them(on_cli):
    sched, _ = on_cli
    sched.add(_name_job(), "every 1h", name="on_gpu", executor="dask", resources={"GPU": 1})
    names = {await sched.run_now("on_gpu") for _ in range(4)}
    assert names == {"gpu-worker"}


@pytest.mark.dask
async def test_a_queued_run_that_times_out_never_starts_on_the_cluster(on_cli, tmp_path):
    sched, client = on_cli
    release, second = tmp_path / "release", tmp_path / "second-ran"

    def hold_gpu():
        deadline = time.monotonic() + 30
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return "held"

    def wants_gpu():
        second.write_text("ran")

    sched.add(hold_gpu, "every 1h", executor="dask", resources={"GPU": 1})
    sched.add(wants_gpu, "every 1h", executor="dask", resources={"GPU": 1}, timeout=0.5)
    holding = sched.run_now("hold_gpu")
    with pytest.raises(TimeoutError):
        await sched.run_now("wants_gpu")  # waits for the only GPU, times out while queued
    await _until_async(lambda: _prefixes(client), ["hold_gpu"], 10, "only the holding task to remain")
    release.write_text("go")
    assert await holding == "held"
    assert not second.exists()  # cancelled on the cluster before it could start
    assert list(sched.history("wants_gpu")["outcome"]) == ["timeout"]


@pytest.mark.dask
async def test_a_worker_killed_mid_run_is_recorded_as_died_then_retried(on_cli, cli_cluster, tmp_path):
    sched, client = on_cli
    pidfile = tmp_path / "pid"

    def victim():
        if not pidfile.exists():
            pidfile.write_text(str(os.getpid()))
            time.sleep(30)  # killed here
        return "second attempt"

    sched.add(victim, "every 1h", executor="dask", retries=1, retry_delay=0)
    handle = sched.run_now("victim")
    pid = int(await _until(lambda: pidfile.exists() and pidfile.read_text(), 20, "the run to start"))
    victim_address = next(a for a, p in (await client.run(os.getpid)).items() if p == pid)
    os.kill(pid, signal.SIGKILL)
    assert await handle == "second attempt"
    frame = sched.history("victim")
    assert list(frame["outcome"]) == ["error", "success"]
    assert list(frame["error_type"])[0] == "WorkerDiedError"
    assert frame["error"].iloc[0].startswith(
        "WorkerDiedError: the Dask worker running this job died (killed, or out of memory)")
    assert frame["worker"].iloc[0] == victim_address
    assert frame["worker"].iloc[1] not in (None, victim_address)
    await asyncio.get_running_loop().run_in_executor(None, cli_cluster.wait_workers, 2)  # the nanny restarted it


# ------------------------------------------------------------------ the scheduler process stopped and restarted
@pytest.fixture
def restartable(tmp_path):
    cluster = CliCluster(tmp_path, {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"})
    try:
        cluster.start_scheduler()
        cluster.start_worker()
        cluster.wait_workers(1)
        yield cluster
    finally:
        cluster.close()


@pytest.mark.dask
async def test_scheduler_lost_runs_record_unreachable_and_resume_when_it_is_back(restartable, tmp_path):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "3s"}):  # the client gives up sooner
        sched, client, executor = await _scheduler_on(restartable.address)
    started = tmp_path / "started"

    def waits():
        started.write_text("1")
        time.sleep(30)

    try:
        sched.add(_pid_job(), "every 1h", name="ping", executor="dask")
        sched.add(waits, "every 1h", executor="dask")
        assert isinstance(await sched.run_now("ping"), int)
        in_flight = sched.run_now("waits")
        await _until(started.exists, 20, "the run to start")
        restartable.stop_scheduler()
        with pytest.raises(ClusterUnreachableError) as lost:
            await in_flight
        assert str(lost.value).startswith(f"the Dask scheduler at {restartable.address} is unreachable (")
        with pytest.raises(ClusterUnreachableError) as refused:
            await sched.run_now("ping")  # while it is down: fails at once, nothing escapes
        assert "runs resume when the cluster is back" in str(refused.value)
        job = sched.get("ping")
        assert not job.paused and job.next_fire_time is not None  # keeps its schedule

        restartable.start_scheduler()
        restartable.start_worker()
        outcome = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90  # generous: starting processes on a loaded machine takes a while
        last = None
        while outcome is None and loop.time() < deadline:  # the next runs reach the restarted cluster
            try:
                outcome = await sched.run_now("ping")
            except ClusterUnreachableError as exc:
                last = exc
                await asyncio.sleep(0.2)
        assert isinstance(outcome, int), f"no run reached the restarted cluster; last error: {last}\n" + "\n".join(
            f"--- {log.name}:\n" + log.read_text()[-1500:] for log in sorted(tmp_path.glob("*.log")))
        frame = sched.history("ping")
        assert list(frame["outcome"])[0] == "success" and list(frame["outcome"])[-1] == "success"
        assert set(frame["error_type"].dropna()) == {"ClusterUnreachableError"}
        assert list(sched.history("waits")["error_type"]) == ["ClusterUnreachableError"]
    finally:
        sched.shutdown()
        await sched.wait_idle()
        await executor.client.close()
        if executor.client is not client:
            await client.close()


# ------------------------------------------------------------------ cells on the cluster, in a real kernel
def _kernel_outcomes(kernel, name):
    return kernel.value(f"list(__import__('nbsched').get_scheduler().history({name!r})['outcome'].astype(str))")


@pytest.mark.dask
@pytest.mark.kernel
def test_a_cell_runs_on_the_cluster_with_its_names_in_and_out_and_its_output_in_its_area(kernel, cli_cluster):
    import json

    kernel.run("%load_ext nbsched")
    early = kernel.execute("%%schedule every 1h --executor dask --name early\n1")
    assert early.status == "error" and early.reply["content"]["evalue"] == (
        "there is no 'dask' executor yet: run '%schedule cluster' (a local Dask cluster) or "
        "'%schedule cluster tcp://host:8786' (an existing one) first; no job was created")
    port = _free_port()
    refused = kernel.execute(f"%schedule cluster tcp://127.0.0.1:{port}")
    assert refused.status == "error"
    assert refused.reply["content"]["evalue"].startswith(f"cannot reach a Dask scheduler at tcp://127.0.0.1:{port}: ")

    local = kernel.run("%schedule cluster", timeout=120)  # a LocalCluster sized to this machine
    assert local.stdout.startswith("executor 'dask' is a local Dask cluster at tcp://127.0.0.1:")
    assert "run a cell there with: %%schedule every 10m --executor dask" in local.stdout
    kernel.run("import os\nbase = 20\nkernel_pid = os.getpid()")
    kernel.run("%%schedule every 1h --now --executor dask --name remote --quiet --into frame\n"
               "import os\n"
               "worker_pid = os.getpid()\n"
               "print('HELLO-FROM-WORKER', base)\n"
               "base = base + 1\n"
               "base * 2")
    kernel.poll_until(lambda: _kernel_outcomes(kernel, "remote") == ["success"], timeout=90,
                      message="the cell never ran on the local cluster")
    assert kernel.value("base") == 21  # assigned on the worker, back in the namespace
    assert kernel.value("worker_pid != kernel_pid") is True
    assert kernel.value("list(frame['value'])") == [42]
    assert kernel.value("__import__('nbsched').get_scheduler().get('remote').output.stream_text()") == \
        "HELLO-FROM-WORKER 20\n"
    for msg in kernel.messages(("stream", "display_data", "execute_result")):
        assert "HELLO-FROM-WORKER" not in json.dumps(msg["content"]), "worker output escaped into a cell"

    kernel.run("import threading\nlock = threading.Lock()")
    locked = kernel.execute("%%schedule every 1h --executor dask --name locked\nwith lock:\n    pass")
    assert locked.status == "error"
    assert locked.reply["content"]["evalue"] == (
        "the cell reads 'lock' (lock), which cannot be shipped to the Dask cluster: TypeError: cannot pickle "
        "'_thread.lock' object. Create it inside the cell, or run the cell locally (drop --executor dask)")
    assert kernel.value("'locked' in __import__('nbsched').get_scheduler()") is False

    # an existing cluster, by address; a failing cell is recorded and shown in its own area
    remote = kernel.run(f"%schedule cluster {cli_cluster.address}")
    assert remote.stdout.startswith(f"executor 'dask' is the Dask cluster at {cli_cluster.address}")
    kernel.run("%%schedule every 1h --now --executor dask --name failing --quiet\n"
               "print('before the error')\n"
               "missing_value = base / 0")
    kernel.poll_until(lambda: _kernel_outcomes(kernel, "failing") == ["error"], timeout=60)
    assert kernel.value("'missing_value' in globals()") is False  # nothing comes back from a failed run
    assert kernel.value("list(__import__('nbsched').get_scheduler().history('failing')['error'])") == [
        "ZeroDivisionError: division by zero"]
    area = kernel.value("[o['output_type'] for o in __import__('nbsched').get_scheduler().get('failing').output.outputs]")
    assert area == ["stream", "error"]
    kernel.run("%schedule stop")


def test_nbsched_run_sends_a_notebooks_dask_jobs_to_the_cluster(cli_cluster, tmp_path):
    """`nbsched run NB --cluster ADDRESS`: headless, the notebook's --executor dask cell runs on a worker."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext nbsched"),
                nbformat.v4.new_code_cell("%%schedule every 1s --name remote --executor dask --quiet\n"
                                          "import os\n{'pid': os.getpid()}")]
    path = tmp_path / "remote.ipynb"
    nbformat.write(nb, str(path))
    done = subprocess.run([sys.executable, "-m", "nbsched", "run", str(path), "--for", "6s", "--out",
                           str(tmp_path / "out"), "--cluster", cli_cluster.address],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    import pandas as pd

    history = pd.read_csv(tmp_path / "out" / "remote.history.csv")
    ran = history[history["outcome"] == "success"]
    assert len(ran) >= 2
    assert set(ran["worker"].str.startswith("tcp://")) == {True}  # every run was on a cluster worker
    assert os.getpid() not in set(pd.read_csv(tmp_path / "out" / "remote.results.csv")["pid"])


def test_nbsched_run_says_when_the_cluster_cannot_be_reached(tmp_path):
    import nbformat

    path = tmp_path / "x.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), str(path))
    done = subprocess.run([sys.executable, "-m", "nbsched", "run", str(path), "--for", "1s", "--out",
                           str(tmp_path / "out"), "--cluster", f"tcp://127.0.0.1:{_free_port()}"],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 1
    assert "could not connect to the Dask cluster at 'tcp://127.0.0.1:" in done.stderr


async def test_the_dashboard_says_where_a_job_runs_and_links_the_dask_dashboard(on_local):
    from nbsched.notebook.dashboard import Dashboard

    sched, client = on_local
    sched.add(_pid_job, "every 1h", name="remote", executor="dask")
    sched.add(lambda: None, "every 1h", name="here")
    dash = Dashboard(sched)
    try:
        rows = {row["name"]: row for row in dash.rows()}
        assert rows["remote"]["trigger"] == "every 1h \u00b7 on dask" and rows["here"]["trigger"] == "every 1h"
        html = dash._build_detail(sched, "remote")["html"]
        link = client.dashboard_link
        assert link.startswith("http")
        assert (f"<h4>Runs on</h4><div class='nbsched-runs-on'>dask (cluster {client.scheduler.address}) &middot; "
                f"<a class='nbsched-cluster-link' href='{link}' target='_blank' rel='noopener'>Dask dashboard</a>"
                "</div>") in html
        assert "Runs on" not in dash._build_detail(sched, "here")["html"]
    finally:
        dash.close()
