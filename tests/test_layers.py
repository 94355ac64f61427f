"""Imports run one way: edge → cluster → origin. origin imports nothing of ours; cluster only origin."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"origin": {"origin"}, "cluster": {"cluster", "origin"}, "edge": {"edge", "cluster", "origin"}}


def _our_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_lower_layers_when_parsed(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_our_imports(path) - ALLOWED[package])
        for path in (ROOT / package).rglob("*.py")
        if _our_imports(path) - ALLOWED[package]
    }
    assert offenders == {}, f"{package} imports a higher layer: {offenders}"
