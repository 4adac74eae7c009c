"""The dashboard in a real browser: JupyterLab + headless Chromium + Playwright.

A notebook (written here with nbformat) schedules a few jobs through the Python API - one of them
failing - and shows ``nbsched.dashboard()``.  The test checks the widget renders (not a text
fallback), updates live, that clicks in the page act on the kernel (checked in the DOM and, through
a separate jupyter_client connection, in the kernel), and measures the comm message rate with 1,000
jobs firing every second by counting the kernel websocket's frames.  Screenshots: tests/artifacts/.
"""
from __future__ import annotations

import re
import time

import nbformat
import pytest

from .lab_harness import KernelProbe

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

SETUP = """\
%load_ext nbsched
import nbsched
s = nbsched.get_scheduler()

def tick():
    return {"n": 1}

def boom():
    raise ValueError("browser boom")

s.add(tick, "every 1s", name="tick")
s.add(boom, "every 2s", name="boom")
s.add(tick, "every 1h", name="hourly")
"""


MAGIC_JOB = """\
%%schedule every 2s --name printer --quiet
print("hello from printer")
"""


def write_notebook(path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell(MAGIC_JOB),
                nbformat.v4.new_code_cell("nbsched.dashboard()")]
    nbformat.write(nb, str(path))


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def run_all(page) -> None:
    """Run All once the kernel is idle (one sent too early does nothing): retry until a prompt moves."""
    wait_for(lambda: page.evaluate(
        "() => window.jupyterapp?.shell?.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'"),
        timeout=60, what="an idle kernel")
    for _ in range(10):
        page.evaluate("""async () => {
            await window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs');
            await window.jupyterapp.commands.execute('notebook:run-all-cells');
        }""")
        try:
            wait_for(lambda: any(re.search(r"\[(\*|\d+)\]", t) for t in page.locator(".jp-InputPrompt").all_inner_texts()),
                     timeout=3, what="a running cell")
            return
        except AssertionError:
            continue
    raise AssertionError("Run All never started")


def test_dashboard_in_jupyterlab(lab, browser_context, artifacts):
    write_notebook(lab.root / "dashboard.ipynb")
    page = browser_context.new_page()
    frames: list[int] = []  # sizes of the kernel websocket frames carrying a comm_msg

    def on_websocket(ws) -> None:
        if "/channels" in ws.url:
            def on_frame(payload) -> None:
                data = payload if isinstance(payload, bytes) else payload.encode()
                if re.search(rb'"msg_type": ?"comm_msg"', data[:1000]):
                    frames.append(len(data))
            ws.on("framereceived", on_frame)

    page.on("websocket", on_websocket)
    page.goto(f"{lab.url}/lab/tree/dashboard.ipynb?token={lab.token}")
    run_all(page)

    dash = page.locator(".nbsched-dashboard")
    dash.wait_for(state="visible", timeout=45_000)
    outputs = " ".join(page.locator(".jp-OutputArea-output").all_inner_texts())
    assert "VBox(" not in outputs, "the widget did not render (text fallback shown)"
    rows = dash.locator("tr.nbsched-row")
    wait_for(lambda: rows.count() == 4, what="four job rows")
    # the static fallback (what nbconvert HTML and GitHub show) is in the page but hidden by the live widget
    static = page.locator(".nbsched-dashboard-static")
    wait_for(lambda: static.count() == 1, what="the static fallback in the DOM")
    assert not static.is_visible()

    session = next(s for s in lab.api("/api/sessions") if s["path"].endswith("dashboard.ipynb"))
    probe = KernelProbe(lab, session["kernel"]["id"])
    lab.kernel_pids.append(probe.pid)
    try:
        def row(name):
            return dash.locator(f"tr.nbsched-row[data-job='{name}']")

        def cell(name, column):
            return row(name).locator(f"td.c-{column}").inner_text()

        # ---- live: the countdown ticks in the browser and run counts grow
        first = cell("hourly", "next")
        assert first.startswith("in 59m") or first.startswith("in 1h"), first
        wait_for(lambda: cell("hourly", "next") != first, timeout=5, what="the countdown to tick")
        runs = int(cell("tick", "runs"))
        wait_for(lambda: int(cell("tick", "runs")) > runs, timeout=8, what="tick's run count to grow")

        # ---- Pause in the browser pauses the job in the kernel
        row("tick").locator("button[data-action='pause']").click()
        wait_for(lambda: cell("tick", "state") == "paused", timeout=5, what="tick paused in the DOM")
        assert probe.eval("str(s.get('tick').state)") == "'paused'"
        row("tick").locator("button[data-action='resume']").click()
        wait_for(lambda: cell("tick", "state") != "paused", timeout=5, what="tick resumed in the DOM")
        assert probe.eval("s.get('tick').paused") == "False"

        # ---- a click during an `await` cell acts at once (the kernel's loop keeps running)
        waiting = probe.client.execute("import asyncio\nawait asyncio.sleep(6)", store_history=False)
        page.wait_for_timeout(500)
        row("boom").locator("button[data-action='pause']").click()
        wait_for(lambda: cell("boom", "state") == "paused", timeout=4, what="boom paused during an await cell")
        reply = probe.client.get_shell_msg(timeout=15)
        assert reply["parent_header"]["msg_id"] == waiting and reply["content"]["status"] == "ok"
        assert probe.eval("str(s.get('boom').state)") == "'paused'"
        row("boom").locator("button[data-action='resume']").click()
        wait_for(lambda: cell("boom", "state") != "paused", timeout=5, what="boom resumed")

        # ---- Run now runs a job that would not fire for an hour
        assert probe.eval("s.get('hourly').successes") == "0"
        row("hourly").locator("button[data-action='run_now']").click()
        wait_for(lambda: cell("hourly", "runs") == "1", timeout=5, what="hourly's run in the DOM")
        assert probe.eval("s.get('hourly').successes") == "1"

        # ---- the failing job is marked red, shows its error, and its traceback is one click away
        wait_for(lambda: "nbsched-state-failing" in (row("boom").get_attribute("class") or ""), what="boom failing")
        assert row("boom").evaluate("e => getComputedStyle(e).backgroundColor") not in ("rgba(0, 0, 0, 0)", "transparent")
        error_row = dash.locator("tr.nbsched-error-row[data-job='boom']")
        assert "ValueError: browser boom" in error_row.inner_text()
        error_row.locator("button[data-action='traceback']").click()
        wait_for(lambda: "Traceback (most recent call last)" in error_row.locator("pre").inner_text(),
                 what="the traceback")

        # ---- select a job: details and the output slot
        row("tick").locator("td.c-name").click()
        detail = dash.locator(".nbsched-detail")
        detail.wait_for(state="visible", timeout=5_000)
        wait_for(lambda: "Next 5 fire times" in detail.inner_text(), what="the detail panel")
        assert detail.locator("svg.nbsched-chart rect").count() >= 1
        slot = dash.locator(".nbsched-output-slot")
        assert "no output area" in slot.inner_text()  # an API job
        row("printer").locator("td.c-name").click()  # a %%schedule job: its own Output widget
        wait_for(lambda: "hello from printer" in slot.inner_text(), what="printer's output in the slot")
        wait_for(lambda: "printer" in detail.inner_text(), what="printer's details")
        page.wait_for_timeout(300)
        dash.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / "dashboard.png"), clip=dash.bounding_box(), timeout=10_000)
        page.screenshot(path=str(artifacts / "dashboard-page.png"), full_page=True, timeout=5_000)

        # ---- Remove asks to confirm, then removes in the kernel
        remove = row("hourly").locator("button[data-action='remove']")
        remove.click()
        assert remove.inner_text() == "Confirm remove"
        assert probe.eval("'hourly' in s") == "True"
        remove.click()
        wait_for(lambda: rows.count() == 3, timeout=5, what="the removed row to go")
        assert probe.eval("'hourly' in s") == "False"

        # ---- a job added from elsewhere appears; the message rate with 1,000 jobs firing every second
        probe.run("def _noop():\n    pass\nfor _i in range(1000):\n    s.add(_noop, 'every 1s', name=f'bulk{_i:04d}')")
        wait_for(lambda: rows.count() == 1003, timeout=20, what="1,000 new rows")
        # (the sync Playwright API delivers websocket events while it waits: page.wait_for_timeout, not sleep)
        page.wait_for_timeout(1500)
        before = len(frames)
        page.wait_for_timeout(5000)
        window = frames[before:]
        rate = len(window) / 5
        kbytes = sum(window) / 5 / 1000
        fires = probe.eval("s.statistics().fires")
        print(f"\nbrowser, 1,000 jobs every 1s: {rate:.1f} comm messages/s ({kbytes:.0f} kB/s) "
              f"over the kernel websocket; fires so far {fires}")
        (artifacts / "message-rate.txt").write_text(f"{rate:.2f} comm msgs/s, {kbytes:.0f} kB/s with 1,000 jobs every 1s\n")
        assert 0 < rate <= 20
        bulk_runs = int(cell("bulk0500", "runs"))
        wait_for(lambda: int(cell("bulk0500", "runs")) > bulk_runs, timeout=5, what="bulk rows to update")
        dash.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / "dashboard-1000-jobs.png"), clip=dash.bounding_box(), timeout=10_000)
        probe.run("s.shutdown()")
    finally:
        probe.close()
