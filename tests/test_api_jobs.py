"""Jobs added with the Python API in a cell get their card and output area in that cell (real
kernels, ipykernel 7.x and 6.29).  The executed-notebook side is in test_saved_notebooks.py."""
import pytest

pytestmark = pytest.mark.kernel

VIEW = "application/vnd.jupyter.widget-view+json"
SETUP = ("%load_ext nbsched\nimport nbsched, threading\nsched = nbsched.get_scheduler()\n"
         "def hello():\n    print('HELLO on main', threading.current_thread() is threading.main_thread())")


def views(result):
    return [m["content"]["data"][VIEW]["model_id"] for m in result.of_type("display_data")
            if VIEW in m["content"]["data"]]


def test_api_jobs_print_into_the_area_of_the_cell_that_added_them(kernel):
    kernel.run(SETUP)
    added = kernel.run("sched.add(hello, 'every 0.2s', name='onloop', max_runs=2)\n"
                       "sched.add(hello, 'every 0.2s', name='inthread', max_runs=2, executor='thread')\n"
                       "None")
    assert len(views(added)) == 2  # a card each
    statics = [m["content"]["data"]["text/plain"] for m in added.of_type("display_data")
               if VIEW not in m["content"]["data"]]
    assert [s.split(":")[0] for s in statics] == ["job 'onloop'", "job 'inthread'"]
    kernel.poll_until(lambda: kernel.value("[sched.get(n).runs for n in ('onloop', 'inthread')]") == [2, 2],
                      timeout=20)
    assert kernel.value("sched.get('onloop').output.stream_text()") == "HELLO on main True\n" * 2
    assert kernel.value("sched.get('inthread').output.stream_text()") == "HELLO on main False\n" * 2
    assert [m for m in kernel.messages("stream") if "HELLO" in m["content"]["text"]] == []


def test_re_adding_a_job_shows_a_new_card_and_retires_the_old_one(kernel):
    kernel.run(SETUP)
    first = kernel.run("sched.add(hello, 'every 1h', name='again'); None")
    second = kernel.run("sched.add(hello, 'every 2h', name='again'); None")
    assert len(views(first)) == 1 and len(views(second)) == 1
    # the first card's summary (updated in place by display id) now says why it stopped
    retired = [m for m in kernel.messages("update_display_data")
               if "replaced by a newer job of the same name" in m["content"]["data"]["text/plain"]]
    first_id = next(m["content"]["transient"]["display_id"] for m in first.of_type("display_data")
                    if VIEW not in m["content"]["data"])
    assert [m["content"]["transient"]["display_id"] for m in retired] == [first_id]
    assert kernel.value("nbsched.notebook.magics._state().cards['again'].retired") is False
    kernel.run("sched.run_now('again'); None")
    kernel.poll_until(lambda: kernel.value("len(sched.history('again'))") == 1, timeout=20)
    assert kernel.value("sched.get('again').output.stream_text()") == "HELLO on main True\n"


def test_what_gets_no_card(kernel):
    kernel.run(SETUP)
    # a %%schedule cell's job has its own card (one, not two)
    cell = kernel.run("%%schedule every 1h --name cellular\n1")
    assert len(views(cell)) == 1
    # a job added by a job (not by the cell's code), even while a cell runs
    kernel.run("sched.add(lambda: sched.add(hello, 'every 1h', name='child') and None, 'in 0.1s', name='parent')\n"
               "None")
    waited = kernel.run("import asyncio\nwhile sched.find('child') is None:\n    await asyncio.sleep(0.02)")
    assert views(waited) == []
    assert kernel.value("sched.get('child').output is None") is True
    # a cell adding more than MAX_CARDS jobs (a bulk load): one line, no card, no area
    many = kernel.run("for i in range(25):\n    sched.add(hello, 'every 1h', name=f'many{i}')")
    assert views(many) == []
    assert many.stdout == ("nbsched: this cell added 25 jobs, more than 20: they get no card and no output area "
                           "(what they print is not kept in this cell)\n")
    assert kernel.value("[i for i in range(25) if sched.get(f'many{i}').output is not None]") == []
    # and the next cell is watched afresh
    few = kernel.run("sched.add(hello, 'every 1h', name='few'); None")
    assert len(views(few)) == 1 and few.stdout == ""
