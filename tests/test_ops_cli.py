"""``memplan ops`` lists the importer's operators; an unsupported one is refused in one short
line that points there instead of listing them."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from memplan.cli import main
from memplan.frontend.convert import supported_operators


def test_ops_lists_layers_and_folded_operators(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ops", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"Conv", "Add", "Mul", "DepthToSpace", "Slice", "QuantizeLinear"} <= set(doc["layers"])
    assert "Gather" in doc["constants"] and "Gather" not in doc["layers"]
    assert doc == {k: list(v) for k, v in supported_operators().items()}
    assert main(["ops"]) == 0
    assert "host CPU" in capsys.readouterr().out


def test_unsupported_operator_is_one_short_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Erf", ["r"], ["y"])], "g", [x], [y])
    path = tmp_path / "erf.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    assert main(["inspect", str(path), "--host-ops", "error"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("memplan: error: ") and "\n" not in err
    assert "Erf" in err and "memplan ops" in err and len(err) - len(str(path)) < 160
