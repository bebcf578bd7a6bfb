"""The layering of the packages: ops is a pure library, search never reaches into service."""

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
