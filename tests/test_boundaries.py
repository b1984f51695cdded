"""Architecture boundaries: onnx only in memplan.frontend (and memplan.host, which evaluates host layers), ortools only in memplan.solve,
rich only in memplan.report, dask and distributed only in memplan.sweep (ARCHITECTURE.md: boundaries that a test enforces)."""

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
    "matplotlib": lambda rel: rel.as_posix() == "plot.py",  # the optional extra memplan[plot]
    "dask": lambda rel: rel.as_posix() == "sweep.py",
    "distributed": lambda rel: rel.as_posix() == "sweep.py",
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
    assert "matplotlib" in _imports(SRC / "plot.py")


# ---------------------------------------------------------------------------- memplan's own layers
#: memplan's packages and top-level modules, lowest first: each may import only those before it
#: (function-local imports included, so a back-edge cannot hide inside a function)
LAYERS = ("errors", "config", "alloc", "pack", "ir", "geometry", "host", "frontend", "cost", "plan", "baselines", "solve",
          "execute", "firmware", "zoo", "report", "plot", "driver", "api", "sweep", "cli", "__main__", "__init__")


def _unit(rel: Path) -> str:
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _memplan_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        out.update(n.split(".")[1] for n in names if n.startswith("memplan.") and n.count(".") >= 1)
    return out


def test_every_unit_has_a_layer() -> None:
    units = {_unit(p.relative_to(SRC)) for p in SRC.rglob("*.py")}
    assert units <= set(LAYERS), f"place {sorted(units - set(LAYERS))} in LAYERS"


def test_imports_go_only_down_the_layers() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    back_edges = []
    for p in sorted(SRC.rglob("*.py")):
        me = _unit(p.relative_to(SRC))
        for other in _memplan_imports(p):
            if other != me and rank.get(other, len(LAYERS)) >= rank[me]:
                back_edges.append(f"{p.relative_to(SRC)} imports memplan.{other}")
    assert back_edges == []


def test_the_layer_checker_sees_local_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from memplan.driver import plan_graph\n    import memplan.frontend.convert\n")
    assert _memplan_imports(probe) == {"driver", "frontend"}
