"""Architecture boundaries: onnx only in memplan.frontend (and memplan.host, which evaluates host layers), ortools only in memplan.solve,
rich only in memplan.report (ARCHITECTURE.md: boundaries that a test enforces)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "memplan"
ALLOWED = {
    "onnx": lambda rel: rel.parts[0] == "frontend" or rel.as_posix() == "host.py",  # host layers evaluate ONNX nodes
    "onnxruntime": lambda rel: False,
    "ortools": lambda rel: rel.parts[0] == "solve",
    "rich": lambda rel: rel.as_posix() == "report.py",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_third_party_package_stays_in_its_stage(package: str) -> None:
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if package in _imports(p) and not ALLOWED[package](p.relative_to(SRC))]
    assert offenders == []


def test_the_checker_sees_imports() -> None:
    assert "onnx" in _imports(SRC / "frontend" / "export.py")
    assert "ortools" in _imports(SRC / "solve" / "model.py")
