"""Compile a ``%%schedule`` cell body once into a callable that can be run many times.

A cell magic receives its body as a string. To run it like a real cell we compile it ourselves,
the way IPython does:

* with ``ast.PyCF_ALLOW_TOP_LEVEL_AWAIT``, so ``await``/``async for``/``async with`` work at top
  level; evaluating such code returns a coroutine;
* as module-level code evaluated with the user namespace as globals, so assignments, ``del``,
  ``import`` and ``def`` land in the namespace exactly as in a normal cell. (Wrapping the body in an
  ``async def`` would turn every assignment into a local that vanishes when the run ends.)
* a trailing expression statement is split off and compiled in ``eval`` mode: its value is the
  run's return value. A trailing ``;`` silences it, as in a cell.

The source is registered with :mod:`linecache` under a stable filename, so tracebacks of errors
raised inside the body show the cell's own lines.

Not handled here: IPython-only syntax (``%magic``, ``!shell``). Pass the body through
``shell.transform_cell`` first if that is wanted.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import linecache
from collections.abc import Awaitable
from types import CodeType
from typing import Any

__all__ = ["CompiledCell", "compile_cell"]

_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


def _default_filename(source: str) -> str:
    digest = hashlib.sha1(source.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"<schedule-cell-{digest}>"


def _register_source(filename: str, source: str) -> None:
    # mtime None: linecache.checkcache() leaves the entry alone (IPython uses the same trick).
    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    linecache.cache[filename] = (len(source), None, lines, filename)


def _is_coroutine_code(code: CodeType | None) -> bool:
    return code is not None and bool(code.co_flags & inspect.CO_COROUTINE)


def _ends_with_semicolon(source: str, node: ast.stmt) -> bool:
    lines = source.splitlines()
    end_line = node.end_lineno or node.lineno
    rest = lines[end_line - 1][(node.end_col_offset or 0):]
    return rest.lstrip().startswith(";")


_READ_OPS = ("LOAD_NAME", "LOAD_GLOBAL", "LOAD_FROM_DICT_OR_GLOBALS", "DELETE_NAME", "DELETE_GLOBAL")
_STORE_OPS = ("STORE_NAME",)


def _names(codes: list[CodeType], ops: tuple[str, ...], *, nested: bool) -> set[str]:
    """``argval`` of the instructions ``ops`` in ``codes`` (and, if ``nested``, in code objects inside)."""
    import dis

    found: set[str] = set()
    stack = list(codes)
    while stack:
        code = stack.pop()
        for ins in dis.get_instructions(code):
            if ins.opname in ops and isinstance(ins.argval, str):
                found.add(ins.argval)
        if nested:
            stack.extend(c for c in code.co_consts if isinstance(c, CodeType))
    return found


class CompiledCell:
    """A cell body compiled once; call it to run the body again in its namespace.

    ``cell()`` returns the value of the trailing expression (``None`` if the body ends with a
    statement) for a synchronous body, or a fresh coroutine returning that value when the body
    awaits (``is_async``). Exceptions raised by the body propagate unchanged.
    """

    __slots__ = ("source", "filename", "namespace", "is_async", "_body", "_value")

    def __init__(
        self,
        source: str,
        filename: str,
        namespace: dict[str, Any],
        body: CodeType | None,
        value: CodeType | None,
    ) -> None:
        self.source = source
        self.filename = filename
        self.namespace = namespace
        self._body = body
        self._value = value
        self.is_async = _is_coroutine_code(body) or _is_coroutine_code(value)

    def __call__(self) -> Any | Awaitable[Any]:
        if self.is_async:
            return self._run_async()
        if self._body is not None:
            eval(self._body, self.namespace)
        if self._value is not None:
            return eval(self._value, self.namespace)
        return None

    async def _run_async(self) -> Any:
        # Each part is evaluated separately; a part that awaits yields a coroutine to await.
        if self._body is not None:
            result = eval(self._body, self.namespace)
            if inspect.iscoroutine(result):
                await result
        if self._value is not None:
            value = eval(self._value, self.namespace)
            if inspect.iscoroutine(value):
                value = await value
            return value
        return None

    def names_read(self) -> frozenset[str]:
        """Global names the body (and functions, classes, comprehensions in it) may read.

        Found from the compiled bytecode, so it is exactly what the code looks up by name: a name
        the body assigns before reading is included too (it may be read before it is assigned).
        """
        return frozenset(_names(self._codes(), _READ_OPS, nested=True))

    def names_assigned(self) -> frozenset[str]:
        """Names the body binds in its namespace (assignments, imports, ``def``, ``class``, ``global``)."""
        return frozenset(_names(self._codes(), _STORE_OPS, nested=False)) | frozenset(
            _names(self._codes(), ("STORE_GLOBAL",), nested=True))

    def names_deleted(self) -> frozenset[str]:
        """Names the body deletes from its namespace (``del x`` at top level or ``global x; del x``)."""
        return frozenset(_names(self._codes(), ("DELETE_NAME",), nested=False)) | frozenset(
            _names(self._codes(), ("DELETE_GLOBAL",), nested=True))

    def _codes(self) -> list[CodeType]:
        return [code for code in (self._body, self._value) if code is not None]

    def __repr__(self) -> str:
        kind = "async" if self.is_async else "sync"
        return f"<CompiledCell {self.filename} ({kind}, {len(self.source.splitlines())} lines)>"


def compile_cell(
    source: str, namespace: dict[str, Any], *, filename: str | None = None
) -> CompiledCell:
    """Compile ``source`` once into a :class:`CompiledCell` running in ``namespace``.

    ``filename`` names the code in tracebacks (default: ``<schedule-cell-HASH>``); use a stable
    one such as ``<schedule-cell-JOBNAME>`` so re-running the cell replaces the registered source.
    Raises :class:`SyntaxError` (with ``filename`` and the line number) if the body does not compile.
    """
    if filename is None:
        filename = _default_filename(source)
    # Register before compiling so a SyntaxError traceback can show the offending line too.
    _register_source(filename, source)
    tree = ast.parse(source, filename=filename, mode="exec", feature_version=None)
    statements = tree.body
    value_code: CodeType | None = None
    if statements and isinstance(statements[-1], ast.Expr):
        last = statements[-1]
        statements = statements[:-1]
        if not _ends_with_semicolon(source, last):
            expression = ast.Expression(body=last.value)
            value_code = compile(expression, filename, "eval", flags=_FLAGS, dont_inherit=True)
        else:
            # Silenced value: still evaluated for its side effects, as in a cell.
            statements = [*statements, last]
    body_code: CodeType | None = None
    if statements:
        module = ast.Module(body=statements, type_ignores=[])
        body_code = compile(module, filename, "exec", flags=_FLAGS, dont_inherit=True)
    return CompiledCell(source, filename, namespace, body_code, value_code)


def load_stored_cell(target: dict, namespace: dict) -> Any:
    """Rebuild a cell job stored by the store (the ``"cell"`` target loader)."""
    source = target.get("source")
    if not isinstance(source, str):
        raise LookupError("the stored cell has no source to compile")
    return compile_cell(source, namespace, filename=target.get("filename") or None)
