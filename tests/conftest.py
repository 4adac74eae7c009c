# --- core fixtures ---
"""Shared fixtures.  Unit tests inject a FakeClock: they never sleep."""
import asyncio
from datetime import datetime, timezone

import pytest

import nbsched
from nbsched.testing import FakeClock

START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)  # a Monday


@pytest.fixture
def clock():
    return FakeClock(start=START)


@pytest.fixture
def db(tmp_path):
    """A path for an SQLite store file (not created yet)."""
    return tmp_path / "jobs.db"


@pytest.fixture
async def sched(clock):
    s = nbsched.Scheduler(clock=clock, tz="UTC")
    yield s
    s.shutdown()


@pytest.fixture(autouse=True)
async def _no_leaked_tasks():
    """Leak check: a test must not leave nbsched run tasks running."""
    yield
    try:
        tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("nbsched:") and not t.done()]
    except RuntimeError:
        return
    for t in tasks:
        t.cancel()
    assert not tasks, f"test left nbsched tasks running: {tasks}"
# --- end core fixtures ---

# --- kernel fixtures (kernel helper) ---
# Real ipykernel processes for tests marked `kernel`, on the current environment's ipykernel and
# on ipykernel 6.29 (NBSCHED_IPYKERNEL6_PYTHON, else .venv-ipykernel6; skipped if neither exists).
import sys as _kernel_sys

import pytest as _kernel_pytest


@_kernel_pytest.fixture(params=["ipykernel-current", "ipykernel6"])
def kernel_python(request):
    """The python executable a test kernel runs with, once per ipykernel version."""
    from kernel_harness import ipykernel6_python

    if request.param == "ipykernel-current":
        return _kernel_sys.executable
    python = ipykernel6_python()
    if python is None:
        _kernel_pytest.skip(
            "ipykernel 6.29 environment not found: run `make setup-ipykernel6` "
            "or set NBSCHED_IPYKERNEL6_PYTHON to its python"
        )
    return python


@_kernel_pytest.fixture
def kernel(kernel_python):
    """A fresh real kernel (tests.kernel_harness.KernelHarness), shut down after the test."""
    from kernel_harness import KernelHarness

    harness = KernelHarness(kernel_python).start()
    try:
        yield harness
    finally:
        harness.shutdown()
# --- end kernel fixtures ---
