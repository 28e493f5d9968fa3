"""The house rules of docs/architecture.md, checked on the source tree.

Every module fits one reading (at most 600 lines), the DICOM core stays sans-IO and
self-contained, decode knows nothing of flows or DICOM, and no two modules import each
other round in a circle. Imports are read with ``ast`` (module level and function level
alike: a function-level import is still a dependency). Imports under ``if TYPE_CHECKING:``
never run, so they count for cycles only: two modules that need each other's types lean on
each other as much as two that call each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dicomsniffd"
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def _nearest_module(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, typing_too: bool = False) -> set[str]:
    """The package modules that ``module`` imports (names resolved to real modules);
    ``typing_too``: also those imported only for type checking."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node) and not typing_too:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve(module, is_package, node.level, node.module)
            else:
                base = node.module or ""
            # "from pkg import mod" imports the module pkg.mod when there is one
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            for child in ast.iter_child_nodes(node):
                visit(child)
            return
        for name in names:
            if name == "dicomsniffd" or name.startswith("dicomsniffd."):
                target = _nearest_module(name)
                if target and target != module:
                    found.add(target)

    visit(tree)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}
TYPED_GRAPH = {m: imports_of(m, typing_too=True) for m in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_fits_one_reading(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]} has {lines} lines (at most {MAX_LINES})"


def test_dicom_core_imports_nothing_outside_itself() -> None:
    leaks = {
        m: sorted(t for t in GRAPH[m] if not t.startswith("dicomsniffd.dicom"))
        for m in GRAPH
        if m.startswith("dicomsniffd.dicom")
    }
    assert not {m: t for m, t in leaks.items() if t}


def test_decode_knows_nothing_of_flows_or_dicom() -> None:
    bad = sorted(
        t
        for t in GRAPH["dicomsniffd.decode"]
        if t.startswith(("dicomsniffd.flows", "dicomsniffd.dicom"))
    )
    assert not bad


def test_no_import_cycles() -> None:
    # An __init__ importing its own submodules (re-exports) and a submodule importing a
    # sibling through the package are one room, not a cycle: only edges from a module to
    # modules outside its own package __init__ count for the __init__.
    def edges(m: str) -> set[str]:
        out = set(TYPED_GRAPH[m])
        if MODULES[m].name == "__init__.py":
            out = {t for t in out if not t.startswith(m + ".")}
        else:
            parent = m.rpartition(".")[0]
            out.discard(parent)
        return out

    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges(m)):
            if state.get(t) == 1:
                cycles.append([*stack[stack.index(t) :], t])
            elif t not in state:
                walk(t)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            walk(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_imports() -> None:
    # a checker that reads no imports would pass every rule above
    assert "dicomsniffd.dicom.events" in GRAPH["dicomsniffd.sinks.eventlog"]
    assert any(t.startswith("dicomsniffd.dicom") for t in GRAPH["dicomsniffd.streams.detect"])
