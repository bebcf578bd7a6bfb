"""The layering of the packages: ops is a pure library, search never reaches into service.

Inside ops the modules form no import cycle, counting every import (module level, inside
functions and under ``TYPE_CHECKING``), and ``ops.policy`` is the leaf the others build on: it
imports nothing of ops but the catalogue.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"ops": {"search", "service"}, "search": {"service"}}
# torch.load / pickle in any form; safetensors' own `safetensors.torch.load` is safe.
UNPICKLING = re.compile(
    r"(?<!safetensors\.)\btorch\.load\(|\bimport (cloud)?pickle\b|\bpickle\.loads?\(|cloudpickle"
)


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_forbidden_layers(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no modules"
    offenders = {
        str(f.relative_to(ROOT)): sorted(_imported_top_levels(f) & FORBIDDEN[package])
        for f in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_rule_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "mod.py"
    bad.write_text("import os\nfrom service.app import create_app\n")
    assert "service" in _imported_top_levels(bad)


def _module_graph(package_dir: Path) -> dict[str, set[str]]:
    """Each module of a package -> the package's modules it imports, anywhere in the file.

    The package's ``__init__`` is left out: it only re-exports names, lazily.
    """
    package = package_dir.name
    modules = {f"{package}.{f.stem}": f for f in package_dir.glob("*.py") if f.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = imported & set(modules)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as a path that ends where it starts, or []."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        for target in sorted(graph[node]):
            found = visit(target, [*path, node])
            if found:
                return found
        done.add(node)
        return []

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return []


def test_ops_modules_import_no_cycle() -> None:
    assert _cycle(_module_graph(ROOT / "ops")) == []


def test_policy_is_the_leaf_of_ops() -> None:
    assert _module_graph(ROOT / "ops")["ops.policy"] <= {"ops.catalogue"}


def test_cycle_checker_sees_deferred_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
    )
    (package / "c.py").write_text("import pkg.a\n")
    graph = _module_graph(package)
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.a"}}
    assert _cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]


def test_nothing_unpickles() -> None:
    """Checkpoints are safetensors only: no torch.load or pickle anywhere in the packages."""
    hits = [
        str(f.relative_to(ROOT))
        for pkg in ("ops", "search", "service")
        for f in (ROOT / pkg).rglob("*.py")
        if UNPICKLING.search(f.read_text())
    ]
    assert hits == []


@pytest.mark.parametrize(
    ("line", "unpickles"),
    [
        ("state = torch.load(path)", True),
        ("import pickle", True),
        ("data = pickle.loads(blob)", True),
        ("import cloudpickle", True),
        ("state = safetensors.torch.load(data)", False),
        ("state = load_file(path)", False),
    ],
)
def test_unpickling_pattern(line: str, unpickles: bool) -> None:
    assert bool(UNPICKLING.search(line)) is unpickles
