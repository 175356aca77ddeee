"""The import rules of the project's packages, and no import cycle among its modules.

Every ``import`` and ``from ... import`` statement of the project counts, at module level or
inside a function (a lazy import is still a dependency); imports under
``if TYPE_CHECKING:`` are annotations only and are skipped. The rules are the table in the
README ("Layout and import rules"):

* ``contracts`` imports nothing of ours;
* ``features`` imports ``contracts``;
* ``models`` imports ``contracts`` and ``features``;
* ``serving`` imports ``contracts``, and ``models.champion`` only (to load a champion);
* ``liquidation`` imports ``contracts`` and ``serving.standard`` only (plain snapshot data,
  never a model: the core runs without ML);
* ``venue`` imports ``contracts``, ``features`` (the market store, for prices), ``serving``
  (snapshot verification, strict JSON) and ``liquidation`` (the engine); never a model;
* ``pipelines`` may import every package; nothing imports ``pipelines``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PACKAGES = ("contracts", "features", "models", "serving", "liquidation", "venue", "pipelines")

ALLOWED: dict[str, tuple[str, ...]] = {
    "contracts": (),
    "features": ("contracts",),
    "models": ("contracts", "features"),
    "serving": ("contracts", "models.champion"),
    "liquidation": ("contracts", "serving.standard"),
    "venue": ("contracts", "features", "serving", "liquidation"),
    "pipelines": PACKAGES,
}
"""Per package, the packages (or single modules) of ours it may import."""


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in (PROJECT / package).rglob("*.py"):
            parts = list(path.relative_to(PROJECT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """Modules of ours that ``module`` imports (function-level too, ``TYPE_CHECKING`` not)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, *([node.module] if node.module else [])])
            names = [f"{base}.{alias.name}" for alias in node.names]
            names = [n if n in modules else base for n in names]
        else:
            continue
        for name in names:
            target = _owning_module(name, modules)
            if target is not None and target != module:
                yield target


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: set(imported_names(m, p, modules)) for m, p in modules.items()}


def test_packages_import_only_what_the_rules_allow() -> None:
    broken = []
    for module, targets in import_graph().items():
        package = module.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if other == package:
                continue
            allowed = ALLOWED[package]
            if other in allowed or any(target == a or target.startswith(a + ".") for a in allowed):
                continue
            broken.append(f"{module} imports {target}")
    assert not broken, "imports that break the README's rules:\n" + "\n".join(broken)


def test_no_import_cycle_among_project_modules() -> None:
    graph = import_graph()
    cycles = strongly_connected(graph)
    described = [
        "; ".join(f"{m} -> {sorted(graph[m] & set(cycle))}" for m in cycle) for cycle in cycles
    ]
    assert not cycles, "import cycles (break them by moving the shared part):\n" + "\n".join(
        described
    )


def test_the_cycle_check_sees_function_level_imports(tmp_path: Path) -> None:
    # The check itself: a cycle hidden in a function body is found, a TYPE_CHECKING one is not.
    (tmp_path / "a.py").write_text("def f():\n    import b\n")
    (tmp_path / "b.py").write_text("import a\n")
    (tmp_path / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n"
    )
    modules = {p.stem: p for p in tmp_path.glob("*.py")}
    graph = {m: set(imported_names(m, p, modules)) for m, p in modules.items()}
    assert graph == {"a": {"b"}, "b": {"a"}, "c": set()}
    assert [sorted(c) for c in strongly_connected(graph)] == [["a", "b"]]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Components of more than one module (Tarjan), each a cycle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for other in node.orelse:
                yield other
                yield from _runtime_nodes(other)
            continue
        yield node
        yield from _runtime_nodes(node)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _owning_module(name: str, modules: dict[str, Path]) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None
