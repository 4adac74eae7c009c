"""The one place that turns jobs into words, HTML, rows and pictures.

Used by the card, the dashboard, their static fallbacks (what nbconvert HTML, GitHub and a terminal
show where widgets cannot render), ``sched.timeline()`` and the ``nbsched run`` report.  Everything
here is a pure function of public scheduler/job state (``sched.jobs``, ``job.next_fire_time``,
``job.log.rows``, ...) and the time it is given: nothing reads the clock, nothing touches widgets.

Pictures are inline SVG generated here (no plotting dependency): they render the same in JupyterLab,
nbconvert HTML, GitHub and a static file.
"""
from __future__ import annotations

from datetime import datetime, tzinfo
from html import escape
from typing import Any, Sequence

from .._durations import format_duration
from ..clock import zone_name
from ..timeline import OUTCOME_COLOURS, duration, histogram_svg, legend, timeline_svg  # noqa: F401
from ..history import Outcome
from ..job import JobState

__all__ = [
    "zone_name", "countdown", "duration", "relative", "clock_time", "job_summary", "summary_html",
    "summary_text", "job_row", "scheduler_line", "STATIC_HEADS", "static_rows", "history_html",
    "chart_svg", "output_text", "output_html", "card_static_html", "card_static_text", "timeline_svg",
    "STATE_COLOURS", "OUTCOME_COLOURS",
]

STATE_COLOURS = {
    "scheduled": "#2e7d32", "running": "#1565c0", "paused": "#8d6e00", "finished": "#616161",
    "failing": "#c62828", "removed": "#616161",
}
FAILED = {Outcome.ERROR, Outcome.TIMEOUT, Outcome.INTERRUPTED}
ERROR_CHARS = 300  # the last error as shown in a row; the full traceback is one click away
TEXT_ROWS = 50  # rows in the plain-text / static HTML renderings before "... N more"
OUTPUT_CHARS = 2000  # the tail of a job's output kept in a static fallback
#: CSS class of every static fallback; a live widget hides them (its own style rule), so a
#: frontend that renders widgets shows each thing once.
STATIC_CLASS = "nbsched-static"


# ===================================================================== times and durations
def countdown(seconds: float) -> str:
    if seconds <= 0:
        return "due now"
    if seconds < 120:
        return f"in {seconds:.0f}s"
    return "in " + format_duration(round(seconds / 60) * 60)


def _span(seconds: float) -> str:
    s = int(-(-seconds // 1))  # ceil: "in 1s" until it fires
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def relative(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    delta = ts - now
    if delta > 0:
        return f"in {_span(delta)}"
    if delta > -1:
        return "due"
    return f"overdue {_span(-delta)}"


def clock_time(ts: float | None, tz: tzinfo, now: float) -> str:
    if ts is None:
        return "-"
    when = datetime.fromtimestamp(ts, tz)
    if abs(now - ts) < 20 * 3600:
        return when.strftime("%H:%M:%S")
    return when.strftime("%Y-%m-%d %H:%M")


# ===================================================================== one job: the card's summary
def job_summary(sched: Any, job: Any) -> dict[str, str]:
    """What a card says about ``job``, as strings (public job state only)."""
    now = sched.clock.time()
    nxt = job.next_fire_time
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
        "state": job.state.value,
        "next": "-" if nxt is None else countdown(nxt.timestamp() - now),
        "next_at": "-" if nxt is None else nxt.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "runs": str(job.runs),
        "errors": str(job.failures),
        "missed": str(job.missed),
        "last": last,
        "last_at": "-" if job.last_finished is None else
                   datetime.fromtimestamp(job.last_finished, job.trigger.tz).strftime("%Y-%m-%d %H:%M:%S %Z"),
        "error": job.last_error if job.last_outcome in (Outcome.ERROR, Outcome.TIMEOUT) and job.last_error else "",
        "note": note,
    }


def summary_html(s: dict[str, str]) -> str:
    colour = STATE_COLOURS.get(s["state"], "#333")
    html = (
        f"<div style='font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;line-height:1.5'>"
        f"<b>{escape(s['name'])}</b> &middot; {escape(s['trigger'])} &middot; "
        f"<span style='color:{colour};font-weight:600'>{escape(s['state'])}</span><br>"
        f"next run <b>{escape(s['next'])}</b> <span style='color:#777'>({escape(s['next_at'])})</span>"
        f" &middot; runs {escape(s['runs'])} &middot; errors {escape(s['errors'])}"
        f" &middot; missed {escape(s['missed'])} &middot; last {escape(s['last'])}"
    )
    if s["error"]:
        html += f"<br><span style='color:#c62828'>last error: {escape(s['error'][:ERROR_CHARS])}</span>"
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


# ===================================================================== a job's output area, as static text
def _tail(text: str, limit: int = OUTPUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    newline = cut.find("\n")
    if 0 <= newline < 200:
        cut = cut[newline + 1:]
    return f"[... {len(text) - len(cut)} earlier characters]\n" + cut


def output_text(outputs: Sequence[dict]) -> str:
    """The outputs of a job's area (nbformat output dicts) as plain text: streams, text reprs, errors."""
    parts = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            parts.append(out.get("text", ""))
        elif kind in ("display_data", "execute_result"):
            text = out.get("data", {}).get("text/plain")
            parts.append((text if isinstance(text, str) else "".join(text or ["[display]"])) + "\n")
        elif kind == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}\n")
    return _tail("".join(parts))


def output_html(outputs: Sequence[dict]) -> str:
    """The outputs as static HTML: text in a <pre>, small PNG/SVG images inline, errors in red."""
    parts: list[str] = []
    text: list[str] = []

    def flush_text() -> None:
        if text:
            parts.append("<pre style='margin:2px 0;white-space:pre-wrap'>" + escape(_tail("".join(text))) + "</pre>")
            text.clear()

    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            text.append(out.get("text", ""))
        elif kind in ("display_data", "execute_result"):
            data = out.get("data", {})
            png, svg = data.get("image/png"), data.get("image/svg+xml")
            if isinstance(png, str) and len(png) < 200_000:
                flush_text()
                parts.append(f"<img alt='job output' src='data:image/png;base64,{png.strip()}'>")
            elif isinstance(svg, str) and len(svg) < 200_000:
                flush_text()
                parts.append(svg)
            else:
                plain = data.get("text/plain", "[display]")
                text.append((plain if isinstance(plain, str) else "".join(plain)) + "\n")
        elif kind == "error":
            flush_text()
            parts.append(f"<pre style='margin:2px 0;color:#c62828'>{escape(str(out.get('ename')))}: "
                         f"{escape(str(out.get('evalue')))}</pre>")
    flush_text()
    return "".join(parts)


def card_static_html(s: dict[str, str] | None, outputs: Sequence[dict], name: str, note: str = "") -> str:
    """The card as static HTML: the summary and the job's last output (kept current while it runs)."""
    body = summary_html(s) if s is not None else f"<div><b>{escape(name)}</b></div>"
    if note:
        body += f"<div style='color:#777'>({escape(note)})</div>"
    if outputs:
        body += ("<div style='border-left:3px solid #d1d5db;padding-left:6px;margin-top:4px'>"
                 + output_html(outputs) + "</div>")
    return f"<div class='{STATIC_CLASS} nbsched-card-static' data-job='{escape(name)}'>{body}</div>"


def card_static_text(s: dict[str, str] | None, outputs: Sequence[dict], name: str, note: str = "") -> str:
    text = summary_text(s) if s is not None else f"job {name!r}"
    if note:
        text += f"\n  ({note})"
    out = output_text(outputs)
    if out:
        text += "\n  output:\n" + "\n".join("    " + line for line in out.rstrip("\n").split("\n"))
    return text


# ===================================================================== the dashboard's rows
#: The fields of one dashboard row, in the order they are sent to the front end.
ROW_FIELDS = ("name", "trigger", "state", "next", "last", "duration", "outcome", "runs", "errors", "error")


def describe_with_backfill(job: Any) -> str:
    """The trigger in words, with where it runs when that is not the kernel's loop (``on dask``), and
    marked while a backfill of the job is in progress."""
    text = job.describe()
    executor = job.policy.executor
    if executor != "loop":
        text += f" \u00b7 on {executor}"
    for backfill in job.scheduler.backfills(job.name):
        text += f" \u00b7 backfill {backfill.done}/{backfill.total}"
    return text


def job_row(job: Any) -> tuple:
    """One job as the dashboard shows it: see :data:`ROW_FIELDS`."""
    nxt = job.next_fire_time
    outcome = job.last_outcome
    error = job.last_error if outcome in FAILED else None
    if error is not None and len(error) > ERROR_CHARS:
        error = error[:ERROR_CHARS - 1] + "\u2026"
    last_duration = job.last_duration
    return (
        job.name, describe_with_backfill(job), job.state.value,
        None if nxt is None else round(nxt.timestamp(), 3),
        None if job.last_started is None else round(job.last_started, 3),
        None if last_duration is None else round(last_duration, 6),
        None if outcome is None else outcome.value,
        job.successes + job.failures, job.failures, error,
    )


def scheduler_line(sched: Any, jobs: list) -> str:
    failing = sum(1 for j in jobs if j.state.value == "failing")
    state = "shut down" if not sched.running else ("paused" if sched.paused else "running")
    return f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}, {failing} failing, scheduler {state}"


STATIC_HEADS = ("job", "trigger", "state", "next run", "last run", "duration", "outcome", "runs", "errors",
                "last output")


def last_output_line(job: Any, limit: int = 60) -> str:
    """The last non-empty line a job printed (from its output area, if it has one), or '-'."""
    sink = getattr(job, "output", None)
    outputs = getattr(sink, "outputs", None)
    if not outputs:
        return "-"
    lines = [line for line in output_text(outputs).splitlines() if line.strip()]
    if not lines:
        return "-"
    line = lines[-1].strip()
    return line if len(line) <= limit else line[:limit - 1] + "\u2026"


def static_rows(sched: Any, jobs: list, now: float):
    """(cells as text, state, last error) for the first TEXT_ROWS jobs: the text and HTML fallbacks."""
    for job in jobs[:TEXT_ROWS]:
        r = job_row(job)
        values = (r[0], r[1], r[2], relative(r[3], now), clock_time(r[4], sched.tz, now),
                  duration(r[5]), r[6] or "-", str(r[7]), str(r[8]), last_output_line(job))
        yield values, r[2], r[9]


def history_html(rows: list[tuple], tz: tzinfo, now: float) -> str:
    if not rows:
        return "<i>no runs yet</i>"
    # a worker column only for jobs that ran on a cluster (row field 9: the worker's address)
    remote = any(len(r) > 9 and r[9] is not None for r in rows)
    out = ["<table class='nbsched-history'><thead><tr><th>run</th><th>scheduled</th><th>started</th>"
           "<th>duration</th><th>outcome</th><th>attempt</th>" + ("<th>worker</th>" if remote else "")
           + "<th>error</th></tr></thead><tbody>"]
    for r in reversed(rows):
        run_id, scheduled, started, finished, _lateness, outcome, attempt, err = r[:8]
        took = None if started is None or finished is None else finished - started
        error = "" if err is None else f"{err.type}: {err.message}"
        where = f"<td>{escape(r[9] or '')}</td>" if remote else ""
        out.append(
            f"<tr class='nbsched-outcome-{outcome}'><td>{run_id}</td><td>{clock_time(scheduled, tz, now)}</td>"
            f"<td>{clock_time(started, tz, now)}</td><td>{duration(took)}</td><td>{outcome}</td>"
            f"<td>{attempt}</td>{where}<td>{escape(error[:200])}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def chart_svg(rows: list[tuple], slots: int = 40, width: int = 280, height: int = 56) -> str:
    """Bars of recent run durations (height, relative to the longest), coloured by outcome."""
    if not rows:
        return "<i>no runs yet</i>"
    durations = [None if r[2] is None or r[3] is None else r[3] - r[2] for r in rows]
    longest = max((d for d in durations if d is not None), default=0.0) or 1e-9
    slot = width / slots
    first = slots - len(rows)  # the newest run at the right edge
    bars = []
    for i, (row, d) in enumerate(zip(rows, durations), start=first):
        outcome = str(row[5])
        h = 3.0 if d is None else max(3.0, (height - 4) * d / longest)
        x = i * slot
        bars.append(
            f"<rect x='{x:.1f}' y='{height - h:.1f}' width='{max(1.0, slot - 1.5):.1f}' height='{h:.1f}' "
            f"fill='{OUTCOME_COLOURS.get(outcome, '#9ca3af')}'><title>run {row[0]}: {outcome}, "
            f"{escape(duration(d))}</title></rect>")
    return (f"<svg class='nbsched-chart' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
            f"role='img' aria-label='recent run durations'>{''.join(bars)}</svg>"
            f"<div class='nbsched-muted'>longest {escape(duration(longest))}; {legend()}</div>")


