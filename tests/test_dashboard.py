"""The dashboard's kernel side, without a browser: rows, controls, throttling, fallbacks.

Frontend messages are fed through the widget's real message handler (``_handle_msg`` with the comm
message shape a browser sends); what the kernel sends is recorded at the comm level by replacing
``comm.create_comm`` with a recording comm, so message counts are real comm messages.  Time is a
FakeClock (the ``clock`` and ``sched`` fixtures of tests/conftest.py): the throttle runs on the
scheduler's clock, so nothing sleeps.
"""
from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
from pathlib import Path

import comm
import ipywidgets
import pytest
from comm.base_comm import BaseComm
from ipywidgets.widgets.widget import _instances as widget_instances

from datetime import datetime, timezone

import nbsched
from nbsched import JobState
from nbsched.notebook.dashboard import ROW_FIELDS, Dashboard

ROOT = Path(__file__).resolve().parents[1]


class RecordingComm(BaseComm):
    log: list = []

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        self.log.append((self.comm_id, msg_type, data))


@pytest.fixture
def sent(monkeypatch):
    """Every comm message any widget publishes: (comm_id, msg_type, data)."""
    log: list = []
    monkeypatch.setattr(RecordingComm, "log", log)
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: RecordingComm(*a, **k))
    return log


@pytest.fixture
def dashboards():
    made: list[Dashboard] = []

    def make(scheduler, **kwargs) -> Dashboard:
        d = Dashboard(scheduler, **kwargs)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def ok():
    return {"value": 1}


def boom():
    raise ValueError("boom")


def frontend(dash: Dashboard, content: dict) -> None:
    """Deliver a custom message from the browser, exactly as ipywidgets receives it."""
    dash.table._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def click_select(dash: Dashboard, name: str) -> None:
    """The browser setting the synced ``selected`` trait (a row click)."""
    dash.table._handle_msg({"content": {"data": {"method": "update", "state": {"selected": name}}}, "buffers": []})


def custom(sent: list, dash: Dashboard) -> list[dict]:
    """The custom messages the dashboard's table sent, in order."""
    cid = dash.table.comm.comm_id
    return [d["content"] for c, t, d in sent if c == cid and t == "comm_msg" and d.get("method") == "custom"]


def comm_msgs(sent: list) -> list:
    return [m for m in sent if m[1] == "comm_msg"]


def row(dash: Dashboard, name: str) -> dict:
    return next(r for r in dash.rows() if r["name"] == name)


# ---------------------------------------------------------------------------------- rows and states
async def test_rows_show_every_job_with_its_state(sched, clock, dashboards):
    async def slow():
        await clock.sleep(30)

    sched.add(ok, "every 10s")
    sched.add(boom, "every 10s")
    sched.add(slow, "every 10s")
    sched.add(ok, "every 10s", name="held", paused=True)
    sched.add(ok, "in 5s", name="once")
    dash = dashboards(sched)
    await clock.advance(11)
    rows = {r["name"]: r for r in dash.rows()}
    assert list(rows) == ["ok", "boom", "slow", "held", "once"]
    assert {n: r["state"] for n, r in rows.items()} == {
        "ok": "scheduled", "boom": "failing", "slow": "running", "held": "paused", "once": "finished"}
    assert rows["ok"]["trigger"] == "every 10s"
    assert rows["ok"]["next"] == pytest.approx(clock.time() + 9)
    assert rows["ok"]["last"] == pytest.approx(clock.time() - 1)
    assert rows["ok"]["outcome"] == "success" and rows["ok"]["runs"] == 1 and rows["ok"]["errors"] == 0
    assert rows["boom"]["outcome"] == "error" and rows["boom"]["errors"] == 1
    assert rows["boom"]["error"] == "ValueError: boom"
    assert rows["held"]["next"] is None and rows["once"]["next"] is None
    assert set(rows["ok"]) == set(ROW_FIELDS)


async def test_root_widget_is_one_table_whatever_the_number_of_jobs(sched, clock, dashboards, sent):
    for i in range(1000):
        sched.add(ok, "every 1s", name=f"job{i}")
    before = len(widget_instances)
    dash = dashboards(sched)
    created = len(widget_instances) - before
    assert "nbsched-dashboard" in dash._dom_classes
    assert dash.table in dash.children
    assert created <= 12, f"{created} widget models for 1,000 jobs: the table must be one widget"
    opened = [m for m in sent if m[1] == "comm_open"]
    assert len(opened) == created


async def test_hello_sends_a_snapshot_of_every_row(sched, clock, dashboards, sent):
    sched.add(ok, "every 10s")
    sched.add(boom, "every 10s")
    dash = dashboards(sched)
    await clock.advance(10)
    frontend(dash, {"t": "hello"})
    snap = custom(sent, dash)[-1]
    assert snap["t"] == "snapshot"
    assert [r[0] for r in snap["rows"]] == ["ok", "boom"]
    assert snap["sched"]["jobs"] == 2 and snap["sched"]["failing"] == 1 and snap["sched"]["paused"] is False
    assert snap["now"] == clock.time()
    json.dumps(snap)  # the whole message is plain JSON


# ---------------------------------------------------------------------------------- controls
async def test_clicks_pause_resume_run_now_and_remove_act_on_the_scheduler(sched, clock, dashboards, sent):
    sched.add(ok, "every 10s")
    sched.add(boom, "every 10s")
    dash = dashboards(sched)
    await clock.advance(1)

    frontend(dash, {"t": "action", "action": "pause", "name": "ok"})
    assert sched.get("ok").state is JobState.PAUSED
    await clock.advance(0.5)
    assert custom(sent, dash)[-1]["rows"][0][:3] == ["ok", "every 10s", "paused"]

    frontend(dash, {"t": "action", "action": "resume", "name": "ok"})
    assert sched.get("ok").state is JobState.SCHEDULED

    frontend(dash, {"t": "action", "action": "run_now", "name": "ok"})
    await clock.advance(0)
    assert sched.get("ok").successes == 1
    await clock.advance(0.5)
    assert row(dash, "ok")["runs"] == 1

    frontend(dash, {"t": "action", "action": "remove", "name": "boom"})
    assert "boom" not in sched
    await clock.advance(0.5)
    assert custom(sent, dash)[-1]["removed"] == ["boom"]


async def test_pause_all_and_resume_all(sched, clock, dashboards, sent):
    sched.add(ok, "every 10s")
    dash = dashboards(sched)
    frontend(dash, {"t": "action", "action": "pause_all"})
    assert sched.paused
    await clock.advance(0.5)
    assert custom(sent, dash)[-1]["sched"]["paused"] is True
    await clock.advance(30)
    assert sched.get("ok").successes == 0
    frontend(dash, {"t": "action", "action": "resume_all"})
    assert not sched.paused
    await clock.advance(0.5)
    assert custom(sent, dash)[-1]["sched"]["paused"] is False


async def test_a_bad_click_becomes_a_notice_not_an_exception(sched, clock, dashboards, sent):
    sched.add(ok, "every 10s")
    dash = dashboards(sched)
    frontend(dash, {"t": "action", "action": "pause", "name": "nope"})
    notice = custom(sent, dash)[-1]
    assert notice["t"] == "notice" and "no job named 'nope'" in notice["text"] and "'ok'" in notice["text"]
    frontend(dash, {"t": "action", "action": "explode", "name": "ok"})
    assert "unknown dashboard action 'explode'" in custom(sent, dash)[-1]["text"]
    frontend(dash, "not a dict")  # ignored
    assert sched.get("ok").state is JobState.SCHEDULED


async def test_traceback_is_one_request_away(sched, clock, dashboards, sent):
    sched.add(boom, "every 10s")
    dash = dashboards(sched)
    await clock.advance(10)
    frontend(dash, {"t": "traceback", "name": "boom"})
    reply = custom(sent, dash)[-1]
    assert reply["t"] == "traceback" and reply["name"] == "boom"
    assert "Traceback (most recent call last)" in reply["text"] and "ValueError: boom" in reply["text"]


# ---------------------------------------------------------------------------------- selection
async def test_selecting_a_job_shows_history_results_chart_and_next_fire_times(sched, clock, dashboards, sent):
    sched.add(ok, "every 10s")
    sched.add(boom, "every 10s")
    dash = dashboards(sched)
    await clock.advance(30)
    click_select(dash, "ok")
    assert dash.selected == "ok"
    await clock.advance(0.5)
    detail = custom(sent, dash)[-1]["detail"]
    assert detail["name"] == "ok"
    html = detail["html"]
    assert "Next 5 fire times" in html and html.count("<li>") == 5
    assert "2026-01-05 09:00:40 UTC" in html
    chart = html[html.index("<svg class='nbsched-chart'"):]
    assert chart[:chart.index("</svg>")].count("<rect") == 3  # one bar per run
    timeline = html[html.index("<div class='nbsched-timeline'"):]
    assert timeline[:timeline.index("</svg>")].count("class='nbsched-run ") == 3  # one mark per run
    assert "History" in html and html.count("nbsched-outcome-success") == 3
    assert "nbsched-results" in html and "value" in html  # the results frame preview
    # an API job has no output area: a note is shown in the slot instead
    assert dash.output_area.layout.display == "flex"
    assert "no output area" in dash.output_area.children[1].value

    dash.select("boom")
    await clock.advance(0.5)
    html = custom(sent, dash)[-1]["detail"]["html"]
    assert "Last error" in html and "ValueError: boom" in html and "Traceback (most recent call last)" in html
    assert "nbsched-outcome-error" in html

    dash.select(None)
    await clock.advance(0.5)
    assert custom(sent, dash)[-1]["detail"] is None
    assert dash.output_area.layout.display == "none"
    with pytest.raises(nbsched.JobLookupError, match="no job named 'nope'"):
        dash.select("nope")


async def test_the_selected_jobs_own_output_widget_is_shown(sched, clock, dashboards):
    import asyncio

    from nbsched.notebook.kernel import OutputSink  # what the %%schedule magic attaches as job.output

    sink = OutputSink(loop=asyncio.get_running_loop())
    job = sched.add(ok, "every 10s")
    job.output = sink
    dash = dashboards(sched)
    dash.select("ok")
    assert dash.output_area.children[1] is sink.widget
    assert "Output of ok" in dash.output_area.children[0].value
    dash.close()
    assert sink.widget.comm is not None, "closing the dashboard must not close the job's output"
    sink.widget.close()


async def test_removing_the_selected_job_clears_the_selection(sched, clock, dashboards, sent):
    sched.add(ok, "every 10s")
    dash = dashboards(sched)
    dash.select("ok")
    await clock.advance(0.5)
    sched.remove("ok")
    await clock.advance(0.5)
    assert dash.selected is None
    last = custom(sent, dash)[-1]
    assert last["removed"] == ["ok"] and last["detail"] is None


# ---------------------------------------------------------------------------------- live updates
async def test_jobs_added_or_removed_anywhere_appear_and_disappear(sched, clock, dashboards, sent):
    one = dashboards(sched)
    two = dashboards(sched)
    sched.add(ok, "every 10s", name="a")
    await clock.advance(0.5)
    for dash in (one, two):
        assert [r[0] for r in custom(sent, dash)[-1]["rows"]] == ["a"]
    frontend(one, {"t": "action", "action": "remove", "name": "a"})  # removed from the other dashboard
    await clock.advance(0.5)
    assert custom(sent, two)[-1]["removed"] == ["a"]
    one.close()
    sched.add(ok, "every 10s", name="b")
    await clock.advance(0.5)
    assert [r[0] for r in custom(sent, two)[-1]["rows"]] == ["b"]


async def test_nothing_is_sent_while_nothing_changes(sched, clock, dashboards, sent):
    sched.add(ok, "every 1h")
    dash = dashboards(sched)
    await clock.advance(1)
    sent.clear()
    await clock.advance(600)  # countdowns tick in the browser: no message per job per second
    assert comm_msgs(sent) == []


async def test_throttled_to_a_few_messages_a_second_with_1000_jobs(sched, clock, dashboards, sent):
    # Jobs added 1 ms apart: their fire times are spread over each second, the worst case for batching.
    for i in range(1000):
        sched.add(ok, "every 1s", name=f"job{i}")
        clock.jump(0.001)
    dash = dashboards(sched)
    frontend(dash, {"t": "hello"})
    await clock.advance(1)
    sent.clear()
    await clock.advance(10)
    assert sched.statistics().fires >= 10_000
    msgs = comm_msgs(sent)
    rate = len(msgs) / 10
    size = sum(len(json.dumps(d)) for _, _, d in msgs) / 10
    print(f"\n1,000 jobs every 1s: {rate:.1f} comm messages/s, {size / 1000:.0f} kB/s")
    assert rate <= 1 / dash.min_interval + 1  # <= 6/s; the issue asks for <= 20/s
    assert size < 1_000_000  # jupyter_server drops iopub traffic above 1 MB/s
    # every message is a batch: together they carry every row's latest state
    dash.flush()
    shown: dict = {}
    for c in custom(sent, dash):
        shown.update({r[0]: r for r in c.get("rows", [])})
    assert len(shown) == 1000
    assert all(shown[j.name][7] == j.successes for j in sched.jobs)


async def test_a_large_flush_delays_the_next_one(sched, clock, dashboards, sent):
    for i in range(300):
        sched.add(ok, "every 1s", name=f"job{i}")
    dash = dashboards(sched, min_interval=0.05, max_bytes_per_second=5_000)
    await clock.advance(1)
    sent.clear()
    await clock.advance(10)
    size = sum(len(json.dumps(d)) for _, _, d in comm_msgs(sent))
    assert size / 10 < 2 * 5_000 + 30_000  # about the budget (one big message may overshoot)


async def test_catches_up_after_the_kernel_was_blocked(sched, clock, dashboards, sent):
    sched.add(ok, "every 2s")
    dash = dashboards(sched)
    await clock.advance(1)
    clock.jump(10)  # a blocking cell: no timer ran for 10 s
    await clock.advance(0)  # the loop runs again
    await clock.advance(0.5)
    rows = {r[0]: r for c in custom(sent, dash) for r in c.get("rows", [])}
    assert rows["ok"][3] > clock.time() - 0.5  # the next fire time shown is in the future again
    assert rows["ok"] == list(dash._rows["ok"])


async def test_a_change_no_event_announced_is_found_by_the_version_check(sched, clock, dashboards, sent):
    sched.add(ok, "every 1h")
    dash = dashboards(sched)
    await clock.advance(0.5)
    dash._subscription().unsubscribe()  # simulate lost events
    sched.pause("ok")
    await clock.advance(dash.refresh_interval + dash.min_interval)
    assert custom(sent, dash)[-1]["rows"][0][2] == "paused"


async def test_scheduler_shutdown_is_shown(sched, clock, dashboards, sent):
    sched.add(ok, "every 1h")
    dash = dashboards(sched)
    sched.shutdown()
    dash.flush()
    assert custom(sent, dash)[-1]["sched"]["shutdown"] is True


# ---------------------------------------------------------------------------------- lifetime
async def test_holds_the_scheduler_weakly(clock, sent):
    sched = nbsched.Scheduler(clock=clock)
    dash = Dashboard(sched)
    del sched
    gc.collect()
    assert dash.scheduler is None
    await clock.advance(2)  # the refresh timer notices
    last = custom(sent, dash)[-1]
    assert last["sched"] == {"gone": True}
    assert "scheduler is gone" in dash.to_text() and "scheduler is gone" in dash.to_html()
    assert clock.pending == 0, "a dashboard of a vanished scheduler keeps no timer"
    dash.close()


async def test_close_unsubscribes_and_stops_timers(sched, clock, sent):
    listeners = len(sched.events._subs)
    pending = clock.pending
    dash = Dashboard(sched)
    assert len(sched.events._subs) == listeners + 1
    dash.close()
    assert len(sched.events._subs) == listeners
    assert clock.pending == pending
    sent.clear()
    sched.add(ok, "every 1s")
    await clock.advance(5)
    assert comm_msgs(sent) == []
    dash.close()  # twice is fine


async def test_widgets_closed_behind_its_back_stop_the_dashboard(sched, clock):
    listeners = len(sched.events._subs)
    dash = Dashboard(sched)
    for widget in (dash.table, dash):  # as Widget.close_all() would, without Dashboard.close
        ipywidgets.Widget.close(widget)
    await clock.advance(2)
    assert len(sched.events._subs) == listeners and clock.pending == 0


async def test_a_forgotten_dashboard_does_not_keep_listening(sched, clock):
    dash = Dashboard(sched)
    dash.table.close()
    dash.output_area.close()
    ipywidgets.Widget.close(dash)  # the widget registry lets go; nothing else holds it
    del dash
    gc.collect()
    sched.add(ok, "every 1s")
    await clock.advance(2)  # the weak callback finds it gone and unsubscribes
    assert sched.events._subs == []


# ---------------------------------------------------------------------------------- fallbacks
async def test_html_fallback_is_a_table_with_failing_rows_in_red(sched, clock, dashboards):
    sched.add(ok, "every 10s")
    sched.add(boom, "every 10s", name="<b>bad</b>")
    dash = dashboards(sched)
    await clock.advance(10)
    html = dash._repr_html_()
    assert "<table" in html and "ok" in html and "every 10s" in html
    assert "&lt;b&gt;bad&lt;/b&gt;" in html and "<b>bad</b>" not in html
    assert "background:#fee2e2" in html and "ValueError: boom" in html
    bundle = dash._repr_mimebundle_()
    assert set(bundle) == {"application/vnd.jupyter.widget-view+json", "text/html", "text/plain"}
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == dash.model_id
    assert "VBox(" not in bundle["text/plain"]


async def test_text_fallback_for_terminals(sched, clock, dashboards):
    sched.add(ok, "every 10s")
    sched.add(boom, "every 10s")
    dash = dashboards(sched)
    await clock.advance(10)
    text = repr(dash)
    lines = text.splitlines()
    assert lines[0] == "nbsched dashboard: 2 jobs, 1 failing, scheduler running"
    assert lines[1].split() == ["job", "trigger", "state", "next", "run", "last", "run", "duration", "outcome",
                                "runs", "errors", "last", "output"]
    assert lines[2].split()[:5] == ["ok", "every", "10s", "scheduled", "in"]
    assert "failing" in lines[3] and lines[4].strip() == "! ValueError: boom"
    from IPython.lib.pretty import pretty

    assert pretty(dash) == text


async def test_empty_scheduler_renders(sched, dashboards):
    dash = dashboards(sched)
    assert "no jobs yet" in dash.to_text() and "no jobs yet" in dash.to_html()


def test_bad_options_say_what_to_do(clock):
    with pytest.raises(ValueError, match="must all be positive"):
        Dashboard(nbsched.Scheduler(clock=clock), min_interval=0)


# ---------------------------------------------------------------------------------- architecture
def test_the_scheduler_never_imports_the_dashboard():
    code = ("import sys, nbsched, nbsched.engine; s = nbsched.Scheduler(); "
            "bad = [m for m in ('nbsched.notebook', 'ipywidgets', 'anywidget') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    for path in (ROOT / "nbsched").glob("*.py"):
        if path.name not in ("dashboard.py", "__init__.py", "_magics.py"):
            assert not re.search(r"^\s*(from\s+\S*dashboard|import\s+\S*dashboard|from\s+\.\s+import\s+.*dashboard)",
                                 path.read_text(), re.M), path


def test_the_dashboard_reads_no_wall_clock():
    source = (ROOT / "nbsched" / "notebook" / "dashboard.py").read_text()
    for forbidden in ("datetime.now(", "time.time(", "asyncio.sleep(", "time.monotonic("):
        assert forbidden not in source


async def test_workflow_jobs_show_their_place_and_backfills_are_marked(clock, dashboards, sent):
    await clock.set(datetime(2026, 1, 20, 12, 0, tzinfo=timezone.utc))
    sched = nbsched.Scheduler(clock=clock, tz="UTC")

    async def slow():
        await clock.sleep(3600)

    sched.add(slow, "daily at 02:00", name="daily")
    sched.add(ok, "after daily", name="report", trigger_rule="all_done")
    dash = dashboards(sched)
    handle = sched.backfill("daily", "2026-01-01", "2026-01-03")
    await clock.advance(1)
    assert dash.rows()[0]["trigger"] == "daily at 02:00 (UTC) \u00b7 backfill 0/3"
    dash.select("daily")
    await clock.advance(0.5)
    html = custom(sent, dash)[-1]["detail"]["html"]
    assert "runs after: none (a root) &middot; rule all_success &middot; jobs after it: report" in html
    assert "<h4>Backfill in progress</h4><div class='nbsched-backfill'>0 of 3 runs, 0 failed, 1 running</div>" in html
    graph = html[html.index("<div class='nbsched-graph'>"):]
    assert ">daily<" in graph and ">report<" in graph and "all_done" in graph  # both nodes, the rule on the edge
    await clock.advance(3 * 3600)
    await handle
    await clock.advance(1)
    assert dash.rows()[0]["trigger"] == "daily at 02:00 (UTC)"
    sched.remove("report")
    sched.remove("daily")
