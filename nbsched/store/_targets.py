"""Turning a stored target (``Job.definition()["target"]``, plain JSON) back into a callable.

This is the only place where the store runs code, and it is reached only from
:meth:`nbsched.Scheduler.restore` (an explicit call).  A target's ``kind`` picks its loader:

* ``"function"``: import ``module`` and walk ``qualname``; when that fails (a notebook's
  ``__main__`` function, a deleted module) and the source was stored, the source - its decorators
  removed, so ``@sched.job(...)`` does not add the job again - is executed in ``namespace`` and the
  function taken from there.  Lambdas and nested functions cannot be rebuilt from source.
* ``"cell"``: the ``%%schedule`` magic's cells; the default loader compiles the body with
  :func:`nbsched._cell.compile_cell` (the magic may register its own loader).
* ``"notebook_file"``: :meth:`nbsched.Scheduler.add_notebook`'s jobs, rebuilt (and checked again:
  the file must still be there) by :func:`nbsched.notebook_files.load_notebook_target`.

Other kinds are added with :func:`register_target_loader`.
"""
from __future__ import annotations

import ast
import hashlib
import json
import importlib
import linecache
import textwrap
from typing import Any, Callable

from ..notebook_files import load_notebook_target

__all__ = ["register_target_loader", "load_target", "TargetLoader", "source_preview", "target_label", "code_hash",
           "target_code"]

TargetLoader = Callable[[dict, dict], Callable[[], Any]]
_LOADERS: dict[str, TargetLoader] = {}


def register_target_loader(kind: str, loader: TargetLoader) -> None:
    """Register ``loader(target_dict, namespace) -> callable`` for stored targets of ``kind``.

    The ``%%schedule`` magic registers ``"cell"``; register your own kind for callables that
    describe themselves with ``func.__nbsched_target__ = {"kind": kind, ...}``.
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"invalid target kind {kind!r}: use a non-empty string such as 'cell'")
    if not callable(loader):
        raise TypeError(f"a target loader must be callable as loader(target, namespace), got {loader!r}")
    _LOADERS[kind] = loader


def load_target(target: Any, namespace: dict) -> Callable[[], Any]:
    """The callable for a stored target; raises ``LookupError``/``ValueError`` saying why not."""
    if not isinstance(target, dict):
        raise ValueError(f"the stored target {target!r} is not a description (expected a JSON object)")
    kind = target.get("kind")
    loader = _LOADERS.get(kind)
    if loader is None:
        raise LookupError(f"no loader for target kind {kind!r}: the kinds known are "
                          f"{', '.join(map(repr, _LOADERS))}; register one with "
                          "nbsched.store.register_target_loader(kind, loader)")
    func = loader(target, namespace)
    if not callable(func):
        raise TypeError(f"the {kind!r} loader returned {func!r}, which is not callable")
    return func


# ------------------------------------------------------------------------------------- functions
def _walk(obj: Any, qualname: str) -> Any:
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _load_function(target: dict, namespace: dict) -> Callable[[], Any]:
    module, qualname, source = target.get("module"), target.get("qualname") or "", target.get("source")
    nested = "<locals>" in qualname or "<lambda>" in qualname
    reason = None
    if module and not nested:
        try:
            if module == "__main__" and namespace is not None and qualname.split(".")[0] in namespace:
                return _walk_dict(namespace, qualname)
            return _walk(importlib.import_module(module), qualname)
        except ImportError as exc:
            reason = f"module {module!r} cannot be imported ({exc})"
        except AttributeError:
            reason = f"module {module!r} has no {qualname!r}"
    if nested:
        reason = f"{qualname!r} is a lambda or a nested function"
    if not source or nested:
        raise LookupError(f"cannot rebuild function {module}.{qualname}: {reason or 'no module recorded'}"
                          + ("" if source else " and no source was stored")
                          + "; define it at module level, or re-add the job in this kernel")
    name = qualname.split(".")[-1]
    code = _without_decorators(textwrap.dedent(source), name)
    filename = f"<nbsched-restored {module}.{qualname}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
    exec(compile(code, filename, "exec"), namespace)  # a method comes back as a plain function
    return namespace[name]


def _walk_dict(namespace: dict, qualname: str) -> Any:
    head, _, rest = qualname.partition(".")
    obj = namespace[head]
    return _walk(obj, rest) if rest else obj


def _without_decorators(source: str, name: str) -> str:
    """The source of function ``name`` with its decorator lines removed (they could re-add the job)."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            node.decorator_list = []
            return ast.unparse(ast.Module(body=[node], type_ignores=[])) + "\n"
    raise LookupError(f"the stored source does not define a function named {name!r}")


# ------------------------------------------------------------------------------------------ cells
def _load_cell(target: dict, namespace: dict) -> Callable[[], Any]:
    # The cell compiler belongs to the notebook front end, which registers the real loader when it
    # is imported (``%load_ext nbsched`` does that).  The store never imports it itself.
    raise LookupError("stored cells are rebuilt by nbsched's notebook integration: run '%load_ext nbsched' "
                      "(or 'import nbsched.notebook') before restore()")


register_target_loader("function", _load_function)
register_target_loader("cell", _load_cell)
register_target_loader("notebook_file", load_notebook_target)  # Scheduler.add_notebook's jobs


# ---------------------------------------------------------------------------------- for listings
def target_label(target: Any) -> str:
    if not isinstance(target, dict):
        return repr(target)
    if target.get("kind") == "function":
        return f"{target.get('module')}.{target.get('qualname')}"
    return str(target.get("name") or target.get("kind"))


def source_preview(target: Any, width: int = 72) -> str:
    """The first meaningful lines of the stored code, shortened to ``width`` characters."""
    source = target.get("source") if isinstance(target, dict) else None
    if not source:
        return ""
    lines = [ln.strip() for ln in str(source).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("#", "@"))]
    text = " ⏎ ".join(lines[:3])
    return text if len(text) <= width else text[: width - 1] + "…"


def code_hash(target: Any) -> str:
    """A fingerprint of what a stored target runs: sha256 of its canonical JSON (first 16 hex digits)."""
    text = json.dumps(target, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def target_code(target: Any) -> str:
    """The full stored code of a target - what restore() would execute (empty when none is stored)."""
    source = target.get("source") if isinstance(target, dict) else None
    return str(source) if source else ""
