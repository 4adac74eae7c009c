"""A ``%%schedule`` cell run on a cluster worker (``--executor dask``).

What is shipped, per run: the cell's source and the current values of the notebook names its
compiled body reads (each serialized on its own with Dask's serializer, so a value that cannot travel
is an error naming it).  On the worker the body runs in a fresh namespace built from those values;
``print`` and ``display`` calls in the body are captured.  What comes back: the names the body
assigned (and the ones it deleted), the last expression's value, and the captured output.  On the
kernel's loop the output goes to the job's own output area and, only when the run succeeded, the
names land in the notebook namespace and the value goes to the results frame.

The worker needs ``nbsched`` importable (this module's :func:`run_cell_on_worker` is shipped by
reference) plus whatever the cell imports.  Top-level ``await`` cells run on the kernel's loop only.
"""
from __future__ import annotations

import builtins
import sys
from typing import Any, Callable

from ..errors import PolicyError

__all__ = ["RemoteCellCall", "prepare", "run_cell_on_worker"]

#: Names never shipped: the worker's namespace has its own, or they only mean something in a kernel.
_LOCAL_ONLY = frozenset({"print", "display", "get_ipython", "In", "Out", "exit", "quit"})


class CellShippingError(PolicyError):
    """A name the cell reads (or assigns, on the way back) cannot be serialized."""


class RemoteCellCall:
    """One run of a cell on a worker: ``func`` runs there, ``finish`` back on the kernel's loop."""

    __slots__ = ("func", "finish")

    def __init__(self, func: Callable[[], Any], finish: Callable[[Any], Any]):
        self.func = func
        self.finish = finish


def _dumps(value: Any) -> bytes:
    from distributed.protocol.pickle import dumps

    return dumps(value)


def _loads(blob: bytes) -> Any:
    from distributed.protocol.pickle import loads

    return loads(blob)


def shipped_values(compiled: Any, namespace: dict[str, Any]) -> dict[str, bytes]:
    """The serialized values of the namespace names the body reads; names an error on the first that fails."""
    out: dict[str, bytes] = {}
    for name in sorted(compiled.names_read()):
        if name in _LOCAL_ONLY or (name.startswith("__") and name.endswith("__")) or name not in namespace:
            continue
        value = namespace[name]
        try:
            out[name] = _dumps(value)
        except Exception as exc:  # noqa: BLE001 - reported with the name and the cause
            raise CellShippingError(
                f"the cell reads {name!r} ({type(value).__name__}), which cannot be shipped to the Dask cluster: "
                f"{type(exc).__name__}: {exc}. Create it inside the cell, or run the cell locally "
                "(drop --executor dask)"
            ) from None
    return out


def prepare(compiled: Any, sink: Any, name: str) -> RemoteCellCall:
    """Build one run's shipment (on the kernel's loop): values now, the body's names, how to finish."""
    from functools import partial

    values = shipped_values(compiled, compiled.namespace)
    assigned = tuple(sorted(compiled.names_assigned() - _LOCAL_ONLY))
    deleted = tuple(sorted(compiled.names_deleted()))
    func = partial(run_cell_on_worker, compiled.source, compiled.filename, values, assigned, deleted)
    func.__name__ = name  # the Dask task key shows the job's name
    return RemoteCellCall(func, partial(_finish, compiled.namespace, sink))


def _finish(namespace: dict[str, Any], sink: Any, reply: dict[str, Any]) -> Any:
    """Back on the kernel's loop: output to the job's area, then the names and the value (on success)."""
    if sink is not None:
        for stream, text in reply["printed"]:
            sink.write(stream, text)
        if reply["displays"]:
            from IPython.display import display

            from .kernel import route_output

            with route_output(sink):
                for args, kwargs in reply["displays"]:
                    display(*(_loads(a) for a in args), **kwargs)
    error = reply.get("error")
    if error is not None:
        exc = _loads(error)
        if sink is not None:
            sink.show_exception(exc)
        raise exc
    for key, blob in reply["names"].items():
        namespace[key] = _loads(blob)
    for key in reply["deleted"]:
        namespace.pop(key, None)
    return _loads(reply["value"])


def run_cell_on_worker(source: str, filename: str, values: dict[str, bytes], assigned: tuple[str, ...],
                       deleted: tuple[str, ...]) -> dict[str, Any]:
    """Runs on the worker: the body in a namespace of the shipped values; returns what goes back."""
    from .cell import compile_cell

    printed: list[tuple[str, str]] = []
    displays: list[tuple[list[bytes], dict[str, Any]]] = []

    def print_(*args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False) -> None:
        if file is not None and file not in (sys.stdout, sys.stderr):
            builtins.print(*args, sep=sep, end=end, file=file, flush=flush)
            return
        stream = "stderr" if file is sys.stderr else "stdout"
        text = (" " if sep is None else sep).join(map(str, args))
        printed.append((stream, text + ("\n" if end is None else end)))

    def display_(*objs: Any, **kwargs: Any) -> None:
        displays.append(([_dumps(o) for o in objs], kwargs))

    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins,
                                 "print": print_, "display": display_}
    for key, blob in values.items():
        namespace[key] = _loads(blob)
    reply: dict[str, Any] = {"printed": printed, "displays": displays, "names": {}, "deleted": deleted,
                             "value": None, "error": None}
    try:
        value = compile_cell(source, namespace, filename=filename)()
        names = {}
        for key in assigned:
            if key in namespace:
                names[key] = _ship_back(key, namespace[key], "assigned")
        reply["names"] = names
        reply["value"] = _ship_back("the last expression", value, "value")
    except BaseException as exc:  # noqa: BLE001 - sent back, recorded as the run's error
        try:
            reply["error"] = _dumps(exc)
        except Exception:  # noqa: BLE001 - an exception that cannot travel: keep its words
            reply["error"] = _dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
    return reply


def _ship_back(name: str, value: Any, what: str) -> bytes:
    try:
        return _dumps(value)
    except Exception as exc:  # noqa: BLE001 - reported with the name and the cause
        cause = f"{type(exc).__name__}: {exc}"
    if what == "value":
        raise CellShippingError(
            f"the value of the last expression ({type(value).__name__}) cannot be sent back from the Dask "
            f"worker: {cause}. End the cell with something serializable (or with ';' to send nothing back)")
    raise CellShippingError(
        f"the cell assigned {name!r} ({type(value).__name__}), which cannot be sent back from the Dask worker: "
        f"{cause}. Delete it at the end of the cell (del {name}) or keep it inside a function")
