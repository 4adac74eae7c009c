"""The job card: what a ``%%schedule`` cell shows (and a cell that added jobs with the Python API:
see ``api_jobs``) - name, trigger in words, next run (countdown), runs, last outcome and duration,
missed runs, controls, and the job's own output area.

Cards refresh from one shared loop timer (once a second, only cards whose text changed send a comm
message) and on job events.  Where widgets cannot render, the card is an HTML/plain-text summary; in
a console (``jupyter console``) only that summary is shown.
"""
from __future__ import annotations

import logging
import uuid
import weakref
from html import escape
from typing import Any

from .._durations import format_duration
from ..history import Outcome
from . import render
from .render import job_summary, summary_html, summary_text  # noqa: F401 - the card's words live in render

log = logging.getLogger("nbsched")

#: Shown by a card's live widget: hides the static fallbacks in a frontend that renders widgets
#: (so JupyterLab shows each card once), while nbconvert HTML, GitHub and terminals show them.
HIDE_STATIC = (f"<style>.jp-OutputArea-child:has(.{render.STATIC_CLASS}),"
               f".output_area:has(.{render.STATIC_CLASS}){{display:none}}</style>")


class TextCard:
    """What ``%%schedule`` shows where there is no kernel (terminal IPython): the job's summary as text,
    as of when it is shown (the job's own output appears where you are, above the prompt)."""

    def __init__(self, sched: Any, name: str):
        self._sched = weakref.ref(sched)
        self.name = name

    def __repr__(self) -> str:
        sched = self._sched()
        job = None if sched is None else sched.find(self.name)
        return summary_text(job_summary(sched, job)) if job is not None else f"job {self.name!r} (gone)"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


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
        self._sink = sink
        if sink is not None:
            children.append(sink.widget)
        #: The display id of the static fallback (set when the card is displayed), kept current.
        self.static_id: str | None = None
        self._static_sent: tuple | None = None
        self._note = ""
        self._last_summary: dict[str, str] | None = None
        self._cell_start_version = 0
        self._cell_start_html: str | None = None
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
        if self.name not in sched:
            return None
        return job_summary(sched, sched.get(self.name))

    def refresh(self, force: bool = False, *, cell_start: bool = False) -> None:
        """Bring the card up to date (only changed text is sent).  ``cell_start``: called as a cell
        starts (see ``magics._pre_run_cell``): the job's output area is re-sent if it changed since
        the last cell start, so a notebook executor saves it even if an update fell between cells."""
        if self.retired:
            return
        s = self.summary()
        if s is None:
            self.retire("removed")
            return
        from .kernel import in_latest_request

        # widget changes and the static update are parented to the request running now, so a
        # notebook executor (nbclient, papermill, nbconvert) keeps them (see kernel.in_latest_request)
        in_latest_request(self._apply, s)
        if cell_start:
            in_latest_request(self._resync)

    def _resync(self) -> None:
        sink = self._sink
        if sink is not None:
            sink.flush()  # (pending output first: on the loop thread this sends at once)
            if sink.version != self._cell_start_version:
                self._cell_start_version = sink.version
                sink.widget.send_state("outputs")
        if self._last_html != self._cell_start_html:
            self._cell_start_html = self._last_html
            self.info.send_state("value")

    def _apply(self, s: dict[str, str]) -> None:
        self._last_summary = s
        html = summary_html(s)
        if html != self._last_html:
            self._last_html = html
            self.info.value = html + HIDE_STATIC
        paused = s["state"] == "paused"
        label = "Resume" if paused else "Pause"
        if self.pause_button.description != label:
            self.pause_button.description = label
            self.pause_button.button_style = "warning" if paused else ""
        self._update_static(s)
        self._dirty = False

    # -- the static fallback -----------------------------------------------------------------
    def _outputs(self) -> tuple:
        sink = self._sink
        return tuple(sink.outputs) if sink is not None else ()

    def static_bundle(self, s: dict[str, str] | None = None) -> dict[str, str]:
        """The card as text/plain and text/html: its summary and the job's last output, as of now."""
        if s is None:
            s = self.summary()
        outputs = self._outputs()
        return {"text/plain": render.card_static_text(s, outputs, self.name, self._note),
                "text/html": render.card_static_html(s, outputs, self.name, self._note)}

    def _static_key(self, s: dict[str, str] | None) -> tuple:
        from .kernel import request_serial

        # the request serial: re-sent once in each new cell, in case an update fell between two cells
        return (None if s is None else tuple(s.values()), self._sink.version if self._sink is not None else 0,
                self._note, request_serial())

    def _update_static(self, s: dict[str, str] | None) -> None:
        if self.static_id is None:
            return
        key = self._static_key(s)
        if key == self._static_sent:
            return
        self._static_sent = key
        from IPython.display import update_display

        update_display(self.static_bundle(s), raw=True, display_id=self.static_id)

    def _ipython_display_(self) -> None:
        """Two outputs: the live widget, and a static summary (with the job's last output) that is
        updated in place as the job runs - what a saved notebook, nbconvert HTML and GitHub show.
        Asked from a console (``jupyter console``, qtconsole: see ``kernel.frontend_kind``), only the
        summary: the job's output reaches the console as text lines (``kernel.TextEcho``)."""
        from IPython.display import display

        from .kernel import CONSOLE, frontend_kind

        s = self.summary()
        if frontend_kind() != CONSOLE:  # (a console renders no widget: it gets the summary only)
            bundle = self.widget._repr_mimebundle_() or {}
            bundle["text/plain"] = f"nbsched card for job {self.name!r} (a live widget; its static summary follows)"
            display(bundle, raw=True)
        if self.static_id is None:
            self.static_id = f"nbsched-card-{uuid.uuid4().hex}"
        self._static_sent = self._static_key(s)
        display(self.static_bundle(s), raw=True, display_id=self.static_id)

    def retire(self, why: str) -> None:
        if self.retired:
            return
        from .kernel import in_latest_request

        self.retired = True
        self._note = why
        in_latest_request(self._retire, why)

    def _retire(self, why: str) -> None:
        self.info.value = (self._last_html or "") + f"<div style='color:#777'>({escape(why)})</div>" + HIDE_STATIC
        for b in (self.pause_button, self.run_button, self.remove_button):
            b.disabled = True
        if self.static_id is not None:
            from IPython.display import update_display

            # the last state the card knew, marked with why it stopped
            update_display(self.static_bundle(self._last_summary), raw=True, display_id=self.static_id)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        # (IPython calls _ipython_display_ instead; this is for other renderers)
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        bundle.update(self.static_bundle())
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

    def tick() -> None:  # (each card refresh runs in the latest request's context: see JobCard.refresh)
        for card in list(state.cards.values()):
            try:
                card.refresh()
            except Exception:  # a broken card must not stop the others (but is logged)
                log.exception("nbsched: refreshing the card of %r failed", card.name)
        state.refresher = loop.call_later(1.0, tick)

    state.refresher = loop.call_later(1.0, tick)


def jobs_table(sched: Any):
    """``%schedule list``: one row per job; ``after`` names its upstream jobs (and a trigger rule other
    than ``all_success`` in brackets), empty for a job on a time trigger.

    Built column by column with little work per job (the loop is held while it runs: at 100,000 jobs
    every microsecond per job is 0.1 s of jobs waiting); the same values as :func:`job_summary` gives.
    """
    import pandas as pd

    jobs = sched.jobs
    described: dict[int, str] = {}  # jobs added from one spec share their trigger
    names, triggers, afters, states, planned, zones, runs, errors, missed, skipped, last, last_error = (
        [] for _ in range(12))
    failed = (Outcome.ERROR, Outcome.TIMEOUT)
    for job in jobs:
        trig = job.trigger
        text = described.get(id(trig))
        if text is None:
            text = described[id(trig)] = job.describe()
        names.append(job.name)
        triggers.append(text)
        after = ", ".join(job.upstreams)
        if after and job.policy.trigger_rule != "all_success":
            after += f" ({job.policy.trigger_rule})"
        afters.append(after)
        states.append(job.state.value)
        planned.append(job.planned_fire_timestamp)
        zones.append(trig.tz)
        runs.append(job.runs)
        errors.append(job.failures)
        missed.append(job.missed)
        skipped.append(job.skipped)
        outcome = job.last_outcome
        if outcome is None:
            last.append("-")
        else:
            duration = job.last_duration
            last.append(outcome.value if duration is None else f"{outcome.value} in {format_duration(duration)}")
        last_error.append(job.last_error if outcome in failed and job.last_error else None)
    if zones and all(z is zones[0] for z in zones):
        next_run = _us_times(planned, zones[0])
    else:
        next_run = [job.next_fire_time for job in jobs]
    return pd.DataFrame({"job": names, "trigger": triggers, "after": afters, "state": states, "next_run": next_run, "runs": runs,
                         "errors": errors, "missed": missed, "skipped": skipped, "last": last,
                         "last_error": last_error})


def _us_times(timestamps: list, tz: Any):
    """POSIX seconds (None = none) as aware microsecond times, rounded as ``datetime.fromtimestamp``
    rounds them (the fraction to the nearest microsecond, ties to even)."""
    import numpy as np
    import pandas as pd

    ts = np.array([np.nan if t is None else t for t in timestamps], dtype=np.float64)
    missing = np.isnan(ts)
    ts[missing] = 0.0
    whole = np.floor(ts)
    us = whole.astype(np.int64) * 1_000_000 + np.round((ts - whole) * 1e6).astype(np.int64)
    us[missing] = np.iinfo(np.int64).min
    return pd.array(us.view("M8[us]")).tz_localize("UTC").tz_convert(tz)
