"""The dashboard: one live widget showing every job of a scheduler, with controls.

    import nbsched
    nbsched.dashboard()            # in a notebook cell (or %schedule dashboard)

Why it is built like this:

* **One widget for the table.**  A tree of ipywidgets per row (an HBox of Labels and Buttons, each
  with its own Layout/Style model) costs several comm models per job: thousands at 1,000 jobs, each
  created, synced and rendered separately.  The table is instead ONE anywidget (a small ES module,
  ``_dashboard.js``, no build step) fed compact row arrays.  The root is a VBox (CSS class
  ``nbsched-dashboard``) holding that table and one slot for the selected job's output area (the
  job's own ``ipywidgets.Output``), so the model count is constant, whatever the number of jobs.
* **Deltas, batched and throttled.**  Scheduler events only mark job names dirty.  At most every
  ``min_interval`` seconds (default 0.2 s, so <= 5 flushes/s) one flush diffs the dirty rows against
  what was last sent and sends ONE custom comm message with the changed rows, the removed names, the
  scheduler summary and the selected job's detail.  A large flush also delays the next one so the
  stream stays under ``max_bytes_per_second`` (jupyter_server drops iopub traffic above 1 MB/s).
* **Countdowns tick in the browser.**  Rows carry next-fire timestamps and every message carries the
  kernel clock's ``now``; the front end counts down locally, so nothing is sent per job per second.
* **Catching up.**  A timer every ``refresh_interval`` (1 s) compares ``scheduler.version`` with the
  version last shown and, if it moved without events explaining it, diffs every row.  While a cell
  blocks the kernel nothing runs; the front end marks overdue countdowns, and the first timer after
  the block re-sends the truth.
* **Time comes from the scheduler's clock** (timers via ``clock.call_at``), so tests drive the
  throttle with :class:`nbsched.testing.FakeClock` and never sleep.
* **Weak, closable, many.**  The scheduler is held through a weakref; its event subscription holds
  the dashboard weakly too; :meth:`Dashboard.close` unsubscribes and stops the timers.  Any number of
  dashboards can show the same scheduler.
* **Fallbacks.**  Where widgets cannot render (nbconvert HTML, GitHub) the mimebundle's ``text/html``
  is a static table of the same information; a terminal gets ``text/plain``.

The scheduler never imports this module (dependencies point one way).

Wire protocol (kernel <-> ``_dashboard.js``; both sides must agree):

* front end -> kernel (custom messages): ``{"t": "hello"}`` (a view rendered: send a snapshot),
  ``{"t": "action", "action": "pause"|"resume"|"run_now"|"remove", "name": ...}``,
  ``{"t": "action", "action": "pause_all"|"resume_all"}``, ``{"t": "traceback", "name": ...}``.
  The selected job is the synced trait ``selected`` ("" = none).
* kernel -> front end: ``{"t": "snapshot"|"patch", "now": kernel time, "rows": [row, ...],
  "removed": [name, ...], "sched": {...}, "detail": {...} | None}`` (keys other than ``t`` and
  ``now`` are present only when they changed; a snapshot replaces everything),
  ``{"t": "traceback", "name", "text"}``, ``{"t": "notice", "level", "text"}``.
* a row is a list in :data:`ROW_FIELDS` order; times are POSIX seconds (or null).
"""
from __future__ import annotations

import json
import logging
import uuid
import weakref
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from .. import events as ev
from ..errors import NbschedError

# ipywidgets and anywidget are dependencies of nbsched (pyproject.toml): the card and the dashboard
# are the notebook front end, not an add-on.  Only this package imports them, and only lazily.
import anywidget
import ipywidgets
import traitlets

__all__ = ["Dashboard", "DashboardStatistics", "ROW_FIELDS"]

log = logging.getLogger("nbsched")

#: The fields of one row, in the order they are sent to the front end.
from .render import ROW_FIELDS  # noqa: E402

_HERE = Path(__file__).parent
_HISTORY_ROWS = 8  # history rows in the detail panel
_CHART_RUNS = 40  # runs in the detail chart
_WANTED = (
    ev.JobAdded, ev.JobModified, ev.JobRemoved, ev.JobPaused, ev.JobResumed, ev.JobFinished,
    ev.JobSubmitted, ev.JobExecuted, ev.JobFailed, ev.JobTimedOut, ev.JobCancelled, ev.JobInterrupted,
    ev.JobMissed, ev.JobMaxInstancesReached, ev.SchedulerEvent,
)
_JOB_ACTIONS = ("pause", "resume", "run_now", "remove")
_GLOBAL_ACTIONS = ("pause_all", "resume_all")


@dataclass(frozen=True)
class DashboardStatistics:
    """What a dashboard has sent: comm messages, their JSON bytes, flushes, rows shown."""

    messages: int
    bytes: int
    flushes: int
    rows: int


class DashboardTable(anywidget.AnyWidget):
    """The table, header and detail panel: one anywidget; see the module docstring for the protocol."""

    _esm = _HERE / "_dashboard.js"
    _css = _HERE / "_dashboard.css"
    #: The selected job's name ("" for none); set by a click in the browser or by Dashboard.select.
    selected = traitlets.Unicode("").tag(sync=True)


class Dashboard(ipywidgets.VBox):
    """A live view of every job of ``scheduler``, with per-job and global controls.

    ``Dashboard(scheduler, *, min_interval=0.2, refresh_interval=1.0, max_bytes_per_second=250_000)``
    - usually made by :func:`nbsched.dashboard`.  ``min_interval`` is the shortest time between two
    update messages, ``refresh_interval`` how often the scheduler's version is compared to catch
    changes no event announced, ``max_bytes_per_second`` the update stream's byte budget.

    Kernel-side API: :meth:`select`, :meth:`rows`, :meth:`flush`, :meth:`refresh`,
    :meth:`statistics`, :meth:`to_html`, :meth:`to_text`, :meth:`close`.
    """

    def __init__(self, scheduler: Any, *, min_interval: float = 0.2, refresh_interval: float = 1.0,
                 max_bytes_per_second: float = 250_000, **kwargs: Any):
        if not (min_interval > 0 and refresh_interval > 0 and max_bytes_per_second > 0):
            raise ValueError(
                f"min_interval={min_interval!r}, refresh_interval={refresh_interval!r} and "
                f"max_bytes_per_second={max_bytes_per_second!r} must all be positive (e.g. 0.2, 1.0, 250_000)"
            )
        self.table = DashboardTable()
        self._slot_title = ipywidgets.HTML()
        self._slot_note = ipywidgets.HTML()
        self.output_area = ipywidgets.VBox([self._slot_title, self._slot_note],
                                           layout=ipywidgets.Layout(display="none"))
        self.output_area.add_class("nbsched-output-slot")
        super().__init__([self.table, self.output_area], **kwargs)
        self.add_class("nbsched-dashboard")
        self.min_interval = float(min_interval)
        self.refresh_interval = float(refresh_interval)
        self.max_bytes_per_second = float(max_bytes_per_second)
        self._scheduler = weakref.ref(scheduler)
        self._clock = scheduler.clock
        self._rows: dict[str, tuple] = {}  # what the front end was last sent, in display order
        self._dirty: dict[str, None] = {}  # names to re-check at the next flush (ordered)
        self._full = True  # re-check every job at the next flush
        self._sched_sent: dict | None = None
        self._detail_sent: dict | None = None
        self._detail_dirty = True
        self._results_cache: tuple[Any, str] | None = None
        self._seen_version = -1
        self._next_allowed = float("-inf")
        self._flush_timer: Any = None
        self._tick_timer: Any = None
        self._closed = False
        self._messages = self._bytes = self._flushes = 0
        self._slot_widget: Any = None
        #: The display id of the static fallback (set when displayed in IPython), kept current.
        self.static_id: str | None = None
        self._static_version: int | None = None
        self._static_sent_at = float("-inf")

        me = weakref.ref(self)

        def on_event(event: ev.Event) -> None:
            dash = me()
            if dash is None or dash._closed:
                sub.unsubscribe()
                return
            dash._on_event(event)

        sub = scheduler.subscribe(on_event, kinds=_WANTED)
        # weakly: a subscription leads back to its scheduler (through the event bus)
        self._subscription = weakref.ref(sub)

        def on_msg(widget: Any, content: Any, buffers: Any) -> None:
            dash = me()
            if dash is not None:
                dash._on_msg(content)

        self.table.on_msg(on_msg)

        def on_selected(change: dict) -> None:
            dash = me()
            if dash is not None:
                dash._on_selected(change["new"])

        self.table.observe(on_selected, names="selected")
        self._arm_tick()

    # ================================================================= public API
    @property
    def scheduler(self) -> Any:
        """The scheduler shown, or None once it has been garbage-collected."""
        return self._scheduler()

    @property
    def selected(self) -> str | None:
        """The name of the selected job (its details and output are shown), or None."""
        return self.table.selected or None

    def select(self, name: str | None) -> None:
        """Select a job (show its details and output area); ``None`` clears the selection."""
        sched = self.scheduler
        if name and sched is not None and name not in sched:
            sched.get(name)  # raises JobLookupError listing the jobs that exist
        self.table.selected = name or ""

    def rows(self) -> list[dict[str, Any]]:
        """One dict per job as the dashboard shows it (keys: :data:`ROW_FIELDS`; times are POSIX seconds)."""
        sched = self.scheduler
        if sched is None:
            return []
        return [dict(zip(ROW_FIELDS, _row(job))) for job in sched.jobs]

    def flush(self) -> None:
        """Send pending changes now, ignoring the throttle."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._flush()

    def refresh(self) -> None:
        """Re-check every job and send what changed, now."""
        self._full = True
        self._detail_dirty = True
        self.flush()

    def statistics(self) -> DashboardStatistics:
        return DashboardStatistics(messages=self._messages, bytes=self._bytes, flushes=self._flushes,
                                   rows=len(self._rows))

    def close(self) -> None:
        """Stop listening to the scheduler, stop the timers and close the widgets (not the jobs' outputs)."""
        if not getattr(self, "_closed", True):  # (True also when __init__ failed half-way)
            self._closed = True
            sub = self._subscription()
            if sub is not None:
                sub.unsubscribe()
            for timer in (self._flush_timer, self._tick_timer):
                if timer is not None:
                    timer.cancel()
            self._flush_timer = self._tick_timer = None
            self.output_area.children = ()
            for widget in (self.table, self._slot_title, self._slot_note, self.output_area):
                widget.close()
        super().close()

    # ================================================================= renderings without widgets
    def to_text(self) -> str:
        """A plain-text table of the jobs (what a terminal shows)."""
        sched = self.scheduler
        if sched is None:
            return "nbsched dashboard: the scheduler is gone"
        now = sched.clock.time()
        jobs = sched.jobs
        head = f"nbsched dashboard: {_summary_text(sched, jobs)}"
        if not jobs:
            return head + "\n(no jobs yet: add one with sched.add(func, 'every 5m') or %%schedule every 5m)"
        table = [_STATIC_HEADS]
        notes: dict[int, str] = {}
        for values, state, error in _static_rows(sched, jobs, now):
            table.append(values)
            if state == "failing" and error:
                notes[len(table) - 1] = error
        widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
        out = [head]
        for i, line in enumerate(table):
            out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
            if i in notes:
                out.append(f"    ! {notes[i]}")
        if len(jobs) > _TEXT_ROWS:
            out.append(f"... {len(jobs) - _TEXT_ROWS} more jobs")
        return "\n".join(out)

    def to_html(self) -> str:
        """A static HTML table of the jobs (what nbconvert HTML and GitHub show instead of the widget)."""
        sched = self.scheduler
        if sched is None:
            return "<div class='nbsched-dashboard-static'><em>nbsched dashboard: the scheduler is gone</em></div>"
        now = sched.clock.time()
        jobs = sched.jobs
        cell = "padding:2px 8px;text-align:left;border-bottom:1px solid #e5e7eb"
        parts = [
            f"<div class='nbsched-dashboard-static {STATIC_CLASS}'>",
            f"<div><b>nbsched</b> &middot; {escape(_summary_text(sched, jobs))}</div>",
            "<table style='border-collapse:collapse;font-size:90%'><thead><tr>",
            *(f"<th style='{cell}'>{h.capitalize()}</th>" for h in _STATIC_HEADS),
            "</tr></thead><tbody>",
        ]
        for values, state, error in _static_rows(sched, jobs, now):
            failing = state == "failing"
            style = " style='background:#fee2e2;color:#991b1b'" if failing else ""
            parts.append(f"<tr class='nbsched-state-{state}'{style}>"
                         + "".join(f"<td style='{cell}'>{escape(v)}</td>" for v in values) + "</tr>")
            if failing and error:
                parts.append(f"<tr{style}><td colspan='{len(_STATIC_HEADS)}' style='{cell}'>&#9888; {escape(error)}</td></tr>")
        parts.append("</tbody></table>")
        if not jobs:
            parts.append("<div><em>no jobs yet</em></div>")
        elif len(jobs) > _TEXT_ROWS:
            parts.append(f"<div>&hellip; {len(jobs) - _TEXT_ROWS} more jobs</div>")
        parts.append("</div>")
        return "".join(parts)

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        # (IPython calls _ipython_display_ instead; this is for other renderers)
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = self.to_text()
        bundle["text/html"] = self.to_html()
        return bundle

    def _ipython_display_(self) -> None:
        """Two outputs: the live widget, and a static table kept current by display id (at most once
        per ``refresh_interval``, when something was recorded) - what a saved notebook, nbconvert
        HTML without network and GitHub show.  A rendered widget hides the static copy (CSS)."""
        from IPython.display import display

        bundle = super()._repr_mimebundle_() or {}
        bundle["text/plain"] = "nbsched dashboard (a live widget; its static table follows)"
        display(bundle, raw=True)
        if self.static_id is None:
            self.static_id = f"nbsched-dashboard-{uuid.uuid4().hex}"
        self._static_version = self._static_key()
        display({"text/plain": self.to_text(), "text/html": self.to_html()}, raw=True, display_id=self.static_id)

    def _static_key(self) -> Any:
        """What the static table depends on (besides countdowns): cheap to compare once a second."""
        sched = self.scheduler
        if sched is None:
            return None
        jobs = sched.jobs
        shown = jobs[:_TEXT_ROWS]
        from .kernel import request_serial

        # the request serial: re-sent once in each new cell, in case an update fell between two cells
        return (sched.version, sched.running, sched.paused, len(jobs), tuple(_row(job) for job in shown),
                tuple(getattr(getattr(job, "output", None), "version", 0) for job in shown), request_serial())

    def _update_static(self) -> None:
        if self.static_id is None:
            return
        from .kernel import request_running

        now = self._clock.time()
        if not request_running() and now < self._static_sent_at + _IDLE_STATIC_INTERVAL:
            # while no cell runs, a frontend that renders the widget hides this copy: refresh it
            # rarely (a notebook saved later still gets a recent table); while a cell runs (a
            # notebook executor), every refresh_interval
            return
        version = self._static_key()
        if version == self._static_version:
            return
        self._static_version = version
        self._static_sent_at = now
        from IPython.display import update_display

        from .kernel import in_latest_request

        # parented to the request running now, so notebook executors keep it
        in_latest_request(update_display, {"text/plain": self.to_text(), "text/html": self.to_html()},
                          raw=True, display_id=self.static_id)

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("nbsched dashboard" if cycle else self.to_text())

    # ================================================================= events and timers
    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.JobEvent):
            self._dirty[event.job] = None
            if event.job == self.table.selected:
                self._detail_dirty = True
        else:  # scheduler paused/resumed/shut down: every countdown changes meaning
            self._full = True
        self._request_flush()

    def _request_flush(self) -> None:
        if self._flush_timer is not None or self._closed:
            return
        when = max(self._clock.time(), self._next_allowed)
        self._flush_timer = self._call_at(when, "_flush_due")
        if self._flush_timer is None:  # no event loop (a plain script): send at once
            self._flush()

    def _call_at(self, when: float, method: str) -> Any:
        """Arm a timer on the scheduler's clock that calls ``method`` on this dashboard (held weakly)."""
        me = weakref.ref(self)

        def fire() -> None:
            dash = me()
            if dash is not None and not dash._closed:
                getattr(dash, method)()

        try:
            return self._clock.call_at(when, fire)
        except RuntimeError:  # no running event loop in this thread
            return None

    def _arm_tick(self) -> None:
        self._tick_timer = self._call_at(self._clock.time() + self.refresh_interval, "_tick")

    def _tick(self) -> None:
        self._tick_timer = None
        if self.comm is None or self.table.comm is None:  # closed some other way (Widget.close_all)
            self.close()
            return
        sched = self.scheduler
        if sched is None:
            self._flush()  # tells the front end the scheduler is gone; no more ticks
            return
        if sched.version != self._seen_version:
            self._full = True
            self._request_flush()
        try:
            self._update_static()
        except Exception:  # the fallback must never stop the live view
            log.exception("nbsched dashboard: updating the static fallback failed")
        if sched.running:  # after a shutdown nothing changes any more: the last flush says so
            self._arm_tick()

    def _flush_due(self) -> None:
        self._flush_timer = None
        self._flush()

    def _flush(self) -> None:
        if self._closed:
            return
        msg = self._diff()
        if msg is None:
            return
        size = self._push(msg)
        self._flushes += 1
        self._next_allowed = self._clock.time() + max(self.min_interval, size / self.max_bytes_per_second)

    def _diff(self) -> dict | None:
        """What changed since the last message, as a patch (None: nothing)."""
        msg: dict[str, Any] = {"t": "patch"}
        sched = self.scheduler
        if sched is None:
            if self._sched_sent is not None and self._sched_sent.get("gone"):
                return None
            self._sched_sent = {"gone": True}
            msg.update(rows=[], removed=list(self._rows), sched=self._sched_sent, detail=None)
            self._rows.clear()
            return msg
        changed: list[list] = []
        removed: list[str] = []
        if self._full:
            self._full = False
            self._dirty.clear()
            fresh: dict[str, tuple] = {}
            for job in sched.jobs:
                row = _row(job)
                fresh[job.name] = row
                if self._rows.get(job.name) != row:
                    changed.append(list(row))
            removed = [name for name in self._rows if name not in fresh]
            for name in removed:
                del self._rows[name]
            self._rows.update(fresh)
            self._detail_dirty = True
        else:
            dirty, self._dirty = self._dirty, {}
            for name in dirty:
                try:
                    job = sched.get(name)
                except NbschedError:
                    if self._rows.pop(name, None) is not None:
                        removed.append(name)
                    continue
                row = _row(job)
                if self._rows.get(name) != row:
                    self._rows[name] = row
                    changed.append(list(row))
        self._seen_version = sched.version
        if changed:
            msg["rows"] = changed
        if removed:
            msg["removed"] = removed
        summary = _sched_summary(sched, self._rows)
        if summary != self._sched_sent:
            self._sched_sent = msg["sched"] = summary
        selected = self.table.selected
        if selected and selected not in self._rows:
            self.table.selected = ""  # the selected job was removed
            selected = ""
        if self._detail_dirty or (selected and any(r[0] == selected for r in changed)):
            self._detail_dirty = False
            detail = self._build_detail(sched, selected) if selected else None
            if detail != self._detail_sent:
                self._detail_sent = msg["detail"] = detail
            self._update_slot(sched, selected)
        return msg if len(msg) > 1 else None

    def _push(self, msg: dict) -> int:
        msg["now"] = self._clock.time()
        size = len(json.dumps(msg, separators=(",", ":"), default=str))
        self.table.send(msg)
        self._messages += 1
        self._bytes += size
        return size

    # ================================================================= front-end messages
    def _on_msg(self, content: Any) -> None:
        if not isinstance(content, dict) or self._closed:
            return
        kind = content.get("t")
        try:
            if kind == "hello":
                self._send_snapshot()
            elif kind == "action":
                self._act(str(content.get("action")), content.get("name"))
            elif kind == "traceback":
                name = str(content.get("name"))
                self.table.send({"t": "traceback", "name": name, "text": self._traceback(name)})
        except Exception as exc:  # a click must never raise into the kernel's comm handler
            log.exception("nbsched dashboard: handling %r failed", content)
            self._notice(f"{type(exc).__name__}: {exc}")

    def _act(self, action: str, name: Any) -> None:
        sched = self.scheduler
        if sched is None:
            self._notice("the scheduler is gone")
            return
        try:
            if action in _GLOBAL_ACTIONS:
                sched.pause() if action == "pause_all" else sched.resume()
                self._full = True
            elif action in _JOB_ACTIONS:
                if not isinstance(name, str):
                    raise ValueError(f"action {action!r} needs a job name, got {name!r}")
                if action == "pause":
                    sched.pause(name)
                elif action == "resume":
                    sched.resume(name)
                elif action == "run_now":
                    sched.run_now(name)
                else:
                    sched.remove(name)
                self._dirty[name] = None
            else:
                raise ValueError(f"unknown dashboard action {action!r}: one of "
                                 f"{', '.join(_JOB_ACTIONS + _GLOBAL_ACTIONS)}")
        except NbschedError as exc:
            self._notice(str(exc))
        self._request_flush()

    def _notice(self, text: str, level: str = "error") -> None:
        if not self._closed:
            self.table.send({"t": "notice", "level": level, "text": text})

    def _send_snapshot(self) -> None:
        sched = self.scheduler
        msg: dict[str, Any] = {"t": "snapshot"}
        if sched is None:
            msg.update(rows=[], sched={"gone": True}, detail=None)
        else:
            self._rows = {job.name: _row(job) for job in sched.jobs}
            self._dirty.clear()
            self._full = False
            self._seen_version = sched.version
            self._sched_sent = _sched_summary(sched, self._rows)
            selected = self.table.selected
            self._detail_sent = self._build_detail(sched, selected) if selected else None
            self._detail_dirty = False
            msg.update(rows=[list(r) for r in self._rows.values()], sched=self._sched_sent, detail=self._detail_sent)
        self._push(msg)

    def _on_selected(self, name: str) -> None:
        self._detail_dirty = True
        sched = self.scheduler
        if sched is not None:
            self._update_slot(sched, name)
        self._request_flush()

    # ================================================================= the selected job
    def _update_slot(self, sched: Any, name: str) -> None:
        """Show the selected job's own Output widget (or a note) below the table."""
        job = sched.get(name) if name and name in sched else None
        widget = getattr(getattr(job, "output", None), "widget", None)
        if job is None:
            if self._slot_widget is not None or self.output_area.layout.display != "none":
                self._slot_widget = None
                self.output_area.children = (self._slot_title, self._slot_note)
                self.output_area.layout.display = "none"
            return
        title = f"<b>Output of {escape(name)}</b>"
        if self._slot_title.value != title:
            self._slot_title.value = title
        if widget is None:
            note = ("<i>This job has no output area: jobs added with the Python API print to the cell "
                    "that created them. Jobs from <code>%%schedule</code> collect their output here.</i>")
            if self._slot_note.value != note:
                self._slot_note.value = note
            widget = self._slot_note
        if widget is not self._slot_widget:
            self._slot_widget = widget
            self.output_area.children = (self._slot_title, widget)
        if self.output_area.layout.display != "flex":
            self.output_area.layout.display = "flex"

    def _traceback(self, name: str) -> str:
        sched = self.scheduler
        if sched is None or name not in sched:
            return f"no job named {name!r} any more"
        for row in reversed(sched.get(name).log.rows):
            err = row[7]
            if err is not None:
                return err.traceback or f"{err.type}: {err.message}"
        return "no error recorded for this job"

    def _build_detail(self, sched: Any, name: str) -> dict | None:
        if name not in sched:
            return None
        job = sched.get(name)
        tz = job.trigger.tz
        now = sched.clock.time()
        rows = list(job.log.rows)
        parts = [f"<div class='nbsched-detail-title'><b>{escape(name)}</b> &middot; {escape(job.describe())}"
                 f" &middot; <span class='nbsched-badge nbsched-badge-{job.state.value}'>{job.state.value}</span></div>",
                 "<div class='nbsched-detail-grid'>"]
        # next fire times
        if job.upstreams:
            upcoming = (f"<i>runs after {escape(' and '.join(job.upstreams))} (rule "
                        f"{escape(job.policy.trigger_rule)}): no fire times of its own</i>")
        elif job.trigger.kind == "file":
            upcoming = f"<i>runs when files matching {escape(job.trigger.pattern)} land</i>"
        elif job.state.value == "finished":
            upcoming = "<i>finished: no more fire times</i>"
        else:
            times = job.preview(5)
            upcoming = ("<ol>" + "".join(f"<li>{escape(t.strftime('%Y-%m-%d %H:%M:%S %Z'))}"
                                         f" <span class='nbsched-muted'>({escape(_relative(t.timestamp(), now))})</span></li>"
                                         for t in times) + "</ol>") if times else "<i>no future fire times</i>"
        if job.paused:
            upcoming = "<div class='nbsched-muted'>paused; on resume:</div>" + upcoming
        parts.append(f"<div><h4>Next 5 fire times</h4>{upcoming}</div>")
        parts.append(f"<div><h4>Recent runs</h4>{_chart_svg(rows[-_CHART_RUNS:])}</div>")
        parts.append("</div>")
        parts.append(f"<h4>Timeline</h4>{timeline_svg(name, rows[-_TIMELINE_ROWS:], tz, width=640)}")
        parts.append(f"<h4>History (last {_HISTORY_ROWS})</h4>{_history_html(rows[-_HISTORY_ROWS:], tz, now)}")
        parts.append(f"<h4>Results (last 5 rows)</h4>{self._results_html(job)}")
        executor = job.policy.executor
        if executor != "loop":  # where it runs; a cluster's own dashboard is a click away
            client = getattr(sched.executors.get(executor), "client", None)
            link = getattr(client, "dashboard_link", None) if client is not None else None
            where = escape(executor)
            address = getattr(getattr(client, "scheduler", None), "address", None)
            if address:
                where += f" (cluster {escape(str(address))})"
            if isinstance(link, str) and link.startswith(("http://", "https://")):
                where += (f" &middot; <a class='nbsched-cluster-link' href='{escape(link, quote=True)}' "
                          "target='_blank' rel='noopener'>Dask dashboard</a>")
            parts.append(f"<h4>Runs on</h4><div class='nbsched-runs-on'>{where}</div>")
        downstream = sched.downstream_of(name)
        if job.upstreams or downstream:  # a workflow: where this job sits in it
            ups = ", ".join(map(escape, job.upstreams)) or "none (a root)"
            downs = ", ".join(map(escape, downstream)) or "none"
            parts.append(f"<h4>Workflow</h4><div class='nbsched-flow'>runs after: {ups} &middot; "
                         f"rule {escape(job.policy.trigger_rule)} &middot; jobs after it: {downs}</div>"
                         f"<div class='nbsched-graph'>{sched.graph(name).to_svg()}</div>")
        for backfill in sched.backfills(name):
            parts.append(f"<h4>Backfill in progress</h4><div class='nbsched-backfill'>{backfill.done} of "
                         f"{backfill.total} runs, {backfill.failed} failed, {backfill.running} running</div>")
        if job.last_error:
            tb = self._traceback(name)
            parts.append(f"<h4>Last error</h4><div class='nbsched-error-text'>{escape(job.last_error)}</div>"
                         f"<details><summary>traceback</summary><pre class='nbsched-traceback'>{escape(tb)}</pre></details>")
        return {"name": name, "html": "".join(parts)}

    def _results_html(self, job: Any) -> str:
        try:
            frame = job.results()
        except Exception as exc:  # an odd result must not break the dashboard
            return f"<i>results unavailable: {escape(type(exc).__name__)}: {escape(str(exc))}</i>"
        cache = self._results_cache
        if cache is not None and cache[0] is frame:
            return cache[1]
        if len(frame) == 0:
            html = "<i>no results yet (a job's non-None return values collect here)</i>"
        else:
            tail = frame.tail(5).copy()
            for column in tail.columns:
                if hasattr(tail[column], "dt") and hasattr(tail[column].dt, "strftime"):
                    tail[column] = tail[column].dt.strftime("%Y-%m-%d %H:%M:%S")
            html = tail.to_html(max_cols=10, border=0, classes="nbsched-results", na_rep="")
            if len(frame) > 5:
                html = f"<div class='nbsched-muted'>{len(frame)} rows in all: sched.results({job.name!r})</div>" + html
        self._results_cache = (frame, html)
        return html


# ===================================================================== rows and formatting
# (shared with the card and the fallbacks: nbsched/notebook/render.py)
from .render import (  # noqa: E402
    STATIC_CLASS, STATIC_HEADS as _STATIC_HEADS, TEXT_ROWS as _TEXT_ROWS, chart_svg,
    history_html as _history_html, job_row as _row, relative as _relative,
    scheduler_line as _summary_text, static_rows as _static_rows, timeline_svg, zone_name as _zone_name,
)

_TIMELINE_ROWS = 400  # history rows drawn in the detail panel's timeline
_IDLE_STATIC_INTERVAL = 10.0  # seconds between static-fallback refreshes while no cell runs


def _chart_svg(rows: list[tuple]) -> str:
    return chart_svg(rows, slots=_CHART_RUNS)


def _sched_summary(sched: Any, rows: dict[str, tuple]) -> dict:
    failing = running = 0
    for r in rows.values():
        if r[2] == "failing":
            failing += 1
        elif r[2] == "running":
            running += 1
    stats = sched.statistics()
    return {"paused": sched.paused, "shutdown": not sched.running, "jobs": len(rows), "failing": failing,
            "running": running, "fires": stats.fires, "errors": stats.errors, "tz": _zone_name(sched.tz)}
