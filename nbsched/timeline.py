"""Timelines: a job's runs on a time axis, coloured by outcome, with lateness and duration histograms.

``sched.timeline()`` / ``sched.timeline(name)`` returns a :class:`Timeline`; ``%schedule timeline``
shows it; the dashboard's detail panel and the ``nbsched run`` report draw the same pictures.  They
are inline SVG generated here (no plotting library): they render the same in JupyterLab, nbconvert
HTML, GitHub and a static file, and a terminal gets one line of marks per job.

Bottom layer: pure functions of history rows (``(run_id, scheduled, started, finished, lateness,
outcome, attempt, ...)`` with POSIX seconds) and public scheduler methods; pandas only inside
:func:`rows_from_history`.
"""
from __future__ import annotations

from datetime import datetime, tzinfo
from html import escape
from typing import Any, Iterable

__all__ = ["Timeline", "timeline_svg", "histogram_svg", "rows_from_history", "OUTCOME_COLOURS"]

OUTCOME_COLOURS = {
    "success": "#16a34a", "error": "#dc2626", "timeout": "#dc2626", "interrupted": "#d97706",
    "cancelled": "#d97706", "missed": "#9ca3af", "skipped": "#9ca3af",
}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} \u00b5s"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"


def legend() -> str:
    return ("<span style='color:#16a34a'>&#9632;</span> success <span style='color:#dc2626'>&#9632;</span> "
            "error/timeout <span style='color:#d97706'>&#9632;</span> interrupted/cancelled "
            "<span style='color:#9ca3af'>&#9632;</span> missed/skipped")


def _runs(rows: Iterable[tuple]) -> list[list[tuple]]:
    """History rows grouped by run: the attempts of one fire time (retries) stay together."""
    groups: dict[Any, list[tuple]] = {}
    for row in rows:
        groups.setdefault(row[0], []).append(row)
    return list(groups.values())


def timeline_svg(name: str, rows: list[tuple], tz: tzinfo, *, width: int = 720, max_runs: int = 200) -> str:
    """One job's runs on a time axis: a mark per run coloured by its final outcome.

    Attempts of the same run (retries) are drawn as one group - small ticks for the failed attempts
    joined to the mark of the attempt that ended the run - so a run that recovered reads as one
    green mark with red ticks before it.  Below: lateness and duration distributions (histograms).
    """
    runs = _runs(rows)[-max_runs:]
    if not runs:
        return f"<div class='nbsched-timeline'><b>{escape(name)}</b>: <i>no runs yet</i></div>"
    times = [r[2] if r[2] is not None else r[1] for run in runs for r in run]
    t0, t1 = min(times), max(times)
    span = max(t1 - t0, 1e-6)
    left, right, row_y, h = 8, width - 8, 22, 64
    x = lambda t: left + (right - left) * (t - t0) / span  # noqa: E731
    parts = [f"<svg width='{width}' height='{h}' viewBox='0 0 {width} {h}' role='img' "
             f"aria-label='runs of {escape(name)} over time' style='font:11px sans-serif;max-width:100%;height:auto'>",
             f"<line x1='{left}' y1='{row_y}' x2='{right}' y2='{row_y}' stroke='#e5e7eb'/>"]
    recovered = 0
    for run in runs:
        final = run[-1]
        outcome = str(final[5])
        colour = OUTCOME_COLOURS.get(outcome, "#9ca3af")
        end_t = final[2] if final[2] is not None else final[1]
        if len(run) > 1:
            first_t = run[0][2] if run[0][2] is not None else run[0][1]
            parts.append(f"<line x1='{x(first_t):.1f}' y1='{row_y + 9}' x2='{x(end_t):.1f}' y2='{row_y + 9}' "
                         f"stroke='{colour}' stroke-width='2'/>")
            for attempt in run[:-1]:
                at = attempt[2] if attempt[2] is not None else attempt[1]
                parts.append(f"<rect x='{x(at) - 1:.1f}' y='{row_y + 4}' width='2' height='8' "
                             f"fill='{OUTCOME_COLOURS.get(str(attempt[5]), '#9ca3af')}'>"
                             f"<title>run {attempt[0]} attempt {attempt[6]}: {attempt[5]}</title></rect>")
            if outcome == "success":
                recovered += 1
        tip = (f"run {final[0]}: {outcome} after {len(run)} attempt{'s' if len(run) > 1 else ''}"
               f", {datetime.fromtimestamp(end_t, tz).strftime('%H:%M:%S')}")
        parts.append(f"<rect class='nbsched-run nbsched-run-{outcome}' x='{x(end_t) - 2.5:.1f}' y='{row_y - 9}' "
                     f"width='5' height='18' rx='1' fill='{colour}'><title>{escape(tip)}</title></rect>")
    start = datetime.fromtimestamp(t0, tz).strftime("%H:%M:%S")
    end = datetime.fromtimestamp(t1, tz).strftime("%H:%M:%S")
    parts.append(f"<text x='{left}' y='{h - 6}' fill='#6b7280'>{start}</text>")
    parts.append(f"<text x='{right}' y='{h - 6}' text-anchor='end' fill='#6b7280'>{end}</text>")
    parts.append("</svg>")
    counts: dict[str, int] = {}
    for run in runs:
        counts[str(run[-1][5])] = counts.get(str(run[-1][5]), 0) + 1
    retries = sum(len(run) - 1 for run in runs)
    line = ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
    if retries:
        line += f"; {retries} retr{'y' if retries == 1 else 'ies'}, {recovered} run{'s' if recovered != 1 else ''} recovered"
    lateness = [r[4] for run in runs for r in run if r[4] is not None and r[2] is not None]
    durations = [r[3] - r[2] for run in runs for r in run if r[2] is not None and r[3] is not None]
    return (f"<div class='nbsched-timeline' data-job='{escape(name)}'>"
            f"<div><b>{escape(name)}</b> &middot; {len(runs)} runs: {escape(line)}</div>{''.join(parts)}"
            f"<div style='display:flex;gap:24px'>{histogram_svg('lateness', lateness)}"
            f"{histogram_svg('duration', durations)}</div><div style='color:#6b7280'>{legend()}</div></div>")


def histogram_svg(label: str, values: list[float], *, bins: int = 20, width: int = 320, height: int = 70) -> str:
    """A small histogram of seconds (shown in ms/s), with median and p95 in the caption."""
    if not values:
        return f"<div><i>{escape(label)}: no data</i></div>"
    ordered = sorted(values)
    lo, hi = ordered[0], ordered[-1]
    step = (hi - lo) / bins or 1e-9
    counts = [0] * bins
    for v in ordered:
        counts[min(int((v - lo) / step), bins - 1)] += 1
    top = max(counts)
    bar = width / bins
    rects = "".join(
        f"<rect x='{i * bar:.1f}' y='{height - 14 - (height - 18) * c / top:.1f}' width='{bar - 1:.1f}' "
        f"height='{(height - 18) * c / top:.1f}' fill='#60a5fa'><title>{c} between {escape(duration(lo + i * step))} "
        f"and {escape(duration(lo + (i + 1) * step))}</title></rect>"
        for i, c in enumerate(counts) if c)
    median = ordered[len(ordered) // 2]
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (f"<div><div>{escape(label)}: median {escape(duration(median))}, p95 {escape(duration(p95))}, "
            f"max {escape(duration(hi))} ({len(values)} values)</div>"
            f"<svg width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img' "
            f"aria-label='{escape(label)} distribution' style='font:10px sans-serif;max-width:100%;height:auto'>{rects}"
            f"<text x='0' y='{height - 2}' fill='#6b7280'>{escape(duration(lo))}</text>"
            f"<text x='{width}' y='{height - 2}' text-anchor='end' fill='#6b7280'>{escape(duration(hi))}</text></svg></div>")


def rows_from_history(frame: Any) -> list[tuple]:
    """History frame rows as the renderer's tuples: (run_id, scheduled, started, finished, lateness,
    outcome, attempt, error) with POSIX seconds (None where missing)."""
    import pandas as pd

    def ts(value: Any) -> float | None:
        return None if value is None or pd.isna(value) else value.timestamp()

    rows = []
    for r in frame.itertuples(index=False):
        lateness = None if pd.isna(r.lateness) else r.lateness.total_seconds()
        rows.append((int(r.run_id), ts(r.scheduled_at), ts(r.started_at), ts(r.finished_at), lateness,
                     str(r.outcome), int(r.attempt), r.error))
    rows.sort(key=lambda row: (row[1] if row[1] is not None else 0.0, row[0], row[6]))
    return rows


class Timeline:
    """Runs of one job or of all jobs as SVG pictures (see the module docstring)."""

    def __init__(self, sched: Any, name: str | None = None, *, max_runs: int = 200):
        if name is not None:
            sched.history(name)  # JobLookupError names the jobs with history
        self.scheduler = sched
        self.names = [name] if name is not None else sched.history_names()
        self.max_runs = max_runs

    def to_html(self) -> str:
        sched = self.scheduler
        if not self.names:
            return "<div class='nbsched-timeline'><i>no jobs yet</i></div>"
        return "".join(timeline_svg(name, rows_from_history(sched.history(name)), sched.tz,
                                           max_runs=self.max_runs) for name in self.names)

    def to_text(self) -> str:
        lines = []
        for name in self.names:
            runs: dict[int, list[tuple]] = {}
            for row in rows_from_history(self.scheduler.history(name)):
                runs.setdefault(row[0], []).append(row)
            groups = list(runs.values())[-self.max_runs:]
            marks = "".join({"success": "+", "error": "x", "timeout": "T", "interrupted": "!", "cancelled": "c",
                             "missed": ".", "skipped": "s"}.get(str(run[-1][5]), "?") for run in groups)
            retried = sum(1 for run in groups if len(run) > 1)
            lines.append(f"{name}: {len(groups)} runs{f' ({retried} retried)' if retried else ''} {marks[-80:]}")
        lines.append("(+ success, x error, T timeout, ! interrupted, c cancelled, . missed, s skipped)")
        return "\n".join(lines) if self.names else "no jobs yet"

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return {"text/plain": self.to_text(), "text/html": self.to_html()}

    def __repr__(self) -> str:
        return self.to_text()
