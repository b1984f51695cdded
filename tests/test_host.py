"""Host fallback: operators memplan does not tile run on the host CPU as host layers, and the
accelerator is planned around them (every planner; verified bit-exactly)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from memplan.cli import main
from memplan.config import SolverConfig, load_profile
from memplan.driver import plan_graph
from memplan.errors import MemplanError, UnsupportedOpError
from memplan.execute.float_ref import run_float
from memplan.execute.verify import prepare, verify_document
from memplan.frontend import load_model
from memplan.ir.ops import OpKind

SHA = "cd" * 32
CPSAT = SolverConfig(time_limit_s=10, deterministic=True, max_fuse_depth=6)


def _w(name: str, *shape: int, seed: int = 0) -> onnx.TensorProto:
    return numpy_helper.from_array(np.random.default_rng(seed).normal(0, 0.3, shape).astype(np.float32), name)


def _save(path: Path, nodes: list[onnx.NodeProto], outputs: list[onnx.ValueInfoProto], inits: list[onnx.TensorProto]) -> Path:
    g = helper.make_graph(nodes, path.stem, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                          outputs, inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def middle_model(path: Path) -> Path:
    """conv -> Erf (a host layer) -> conv."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Erf", ["a"], ["e"], name="erf"),
             helper.make_node("Conv", ["e", "w2"], ["y"], pads=[1, 1, 1, 1], name="conv2")]
    return _save(path, nodes, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 12, 12])],
                 [_w("w1", 8, 3, 3, 3), _w("b1", 8, seed=1), _w("w2", 4, 8, 3, 3, seed=2)])


def tail_model(path: Path) -> Path:
    """ArgMax over channels (int32 indices) and a Transpose -> rank-3 Reshape box head."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["s"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("ArgMax", ["s"], ["cls"], axis=1, keepdims=0, name="argmax"),
             helper.make_node("Conv", ["r", "w3"], ["bx"], name="conv3"),
             helper.make_node("Transpose", ["bx"], ["bt"], perm=[0, 2, 3, 1], name="tr"),
             helper.make_node("Reshape", ["bt", "shp"], ["boxes"], name="reshape")]
    return _save(path, nodes, [helper.make_tensor_value_info("cls", TensorProto.INT64, [1, 12, 12]),
                               helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 144, 4])],
                 [_w("w1", 8, 3, 3, 3), _w("b1", 8, seed=1), _w("w2", 5, 8, 3, 3, seed=2), _w("w3", 4, 8, 1, 1, seed=3),
                  numpy_helper.from_array(np.array([1, -1, 4], dtype=np.int64), "shp")])


MODELS = {"middle": middle_model, "tail": tail_model}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_host_layers_import_and_match_onnxruntime(tmp_path: Path, name: str) -> None:
    import onnxruntime as ort  # a test dependency: missing, the test fails
    path = MODELS[name](tmp_path / f"{name}.onnx")
    graph = load_model(path)
    assert graph.host_layers and all(graph.layers[i].op is OpKind.HOST for i in graph.host_layers)
    x = np.random.default_rng(5).standard_normal((1, 3, 12, 12)).astype(np.float32)
    ours = run_float(graph, {"x": x})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for out, want in zip((o.name for o in sess.get_outputs()), sess.run(None, {"x": x})):
        np.testing.assert_allclose(ours[out], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("strategy", ["layer", "greedy", "cpsat"])
def test_planned_around_host_layers_and_verified_bit_exactly(tmp_path: Path, name: str, strategy: str) -> None:
    graph = load_model(MODELS[name](tmp_path / f"{name}.onnx"))
    hw = load_profile("generic-npu").with_sram(2048)
    doc = json.loads(json.dumps(plan_graph(graph, hw, strategy=strategy, config=CPSAT).to_json(SHA)))
    hosts = [c for c in doc["commands"] if c["op"] == "host"]
    assert [doc["layers"][c["layer"]]["name"] for c in hosts] == [graph.layers[i].id for i in graph.host_layers]
    homes = {doc["tensors"][t]["home"] for c in hosts for t in (*c["inputs"], *c["outputs"])}
    assert homes == {"dram"}  # a host layer reads and writes DRAM only
    assert doc["host_totals"]["layers"] == len(hosts) and doc["settings"]["host_ops"] == "cpu"
    assert not set(doc["decisions"]["resident"]) & graph.dram_only
    assert verify_document(graph, doc, SHA).passed


def test_host_ops_error_refuses_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tail_model(tmp_path / "tail.onnx")
    with pytest.raises(UnsupportedOpError, match="ArgMax"):
        load_model(path, host_ops="error")
    assert main(["inspect", str(path), "--host-ops", "error"]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "ArgMax" in err
    assert main(["inspect", str(path)]) == 0
    assert "host layer 'argmax' (ArgMax)" in capsys.readouterr().out


def test_corrupted_host_commands_are_rejected(tmp_path: Path) -> None:
    graph = load_model(middle_model(tmp_path / "middle.onnx"))
    hw = load_profile("generic-npu").with_sram(2048)
    doc = json.loads(json.dumps(plan_graph(graph, hw, strategy="greedy").to_json(SHA)))
    prepared = prepare(graph)
    k = next(i for i, c in enumerate(doc["commands"]) if c["op"] == "host")
    mutants = []
    for key, value in (("inputs", ["y"]), ("outputs", ["a"]), ("layer", "conv1"), ("step", 0), ("extra", 1)):
        m = copy.deepcopy(doc)
        m["commands"][k][key] = value
        mutants.append(m)
    m = copy.deepcopy(doc)
    del m["commands"][k]
    mutants.append(m)
    m = copy.deepcopy(doc)
    m["commands"].insert(0, m["commands"].pop(k))  # before its input is stored
    mutants.append(m)
    m = copy.deepcopy(doc)
    m["host_totals"]["dram_read"] += 1
    mutants.append(m)
    m = copy.deepcopy(doc)
    m["settings"]["host_ops"] = "error"
    mutants.append(m)
    for m in mutants:
        with pytest.raises(MemplanError):
            verify_document(graph, m, SHA, prepared=prepared)
