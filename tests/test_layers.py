"""The import rules of the tree, checked by parsing every module (no import side effects).

1. Layers run one way: edge → cluster → origin. origin imports nothing of ours; cluster only
   origin. (origin/demo is part of origin and follows its rule.)
2. No cycles between modules: module-level imports, those under `if TYPE_CHECKING:`
   included (a cycle of types is still a cycle of knowledge), form a DAG, inside a package and
   across packages. Imports inside functions do not count; keep them rare.
3. Folders import only the folders CONTRIBUTING.md's table lets them (FOLDERS below, the same
   table): imports inside functions and under `if TYPE_CHECKING:` count. A new arrow between
   folders is a decision: add it to both, or move the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"origin": {"origin"}, "cluster": {"cluster", "origin"}, "edge": {"edge", "cluster", "origin"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


# folder → the other folders it may import (CONTRIBUTING.md, "The tree, one screen")
FOLDERS: dict[str, set[str]] = {
    "edge": {"edge.cli"},  # edge/__main__.py
    "edge.app": {
        "edge.config",
        "edge.fill",
        "edge.metrics",
        "edge.peering",
        "edge.purge",
        "edge.request",
        "edge.rules",
        "edge.server",
        "edge.store",
        "cluster",
        "origin",
    },
    "edge.cli": {"edge.app", "edge.config", "edge.rules", "cluster"},
    "edge.config": {"edge.rules", "cluster", "origin"},
    "edge.server": {"edge.config"},
    "edge.request": {
        "edge.fill",
        "edge.metrics",
        "edge.peering",
        "edge.purge",
        "edge.rules",
        "edge.server",
        "edge.store",
        "cluster",
        "origin",
    },
    "edge.fill": {"edge.config", "edge.rules", "edge.store", "origin"},
    "edge.rules": {"edge.store", "origin"},
    "edge.store": set(),
    "edge.metrics": {"edge.purge", "edge.rules", "edge.server", "edge.store", "cluster", "origin"},
    "edge.peering": {"edge.server", "edge.store", "cluster", "origin"},
    "edge.purge": {"edge.config", "edge.rules", "edge.store", "cluster"},
    "origin": set(),
    "origin.demo": set(),
    "cluster": {"origin"},
}


MODULES = {_module_name(path): path for package in ALLOWED for path in sorted((ROOT / package).rglob("*.py"))}


def _our_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


def _folder(module: str) -> str:
    """The folder a module lives in: `edge.fill.keep` → `edge.fill`; top-level files → the package."""
    parts = module.split(".")
    if len(parts) >= 2 and (ROOT / parts[0] / parts[1]).is_dir():
        return ".".join(parts[:2])
    return parts[0]


def _all_imports(path: Path) -> set[str]:
    """Every module of ours this file names in an import, wherever the import sits."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] in ALLOWED}


def _folder_offenders(imports: dict[str, set[str]], allowed: dict[str, set[str]]) -> dict[str, list[str]]:
    """Each module that imports a folder its own folder may not import, with those folders."""
    offenders: dict[str, list[str]] = {}
    for module, names in sorted(imports.items()):
        folder = _folder(module)
        if folder not in allowed:
            offenders[module] = [f"its folder {folder} is not in FOLDERS / CONTRIBUTING.md"]
            continue
        wrong = {_folder(name) for name in names} - allowed[folder] - {folder}
        if wrong:
            offenders[module] = sorted(wrong)
    return offenders


def _top_level_imports(path: Path) -> set[str]:
    """Modules of ours this module imports at its top level (TYPE_CHECKING blocks included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    statements: list[ast.stmt] = []
    pending = list(tree.body)
    while pending:
        stmt = pending.pop()
        if isinstance(stmt, ast.If):
            pending.extend(stmt.body + stmt.orelse)
        elif isinstance(stmt, ast.Try):
            pending.extend(stmt.body + stmt.orelse + stmt.finalbody)
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            statements.append(stmt)
    found: set[str] = set()
    for stmt in statements:
        if isinstance(stmt, ast.Import):
            found.update(alias.name for alias in stmt.names if alias.name in MODULES)
        elif stmt.module and stmt.level == 0:
            for alias in stmt.names:
                sub = f"{stmt.module}.{alias.name}"
                if sub in MODULES:
                    found.add(sub)  # `from pkg import module`
                elif stmt.module in MODULES:
                    found.add(stmt.module)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
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
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_lower_layers_when_parsed(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_our_imports(path) - ALLOWED[package])
        for path in (ROOT / package).rglob("*.py")
        if _our_imports(path) - ALLOWED[package]
    }
    assert offenders == {}, f"{package} imports a higher layer: {offenders}"


def test_modules_import_each_other_without_cycles_when_parsed() -> None:
    graph = {name: _top_level_imports(path) - {name} for name, path in MODULES.items()}
    assert _cycles(graph) == []


def test_cycle_finder_reports_a_two_module_cycle() -> None:
    """The checker itself: a back-edge makes a cycle, a chain does not."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_folders_import_only_what_the_contributing_table_allows_when_parsed() -> None:
    imports = {name: _all_imports(path) for name, path in MODULES.items()}
    offenders = {str(MODULES[m].relative_to(ROOT)): f for m, f in _folder_offenders(imports, FOLDERS).items()}
    assert offenders == {}, f"imports across folders that CONTRIBUTING.md does not allow: {offenders}"


def test_folder_table_lists_every_folder_and_only_real_ones() -> None:
    assert {_folder(name) for name in MODULES} == set(FOLDERS)


def test_folder_checker_names_the_module_of_a_back_arrow() -> None:
    """The checker itself: rules importing request (a back-arrow) is reported, by module."""
    imports = {"edge.rules.freshness": {"edge.request.handler", "edge.store.entry"}, "edge.store.base": set()}
    assert _folder_offenders(imports, FOLDERS) == {"edge.rules.freshness": ["edge.request"]}
    assert _folder_offenders({"edge.fill.keep": {"edge.rules.key"}}, FOLDERS) == {}
