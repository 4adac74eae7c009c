"""Timelines and the headless report: what ran, when, how it ended, as pictures that need nothing.

* (the pictures come from :mod:`nbsched.timeline`, also behind ``sched.timeline()``)
* :func:`report_html` - one self-contained HTML page (no scripts, no external files): a summary
  table, then per job its timeline, distributions, last results rows and last output.
* :func:`export` - what ``nbsched run`` calls inside the kernel: history/results frames (CSV, plus
  Parquet with pyarrow), ``report.html``, and a JSON summary.

Everything reads the scheduler through public methods (``jobs``, ``history()``, ``results()``).
"""
from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from html import escape
from typing import Any

from . import render
from ..timeline import Timeline, rows_from_history  # noqa: F401 - re-exported

__all__ = ["report_html", "export"]


def _job_names(sched: Any) -> list[str]:
    """Every job, in the order they were added, then removed jobs that left a history."""
    return sched.history_names()


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:980px;color:#111827;padding:0 16px}
h1{font-size:22px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px} th,td{padding:3px 8px;border-bottom:1px solid #e5e7eb;text-align:left}
.muted{color:#6b7280} pre{background:#f9fafb;padding:6px;overflow:auto;max-height:320px}
"""


def _summary_rows(sched: Any, names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        history = sched.history(name)
        counts = history["outcome"].value_counts()
        started = history[history["started_at"].notna()]
        late_ms = started["lateness"].dt.total_seconds() * 1000
        job = sched.find(name)
        rows.append({
            "job": name,
            "trigger": job.describe() if job is not None else "(removed)",
            "state": job.state.value if job is not None else "removed",
            "rows": int(len(history)),
            "runs": int(history["run_id"].nunique()),
            **{o: int(counts.get(o, 0)) for o in ("success", "error", "missed", "skipped", "timeout", "interrupted")},
            "lateness_p50_ms": round(float(late_ms.median()), 2) if len(late_ms) else None,
            "lateness_p99_ms": round(float(late_ms.quantile(0.99)), 2) if len(late_ms) else None,
            "result_rows": int(len(sched.results(name))),
        })
    return rows


def _results_html(frame: Any) -> str:
    if len(frame) == 0:
        return "<p class='muted'>no results (the job returned nothing, or None)</p>"
    tail = frame.tail(5).copy()
    for column in tail.columns:
        if hasattr(tail[column], "dt") and hasattr(tail[column].dt, "strftime"):
            tail[column] = tail[column].dt.strftime("%Y-%m-%d %H:%M:%S")
    note = f"<p class='muted'>last 5 of {len(frame)} rows</p>" if len(frame) > 5 else ""
    return note + tail.to_html(max_cols=12, border=0, na_rep="", index=False)


def report_html(sched: Any, *, title: str = "nbsched report", generated: datetime | None = None) -> str:
    """The whole report as one HTML document (inline SVG and CSS only)."""
    names = _job_names(sched)
    when = (generated or datetime.fromtimestamp(sched.clock.time(), timezone.utc)).strftime("%Y-%m-%d %H:%M:%S %Z")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>"
             f"<p class='muted'>generated {escape(when)} &middot; {len(names)} job{'s' if len(names) != 1 else ''}</p>"]
    summary = _summary_rows(sched, names)
    if summary:
        parts.append("<div style='overflow-x:auto'><table><thead><tr><th>job</th><th>trigger</th><th>state</th>"
                     "<th>runs</th><th>outcomes (attempts)</th><th>lateness p50 / p99</th><th>result rows</th>"
                     "</tr></thead><tbody>")
        for row in summary:
            outcomes = ", ".join(f"{row[o]} {o}" for o in ("success", "error", "timeout", "interrupted", "missed",
                                                             "skipped") if row[o]) or "-"
            late = ("-" if row["lateness_p50_ms"] is None
                    else f"{row['lateness_p50_ms']:g} / {row['lateness_p99_ms']:g} ms")
            cells = (row["job"], row["trigger"], row["state"], row["runs"], outcomes, late, row["result_rows"])
            parts.append("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in cells) + "</tr>")
        parts.append("</tbody></table></div>")
    else:
        parts.append("<p><i>no jobs were scheduled</i></p>")
    for name in names:
        job = sched.find(name)
        parts.append(f"<h2 id='job-{escape(re.sub(r'[^A-Za-z0-9_-]', '_', name))}'>{escape(name)}</h2>")
        if job is not None:
            parts.append(f"<p class='muted'>{escape(job.describe())} &middot; {escape(job.state.value)}</p>")
        parts.append(render.timeline_svg(name, rows_from_history(sched.history(name)), sched.tz, width=900))
        parts.append("<h3>Last results</h3>" + _results_html(sched.results(name)))
        outputs = getattr(getattr(job, "output", None), "outputs", None)
        if outputs:
            parts.append("<h3>Last output</h3>" + render.output_html(outputs))
        errors = sched.history(name)
        errors = errors[errors["error"].notna()]
        if len(errors):
            last = errors.iloc[-1]
            parts.append(f"<h3>Last error</h3><pre>{escape(str(last['traceback'] or last['error']))}</pre>")
    parts.append("</body></html>")
    return "".join(parts)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def export(sched: Any, out_dir: str, *, title: str = "nbsched report") -> str:
    """Write every job's frames and ``report.html`` to ``out_dir``; return the summary as JSON."""
    os.makedirs(out_dir, exist_ok=True)
    try:
        import pyarrow  # noqa: F401

        parquet = True
    except ImportError:
        parquet = False
    names = _job_names(sched)
    for name in names:
        history, results = sched.history(name), sched.results(name)
        history.to_csv(os.path.join(out_dir, f"{_safe(name)}.history.csv"), index=False)
        results.to_csv(os.path.join(out_dir, f"{_safe(name)}.results.csv"), index=False)
        if parquet:
            history.to_parquet(os.path.join(out_dir, f"{_safe(name)}.history.parquet"), index=False)
            results.to_parquet(os.path.join(out_dir, f"{_safe(name)}.results.parquet"), index=False)
    with open(os.path.join(out_dir, "report.html"), "w", encoding="utf-8") as fh:
        fh.write(report_html(sched, title=title))
    return json.dumps(_summary_rows(sched, names))
