"""Layering rules from DESIGN.md that a refactor could quietly break."""

from __future__ import annotations

import ast

from tests.conftest import REPO_ROOT


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_library_imports_nothing_from_the_api_or_flask() -> None:
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(imported_modules(path) & {"api", "flask"})
        for path in (REPO_ROOT / "recon").rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}
