"""Timelines and the headless report (nbsched.notebook.report), on a FakeClock: nothing sleeps."""
import re

import pytest

from nbsched.errors import JobLookupError
from nbsched.notebook.report import report_html
from nbsched.timeline import Timeline, rows_from_history


def flaky_factory():
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] % 3:
            raise ConnectionError(f"not ready ({calls['n']})")
        return {"attempts": calls["n"]}

    return flaky


async def two_jobs(sched, clock):
    sched.add(flaky_factory(), "every 1m", name="flaky", retries=2, retry_delay="1s")
    sched.add(lambda: {"value": 1}, "every 30s", name="steady")
    await clock.advance("3m10s")


async def test_timeline_groups_retries_with_the_run_that_recovered(sched, clock):
    await two_jobs(sched, clock)
    html = sched.timeline("flaky").to_html()
    svg = html[html.index("<svg"):html.index("</svg>")]
    # 3 runs, each: two failed attempts (ticks) joined to the mark of the attempt that succeeded
    assert svg.count("class='nbsched-run nbsched-run-success'") == 3
    assert svg.count("class='nbsched-run ") == 3
    assert len(re.findall(r"<title>run \d+ attempt [12]: error</title>", svg)) == 6
    assert "3 runs: 3 success; 6 retries, 3 runs recovered" in html
    assert "lateness: median" in html and "duration: median" in html


async def test_timeline_text_for_terminals_and_all_jobs(sched, clock):
    await two_jobs(sched, clock)
    text = repr(sched.timeline())
    assert text.splitlines() == [
        "flaky: 3 runs (3 retried) +++",
        "steady: 6 runs ++++++",
        "(+ success, x error, T timeout, ! interrupted, c cancelled, . missed, s skipped)",
    ]
    bundle = sched.timeline()._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"} and bundle["text/html"].count("<div class='nbsched-timeline'") == 2


async def test_timeline_of_an_unknown_job_names_the_jobs(sched, clock):
    await two_jobs(sched, clock)
    with pytest.raises(JobLookupError, match=r"no job named 'nope': the jobs with history are 'flaky', 'steady'"):
        sched.timeline("nope")


async def test_a_removed_job_stays_in_the_timeline_and_report(sched, clock):
    await two_jobs(sched, clock)
    sched.remove("steady")
    assert [line.split(":")[0] for line in repr(Timeline(sched)).splitlines()[:2]] == ["flaky", "steady"]
    assert "<td>steady</td><td>(removed)</td><td>removed</td><td>6</td><td>6 success</td>" in report_html(sched)


async def test_rows_from_history_keep_attempts_of_a_run_together(sched, clock):
    await two_jobs(sched, clock)
    rows = rows_from_history(sched.history("flaky"))
    assert [(r[0], r[5], r[6]) for r in rows[:3]] == [(rows[0][0], "error", 1), (rows[0][0], "error", 2),
                                                       (rows[0][0], "success", 3)]
    assert all(isinstance(r[1], float) and isinstance(r[2], float) for r in rows)


async def test_report_is_one_self_contained_page(sched, clock):
    await two_jobs(sched, clock)
    page = report_html(sched, title="nightly")
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</body></html>")
    assert "<script" not in page and "src='http" not in page and 'src="http' not in page and "<link" not in page
    assert "<title>nightly</title>" in page
    # the summary table, one row per job
    assert "<td>flaky</td><td>every 1m</td><td>scheduled</td><td>3</td><td>3 success, 6 error</td>" in page
    # per job: its timeline, distributions, last results and last error
    assert page.count("<div class='nbsched-timeline'") == 2
    assert "<h3>Last results</h3>" in page and "<td>{'attempts': 3}</td>" not in page and "<th>attempts</th>" in page
    assert "ConnectionError: not ready" in page
