"""nbsched.notebook.cell: a cell body compiled once, run many times in a namespace (no kernel needed)."""

import asyncio
import linecache
import traceback

import pytest

from nbsched.notebook.cell import CompiledCell, compile_cell


def test_assignments_land_in_namespace():
    ns = {}
    cell = compile_cell("x = 1\ny = x + 1", ns)
    assert cell() is None
    assert ns["x"] == 1 and ns["y"] == 2


def test_trailing_expression_is_the_value_and_reruns_see_state():
    ns = {"n": 0}
    cell = compile_cell("n += 1\nn * 10", ns)
    assert cell() == 10
    assert cell() == 20
    assert ns["n"] == 2
    assert not cell.is_async


def test_trailing_semicolon_silences_value_but_still_evaluates():
    ns = {"calls": []}
    cell = compile_cell("calls.append(1);", ns)
    assert cell() is None
    assert ns["calls"] == [1]


def test_body_with_only_statements_returns_none():
    ns = {}
    assert compile_cell("import math\nr = math.floor(2.5)", ns)() is None
    assert ns["r"] == 2


@pytest.mark.parametrize(
    "source",
    [
        "total = 0\nfor i in range(4):\n    total += i",
        "total = 6\nif total:\n    total = total",
        "total = 6\nwith open(__file__) as f:\n    pass",
    ],
)
def test_body_ending_in_compound_statement_has_no_value(source):
    ns = {"__file__": __file__}
    assert compile_cell(source, ns)() is None
    assert ns["total"] == 6


def test_del_removes_name():
    ns = {"tmp": 1, "keep": 2}
    compile_cell("del tmp", ns)()
    assert "tmp" not in ns and ns["keep"] == 2


def test_functions_defined_in_body_see_namespace_later():
    ns = {}
    compile_cell("base = 10\ndef add(v):\n    return base + v", ns)()
    ns["base"] = 100  # a later cell changes a global the function reads
    assert ns["add"](1) == 101
    assert compile_cell("add(2)", ns)() == 102


def test_empty_body():
    cell = compile_cell("", {})
    assert cell() is None and not cell.is_async


def test_await_body_returns_coroutine_with_value():
    ns = {"asyncio": asyncio}
    cell = compile_cell("await asyncio.sleep(0)\nresult = 41\nresult + 1", ns)
    assert cell.is_async
    coro = cell()
    assert asyncio.iscoroutine(coro)
    assert asyncio.run(coro) == 42
    assert ns["result"] == 41


def test_await_only_in_trailing_expression():
    async def answer():
        return 42

    ns = {"answer": answer}
    cell = compile_cell("x = 1\nawait answer()", ns)
    assert cell.is_async
    assert asyncio.run(cell()) == 42
    assert ns["x"] == 1


def test_async_for_and_with_at_top_level():
    async def agen():
        for i in range(3):
            yield i

    ns = {"agen": agen, "asyncio": asyncio}
    cell = compile_cell("seen = []\nasync for i in agen():\n    seen.append(i)", ns)
    assert cell.is_async
    assert asyncio.run(cell()) is None
    assert ns["seen"] == [0, 1, 2]


def test_each_call_of_async_body_is_a_fresh_run():
    ns = {"asyncio": asyncio, "n": 0}
    cell = compile_cell("await asyncio.sleep(0)\nn += 1\nn", ns)

    async def twice():
        return [await cell(), await cell()]

    assert asyncio.run(twice()) == [1, 2]


def test_syntax_error_at_compile_time_with_line_number():
    with pytest.raises(SyntaxError) as info:
        compile_cell("x = 1\ny = (\n", {}, filename="<schedule-cell-bad>")
    assert info.value.filename == "<schedule-cell-bad>"
    assert info.value.lineno == 2


def test_return_outside_function_is_a_syntax_error():
    with pytest.raises(SyntaxError, match="outside function") as info:
        compile_cell("x = 1\nreturn x", {})
    assert info.value.lineno == 2


def test_traceback_shows_the_cell_line():
    ns = {}
    source = "a = 1\nb = 0\nc = a / b  # boom\nc"
    cell = compile_cell(source, ns, filename="<schedule-cell-tb>")
    with pytest.raises(ZeroDivisionError) as info:
        cell()
    frames = [f for f in traceback.extract_tb(info.value.__traceback__) if f.filename == "<schedule-cell-tb>"]
    assert frames, "the cell's frame is missing from the traceback"
    assert frames[-1].lineno == 3
    assert frames[-1].line == "c = a / b  # boom"
    assert "c = a / b  # boom" in "".join(traceback.format_exception(info.value))


def test_traceback_line_in_async_body_and_in_function_from_body():
    ns = {"asyncio": asyncio}
    source = "await asyncio.sleep(0)\ndef f():\n    raise ValueError('inner')\nf()"
    cell = compile_cell(source, ns, filename="<schedule-cell-async-tb>")
    with pytest.raises(ValueError) as info:
        asyncio.run(cell())
    lines = [(f.lineno, f.line) for f in traceback.extract_tb(info.value.__traceback__) if f.filename == "<schedule-cell-async-tb>"]
    assert lines == [(4, "f()"), (3, "raise ValueError('inner')")]


def test_default_filename_is_stable_and_registered():
    first = compile_cell("1 + 1", {})
    second = compile_cell("1 + 1", {})
    assert first.filename == second.filename
    assert first.filename.startswith("<schedule-cell-")
    assert linecache.getline(first.filename, 1) == "1 + 1\n"


def test_recompiling_same_filename_replaces_source():
    compile_cell("old = 1", {}, filename="<schedule-cell-job>")
    compile_cell("new = 2", {}, filename="<schedule-cell-job>")
    linecache.checkcache()  # must not evict our entry
    assert linecache.getline("<schedule-cell-job>", 1) == "new = 2\n"


def test_repr_and_type():
    cell = compile_cell("1", {}, filename="<schedule-cell-r>")
    assert isinstance(cell, CompiledCell)
    assert repr(cell) == "<CompiledCell <schedule-cell-r> (sync, 1 lines)>"


def test_names_read_assigned_and_deleted_come_from_the_compiled_body():
    from nbsched.notebook.cell import compile_cell

    cell = compile_cell(
        "import os\n"
        "y = x + 1\n"
        "def f(a):\n    return a * z\n"
        "class K:\n    w = 3\n"
        "del q\n"
        "[v for v in items]\n"
        "f(y)", {})
    assert cell.names_read() == {"__name__", "f", "items", "q", "x", "y", "z"}
    assert cell.names_assigned() == {"K", "f", "os", "y"}
    assert cell.names_deleted() == {"q"}


def test_a_cell_run_as_on_a_worker_sends_back_names_value_and_output():
    from distributed.protocol.pickle import dumps, loads

    from nbsched.notebook.cell import compile_cell
    from nbsched.notebook.remote import run_cell_on_worker, shipped_values

    ns = {"base": 20, "unused": object()}
    cell = compile_cell("print('got', base)\nbase = base + 1\ndel gone\nbase * 2", ns)
    values = shipped_values(cell, ns)
    assert set(values) == {"base"}  # only what the body reads travels
    reply = run_cell_on_worker(cell.source, cell.filename, {**values, "gone": dumps(1)},
                               tuple(sorted(cell.names_assigned())), tuple(sorted(cell.names_deleted())))
    assert reply["printed"] == [("stdout", "got 20\n")]
    assert {k: loads(v) for k, v in reply["names"].items()} == {"base": 21}
    assert reply["deleted"] == ("gone",)
    assert loads(reply["value"]) == 42 and reply["error"] is None
