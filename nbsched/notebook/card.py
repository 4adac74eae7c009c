"""The job card: what a ``%%schedule`` cell shows - name, trigger in words, next run (countdown),
runs, last outcome and duration, missed runs, controls, and the job's own output area.

Cards refresh from one shared loop timer (once a second, only cards whose text changed send a comm
message) and on job events.  Where widgets cannot render, the card is an HTML/plain-text summary.
"""
from __future__ import annotations

import weakref
from html import escape
from typing import Any

from .._durations import format_duration
from ..history import Outcome
from ..job import JobState

_STATE_COLOURS = {
    "scheduled": "#2e7d32", "running": "#1565c0", "paused": "#8d6e00", "finished": "#616161",
    "failing": "#c62828", "removed": "#616161",
}


def _countdown(seconds: float) -> str:
    if seconds <= 0:
        return "due now"
    if seconds < 120:
        return f"in {seconds:.0f}s"
    return "in " + format_duration(round(seconds / 60) * 60)


def job_summary(sched: Any, job: Any) -> dict[str, str]:
    now = sched.clock.time()
    when = job.next_fire_time
    nxt = None if when is None else when.timestamp()
    state = job.state.value
    last = "-" if job.last_outcome is None else job.last_outcome.value
    if job.last_duration is not None and job.last_outcome is not None:
        last += f" in {format_duration(job.last_duration)}"
    note = ""
    if job.state is JobState.PAUSED and job.last_outcome is Outcome.INTERRUPTED:
        note = "interrupted by you and paused so it cannot freeze the kernel again - resume when fixed"
    elif job.missed:
        note = f"{job.missed} fire time(s) missed while the kernel was busy (see %schedule history {job.name})"
    return {
        "name": job.name,
        "trigger": job.describe(),
        "state": state,
        "next": "-" if nxt is None else _countdown(nxt - now),
        "next_at": "-" if job.next_fire_time is None else job.next_fire_time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "runs": str(job.runs),
        "errors": str(job.failures),
        "missed": str(job.missed),
        "last": last,
        "error": job.last_error if job.last_outcome in (Outcome.ERROR, Outcome.TIMEOUT) and job.last_error else "",
        "note": note,
    }


def summary_html(s: dict[str, str]) -> str:
    colour = _STATE_COLOURS.get(s["state"], "#333")
    html = (
        f"<div style='font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;line-height:1.5'>"
        f"<b>{escape(s['name'])}</b> &middot; {escape(s['trigger'])} &middot; "
        f"<span style='color:{colour};font-weight:600'>{escape(s['state'])}</span><br>"
        f"next run <b>{escape(s['next'])}</b> <span style='color:#777'>({escape(s['next_at'])})</span>"
        f" &middot; runs {escape(s['runs'])} &middot; errors {escape(s['errors'])}"
        f" &middot; missed {escape(s['missed'])} &middot; last {escape(s['last'])}"
    )
    if s["error"]:
        html += f"<br><span style='color:#c62828'>last error: {escape(s['error'][:300])}</span>"
    if s["note"]:
        html += f"<br><span style='color:#8d6e00'>{escape(s['note'])}</span>"
    return html + "</div>"


def summary_text(s: dict[str, str]) -> str:
    text = (f"job {s['name']!r}: {s['trigger']} - {s['state']}; next run {s['next']} ({s['next_at']}); "
            f"runs {s['runs']}, errors {s['errors']}, missed {s['missed']}; last {s['last']}")
    if s["error"]:
        text += f"\n  last error: {s['error']}"
    if s["note"]:
        text += f"\n  {s['note']}"
    return text


class JobCard:
    """A live card for one job (by name) of a scheduler (held weakly)."""

    def __init__(self, sched: Any, name: str):
        import ipywidgets as w

        self._sched = weakref.ref(sched)
        self.name = name
        self.retired = False
        self._dirty = True
        self._last_html = None
        self.info = w.HTML()
        self.pause_button = w.Button(description="Pause", layout=w.Layout(width="90px"))
        self.run_button = w.Button(description="Run now", layout=w.Layout(width="90px"))
        self.remove_button = w.Button(description="Remove", button_style="danger", layout=w.Layout(width="90px"))
        self.pause_button.on_click(lambda _: self._toggle_pause())
        self.run_button.on_click(lambda _: self._act("run_now"))
        self.remove_button.on_click(lambda _: self._act("remove"))
        children = [self.info, w.HBox([self.pause_button, self.run_button, self.remove_button])]
        job = sched.find(name)
        sink = getattr(job, "output", None) if job is not None else None
        if sink is not None:
            children.append(sink.widget)
        self.widget = w.VBox(children)
        self.widget.add_class("nbsched-card")
        self.refresh(force=True)

    # -- actions -------------------------------------------------------------------------------
    def _toggle_pause(self) -> None:
        sched = self._sched()
        if sched is None or self.name not in sched:
            return
        job = sched.get(self.name)
        (sched.resume if job.paused else sched.pause)(self.name)
        self.refresh(force=True)

    def _act(self, what: str) -> None:
        sched = self._sched()
        if sched is None or self.name not in sched:
            return
        getattr(sched, what)(self.name)
        self.refresh(force=True)

    # -- rendering -----------------------------------------------------------------------------
    def mark_dirty(self) -> None:
        self._dirty = True

    def summary(self) -> dict[str, str] | None:
        sched = self._sched()
        if sched is None:
            return None
        job = sched.find(self.name)
        if job is None:
            return None
        return job_summary(sched, job)

    def refresh(self, force: bool = False) -> None:
        if self.retired:
            return
        s = self.summary()
        if s is None:
            self.retire("removed")
            return
        html = summary_html(s)
        if html != self._last_html:
            self._last_html = html
            self.info.value = html
        paused = s["state"] == "paused"
        label = "Resume" if paused else "Pause"
        if self.pause_button.description != label:
            self.pause_button.description = label
            self.pause_button.button_style = "warning" if paused else ""
        self._dirty = False

    def retire(self, why: str) -> None:
        if self.retired:
            return
        self.retired = True
        self.info.value = (self._last_html or "") + f"<div style='color:#777'>({escape(why)})</div>"
        for b in (self.pause_button, self.run_button, self.remove_button):
            b.disabled = True

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        s = self.summary()
        if s is not None:
            bundle["text/plain"] = summary_text(s)
            bundle["text/html"] = summary_html(s)
        return bundle

    def __repr__(self) -> str:
        s = self.summary()
        return summary_text(s) if s is not None else f"<JobCard {self.name!r} (gone)>"


def ensure_refresher(state: Any) -> None:
    """One loop timer, once a second, refreshing every live card (only changed text is sent)."""
    if state.refresher is not None:
        return
    from .kernel import kernel_loop

    loop = kernel_loop()
    if loop is None:
        return

    def tick() -> None:
        for card in list(state.cards.values()):
            try:
                card.refresh()
            except Exception:  # a broken card must not stop the others
                pass
        state.refresher = loop.call_later(1.0, tick)

    state.refresher = loop.call_later(1.0, tick)


def jobs_table(sched: Any):
    """``%schedule list``: one row per job."""
    import pandas as pd

    rows = []
    for job in sched.jobs:
        s = job_summary(sched, job)
        rows.append({"job": job.name, "trigger": s["trigger"], "state": s["state"], "next_run": job.next_fire_time,
                     "runs": job.runs, "errors": job.failures, "missed": job.missed, "skipped": job.skipped,
                     "last": s["last"], "last_error": s["error"] or None})
    cols = ["job", "trigger", "state", "next_run", "runs", "errors", "missed", "skipped", "last", "last_error"]
    return pd.DataFrame(rows, columns=cols)
