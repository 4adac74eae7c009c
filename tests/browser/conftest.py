"""Fixtures for browser tests: JupyterLab + Debian's headless Chromium + Playwright (see lab_harness).

Screenshots go to tests/artifacts/ (gitignored).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from .lab_harness import ARTIFACTS, CHROMIUM_FLAGS, Lab, find_chromium


@pytest.fixture(scope="module")
def chromium() -> Path:
    return find_chromium()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, chromium):
    server = Lab(tmp_path_factory.mktemp("lab")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser_context(chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(chromium), headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000},
        )

        def only_loopback(route):
            url = route.request.url
            if url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
                route.continue_()
            else:
                route.abort()

        context.route("**/*", only_loopback)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
