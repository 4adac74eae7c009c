"""%schedule backfill and %%schedule --start/--catchup in real kernels (ipykernel 7.x and 6.29)."""
import pytest

from kernel_harness import parent_id

pytestmark = pytest.mark.kernel

SEEN = "globals().get('seen', [])"


def test_backfill_shows_progress_in_its_own_cell_and_runs_each_day(kernel):
    kernel.run("%load_ext nbsched")
    kernel.run("%%schedule daily at 02:00 --name daily --quiet\n"
               "import nbsched\n"
               "ctx = nbsched.current_run()\n"
               "globals().setdefault('seen', []).append((str(ctx.scheduled_at.date()), ctx.reason))\n"
               "{'day': ctx.scheduled_at.day}")
    cell = kernel.run("%schedule backfill daily --start 2026-10-01 --end 2026-10-05 --max-active 2")
    shown = [m["content"]["data"] for m in cell.of_type("execute_result")]
    assert len(shown) == 1
    assert shown[0]["text/plain"].startswith("backfill of 'daily'")
    assert "application/vnd.jupyter.widget-view+json" in shown[0]
    kernel.poll_until(lambda: len(kernel.value(SEEN)) == 5, timeout=20, message="backfill did not run 5 days")
    assert kernel.value(SEEN) == [(f"2026-10-0{d}", "backfill") for d in range(1, 6)]
    assert kernel.value("list(__import__('nbsched').get_scheduler().results('daily')['day'])") == [1, 2, 3, 4, 5]
    later = kernel.run("x = 1")
    assert later.of_type("stream", "display_data", "execute_result") == []
    # every output message about the backfill belongs to the cell that started it
    about = [m for m in kernel.messages(("stream", "display_data", "execute_result", "update_display_data"))
             if "backfill" in str(m["content"])]
    assert about and {parent_id(m) for m in about} == {cell.msg_id}


def test_bad_backfill_and_catchup_input_stop_run_all(kernel):
    kernel.run("%load_ext nbsched")
    kernel.run("%%schedule every 1h --name hourly --quiet\npass")
    bad = kernel.execute("%schedule backfill hourly --start 2026-10-05 --end 2026-10-01")
    assert bad.error["ename"] == "UsageError"
    assert "backfill end '2026-10-01' is before its start '2026-10-05': swap them" in bad.error["evalue"]
    bad = kernel.execute("%%schedule daily at 02:00 --name c --catchup --quiet\npass")
    assert bad.error["ename"] == "UsageError" and "catchup=True needs a start" in bad.error["evalue"]
    assert kernel.value("[j.name for j in __import__('nbsched').get_scheduler().jobs]") == ["hourly"]


def test_catchup_cell_runs_the_past_days_first(kernel):
    kernel.run("%load_ext nbsched")
    kernel.run("import datetime as _dt\n"
               "start = str(_dt.date.today() - _dt.timedelta(days=3))")
    kernel.run("%%schedule daily at 00:00 --name back --start $start --catchup --quiet\n"
               "import nbsched\n"
               "globals().setdefault('seen', []).append(nbsched.current_run().reason)")
    kernel.poll_until(lambda: len(kernel.value(SEEN)) >= 4, timeout=20, message="catch-up did not run")
    assert kernel.value(SEEN) == ["catchup"] * 4  # three past midnights and today's
