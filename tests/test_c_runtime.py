"""The C99 reference runtime (memplan.firmware): exported plans compiled with the system C
compiler and run on the host give the numpy tiled executor's output bytes, which are the
untiled reference's, and count exactly the plan's DRAM bytes and MACs.

Models: a residual network (ResNet-8), a U-Net with concatenated skips and ConvTranspose (and
one with bilinear resizes), two depthwise networks (DS-CNN keyword spotting, the int8 QDQ
MobileNetV2 0.35), the MLPerf Tiny int8 TFLite keyword-spotting model (the file's own int8
parameters), a graph of every remaining kernel flavour (test_tiled's ``mixed``: grouped
ConvTranspose, LRN, softmax, fully connected, channel shuffle, average pool, ...) and one of
the others (:func:`others`: PRelu and table activations, dilated and strided convs, max / min /
sub / mul with broadcasts, pad, slice, depth-to-space in both modes, space-to-depth, average
pools with counted and ceil padding, nearest and linear resizes, global max pool, two model
inputs and two outputs). Each is planned layer by layer, greedily and with CP-SAT at two SRAM
sizes; plus an MCU profile (resident feature maps, weights in place) and host layers.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from memplan.baselines import greedy, layer_by_layer
from memplan.config import HardwareProfile, SolverConfig, load_profile
from memplan.errors import InfeasibleError, ModelError, PlanError, UsageError, VerificationError
from memplan.execute import Prepared, execute_plan, prepare, verify_plan
from memplan.execute.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    divide_round_half_away,
    multiply_by_quantized_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from memplan.execute.tiled import weight_image
from memplan.firmware import RUNTIME_FILES, export_c, runtime_dir, weight_blob
from memplan.frontend import load_model
from memplan.ir.builder import GraphBuilder
from memplan.ir.graph import Graph
from memplan.ir.ops import Activation, ActKind, NoAttrs, OpKind, PoolAttrs, ResizeAttrs
from memplan.plan.memory_map import memory_map
from memplan.plan.model import Buffer, BufferKind, Op, Plan
from memplan.solve import solve_cpsat
from memplan.zoo import build_zoo_model
from test_geometry import random_cnn
from test_host import tail_model
from test_tiled import MODELS, _relocate, mixed

CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler found (cc, gcc or clang): the C runtime round trip "
                                                   "needs one")
CFLAGS = "-std=c99 -O1 -Wall -Wextra -Werror -pedantic"
SANITIZE = (f"{CFLAGS} -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined")
CPSAT = SolverConfig(time_limit_s=3, deterministic=True, max_fuse_depth=6, workers=1, random_seed=0)
NPU = load_profile("generic-npu")
ROOT = Path(__file__).resolve().parents[1]


def others() -> Graph:
    """The kernels ``mixed`` leaves out, with model-level broadcasts, two inputs, two outputs."""
    b = GraphBuilder("others", seed=5)
    x = b.input((1, 8, 16, 16), "image")
    z = b.input((1, 8, 1, 1), "gate")
    x = b.conv(x, 16, 3, activation=Activation(ActKind.PRELU, tuple(np.linspace(0.05, 0.4, 16))))
    d = b.conv(x, 16, 3, dilation=2, activation=Activation(ActKind.SIGMOID))
    s = b.conv(x, 16, 3, stride=2, activation=Activation(ActKind.CLIP, (0.0, 6.0)))
    u = b.depth_to_space(b.conv(s, 64, 1, activation=Activation(ActKind.TANH)), 2, "CRD")
    v = b.depth_to_space(b.conv(s, 64, 1, activation=Activation(ActKind.HARD_SWISH)), 2, "DCR")
    m = b.maximum(d, u, v)
    n = b.minimum(d, u, activation=Activation(ActKind.LEAKY_RELU, (0.1,)))
    y = b.sub(m, n, activation=Activation(ActKind.SILU))
    g = b.conv(b.global_avg_pool(y), 16, 1, activation=Activation(ActKind.HARD_SIGMOID, (0.2, 0.5)))
    y = b.mul(y, g)  # (1, 16, 1, 1) broadcast over rows and columns
    p = b.slice(b.pad(y, (1, 3), (1, 2, 0, 1)), (2, 18), (1, 17), (1, 17))
    q = b.space_to_depth(p, 2)
    a = b.add_layer(OpKind.AVG_POOL, (q,), PoolAttrs((3, 3), (2, 2), (1, 1, 2, 2), True, (1, 1)))
    a = b.add_layer(OpKind.AVG_POOL, (a,), PoolAttrs((2, 2), (1, 1), (0, 0, 1, 1), False, (1, 1)))
    r = b.add_layer(OpKind.RESIZE, (a,), ResizeAttrs((9, 7), "linear", "align_corners"))
    r2 = b.add_layer(OpKind.RESIZE, (a,), ResizeAttrs((9, 7), "nearest", "half_pixel", "round_prefer_ceil"))
    w = b.add(r, r2, b.conv(b.max_pool(r, 3, 1, pads=(1, 1, 1, 1)), 64, 1, activation=None))
    gm = b.add_layer(OpKind.GLOBAL_MAX_POOL, (w,), NoAttrs())
    e = b.mul(b.conv(gm, 8, 1, activation=None), z)
    return b.build((w, e))


#: model -> (builder, two SRAM sizes): small enough that every strategy tiles (and spills)
MODELS_C: dict[str, tuple[Callable[[], Graph], tuple[int, int]]] = {
    "resnet8": (lambda: load_model(MODELS / "resnet8_float.onnx"), (16 * 1024, 64 * 1024)),
    "unet": (lambda: build_zoo_model("unet", resolution=32, base=4, levels=2), (16 * 1024, 64 * 1024)),
    "unet_bilinear": (lambda: build_zoo_model("unet", resolution=32, base=4, levels=2, up="bilinear"),
                      (16 * 1024, 64 * 1024)),
    "dscnn": (lambda: load_model(MODELS / "kws_dscnn_tf2onnx.onnx"), (16 * 1024, 64 * 1024)),
    "mobilenetv2_qdq": (lambda: load_model(MODELS / "keras_mobilenetv2_035_96_int8_qdq.onnx"), (64 * 1024, 256 * 1024)),
    "kws_tflite": (lambda: load_model(MODELS / "kws_ref_model.tflite"), (16 * 1024, 64 * 1024)),
    "mixed": (mixed, (6 * 1024, 24 * 1024)),
    "others": (others, (4 * 1024, 32 * 1024)),
}


def _cpsat(graph: Graph, hw: HardwareProfile) -> Plan:
    return solve_cpsat(graph, hw, "energy", CPSAT).plan


PLANNERS: dict[str, Callable[[Graph, HardwareProfile], Plan]] = {"layer": layer_by_layer, "greedy": greedy,
                                                                  "cpsat": _cpsat}


@functools.lru_cache(maxsize=None)
def _model(name: str) -> tuple[Graph, Prepared]:
    graph = MODELS_C[name][0]()
    return graph, prepare(graph)


@functools.lru_cache(maxsize=None)
def _plan(name: str, sram: int, strategy: str, profile: str = "generic-npu") -> tuple[HardwareProfile, Plan]:
    graph, _ = _model(name)
    hw = load_profile(profile).with_sram(sram)
    return hw, PLANNERS[strategy](graph, hw)


# ---------------------------------------------------------------------------- build and run
def _build(out: Path, cflags: str = CFLAGS) -> None:
    r = subprocess.run(["make", "-s", "-C", str(out), f"CC={CC}", f"CFLAGS={cflags}"], capture_output=True, text=True)
    assert r.returncode == 0, f"build failed:\n{r.stdout}\n{r.stderr}"
    assert (out / "memplan_run").is_file()


def _run(out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1", "ASAN_OPTIONS": "detect_leaks=1"}
    return subprocess.run([str(out / "memplan_run"), str(out)], capture_output=True, text=True, env=env, timeout=120)


def _counters(stdout: str) -> dict[str, tuple[int, int]]:
    found = re.findall(r"^counter (\w+)\s+(\d+)\s+(\d+) (ok|DIFFERS)$", stdout, re.M)
    return {name: (int(measured), int(planned)) for name, measured, planned, _ in found}


def _output_bytes(graph: Graph, outputs: dict[str, np.ndarray]) -> bytes:
    return b"".join(np.ascontiguousarray(outputs[name]).tobytes() for name in graph.outputs)


def _round_trip(graph: Graph, prepared: Prepared, hw: HardwareProfile, plan: Plan, out: Path,
                cflags: str = CFLAGS) -> subprocess.CompletedProcess[str]:
    """Export, build and run; the C output equals the tiled executor's and the reference's,
    and the C counters equal the plan's totals."""
    tiled = execute_plan(plan, prepared.qgraph, hw, prepared.inputs)
    numpy_out = _output_bytes(graph, dict(tiled.outputs))
    assert numpy_out == _output_bytes(graph, dict(prepared.reference))
    c, t = tiled.counts, plan.totals  # the totals the C runtime counts (verify checks the others)
    assert (c.dram_read_fm, c.dram_write_fm, c.dram_read_weights, c.macs) == (t.dram_read_fm, t.dram_write_fm,
                                                                             t.dram_read_weights, t.macs)
    export_c(graph, plan, hw, prepared, out)
    _build(out, cflags)
    r = _run(out)
    assert r.returncode == 0, f"memplan_run exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert r.stderr == ""  # sanitizers silent
    assert (out / "output.bin").read_bytes() == numpy_out == (out / "expected.bin").read_bytes()
    assert _counters(r.stdout) == {
        "dram_read_fm": (t.dram_read_fm, t.dram_read_fm), "dram_write_fm": (t.dram_write_fm, t.dram_write_fm),
        "dram_read_weights": (t.dram_read_weights, t.dram_read_weights), "macs": (t.macs, t.macs),
        "host_layers": (plan.host.layers,) * 2, "host_dram_read": (plan.host.dram_read,) * 2,
        "host_dram_write": (plan.host.dram_write,) * 2}
    assert "PASS" in r.stdout
    return r


# ---------------------------------------------------------------------------- the round trips
CASES = [(m, s, p) for m, (_, sizes) in MODELS_C.items() for s in sizes for p in PLANNERS]


@pytest.mark.parametrize(("model", "sram", "strategy"), CASES, ids=[f"{m}-{s // 1024}K-{p}" for m, s, p in CASES])
def test_c_runtime_matches_executor_and_plan(model: str, sram: int, strategy: str, tmp_path: Path) -> None:
    graph, prepared = _model(model)
    hw, plan = _plan(model, sram, strategy)
    _round_trip(graph, prepared, hw, plan, tmp_path / "fw")


def test_small_plans_tile_spill_and_split() -> None:
    """The small SRAM sizes exercise tiles, spills and channel slices of weighted layers."""
    for model, (_, (small, _)) in MODELS_C.items():
        graph, _ = _model(model)
        _, plan = _plan(model, small, "greedy")
        assert any(c.op is Op.STORE and c.tensor not in graph.outputs for c in plan.commands), model
        assert max(c.tile for c in plan.commands) >= 1, model
    graph, _ = _model("mixed")
    _, plan = _plan("mixed", MODELS_C["mixed"][1][0], "layer")
    assert any(c.op is Op.COMPUTE and c.region.channels < graph.shape(c.output.tensor)[1] for c in plan.commands
               if c.layer in {"conv_2", "conv_transpose_5"})


def test_mcu_profile_resident_maps_and_weights_in_place(tmp_path: Path) -> None:
    """Feature maps resident in SRAM (model input written there, output read from there) and
    weights executed in place from the blob, counted as DRAM weight reads."""
    graph, prepared = _model("mixed")
    hw, plan = _plan("mixed", 64 * 1024, "cpsat", "mcu-sram")
    assert not any(c.op in (Op.LOAD, Op.STORE, Op.LOAD_WEIGHTS) for c in plan.commands)
    assert plan.totals.dram_read_weights > 0 and memory_map(plan, graph).tensors == ()
    _round_trip(graph, prepared, hw, plan, tmp_path / "fw")


def test_aligned_profile_plan(tmp_path: Path) -> None:
    """A plan on a 16-byte aligned profile (generic-npu with Ethos-U's sram_alignment): the
    runtime runs it unchanged, every SRAM offset it is given a multiple of 16."""
    graph, prepared = _model("unet")
    hw = dataclasses.replace(NPU.with_sram(16 * 1024), sram_alignment=16)
    plan = _cpsat(graph, hw)
    offsets = [b.offset for b in plan.buffers] + [c.offset for c in plan.commands if c.offset is not None]
    assert offsets and all(off % 16 == 0 for off in offsets)
    _round_trip(graph, prepared, hw, plan, tmp_path / "fw")


@pytest.mark.parametrize("strategy", ["layer", "cpsat"])
def test_host_layers_through_the_callback(strategy: str, tmp_path: Path) -> None:
    """ArgMax (an int32 output) and a transpose-reshape head run as host layers: the example's
    callback returns the reference's outputs, the runtime counts the host bytes apart."""
    graph = load_model(tail_model(tmp_path / "tail.onnx"))
    prepared = prepare(graph)
    hw = NPU.with_sram(4 * 1024)
    plan = PLANNERS[strategy](graph, hw)
    assert plan.host.layers == 2
    r = _round_trip(graph, prepared, hw, plan, tmp_path / "fw")
    assert (tmp_path / "fw" / "host_outputs.bin").stat().st_size > 0 and "host_layers" in r.stdout


@pytest.mark.parametrize(("model", "strategy"), [("resnet8", "greedy"), ("mobilenetv2_qdq", "cpsat"),
                                                 ("others", "cpsat")])
def test_sanitizers_stay_silent(model: str, strategy: str, tmp_path: Path) -> None:
    """AddressSanitizer and UndefinedBehaviorSanitizer (halting on the first report) over a
    residual, a depthwise and the every-kernel network."""
    graph, prepared = _model(model)
    hw, plan = _plan(model, MODELS_C[model][1][0], strategy)
    _round_trip(graph, prepared, hw, plan, tmp_path / "fw", SANITIZE)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(g=random_cnn(), sram=st.sampled_from([3072, 8192]))
def test_random_graphs_round_trip(g: Graph, sram: int, tmp_path: Path) -> None:
    """Random CNNs (convs of any kernel, stride, dilation and padding, depthwise, pools, adds,
    concats, resizes, ConvTranspose) in SRAM small enough to tile them finely."""
    hw = NPU.with_sram(sram)
    try:
        plan = greedy(g, hw)
    except InfeasibleError:
        assume(False)
        return
    out = tmp_path / f"fw{len(list(tmp_path.iterdir()))}"
    _round_trip(g, prepare(g), hw, plan, out)


# ---------------------------------------------------------------------------- the runtime uses the plan
def _overlap(plan: Plan) -> tuple[Buffer, Buffer]:
    """An input-stage buffer and another buffer live at the same time that fits at its offset."""
    for a in plan.buffers:
        if a.kind is not BufferKind.IN_STAGE:
            continue
        for b in plan.buffers:
            if (b is not a and b.size and b.t0 < a.t1 and a.t0 < b.t1 and b.kind is BufferKind.OUT_STAGE
                    and a.offset + b.size <= plan.sram_bytes):
                return a, b
    raise AssertionError("no overlapping pair")


def test_overlapping_buffers_change_the_c_output(tmp_path: Path) -> None:
    """A buffer moved onto another live one (with every command that uses it): verify refuses
    the plan, and the C runtime, which follows the planned offsets, computes a wrong output."""
    graph, prepared = _model("resnet8")
    hw, plan = _plan("resnet8", 16 * 1024, "greedy")
    a, b = _overlap(plan)
    bad = _relocate(plan, b, a.offset)
    with pytest.raises(VerificationError, match="at once"):
        verify_plan(graph, bad, hw, prepared=prepared, static_checks=False)
    out = tmp_path / "fw"
    export_c(graph, bad, hw, prepared, out)  # export does not verify: the CLI does
    _build(out)
    r = _run(out)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL" in r.stdout and (out / "output.bin").read_bytes() != (out / "expected.bin").read_bytes()
    assert (out / "expected.bin").read_bytes() == _output_bytes(graph, dict(prepared.reference))


# ---------------------------------------------------------------------------- fixed point, bit for bit
_HARNESS = r"""
#include <stdio.h>
#include "memplan_runtime.h"
int main(void) {
    long long a, b, c; char op;
    while (scanf(" %c %lld %lld %lld", &op, &a, &b, &c) == 4) {
        int status = 0;
        long long r = 0;
        if (op == 'h') r = memplan_srdhm((int32_t)a, (int32_t)b);
        else if (op == 'p') r = memplan_rounding_divide_by_pot(a, (int)b);
        else if (op == 'm') r = memplan_mbqm(a, (int32_t)b, (int32_t)c, &status);
        else if (op == 'd') r = memplan_divide_round_half_away(a, b);
        printf("%lld %d\n", r, status);
    }
    return 0;
}
"""


def test_fixed_point_matches_python_bit_for_bit(tmp_path: Path) -> None:
    src = tmp_path / "harness.c"
    src.write_text(_HARNESS)
    exe = tmp_path / "harness"
    rt = runtime_dir()
    subprocess.run([CC, *CFLAGS.split(), f"-I{rt}", "-o", str(exe), str(src), str(rt / "memplan_kernels.c")],
                   check=True)
    rng = np.random.default_rng(7)
    edge = [INT32_MIN, INT32_MIN + 1, -(1 << 30), -3, -2, -1, 0, 1, 2, 3, 1 << 30, INT32_MAX]
    cases: list[tuple[str, int, int, int]] = []
    for x in [*edge, *rng.integers(INT32_MIN, INT32_MAX, 300, endpoint=True)]:
        for m in [INT32_MIN, -1, 0, 1 << 30, INT32_MAX, *rng.integers(INT32_MIN, INT32_MAX, 3, endpoint=True)]:
            cases.append(("h", int(x), int(m), 0))
        for e in (0, 1, 2, 7, 30, 31, int(rng.integers(0, 32))):
            cases.append(("p", int(x), e, 0))
    for _ in range(3000):
        m = int(rng.integers(1 << 30, 1 << 31))
        shift = int(rng.integers(-31, 12))
        bits = int(rng.integers(0, 32))
        x = int(rng.integers(-(1 << bits), 1 << bits))
        cases.append(("m", x, m, shift))
        cases.append(("d", int(rng.integers(-(1 << 40), 1 << 40)), int(rng.integers(1, 1 << int(rng.integers(1, 30)))), 0))
    for x in (-7, -6, -5, 5, 6, 7, 0):
        cases.append(("d", x, 2, 0))
        cases.append(("d", x, 4, 0))
    text = "".join(f"{op} {a} {b} {c}\n" for op, a, b, c in cases)
    got = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True).stdout.split("\n")
    for (op, a, b, c), line in zip(cases, got):
        value, status = (int(v) for v in line.split())
        if op == "h":
            want, ok = saturating_rounding_doubling_high_mul(a, b), True
        elif op == "p":
            want, ok = rounding_divide_by_pot(a, b), True
        elif op == "d":
            want, ok = int(divide_round_half_away(np.int64(a), np.int64(b))), True
        else:
            try:
                want, ok = multiply_by_quantized_multiplier(a, b, c), True
            except OverflowError:
                want, ok = 0, False
        assert (value, status == 0) == (want, ok), (op, a, b, c)
    assert len(got) >= len(cases)


# ---------------------------------------------------------------------------- the export itself
def test_weight_blob_holds_the_executor_slices() -> None:
    """Every LOAD_WEIGHTS slice (rows then biases of [c0, c1)) read from the blob at the memory
    map's offsets is the tiled executor's slice."""
    graph, prepared = _model("mixed")
    _, plan = _plan("mixed", 6 * 1024, "layer")
    mm = memory_map(plan, graph)
    blob = np.frombuffer(weight_blob(prepared.qgraph, mm), dtype=np.uint8)
    assert blob.size == mm.weights_bytes
    for cmd in plan.commands:
        if cmd.op is not Op.LOAD_WEIGHTS:
            continue
        assert cmd.channels is not None and cmd.layer is not None
        c0, c1 = cmd.channels
        rec = mm.weight(cmd.layer)
        assert rec is not None
        parts = [blob[rec.offset + c0 * rec.row_bytes: rec.offset + c1 * rec.row_bytes]]
        if rec.bias_offset is not None:
            parts.append(blob[rec.bias_offset + 4 * c0: rec.bias_offset + 4 * c1])
        want = weight_image(prepared.qgraph.qlayer(cmd.layer)).slice(c0, c1)
        assert np.array_equal(np.concatenate(parts), want)


def test_export_directory_contents_and_replacement(tmp_path: Path) -> None:
    graph, prepared = _model("dscnn")
    hw, plan = _plan("dscnn", 64 * 1024, "layer")
    out = tmp_path / "fw"
    export_c(graph, plan, hw, prepared, out)
    names = {p.name for p in out.iterdir()}
    assert names == {*RUNTIME_FILES, "memplan_plan.h", "memplan_plan.c", "weights.bin", "input.bin", "expected.bin"}
    for name in RUNTIME_FILES:  # the runtime is copied from the package, byte for byte
        assert (out / name).read_bytes() == (runtime_dir() / name).read_bytes()
    header = (out / "memplan_plan.h").read_text()
    assert f"#define MEMPLAN_SRAM_BYTES {plan.sram_bytes}u" in header
    assert f"#define MEMPLAN_PLAN_MACS {plan.totals.macs}ull" in header
    source = (out / "memplan_plan.c").read_text()
    assert "float" not in source and "double" not in source and "malloc" not in source
    assert (out / "input.bin").read_bytes() == b"".join(prepared.inputs[n].tobytes() for n in graph.inputs)
    (out / "memplan_run").write_bytes(b"stale")
    export_c(graph, plan, hw, prepared, out)  # an earlier export is replaced whole
    assert not (out / "memplan_run").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["fw"]  # no temporary directory left


def test_export_refuses_in_one_line_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph, prepared = _model("dscnn")
    hw, plan = _plan("dscnn", 64 * 1024, "layer")
    with pytest.raises(PlanError, match="int8 feature maps"):
        export_c(graph, dataclasses.replace(plan, elem_bytes=2), hw, prepared, tmp_path / "a")
    b = GraphBuilder("batch2")
    g2 = b.build(b.conv(b.input((2, 3, 8, 8)), 4, 3))
    with pytest.raises(ModelError, match="batch 2"):
        export_c(g2, dataclasses.replace(plan, graph_name="batch2"), hw, prepare(g2), tmp_path / "b")
    foreign = tmp_path / "c"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="other files"):
        export_c(graph, plan, hw, prepared, foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    import memplan.firmware.export as ex

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ex.Path, "write_bytes", broken)
    with pytest.raises(OSError):
        export_c(graph, plan, hw, prepared, tmp_path / "d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # nothing half-written


def test_cli_export_builds_and_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from memplan.cli import main

    model = str(MODELS / "kws_dscnn_tf2onnx.onnx")
    plan = tmp_path / "plan.json"
    assert main(["solve", model, "--strategy", "greedy", "--sram", "16KiB", "-o", str(plan)]) == 0
    out = tmp_path / "fw"
    assert main(["export", model, str(plan), "--c", str(out), "--seed", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert "#define MEMPLAN_SEED 3" in (out / "memplan_plan.h").read_text()
    _build(out)
    r = _run(out)
    assert r.returncode == 0 and "PASS" in r.stdout, r.stdout + r.stderr
    # bad input: one line on stderr, non-zero exit, no directory
    other = str(MODELS / "resnet8_float.onnx")
    for argv in (["export", other, str(plan), "--c", str(tmp_path / "x")],
                 ["export", model, str(tmp_path / "missing.json"), "--c", str(tmp_path / "x")],
                 ["export", model, str(plan), "--c", str(tmp_path / "no" / "such" / "dir")],
                 ["export", model, str(plan), "--c", str(plan)]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code != 0 and err.startswith("memplan: error:") and err.count("\n") == 1, (argv, err)
        assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw", "plan.json"]


def test_runtime_ships_as_package_data() -> None:
    """A wheel install can export: the runtime files are package data of memplan.firmware,
    and the repository's runtime/ is a link to them."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "runtime/*" in data["memplan.firmware"]
    for name in RUNTIME_FILES:
        assert (runtime_dir() / name).is_file()
    assert (ROOT / "runtime").resolve() == (ROOT / "src" / "memplan" / "firmware" / "runtime").resolve()


def test_rolling_buffer_plans_round_trip(tmp_path: Path) -> None:
    """Rolling row stripes: the C runtime copies the kept rows between the two slots exactly as
    the executor does (toy chain, and the U-Net's fused encoder/decoder groups via CP-SAT)."""
    from memplan.geometry.group import Tiling
    from memplan.plan.build import build_plan
    from memplan.plan.model import Decisions, GroupDecision

    hw = NPU.with_tiling(rolling_buffers=True).with_sram(64 * 1024)
    toy = build_zoo_model("toy_chain", n=4, h=20, w=9, c=3)
    plan = build_plan(toy, hw, Decisions((GroupDecision(0, 4, Tiling(3, 9, 3, rolling=True)),)))
    assert sum(c.op is Op.COPY for c in plan.commands) > 0
    _round_trip(toy, prepare(toy), hw, plan, tmp_path / "toy")
    graph, prepared = _model("unet")
    hw = NPU.with_tiling(rolling_buffers=True).with_sram(12 * 1024)
    plan = _cpsat(graph, hw)
    assert any(gd.tiling.rolling for gd in plan.decisions.groups)
    _round_trip(graph, prepared, hw, plan, tmp_path / "unet", SANITIZE)


def test_multi_output_plans_round_trip(tmp_path: Path) -> None:
    """A multi-output group stores its escaping tensor from the view of its tile buffer: the C
    runtime moves the same bytes as the executor (a skip block in three row stripes, under the
    sanitizers)."""
    from memplan.geometry.group import Tiling
    from memplan.plan.build import build_plan
    from memplan.plan.model import Decisions, GroupDecision

    b = GraphBuilder("skip", seed=3)
    x = b.input((1, 4, 12, 12))
    t = b.conv(x, 4, 3, name="A")
    v = b.conv(b.conv(t, 4, 3, name="B"), 4, 1, name="C")
    graph = b.build(b.add(v, t, name="D"))
    hw = NPU.with_tiling(multi_output=True).with_sram(64 * 1024)
    plan = build_plan(graph, hw, Decisions((GroupDecision(0, 3, Tiling(4, 12, 4)), GroupDecision(3, 4, Tiling(12, 12, 4)))))
    assert sum(c.op is Op.STORE and c.output is not None for c in plan.commands) == 3
    _round_trip(graph, prepare(graph), hw, plan, tmp_path / "skip", SANITIZE)
