"""Bad input never ends in a traceback.

A corpus of broken model files, options, hardware profiles, solver configs and plan files,
each written into a temporary folder by the test. Every case runs the command line and must
fail the way the project promises: a non-zero exit code, exactly one line on stderr starting
with ``memplan: error:``, no traceback, and no file at the ``-o`` path afterwards. A few cases
also run through a real subprocess, so nothing reaches stderr behind the in-process check.

Plan files are covered at the file level only (missing, a folder, empty, not JSON, not an
object, made for another model); their content is checked by the plan schema tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from memplan.cli import main
from memplan.frontend.export import save_onnx
from memplan.zoo import build_zoo_model


# =====================================================================================
# Shared files: tiny models and a plan, written once per module
# =====================================================================================
@dataclass(frozen=True)
class Shared:
    root: Path
    toy: Path  # zoo toy_chain, 2 convs on 8x8x4
    plan: Path  # greedy plan of toy
    other: Path  # the same architecture with other weights
    other_plan: Path  # greedy plan of other


def tiny_model(
    *,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    opset: int = 13,
    input_dims: list[int | str] | None = None,
    extra_nodes: list[onnx.NodeProto] | None = None,
    output: str = "y",
) -> onnx.ModelProto:
    """input (1x2x4x4) -> Conv 3x3 (W, B) -> Relu -> y."""
    w = np.full((2, 2, 3, 3), 0.1, dtype=np.float32) if weight is None else weight
    b = np.zeros(2, dtype=np.float32) if bias is None else bias
    nodes = [
        helper.make_node("Conv", ["input", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
        *(extra_nodes or []),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_dims or [1, 2, 4, 4])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def write_model(d: Path, model: onnx.ModelProto, name: str = "m.onnx") -> str:
    path = d / name
    path.write_bytes(model.SerializeToString())
    return str(path)


def write(d: Path, name: str, content: str | bytes) -> str:
    path = d / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


GOOD_PROFILE = {
    "name": '"bad-hw"',
    "sram": '"64KiB"',
    "elem_bytes": "1",
    "bias_bytes": "4",
    "mac_pj": "1.0",
    "dram_pj_per_byte": "80.0",
    "sram_pj_per_byte": "0.0",
    "macs_per_cycle": "256",
    "dram_bytes_per_cycle": "16",
    "clock_mhz": "1000",
    "dma_overlaps_compute": "true",
}


def profile(d: Path, tiling: str = "", **changes: str | None) -> str:
    """A hardware profile TOML: the good one with keys changed (None removes a key)."""
    entries = {**GOOD_PROFILE, **changes}
    text = "".join(f"{k} = {v}\n" for k, v in entries.items() if v is not None)
    if "=" in tiling:
        text += f"[tiling]\n{tiling}\n"
    elif tiling:
        text += f"tiling = {tiling}\n"  # not a table
    return write(d, "hw.toml", text)


def solver_config(d: Path, text: str) -> str:
    return write(d, "solver.toml", text)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    root = tmp_path_factory.mktemp("shared")
    toy, other = root / "toy.onnx", root / "other.onnx"
    save_onnx(build_zoo_model("toy_chain", n=2, h=8, w=8, c=4), toy)
    save_onnx(build_zoo_model("toy_chain", n=2, h=8, w=8, c=4, seed=1), other)
    plan, other_plan = root / "toy.json", root / "other.json"
    for model, out in ((toy, plan), (other, other_plan)):
        assert main(["solve", str(model), "--strategy", "greedy", "--sram", "64KiB", "--json", "-o", str(out)]) == 0
    return Shared(root, toy, plan, other, other_plan)


# =====================================================================================
# The corpus: id -> argv built in a fresh folder d
# =====================================================================================
Build = Callable[[Path, Shared], list[str]]
CASES: dict[str, Build] = {}


def case(name: str) -> Callable[[Build], Build]:
    """Register a case written as a function."""

    def register(fn: Build) -> Build:
        assert name not in CASES, name
        CASES[name] = fn
        return fn

    return register


def bad(name: str, build: Build) -> None:
    """Register a case given as a lambda."""
    case(name)(build)


def solve(s: Shared, *extra: str, model: str | None = None) -> list[str]:
    return ["solve", model or str(s.toy), "--strategy", "greedy", *extra]


# ------------------------------------------------------------------ model files
bad("model/missing-inspect", lambda d, s: ["inspect", str(d / "nope.onnx")])
bad("model/missing-solve", lambda d, s: solve(s, "-o", str(d / "out.json"), model=str(d / "nope.onnx")))
bad("model/missing-verify", lambda d, s: ["verify", str(d / "nope.onnx"), str(s.plan)])
bad("model/directory-inspect", lambda d, s: ["inspect", str(d)])
bad("model/directory-solve", lambda d, s: solve(s, "-o", str(d / "out.json"), model=str(d)))
bad("model/directory-verify", lambda d, s: ["verify", str(d), str(s.plan)])
bad("model/under-a-file", lambda d, s: ["inspect", str(s.toy / "x.onnx")])
bad("model/under-a-file-verify", lambda d, s: ["verify", str(s.toy / "x.onnx"), str(s.plan)])
bad("model/empty-path", lambda d, s: ["inspect", ""])
bad("model/empty-file", lambda d, s: ["inspect", write(d, "e.onnx", b"")])
bad("model/garbage", lambda d, s: ["inspect", write(d, "g.onnx", np.random.default_rng(0).bytes(4096))])
bad("model/text", lambda d, s: ["inspect", write(d, "t.onnx", "this is not a model\n")])
bad("model/truncated", lambda d, s: solve(s, "-o", str(d / "out.json"),
                                            model=write(d, "t.onnx", s.toy.read_bytes()[:700])))
bad("model/truncated-verify", lambda d, s: ["verify", write(d, "t.onnx", s.toy.read_bytes()[:700]), str(s.plan)])
bad("model/plan-json-as-model", lambda d, s: ["inspect", str(s.plan)])
bad("model/non-utf8-path", lambda d, s: ["inspect", str(d / "caf\udce9.onnx")])
bad("model/name-too-long", lambda d, s: ["inspect", str(d / ("m" * 300 + ".onnx"))])
bad("model/device", lambda d, s: ["inspect", "/dev/zero"])


@case("model/corrupt-initializer-payload")
def _corrupt_payload(d: Path, s: Shared) -> list[str]:
    model = tiny_model()
    model.graph.initializer[0].raw_data = b"\x00" * 7  # 36 floats announced
    return ["inspect", write_model(d, model)]


@case("model/conv-weight-wrong-rank")
def _conv_rank(d: Path, s: Shared) -> list[str]:
    return ["inspect", write_model(d, tiny_model(weight=np.ones((2, 2, 3), np.float32)))]


@case("model/sequence-input")
def _sequence_input(d: Path, s: Shared) -> list[str]:
    model = tiny_model()
    model.graph.input[0].CopyFrom(helper.make_tensor_sequence_value_info("input", TensorProto.FLOAT, [1, 2, 4, 4]))
    return ["inspect", write_model(d, model)]


@case("model/no-graph")
def _no_graph(d: Path, s: Shared) -> list[str]:
    model = onnx.ModelProto(ir_version=8)
    model.opset_import.add(domain="", version=13)
    return ["inspect", write_model(d, model)]


@case("model/graph-without-nodes")
def _no_nodes(d: Path, s: Shared) -> list[str]:
    graph = helper.make_graph([], "empty", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return ["inspect", write_model(d, helper.make_model(graph))]


bad("model/opset-99", lambda d, s: ["inspect", write_model(d, tiny_model(opset=99))])
bad("model/opset-99-solve", lambda d, s: solve(s, "-o", str(d / "out.json"),
                                                  model=write_model(d, tiny_model(opset=99))))
bad("model/opset-0", lambda d, s: ["inspect", write_model(d, tiny_model(opset=0))])


@case("model/no-default-opset")
def _no_default_opset(d: Path, s: Shared) -> list[str]:
    model = tiny_model()
    del model.opset_import[:]
    model.opset_import.add(domain="com.example", version=1)
    return ["inspect", write_model(d, model)]


def _nan_weight() -> np.ndarray:
    w = np.full((2, 2, 3, 3), 0.1, dtype=np.float32)
    w[1, 0, 2, 2] = np.nan
    return w


bad("model/nan-weight", lambda d, s: ["inspect", write_model(d, tiny_model(weight=_nan_weight()))])
bad("model/nan-weight-solve", lambda d, s: solve(s, "-o", str(d / "out.json"),
                                                    model=write_model(d, tiny_model(weight=_nan_weight()))))
bad("model/inf-bias", lambda d, s: ["inspect", write_model(d, tiny_model(bias=np.array([0, np.inf], np.float32)))])
bad("model/neg-inf-bias", lambda d, s: ["inspect",
                                           write_model(d, tiny_model(bias=np.array([-np.inf, 0], np.float32)))])


@case("model/nan-in-constant-node")
def _nan_constant(d: Path, s: Shared) -> list[str]:
    model = tiny_model()
    model.graph.initializer.pop()  # B becomes a Constant node with a NaN
    value = numpy_helper.from_array(np.array([np.nan, 0], np.float32), "Bv")
    model.graph.node.insert(0, helper.make_node("Constant", [], ["B"], name="bconst", value=value))
    return ["inspect", write_model(d, model)]


@case("model/inf-from-folding")
def _inf_folded(d: Path, s: Shared) -> list[str]:
    model = tiny_model()
    model.graph.initializer.pop()  # B = Z / 0
    model.graph.initializer.extend([numpy_helper.from_array(np.ones(2, np.float32), "Z"),
                                    numpy_helper.from_array(np.zeros(2, np.float32), "zero")])
    model.graph.node.insert(0, helper.make_node("Div", ["Z", "zero"], ["B"], name="div"))
    return ["inspect", write_model(d, model)]


@case("model/nan-attribute")
def _nan_attribute(d: Path, s: Shared) -> list[str]:
    model = tiny_model(extra_nodes=[helper.make_node("LeakyRelu", ["y"], ["z"], name="leaky", alpha=float("nan"))],
                       output="z")
    return ["inspect", write_model(d, model)]




@case("model/unsupported-op")
def _unsupported(d: Path, s: Shared) -> list[str]:
    model = tiny_model(extra_nodes=[helper.make_node("TopK", ["y", "K"], ["z", "i"], name="topk")], output="z")
    model.graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "K"))
    return ["inspect", write_model(d, model), "--host-ops", "error"]


@case("model/batchnorm-negative-variance")
def _negative_variance(d: Path, s: Shared) -> list[str]:
    bn = helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], name="bn")
    model = tiny_model(extra_nodes=[bn], output="bn")
    for name, value in (("g", 1.0), ("b", 0.0), ("m", 0.0), ("v", -4.0)):
        model.graph.initializer.append(numpy_helper.from_array(np.full(2, value, np.float32), name))
    return ["inspect", write_model(d, model)]


bad("model/float64-beyond-float32", lambda d, s: ["inspect", write_model(d, tiny_model(
    bias=np.array([1e300, 0.0], np.float64)))])
bad("model/custom-domain-op", lambda d, s: ["inspect", write_model(d, tiny_model(
    extra_nodes=[helper.make_node("Magic", ["y"], ["z"], name="magic", domain="com.example")], output="z"))])
bad("model/reads-missing-tensor", lambda d, s: ["inspect", write_model(d, tiny_model(
    extra_nodes=[helper.make_node("Add", ["y", "ghost"], ["z"], name="add")], output="z"))])
bad("model/output-never-produced", lambda d, s: ["inspect", write_model(d, tiny_model(output="nowhere"))])
bad("model/tensor-produced-twice", lambda d, s: ["inspect", write_model(d, tiny_model(
    extra_nodes=[helper.make_node("Relu", ["c"], ["y"], name="relu2")]))])


@case("model/cycle")
def _cycle(d: Path, s: Shared) -> list[str]:
    model = tiny_model(extra_nodes=[helper.make_node("Add", ["z", "input"], ["q"], name="a"),
                                    helper.make_node("Relu", ["q"], ["z"], name="b")], output="y")
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    return ["inspect", write_model(d, model)]


@case("model/five-d-input")
def _five_d(d: Path, s: Shared) -> list[str]:
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["y"], name="relu")], "five",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 3, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return ["inspect", write_model(d, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))]


def _weights_in_external_file(location: str) -> onnx.ModelProto:
    """The tiny model with its first weight moved to external data at ``location``."""
    model = tiny_model()
    w = model.graph.initializer[0]
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.external_data.add(key="location", value=location)
    return model


@case("model/external-data-outside-folder")
def _external_outside(d: Path, s: Shared) -> list[str]:
    return ["inspect", write_model(d, _weights_in_external_file("../../etc/passwd"))]


@case("model/external-data-missing")
def _external_missing(d: Path, s: Shared) -> list[str]:
    return ["inspect", write_model(d, _weights_in_external_file("weights.bin"))]


@case("model/external-data-negative-offset")
def _external_offset(d: Path, s: Shared) -> list[str]:
    model = tiny_model()
    w = model.graph.initializer[0]
    (d / "weights.bin").write_bytes(w.raw_data or np.full(36, 0.1, np.float32).tobytes())
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.external_data.add(key="location", value="weights.bin")
    w.external_data.add(key="offset", value="-8")
    return ["inspect", write_model(d, model)]


# ------------------------------------------------------------------ input shapes
def dynamic(d: Path) -> str:
    return write_model(d, tiny_model(input_dims=["N", 2, "H", "W"]), "dyn.onnx")


bad("shape/dynamic-without-input-shape", lambda d, s: ["inspect", dynamic(d)])
bad("shape/static-input-too-large", lambda d, s: ["inspect", write_model(d, tiny_model(input_dims=[1, 2, 8192, 8192]))])
bad("shape/names-a-non-input", lambda d, s: ["inspect", dynamic(d), "--input-shape", "x=1x2x4x4"])
bad("shape/names-an-initializer", lambda d, s: ["inspect", dynamic(d), "--input-shape", "W=1x2x4x4"])
bad("shape/no-equals", lambda d, s: ["inspect", dynamic(d), "--input-shape", "1x2x4x4"])
bad("shape/no-name", lambda d, s: ["inspect", dynamic(d), "--input-shape", "=1x2x4x4"])
bad("shape/empty-dim", lambda d, s: ["inspect", dynamic(d), "--input-shape", "input=1x2xx4"])
bad("shape/zero-dim", lambda d, s: ["inspect", dynamic(d), "--input-shape", "input=1x2x0x4"])
bad("shape/negative-dim", lambda d, s: ["inspect", dynamic(d), "--input-shape", "input=1x2x-4x4"])
bad("shape/float-dim", lambda d, s: ["inspect", dynamic(d), "--input-shape", "input=1x2x4.5x4"])
bad("shape/huge-dim", lambda d, s: ["inspect", dynamic(d), "--input-shape", f"input=1x2x{2**40}x{2**40}"])
bad("shape/wrong-rank", lambda d, s: ["inspect", dynamic(d), "--input-shape", "input=1x2x4"])
bad("shape/contradicts-static", lambda d, s: ["inspect", dynamic(d), "--input-shape", "input=1x3x4x4"])
bad("shape/given-twice", lambda d, s: ["inspect", dynamic(d), "--input-shape", "input=1x2x4x4",
                                          "--input-shape", "input=1x2x8x8"])
bad("shape/solve-non-input", lambda d, s: solve(s, "--input-shape", "nope=1x4x8x8", "-o", str(d / "out.json")))
bad("shape/verify-non-input", lambda d, s: ["verify", str(s.toy), str(s.plan), "--input-shape", "nope=1x4x8x8"])

# ------------------------------------------------------------------ command-line options
bad("args/no-command", lambda d, s: [])
bad("args/unknown-command", lambda d, s: ["plan", str(s.toy)])
bad("args/solve-without-model", lambda d, s: ["solve"])
bad("args/unknown-option", lambda d, s: solve(s, "--fast"))
bad("args/strategy-invalid", lambda d, s: ["solve", str(s.toy), "--strategy", "x"])
bad("args/objective-invalid", lambda d, s: solve(s, "--objective", "speed"))
bad("args/seed-2**70", lambda d, s: solve(s, "--seed", str(2**70), "-o", str(d / "out.json")))
bad("args/seed-5000-digits", lambda d, s: solve(s, "--seed", "9" * 5000))
bad("args/seed-negative", lambda d, s: solve(s, "--seed", "-1"))
bad("args/seed-not-int", lambda d, s: solve(s, "--seed", "1.5"))
bad("args/time-limit-nan", lambda d, s: solve(s, "--time-limit", "nan", "-o", str(d / "out.json")))
bad("args/time-limit-inf", lambda d, s: solve(s, "--time-limit", "inf"))
bad("args/time-limit-negative", lambda d, s: solve(s, "--time-limit", "-1"))
bad("args/time-limit-zero", lambda d, s: solve(s, "--time-limit", "0"))
bad("args/time-limit-text", lambda d, s: solve(s, "--time-limit", "soon"))
bad("args/weights-nan", lambda d, s: solve(s, "--weights", "energy=nan", "-o", str(d / "out.json")))
bad("args/weights-inf", lambda d, s: solve(s, "--weights", "energy=1,latency=inf"))
bad("args/weights-overflow", lambda d, s: solve(s, "--weights", "energy=1e400"))
bad("args/weights-huge", lambda d, s: solve(s, "--weights", "energy=1e300,latency=1"))
bad("args/weights-negative", lambda d, s: solve(s, "--weights", "latency=-1"))
bad("args/weights-unknown-key", lambda d, s: solve(s, "--weights", "power=1"))
bad("args/weights-all-zero", lambda d, s: solve(s, "--weights", "energy=0,latency=0"))
bad("args/weights-empty", lambda d, s: solve(s, "--weights="))
bad("args/sram-empty", lambda d, s: solve(s, "--sram=", "-o", str(d / "out.json")))
bad("args/sram-10GiB", lambda d, s: solve(s, "--sram", "10GiB", "-o", str(d / "out.json")))
bad("args/sram-zero", lambda d, s: solve(s, "--sram", "0"))
bad("args/sram-negative", lambda d, s: solve(s, "--sram=-5KiB"))
bad("args/sram-fraction", lambda d, s: solve(s, "--sram", "1.5MiB"))
bad("args/sram-unit", lambda d, s: solve(s, "--sram", "64 furlongs"))
bad("args/sram-5000-digits", lambda d, s: solve(s, "--sram", "9" * 5000))
bad("args/max-fuse-depth-zero", lambda d, s: solve(s, "--max-fuse-depth", "0"))
bad("args/max-fuse-depth-2**70", lambda d, s: solve(s, "--max-fuse-depth", str(2**70)))
bad("args/max-tiles-zero", lambda d, s: solve(s, "--max-tiles", "0"))
bad("args/max-tiles-2**70", lambda d, s: solve(s, "--max-tiles", str(2**70)))
bad("args/tile-multiple-zero", lambda d, s: solve(s, "--tile-multiple", "0"))
bad("args/tile-multiple-2**70", lambda d, s: solve(s, "--tile-multiple", str(2**70)))
bad("args/keep-unknown-layer", lambda d, s: ["solve", str(s.toy), "--strategy", "cpsat", "--time-limit", "5",
                                                  "--keep", "conv99", "-o", str(d / "out.json")])
bad("args/reload-unknown-layer", lambda d, s: ["solve", str(s.toy), "--time-limit", "5", "--reload", "conv99"])
bad("args/keep-and-reload", lambda d, s: ["solve", str(s.toy), "--time-limit", "5", "--keep", "conv1",
                                             "--reload", "conv1"])
bad("args/keep-with-greedy", lambda d, s: solve(s, "--keep", "conv1", "-o", str(d / "out.json")))
bad("args/objective-with-greedy", lambda d, s: solve(s, "--objective", "latency"))
bad("args/weights-with-layer", lambda d, s: ["solve", str(s.toy), "--strategy", "layer", "--weights", "energy=1"])
bad("args/sram-too-small", lambda d, s: solve(s, "--sram", "16", "-o", str(d / "out.json")))
bad("args/hardware-unknown", lambda d, s: solve(s, "--hardware", "tpu-v9"))
bad("args/hardware-missing-toml", lambda d, s: solve(s, "--hardware", str(d / "nope.toml")))
bad("args/config-unknown", lambda d, s: solve(s, "--config", "turbo"))
bad("args/config-missing-toml", lambda d, s: solve(s, "--config", str(d / "nope.toml")))
bad("args/verify-seed-negative", lambda d, s: ["verify", str(s.toy), str(s.plan), "--seed", "-3"])
bad("args/verify-seed-2**70", lambda d, s: ["verify", str(s.toy), str(s.plan), "--seed", str(2**70)])

# ------------------------------------------------------------------ output paths
bad("output/missing-directory", lambda d, s: solve(s, "-o", str(d / "no" / "such" / "out.json")))
bad("output/onto-directory", lambda d, s: solve(s, "-o", str(d)))
bad("output/trailing-slash", lambda d, s: solve(s, "-o", str(d / "plans") + "/"))
bad("output/under-a-file", lambda d, s: solve(s, "-o", str(s.toy / "out.json")))
bad("output/empty", lambda d, s: solve(s, "-o", ""))
bad("output/name-too-long", lambda d, s: solve(s, "-o", str(d / ("p" * 300 + ".json"))))
bad("output/unwritable-place", lambda d, s: solve(s, "-o", "/proc/memplan-plan.json"))
bad("output/is-the-model", lambda d, s: solve(s, "-o", str(s.toy)))
bad("output/non-utf8-directory", lambda d, s: solve(s, "-o", str(d / "\udcff" / "out.json")))
bad("output/checked-before-solving", lambda d, s: ["solve", str(s.toy), "--strategy", "cpsat", "--time-limit",
                                                       "600", "-o", str(d / "no" / "out.json")])

# ------------------------------------------------------------------ zoo
bad("zoo/unknown-model", lambda d, s: ["zoo", "alexnet", "-o", str(d / "m.onnx")])
bad("zoo/no-output", lambda d, s: ["zoo", "resnet8"])
bad("zoo/output-missing-directory", lambda d, s: ["zoo", "resnet8", "-o", str(d / "no" / "m.onnx")])
bad("zoo/output-onto-directory", lambda d, s: ["zoo", "resnet8", "-o", str(d)])
bad("zoo/output-under-a-file", lambda d, s: ["zoo", "resnet8", "-o", str(s.toy / "m.onnx")])
bad("zoo/resolution-zero", lambda d, s: ["zoo", "resnet8", "--resolution", "0", "-o", str(d / "m.onnx")])
bad("zoo/resolution-negative", lambda d, s: ["zoo", "resnet8", "--resolution", "-32", "-o", str(d / "m.onnx")])
bad("zoo/resolution-2**70", lambda d, s: ["zoo", "resnet8", "--resolution", str(2**70), "-o", str(d / "m.onnx")])
bad("zoo/resolution-too-small", lambda d, s: ["zoo", "resnet18", "--resolution", "7", "-o", str(d / "m.onnx")])
bad("zoo/resolution-fixed-model", lambda d, s: ["zoo", "dscnn", "--resolution", "32", "-o", str(d / "m.onnx")])
bad("zoo/seed-negative", lambda d, s: ["zoo", "resnet8", "--seed", "-1", "-o", str(d / "m.onnx")])
bad("zoo/seed-2**70", lambda d, s: ["zoo", "resnet8", "--seed", str(2**70), "-o", str(d / "m.onnx")])
bad("zoo/param-zero", lambda d, s: ["zoo", "resnet8", "--param", "classes=0", "-o", str(d / "m.onnx")])
bad("zoo/param-nan", lambda d, s: ["zoo", "resnet8", "--param", "classes=nan", "-o", str(d / "m.onnx")])
bad("zoo/param-huge", lambda d, s: ["zoo", "resnet8", "--param", f"classes={10**12}", "-o", str(d / "m.onnx")])
bad("zoo/param-toy-too-big", lambda d, s: ["zoo", "toy_chain", "--param", "c=100000", "-o", str(d / "m.onnx")])
bad("zoo/param-toy-too-many-weights", lambda d, s: ["zoo", "toy_chain", "--param", "n=1000", "--param", "c=1024",
                                                          "-o", str(d / "m.onnx")])
bad("zoo/param-unet-too-many-weights", lambda d, s: ["zoo", "unet", "--param", "base=1024", "-o", str(d / "m.onnx")])
bad("zoo/param-unet-too-deep", lambda d, s: ["zoo", "unet", "--param", "levels=40", "-o", str(d / "m.onnx")])
bad("zoo/param-5000-digits", lambda d, s: ["zoo", "resnet8", "--param", "classes=" + "9" * 5000, "-o", str(d / "m.onnx")])
bad("zoo/param-non-ascii-digit", lambda d, s: ["zoo", "resnet8", "--param", "classes=\u0663", "-o", str(d / "m.onnx")])
bad("zoo/resolution-8192", lambda d, s: ["zoo", "unet", "--resolution", "8192", "-o", str(d / "m.onnx")])
bad("zoo/param-choice", lambda d, s: ["zoo", "unet", "--param", "up=sideways", "-o", str(d / "m.onnx")])
bad("zoo/param-unknown", lambda d, s: ["zoo", "resnet8", "--param", "depth=3", "-o", str(d / "m.onnx")])
bad("zoo/param-malformed", lambda d, s: ["zoo", "resnet8", "--param", "classes", "-o", str(d / "m.onnx")])
bad("zoo/param-twice", lambda d, s: ["zoo", "resnet8", "--param", "classes=3", "--param", "classes=4",
                                        "-o", str(d / "m.onnx")])

# ------------------------------------------------------------------ hardware profiles
bad("profile/not-toml", lambda d, s: solve(s, "--hardware", write(d, "hw.toml", "name = [unclosed\n")))
bad("profile/not-utf8", lambda d, s: solve(s, "--hardware", write(d, "hw.toml", b"name = \"\xff\xfe\"\n")))
bad("profile/name-too-long", lambda d, s: solve(s, "--hardware", str(d / ("h" * 300 + ".toml"))))
bad("profile/empty", lambda d, s: solve(s, "--hardware", write(d, "hw.toml", "")))
bad("profile/directory", lambda d, s: solve(s, "--hardware", str((d / "dir.toml").mkdir() or d / "dir.toml")))
bad("profile/missing-key", lambda d, s: solve(s, "--hardware", profile(d, mac_pj=None), "-o", str(d / "o.json")))
bad("profile/unknown-key", lambda d, s: solve(s, "--hardware", profile(d, sram_banks="4")))
bad("profile/negative-energy", lambda d, s: solve(s, "--hardware", profile(d, dram_pj_per_byte="-1.0")))
bad("profile/bool-for-int", lambda d, s: solve(s, "--hardware", profile(d, elem_bytes="true")))
bad("profile/string-for-number", lambda d, s: solve(s, "--hardware", profile(d, mac_pj='"1"')))
bad("profile/nan-energy", lambda d, s: solve(s, "--hardware", profile(d, mac_pj="nan"), "-o", str(d / "o.json")))
bad("profile/inf-energy", lambda d, s: solve(s, "--hardware", profile(d, sram_pj_per_byte="inf")))
bad("profile/nan-bandwidth", lambda d, s: solve(s, "--hardware", profile(d, dram_bytes_per_cycle="nan")))
bad("profile/inf-bandwidth", lambda d, s: solve(s, "--hardware", profile(d, dram_bytes_per_cycle="inf")))
bad("profile/nan-clock", lambda d, s: solve(s, "--hardware", profile(d, clock_mhz="nan")))
bad("profile/tiny-clock", lambda d, s: solve(s, "--hardware", profile(d, clock_mhz="1e-9")))
bad("profile/energy-too-precise", lambda d, s: solve(s, "--hardware", profile(d, mac_pj="0.0001")))
bad("profile/energy-huge", lambda d, s: solve(s, "--hardware", profile(d, dram_pj_per_byte="1e300")))
bad("profile/huge-int", lambda d, s: solve(s, "--hardware", profile(d, macs_per_cycle="9223372036854775807")))
bad("profile/elem-bytes-zero", lambda d, s: solve(s, "--hardware", profile(d, elem_bytes="0")))
bad("profile/bias-bytes-negative", lambda d, s: solve(s, "--hardware", profile(d, bias_bytes="-4")))
bad("profile/sram-10GiB", lambda d, s: solve(s, "--hardware", profile(d, sram='"10GiB"')))
bad("profile/sram-zero", lambda d, s: solve(s, "--hardware", profile(d, sram="0")))
bad("profile/sram-empty", lambda d, s: solve(s, "--hardware", profile(d, sram='""')))
bad("profile/sram-bool", lambda d, s: solve(s, "--hardware", profile(d, sram="true")))
bad("profile/tiling-not-table", lambda d, s: solve(s, "--hardware", profile(d, tiling="3")))
bad("profile/tiling-unknown-key", lambda d, s: solve(s, "--hardware", profile(d, tiling="diagonal = true")))
bad("profile/tiling-max-tiles-zero", lambda d, s: solve(s, "--hardware", profile(d, tiling="max_tiles = 0")))
bad("profile/tiling-max-tiles-huge", lambda d, s: solve(s, "--hardware", profile(d, tiling=f"max_tiles = {2**62}")))
bad("profile/tiling-bool-multiple", lambda d, s: solve(s, "--hardware", profile(d, tiling="tile_multiple = true")))

# ------------------------------------------------------------------ solver configs
bad("config/not-toml", lambda d, s: solve(s, "--config", solver_config(d, "workers = = 2\n")))
bad("config/unknown-key", lambda d, s: solve(s, "--config", solver_config(d, "threads = 2\n")))
bad("config/workers-zero", lambda d, s: solve(s, "--config", solver_config(d, "workers = 0\n")))
bad("config/workers-huge", lambda d, s: solve(s, "--config", solver_config(d, f"workers = {2**40}\n")))
bad("config/workers-bool", lambda d, s: solve(s, "--config", solver_config(d, "workers = true\n")))
bad("config/time-limit-negative", lambda d, s: solve(s, "--config", solver_config(d, "time_limit_s = -1.0\n")))
bad("config/time-limit-nan", lambda d, s: solve(s, "--config", solver_config(d, "time_limit_s = nan\n")))
bad("config/time-limit-inf", lambda d, s: solve(s, "--config", solver_config(d, "time_limit_s = inf\n")))
bad("config/time-limit-string", lambda d, s: solve(s, "--config", solver_config(d, 'time_limit_s = "10"\n')))
bad("config/max-fuse-depth-zero", lambda d, s: solve(s, "--config", solver_config(d, "max_fuse_depth = 0\n")))
bad("config/seed-huge", lambda d, s: solve(s, "--config", solver_config(d, f"random_seed = {2**40}\n"),
                                              "-o", str(d / "out.json")))
bad("config/int-5000-digits", lambda d, s: solve(s, "--config", solver_config(d, f"workers = {'9' * 5000}\n")))
bad("config/seed-negative", lambda d, s: solve(s, "--config", solver_config(d, "random_seed = -1\n")))
bad("config/balanced-nan", lambda d, s: solve(s, "--config", solver_config(d, "balanced_energy = nan\n")))
bad("config/balanced-negative", lambda d, s: solve(s, "--config", solver_config(d, "balanced_latency = -0.5\n")))
bad("config/balanced-both-zero", lambda d, s: solve(s, "--objective", "balanced", "--config", solver_config(
    d, "balanced_energy = 0\nbalanced_latency = 0\n")))
bad("config/not-utf8", lambda d, s: solve(s, "--config", write(d, "solver.toml", b"# \xff\nworkers = 2\n")))

# ------------------------------------------------------------------ plan files (file level only)
bad("plan/missing", lambda d, s: ["verify", str(s.toy), str(d / "nope.json")])
bad("plan/directory", lambda d, s: ["verify", str(s.toy), str(d)])
bad("plan/under-a-file", lambda d, s: ["verify", str(s.toy), str(s.toy / "plan.json")])
bad("plan/empty", lambda d, s: ["verify", str(s.toy), write(d, "p.json", "")])
bad("plan/not-json", lambda d, s: ["verify", str(s.toy), write(d, "p.json", "{commands: [")])
bad("plan/not-utf8", lambda d, s: ["verify", str(s.toy), write(d, "p.json", b"{\"a\": \"\xff\"}")])
bad("plan/json-array", lambda d, s: ["verify", str(s.toy), write(d, "p.json", "[1, 2, 3]")])
bad("plan/json-null", lambda d, s: ["verify", str(s.toy), write(d, "p.json", "null")])
bad("plan/onnx-as-plan", lambda d, s: ["verify", str(s.toy), str(s.toy)])
bad("plan/for-another-model", lambda d, s: ["verify", str(s.toy), str(s.other_plan)])
bad("plan/name-too-long", lambda d, s: ["verify", str(s.toy), str(d / ("p" * 300 + ".json"))])
bad("plan/swapped-with-model", lambda d, s: ["verify", str(s.plan), str(s.toy)])
bad("plan/non-utf8-path", lambda d, s: ["verify", str(s.toy), str(d / "pl\udce4n.json")])


# =====================================================================================
# Running a case
# =====================================================================================
def output_of(argv: list[str]) -> str | None:
    for flag in ("-o", "--output"):
        if flag in argv:
            return argv[argv.index(flag) + 1]
    return None


def run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse exits
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def check_failure(code: int, err: str, out: str | None, existed: bool, folder: Path) -> None:
    assert code != 0, "exit code 0 on bad input"
    assert "Traceback" not in err, err
    assert "internal error" not in err, err  # the last-resort handler: a cause left unfixed
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"not one line on stderr: {err!r}"
    assert lines[0].startswith("memplan: error: "), lines[0]
    assert len(lines[0]) > len("memplan: error: ") + 10, lines[0]
    if out is not None and out and not existed:
        assert not os.path.lexists(out), f"{out} was written"
    leftovers = [p.name for p in folder.rglob(".*") if p.is_file()]
    assert not leftovers, f"temporary files left behind: {leftovers}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_fails_with_one_line(name: str, shared: Shared, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    argv = CASES[name](tmp_path, shared)
    out = output_of(argv)
    existed = bool(out) and os.path.lexists(out or "")
    code, err = run_in_process(argv, capsys)
    check_failure(code, err, out, existed, tmp_path)


#: cases also run through ``python -m memplan.cli`` (argparse, output path, profile, model, plan)
SUBPROCESS = ("args/strategy-invalid", "output/missing-directory", "profile/nan-energy", "model/garbage",
              "model/non-utf8-path", "plan/directory")


@pytest.mark.parametrize("name", SUBPROCESS)
def test_bad_input_in_a_subprocess(name: str, shared: Shared, tmp_path: Path) -> None:
    argv = CASES[name](tmp_path, shared)
    out = output_of(argv)
    raw = [os.fsencode(a) for a in argv]  # non-UTF-8 paths reach the process as bytes
    proc = subprocess.run([os.fsencode(sys.executable), b"-m", b"memplan.cli", *raw], capture_output=True,
                          check=False, timeout=120)
    check_failure(proc.returncode, proc.stderr.decode("utf-8", errors="replace"), out, False, tmp_path)


def test_argparse_error_names_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_in_process(["solve", "m.onnx", "--strategy", "x"], capsys)
    assert code == 2
    assert err.startswith("memplan: error: argument --strategy: invalid choice: 'x'")
    assert err.rstrip().endswith("see memplan solve --help")


def test_help_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["solve", "--help"])
    assert exc.value.code == 0
    assert "usage: memplan solve" in capsys.readouterr().out


def test_debug_shows_the_exception(tmp_path: Path) -> None:
    from memplan.errors import ModelError

    with pytest.raises(ModelError, match="no such file"):
        main(["--debug", "inspect", str(tmp_path / "nope.onnx")])


def test_corpus_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(CASES) >= 80
    with capsys.disabled():
        print(f"\n{len(CASES)} bad-input cases, {len(SUBPROCESS)} of them also in a subprocess")
