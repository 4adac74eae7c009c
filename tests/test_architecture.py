"""The module map and its rules, checked from the source (see README, Development).

    nbsched/__init__.py            public names; imports the notebook package only inside functions
    nbsched/notebook/              may import everything below
    nbsched/store/   nbsched/engine/    each imports the bottom layer only (the engine may open a store
                                        lazily, inside attach_store); neither imports the other at
                                        module level, nor the notebook package
    nbsched/*.py (bottom layer)    imports only the bottom layer
"""
import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "nbsched"
ROOMS = ("engine", "store", "notebook")
# who may import whom (at module level); "bottom" is nbsched/*.py
ALLOWED = {
    "bottom": {"bottom"},
    "engine": {"bottom", "engine"},
    "store": {"bottom", "store"},
    "notebook": {"bottom", "engine", "store", "notebook"},
    "top": {"bottom", "engine", "store", "notebook", "top"},
}
LAZY_EXTRA = {"engine": {"store"}}  # inside a function: Scheduler.attach_store opens a path
UI = {"IPython", "ipywidgets", "ipykernel", "anywidget", "traitlets"}


def modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        name = ".".join(("nbsched", *rel.with_suffix("").parts))
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        yield name, path


def room_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ROOMS:
        return parts[1]
    if module in ("nbsched", "nbsched.__main__"):
        return "top"
    return "bottom"


def imports(module: str, path: pathlib.Path):
    """(imported module, at module level?) for every import, TYPE_CHECKING blocks left out."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rsplit(".", 1)[0]
    found = []

    def visit(node, top):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module
                for alias in child.names:  # "from . import events" imports the module nbsched.events
                    sub = f"{target}.{alias.name}"
                    found.append((sub if sub in ALL else target, top))
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, inner)

    visit(tree, True)
    return found


ALL = dict(modules())


def internal(target: str) -> str | None:
    """The nbsched module ``target`` names (or None for third-party / a name that is not a module)."""
    while target and target not in ALL:
        if "." not in target:
            return None
        target = target.rsplit(".", 1)[0]
    return target or None


@pytest.mark.parametrize("module", sorted(ALL))
def test_arrows_point_one_way(module):
    room = room_of(module)
    bad = []
    for target, top in imports(module, ALL[module]):
        head = target.split(".")[0]
        if room != "notebook" and room != "top" and head in UI:
            bad.append(f"{target} (UI library)")
        if room in ("bottom", "engine", "store") and head == "pandas" and top:
            bad.append(f"{target} (pandas at module level)")
        inner = internal(target)
        if inner is None or inner == module:
            continue
        allowed = ALLOWED[room] | (set() if top else LAZY_EXTRA.get(room, set()))
        if room_of(inner) not in allowed:
            bad.append(f"{inner} ({'module level' if top else 'inside a function'})")
    assert bad == [], f"{module} ({room}) imports {bad}"


def test_no_import_cycles():
    graph = {m: {internal(t) for t, top in imports(m, p) if top} - {None, m} for m, p in ALL.items()}
    # a package's __init__ importing its own submodules is how a package exposes them, not a cycle
    for m in graph:
        graph[m] = {t for t in graph[m] if not (t.startswith(m + ".") and ALL[m].name == "__init__.py")}
    cycles = []
    state: dict[str, int] = {}

    def walk(node, stack):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, stack + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m, [m])
    assert cycles == []


PRIVATE = re.compile(r"(^|\.)(sched|scheduler|_scheduler|_sched|job)$")


@pytest.mark.parametrize("module", sorted(m for m in ALL if room_of(m) != "engine"))
def test_nobody_outside_the_engine_touches_engine_state(module):
    """No ``scheduler._x`` / ``job._x`` outside nbsched/engine (job.py defines Job: it may use self._x)."""
    tree = ast.parse(ALL[module].read_text())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = ast.unparse(node.value)
            if PRIVATE.search(owner):
                bad.append(f"line {node.lineno}: {owner}.{node.attr}")
    assert bad == []


def test_the_wheel_never_asks_which_clock_it_has():
    for path in (PKG / "engine").glob("*.py"):
        code = re.sub(r'""".*?"""', "", path.read_text(), flags=re.S)  # docstrings may name the clocks
        assert not re.search(r"isinstance\([^)]*Clock|FakeClock|testing", code), path.name


def test_each_package_says_what_lives_there_and_what_it_may_import():
    for room in ROOMS:
        doc = ast.get_docstring(ast.parse((PKG / room / "__init__.py").read_text()))
        assert doc and "Lives here" in doc and "import" in doc, room
