"""``memplan export --c``: a plan as C99 tables, with the reference runtime and an example.

:func:`export_c` writes a self-contained directory:

* ``memplan_plan.h`` / ``memplan_plan.c``: the arena sizes, the plan's totals and ``static
  const`` tables (tensors, layers with their kernel parameters, SRAM buffers, commands and
  their operands) in the layout ``memplan_runtime.h`` declares, and the SRAM arena of exactly
  the plan's ``sram_bytes`` (plus the DRAM arena of the memory map);
* ``weights.bin``: the weight blob of :func:`memplan.plan.memory_map.memory_map`
  (:func:`weight_blob`);
* ``input.bin`` / ``expected.bin``: the seeded int8 input of ``memplan verify``
  (:func:`memplan.execute.verify.verification_inputs`; model inputs in graph order, each
  channel-major) and the model outputs memplan's untiled reference computes for it;
  ``host_outputs.bin`` (plans with host layers): each host layer's output for that input, which
  the example's host callback returns in place of the application's host CPU code;
* the runtime (``memplan_runtime.h``, ``memplan_runtime.c``, ``memplan_kernels.c``), ``main.c``
  and a ``Makefile``: ``make -C DIR`` builds ``DIR/memplan_run``.

The C side sees only integers: everything that needs floating point or a table is computed
here from the :class:`~memplan.execute.quantize.QuantizedGraph` (requantisation multipliers and
shifts per channel, activation tables, softmax and LRN tables, pool counts, resize indices and
weights). The directory is written to a temporary sibling and renamed into place at the end.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from memplan.config import HardwareProfile
from memplan.cost.candidate import resident_bytes
from memplan.errors import ModelError, PlanError, UsageError
from memplan.execute.quantize import QLayer, QuantizedGraph, Requant
from memplan.execute.reference import run_reference
from memplan.execute.tiled import BIAS_BYTES, weight_image
from memplan.execute.verify import Prepared, verification_inputs
from memplan.execute.windows import pool_counts, resize_linear_fixed, resize_nearest_index
from memplan.host import tensor_dtype
from memplan.ir.graph import Graph
from memplan.ir.ops import (
    WEIGHTED,
    BlockAttrs,
    ChannelShuffleAttrs,
    ConvAttrs,
    ConvTransposeAttrs,
    LRNAttrs,
    OpKind,
    PoolAttrs,
    ResizeAttrs,
    SliceAttrs,
    ZeroPadAttrs,
)
from memplan.plan.memory_map import MemoryMap, memory_map, tensor_order
from memplan.plan.model import BufferKind, Command, Op, Plan

#: the runtime's files, copied into every export (package data of memplan.firmware)
RUNTIME_FILES = ("memplan_runtime.h", "memplan_runtime.c", "memplan_kernels.c", "main.c", "Makefile", "README.md")
#: MEMPLAN_NONE of the runtime: no offset, tensor or layer
NONE = 0xFFFFFFFF
#: MEMPLAN_MAX_INPUTS of the runtime
MAX_INPUTS = 256
#: the largest SRAM, DRAM arena or weight blob the 32-bit offsets of the tables address
MAX_BYTES = NONE - 1

_OPS = {op: f"MEMPLAN_OP_{op.name}" for op in OpKind}
_CMDS = {Op.LOAD: "MEMPLAN_CMD_LOAD", Op.STORE: "MEMPLAN_CMD_STORE", Op.LOAD_WEIGHTS: "MEMPLAN_CMD_LOAD_WEIGHTS",
         Op.COMPUTE: "MEMPLAN_CMD_COMPUTE", Op.HOST: "MEMPLAN_CMD_HOST", Op.COPY: "MEMPLAN_CMD_COPY"}
_ROLES = {"input": "MEMPLAN_ROLE_INPUT", "output": "MEMPLAN_ROLE_OUTPUT", "spill": "MEMPLAN_ROLE_SPILL",
          "host": "MEMPLAN_ROLE_HOST"}
_BUFS = {k: f"MEMPLAN_BUF_{k.name}" for k in BufferKind}
#: the ops the runtime has a kernel for (every op memplan.execute.kernels runs, and host layers)
SUPPORTED = frozenset(OpKind)


def runtime_dir() -> Path:
    """The runtime's sources inside the installed package."""
    return Path(str(resources.files("memplan.firmware") / "runtime"))


# ---------------------------------------------------------------------------- checks
def check_exportable(graph: Graph, plan: Plan) -> None:
    """Refuse, in one line, what the C runtime cannot run."""
    if plan.graph_name != graph.name:
        raise PlanError(f"the plan is for model {plan.graph_name!r}, not {graph.name!r}")
    if plan.weight_encoding != "int8":
        raise PlanError(f"the C runtime has no Ethos-U weight decoder, and this plan's weights are encoded "
                        f"{plan.weight_encoding!r} (Ethos-U scale/bias records and weight streams): export --c a plan "
                        "made with a profile without weight_codec (e.g. generic-npu); on Ethos-U, compile with Vela")
    if plan.elem_bytes != 1:
        raise PlanError(f"the C runtime runs int8 feature maps, but this plan stores {plan.elem_bytes}-byte elements: "
                        "plan with a profile whose elem_bytes is 1")
    if any(layer.bias is not None for layer in graph.layers if layer.op in WEIGHTED) and plan.bias_bytes != BIAS_BYTES:
        raise PlanError(f"the C runtime reads int32 biases, but this plan uses {plan.bias_bytes}-byte biases: plan "
                        "with a profile whose bias_bytes is 4")
    for name in graph.inputs:
        if graph.tensors[name].shape[0] != 1:
            raise ModelError(f"model input {name!r} has batch {graph.tensors[name].shape[0]}: the C runtime runs batch 1 "
                             "(pin it with --input-shape)")
    fdt = next((g for g in plan.decisions.groups if g.tiling.fdt_c), None)
    if fdt is not None:
        raise PlanError(f"group [{fdt.start}, {fdt.stop}) uses fused depthwise tiling (int32 partial sums, requantize "
                        "commands), which the C runtime does not run yet: plan without --fdt-slices to export C")
    if not 0 < plan.sram_bytes <= MAX_BYTES:
        raise PlanError(f"the plan's SRAM of {plan.sram_bytes} B is not addressable by the C tables' 32-bit offsets")
    for layer in graph.layers:
        if layer.op not in SUPPORTED:
            raise ModelError(f"layer {layer.id!r}: the C runtime has no kernel for op {layer.op.value}")
        if len(layer.inputs) > MAX_INPUTS:
            raise ModelError(f"layer {layer.id!r} has {len(layer.inputs)} inputs: the C runtime takes at most {MAX_INPUTS}")


# ---------------------------------------------------------------------------- the weight blob
def weight_blob(qgraph: QuantizedGraph, mm: MemoryMap) -> bytes:
    """The weight blob the memory map lays out: per layer, its int8 weight rows (one per output
    channel, the layout :mod:`memplan.execute.tiled` loads slices from) at the record's offset
    and its int32 little-endian biases at ``bias_offset``; zero bytes between parts."""
    blob = bytearray(mm.weights_bytes)
    for rec in mm.weights:
        ql = qgraph.qlayer(rec.layer)
        image = weight_image(ql)
        if image.per_channel != rec.row_bytes or image.weights.size != rec.weight_bytes:
            raise PlanError(f"layer {rec.layer!r}: the memory map gives {rec.channels} rows of {rec.row_bytes} B, but "
                            f"its weights are {image.weights.size} B in rows of {image.per_channel} B")
        if (image.biases is None) != (rec.bias_offset is None):
            raise PlanError(f"layer {rec.layer!r}: the memory map and the quantised layer disagree on its bias")
        blob[rec.offset:rec.offset + rec.weight_bytes] = image.weights.tobytes()
        if image.biases is not None and rec.bias_offset is not None:
            blob[rec.bias_offset:rec.bias_offset + image.biases.size] = image.biases.tobytes()
    return bytes(blob)


# ---------------------------------------------------------------------------- C text
def _c_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127 and ch != "?":  # no trigraphs
            out.append(ch)
        else:
            out.extend(f"\\{b:03o}" for b in ch.encode("utf-8"))
    return '"' + "".join(out) + '"'


def _comment(text: str) -> str:
    return text.replace("*/", "* /").encode("ascii", "backslashreplace").decode("ascii")


def _ints(values: Iterable[int], per_line: int = 16) -> str:
    vals = [str(int(v)) for v in values]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return ",\n    ".join(lines)


def _i64(v: int) -> str:
    v = int(v)
    if v == -(2**63):
        return "(-9223372036854775807LL - 1)"
    return f"{v}LL"


def _u32(v: int | None) -> str:
    return "MEMPLAN_NONE" if v is None else f"{int(v)}u"


def _region(r: object) -> str:
    return "{%d, %d, %d, %d, %d, %d}" % (r.c0, r.c1, r.y0, r.y1, r.x0, r.x1)  # type: ignore[attr-defined]


def _dims(graph: Graph, tensor: str) -> tuple[int, int, int]:
    shape = graph.tensors[tensor].shape
    if len(shape) == 4:
        return int(shape[1]), int(shape[2]), int(shape[3])
    return int(math.prod(shape)), 1, 1


class _Tables:
    """Accumulates the C definitions of memplan_plan.c."""

    def __init__(self) -> None:
        self.arrays: list[str] = []

    def array(self, ctype: str, name: str, values: Iterable[int]) -> str:
        vals = list(values)
        if ctype == "int64_t":
            body = ",\n    ".join(", ".join(_i64(v) for v in vals[i:i + 8]) for i in range(0, len(vals), 8))
        else:
            body = _ints(vals)
        self.arrays.append(f"static const {ctype} {name}[{len(vals)}] = {{\n    {body}\n}};\n")
        return name


def _requant(t: _Tables, prefix: str, rq: Requant | None) -> tuple[int, str, str]:
    if rq is None:
        return 0, "NULL", "NULL"
    mult = [int(m) for m in rq.multiplier]
    shift = [int(s) for s in rq.shift]
    return len(mult), t.array("int32_t", f"{prefix}_rq_mult", mult), t.array("int32_t", f"{prefix}_rq_shift", shift)


def _layer_entry(t: _Tables, index: int, ql: QLayer, graph: Graph, ids: Mapping[str, int], mm: MemoryMap,
                 input0: int) -> str:
    layer = ql.layer
    p = f"l{index}"
    attrs = layer.attrs
    fields: dict[str, str] = {
        "name": _c_string(layer.id),
        "op": _OPS[layer.op],
        "n_inputs": f"{len(layer.inputs)}u",
        "input0": f"{input0}u",
        "output": f"{ids[layer.output]}u",
    }
    oc, oh, ow = _dims(graph, layer.output)
    fields.update(out_c=str(oc), out_h=str(oh), out_w=str(ow))
    rec = mm.weight(layer.id)
    fields.update(w_offset=_u32(None), row_bytes="0u", w_channels="0u", bias_offset=_u32(None))
    if rec is not None:
        fields.update(w_offset=_u32(rec.offset), row_bytes=f"{rec.row_bytes}u", w_channels=f"{rec.channels}u",
                      bias_offset=_u32(rec.bias_offset))
    if layer.op is OpKind.HOST:
        return _struct(fields)
    lo, hi = ql.act_range
    fields.update(stage_zp=str(ql.stage_q.zero_point), act_lo=str(max(lo, -128)), act_hi=str(min(hi, 127)))
    if ql.lut is not None:
        lut = np.asarray(ql.lut, dtype=np.int64)
        fields["lut"] = t.array("int8_t", f"{p}_lut", lut.reshape(-1))
        fields["lut_per_channel"] = "1" if lut.ndim == 2 else "0"
    else:
        fields.update(lut="NULL", lut_per_channel="0")
    n, mult, shift = _requant(t, p, ql.requant)
    fields.update(rq_n=f"{n}u", rq_mult=mult, rq_shift=shift)
    kernel, stride, pads, dilation, groups = (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1
    param = [0, 0, 0, 0]
    tabs = ["NULL"] * 6
    _, _, h, w = graph.shape(layer.inputs[0])
    if isinstance(attrs, (ConvAttrs, ConvTransposeAttrs)):
        kernel, stride, pads, dilation, groups = attrs.kernel, attrs.stride, attrs.pads, attrs.dilation, attrs.groups
    elif isinstance(attrs, PoolAttrs):
        kernel, stride, pads = attrs.kernel, attrs.stride, attrs.pads
        if layer.op is OpKind.AVG_POOL:
            vy, cy = pool_counts(0, oh, h, attrs.kernel[0], attrs.stride[0], pads[0], pads[2], attrs.ceil_pads[0],
                                 attrs.count_include_pad)
            vx, cx = pool_counts(0, ow, w, attrs.kernel[1], attrs.stride[1], pads[1], pads[3], attrs.ceil_pads[1],
                                 attrs.count_include_pad)
            tabs[:4] = [t.array("int32_t", f"{p}_{k}", v) for k, v in
                        (("valid_y", vy), ("counted_y", cy), ("valid_x", vx), ("counted_x", cx))]
    elif isinstance(attrs, ZeroPadAttrs):
        pads = attrs.pads
        param[0] = attrs.channels[0]
    elif isinstance(attrs, SliceAttrs):
        param[:3] = [attrs.channels[0], attrs.rows[0], attrs.cols[0]]
    elif isinstance(attrs, BlockAttrs):
        param[:2] = [attrs.block, 1 if attrs.mode == "CRD" else 0]
    elif isinstance(attrs, ChannelShuffleAttrs):
        tabs[0] = t.array("int32_t", f"{p}_perm", attrs.perm)
    elif isinstance(attrs, ResizeAttrs):
        (rh, rw) = attrs.out_hw
        if attrs.mode == "nearest":
            param[0] = 0
            tabs[:2] = [t.array("int32_t", f"{p}_src_y", resize_nearest_index(rh, h, attrs.coord, attrs.nearest_mode)),
                        t.array("int32_t", f"{p}_src_x", resize_nearest_index(rw, w, attrs.coord, attrs.nearest_mode))]
        elif attrs.mode == "linear":
            param[0] = 1
            y0, y1, wy = resize_linear_fixed(rh, h, attrs.coord)
            x0, x1, wx = resize_linear_fixed(rw, w, attrs.coord)
            tabs = [t.array("int32_t", f"{p}_{k}", v) for k, v in
                    (("y0", y0), ("y1", y1), ("wy", wy), ("x0", x0), ("x1", x1), ("wx", wx))]
        else:
            raise ModelError(f"layer {layer.id!r}: the C runtime has no {attrs.mode!r} resize")
    elif isinstance(attrs, LRNAttrs):
        param[0] = attrs.size
    if layer.op is OpKind.SOFTMAX:
        assert ql.table is not None
        param[0] = 1 if ql.softmax is not None else 0  # TFLite Micro's fixed-point algorithm
        fields["table"] = t.array("int64_t", f"{p}_exp", ql.table)
        fields["table_len"] = f"{len(ql.table)}u"
        fields["table_mul"] = _i64(ql.table_mul)
    elif layer.op is OpKind.LRN:
        assert ql.table is not None and isinstance(attrs, LRNAttrs)
        zp = ql.in_q[0].zero_point
        reach = attrs.size * max(128 + zp, 127 - zp) ** 2 + 1  # the largest window sum of (q - zp)^2, + 1
        table = np.asarray(ql.table)[:reach]
        fields["table"] = t.array("int64_t", f"{p}_factor", table)
        fields["table_len"] = f"{len(table)}u"
    fields.update(kernel="{%d, %d}" % kernel, stride="{%d, %d}" % stride, pads="{%d, %d, %d, %d}" % pads,
                  dilation="{%d, %d}" % dilation, groups=str(groups), param="{%s}" % ", ".join(map(str, param)),
                  tab="{%s}" % ", ".join(tabs))
    return _struct(fields)


def _struct(fields: Mapping[str, str]) -> str:
    return "    {" + ", ".join(f".{k} = {v}" for k, v in fields.items()) + "}"


def _input_entries(ql: QLayer, graph: Graph, ids: Mapping[str, int]) -> list[str]:
    rows = []
    for i, tensor in enumerate(ql.layer.inputs):
        c, h, w = _dims(graph, tensor)
        rq = ql.input_requants[i] if i < len(ql.input_requants) else None
        has, m, s = (0, 0, 0) if rq is None else (1, int(rq.multiplier[0]), int(rq.shift[0]))
        if rq is not None and rq.multiplier.size != 1:
            raise ModelError(f"layer {ql.layer.id!r}: a per-channel input rescale has no C kernel")
        rows.append(f"    {{{ids[tensor]}u, {c}, {h}, {w}, {ql.in_q[i].zero_point}, {has}, {m}, {s}}}")
    return rows


def _command_entry(cmd: Command, graph: Graph, ids: Mapping[str, int], operands: list[str]) -> str:
    tensor = ids[cmd.tensor] if cmd.tensor is not None else None
    layer = graph.layer_index[cmd.layer] if cmd.layer is not None else None
    region = "{0, 0, 0, 0, 0, 0}"
    offset = cmd.offset
    operand0 = None
    if cmd.op in (Op.LOAD, Op.STORE):
        assert cmd.region is not None
        region = _region(cmd.region)
        if cmd.output is not None:  # a rolling slot's load, an escaping tensor's store: its SRAM view
            operand0 = len(operands)
            operands.append(f"    {{{ids[cmd.output.tensor]}u, {_region(cmd.output.region)}, {cmd.output.offset}u}}")
    elif cmd.op is Op.LOAD_WEIGHTS:
        assert cmd.channels is not None
        region = "{%d, %d, 0, 0, 0, 0}" % cmd.channels
    elif cmd.op in (Op.COMPUTE, Op.COPY):
        assert cmd.region is not None and cmd.output is not None
        region = _region(cmd.region)
        operand0 = len(operands)
        for op in (*cmd.inputs, cmd.output):
            operands.append(f"    {{{ids[op.tensor]}u, {_region(op.region)}, {op.offset}u}}")
    w_off = cmd.weights_offset if cmd.op is Op.COMPUTE else None
    return (f"    {{{_CMDS[cmd.op]}, {cmd.step}, {cmd.group}, {cmd.tile}, {_u32(tensor)}, {_u32(layer)}, {region}, "
            f"{_u32(offset)}, {_u32(w_off)}, {_u32(operand0)}}}")


def _resident(plan: Plan) -> dict[str, tuple[int, int, int, int]]:
    out: dict[str, tuple[int, int, int, int]] = {}
    for b in plan.buffers:
        if b.kind is BufferKind.RESIDENT and b.tensor is not None and b.tensor not in out:
            out[b.tensor] = (b.offset, b.size, b.t0, b.t1)
    return out


def plan_sources(graph: Graph, plan: Plan, hw: HardwareProfile, qgraph: QuantizedGraph, mm: MemoryMap,
                 sizes: Mapping[str, int]) -> tuple[str, str]:
    """The text of memplan_plan.h and memplan_plan.c."""
    ids = mm.tensor_ids
    order = tensor_order(graph)
    resident = _resident(plan)
    t = _Tables()
    tensors = []
    for name in order:
        c, h, w = _dims(graph, name)
        elem = 4 if tensor_dtype(graph, name) == "int32" else 1
        qp = qgraph.params.get(name)
        home = mm.dram(name)
        res = resident.get(name)
        role = _ROLES[home.role] if home is not None else "MEMPLAN_ROLE_NONE"
        scale = f"scale {qp.scale!r}" if qp is not None else "no quantisation"
        tensors.append(f"    /* {ids[name]}: {_comment(name)}, {scale} */\n"
                       f"    {{{_c_string(name)}, {c}, {h}, {w}, {elem}, {role}, {qp.zero_point if qp else 0}, "
                       f"{_u32(home.offset if home else None)}, {home.size if home else 0}u, "
                       f"{_u32(res[0] if res else None)}}}")
    layers, inputs = [], []
    for i, ql in enumerate(qgraph.layers):
        layers.append(_layer_entry(t, i, ql, graph, ids, mm, len(inputs)))
        inputs.extend(_input_entries(ql, graph, ids))
    buffers = []
    for b in plan.buffers:
        tensor = ids[b.tensor] if b.tensor is not None else None
        layer = graph.layer_index[b.layer] if b.layer is not None else None
        buffers.append(f"    {{{_c_string(b.name)}, {_BUFS[b.kind]}, {b.offset}u, {b.size}u, {b.t0}, {b.t1}, "
                       f"{_u32(tensor)}, {_u32(layer)}}}")
    operands: list[str] = []
    commands = [_command_entry(cmd, graph, ids, operands) for cmd in plan.commands]
    tot, host = plan.totals, plan.host

    def table(ctype: str, name: str, rows: list[str]) -> str:
        if not rows:
            return f"#define {name} NULL\n"
        return f"static const {ctype} {name}[{len(rows)}] = {{\n" + ",\n".join(rows) + "\n};\n"

    model_inputs = [ids[n] for n in graph.inputs]
    model_outputs = [ids[n] for n in graph.outputs]
    header = f"""/* Generated by memplan export --c: the plan of model {_comment(graph.name)} ({plan.provenance.strategy}
   strategy) on {_comment(hw.name)}, SRAM {plan.sram_bytes} B. Do not edit. */
#ifndef MEMPLAN_PLAN_H
#define MEMPLAN_PLAN_H

#include "memplan_runtime.h"

#define MEMPLAN_SRAM_BYTES {plan.sram_bytes}u
#define MEMPLAN_DRAM_ARENA_BYTES {mm.arena_bytes}u
#define MEMPLAN_WEIGHTS_BYTES {mm.weights_bytes}u
/* input.bin: the model inputs in order; expected.bin: the model outputs in order */
#define MEMPLAN_INPUT_BYTES {sizes['input']}u
#define MEMPLAN_OUTPUT_BYTES {sizes['output']}u
/* host_outputs.bin: each host layer's output in schedule order (0: no host layers) */
#define MEMPLAN_HOST_OUTPUT_BYTES {sizes['host']}u
/* the seed of input.bin (memplan verify --seed) */
#define MEMPLAN_SEED {sizes['seed']}

/* the plan's totals (also in memplan_plan.totals) */
#define MEMPLAN_PLAN_DRAM_READ_FM {tot.dram_read_fm}ull
#define MEMPLAN_PLAN_DRAM_WRITE_FM {tot.dram_write_fm}ull
#define MEMPLAN_PLAN_DRAM_READ_WEIGHTS {tot.dram_read_weights}ull
#define MEMPLAN_PLAN_MACS {tot.macs}ull

extern const memplan_model memplan_plan;
/* the SRAM arena: exactly MEMPLAN_SRAM_BYTES */
extern uint8_t memplan_sram[MEMPLAN_SRAM_BYTES];
/* the DRAM arena of feature maps (at least one byte) */
extern uint8_t memplan_dram[];

#endif /* MEMPLAN_PLAN_H */
"""
    body = [f"/* Generated by memplan export --c from the plan of {_comment(graph.name)}. Do not edit. */",
            '#include "memplan_plan.h"', "",
            "uint8_t memplan_sram[MEMPLAN_SRAM_BYTES];",
            f"uint8_t memplan_dram[{max(mm.arena_bytes, 1)}];", ""]
    body.extend(t.arrays)
    body.append(table("memplan_tensor", "tensors", tensors))
    body.append(table("memplan_layer_input", "layer_inputs", inputs))
    body.append(table("memplan_layer", "layers", layers))
    body.append(table("memplan_buffer", "buffers", buffers))
    body.append("/* op, step, group, tile, tensor, layer, region, offset, weights_offset, operand0 */")
    body.append(table("memplan_command", "commands", commands))
    body.append("/* tensor, region, SRAM offset: each compute's inputs, then its output */")
    body.append(table("memplan_operand", "operands", operands))
    body.append(f"static const uint32_t model_inputs[{len(model_inputs)}] = {{{_ints(model_inputs)}}};")
    body.append(f"static const uint32_t model_outputs[{len(model_outputs)}] = {{{_ints(model_outputs)}}};")
    body.append(f"""
const memplan_model memplan_plan = {{
    {_c_string(graph.name)},
    {plan.sram_bytes}u, {mm.arena_bytes}u, {mm.weights_bytes}u, {1 if hw.weights_in_place else 0},
    {len(tensors)}u, tensors,
    {len(layers)}u, layers, layer_inputs,
    {len(buffers)}u, buffers,
    {len(commands)}u, commands, operands,
    {len(model_inputs)}u, model_inputs,
    {len(model_outputs)}u, model_outputs,
    {{{tot.dram_read_fm}ull, {tot.dram_write_fm}ull, {tot.dram_read_weights}ull, {tot.macs}ull,
     {host.layers}ull, {host.dram_read}ull, {host.dram_write}ull}}
}};
""")
    return header, "\n".join(body)


# ---------------------------------------------------------------------------- data files
def _tensor_bytes(graph: Graph, name: str, value: npt.ArrayLike) -> bytes:
    arr = np.asarray(value)
    dtype = "<i4" if tensor_dtype(graph, name) == "int32" else np.int8
    if arr.shape != tuple(graph.tensors[name].shape):
        raise PlanError(f"tensor {name!r} has shape {arr.shape}, expected {graph.tensors[name].shape}")
    return np.ascontiguousarray(arr.astype(dtype)).tobytes()


def _check_residents(graph: Graph, plan: Plan, hw: HardwareProfile, mm: MemoryMap) -> None:
    """Every model input and output has a place the application can reach: DRAM, or a whole
    resident buffer live from the start (inputs) or at the end (outputs)."""
    resident = _resident(plan)
    steps = len(graph.layers)
    for name in (*graph.inputs, *graph.outputs):
        if mm.dram(name) is not None:
            continue
        if name not in resident:
            raise PlanError(f"model tensor {name!r} is neither in DRAM nor resident in SRAM")
        offset, size, t0, t1 = resident[name]
        n = resident_bytes(graph, name, hw)  # channel-major; with bricks, padded channel planes follow
        if size != n or (name in graph.inputs and t0 != 0) or (name in graph.outputs and not t0 <= steps - 1 < t1):
            raise PlanError(f"resident buffer of model tensor {name!r} is {size} B live over steps [{t0}, {t1}): it "
                            f"needs {n} B at the {'start' if name in graph.inputs else 'end'} of the run")


def export_c(graph: Graph, plan: Plan, hw: HardwareProfile, prepared: Prepared | QuantizedGraph,
             out_dir: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write the C export of ``plan`` (a plan of ``graph`` on ``hw``) into ``out_dir`` (see the
    module documentation) and return its path.

    ``prepared``: :func:`memplan.execute.verify.prepare`'s result (its quantised graph, input
    and reference are used; ``seed`` is then its own), or a quantised graph, for which the
    input is drawn with ``seed`` and the reference run here. The plan is not verified here
    (``memplan export`` verifies it first). ``out_dir`` must be absent, empty or an earlier
    export, which is replaced."""
    check_exportable(graph, plan)
    if isinstance(prepared, Prepared):
        qgraph, inputs, reference, seed = prepared.qgraph, prepared.inputs, prepared.reference, prepared.seed
    else:
        qgraph = prepared
        inputs = verification_inputs(qgraph, seed)
        reference = run_reference(qgraph, inputs)
    if len(qgraph.layers) != len(graph.layers) or qgraph.graph.name != graph.name:
        raise PlanError("the quantised graph is not of this graph")
    target = check_target(out_dir)
    mm = memory_map(plan, graph)
    for what, n in (("DRAM arena", mm.arena_bytes), ("weight blob", mm.weights_bytes)):
        if n > MAX_BYTES:
            raise PlanError(f"the {what} of {n} B is not addressable by the C tables' 32-bit offsets")
    _check_residents(graph, plan, hw, mm)
    blob = weight_blob(qgraph, mm)
    files: dict[str, bytes] = {
        "weights.bin": blob,
        "input.bin": b"".join(_tensor_bytes(graph, n, inputs[n]) for n in graph.inputs),
        "expected.bin": b"".join(_tensor_bytes(graph, n, reference[n]) for n in graph.outputs),
    }
    host = b"".join(_tensor_bytes(graph, graph.layers[i].output, reference[graph.layers[i].output])
                    for i in graph.host_layers)
    if graph.host_layers:
        files["host_outputs.bin"] = host
    sizes = {"input": len(files["input.bin"]), "output": len(files["expected.bin"]), "host": len(host), "seed": seed}
    header, source = plan_sources(graph, plan, hw, qgraph, mm, sizes)
    files["memplan_plan.h"] = header.encode()
    files["memplan_plan.c"] = source.encode()
    src = runtime_dir()
    for name in RUNTIME_FILES:
        files[name] = (src / name).read_bytes()
    _write_dir(target, files)
    return target


# ---------------------------------------------------------------------------- writing
_MARKER = "memplan_plan.h"


def check_target(out_dir: str | os.PathLike[str]) -> Path:
    """The export directory: absent, an empty folder or an earlier export, in a folder that exists."""
    text = os.fspath(out_dir)
    if not text.strip():
        raise UsageError("--c is empty: give the directory to write, e.g. --c firmware/")
    target = Path(text)
    if target.exists():
        if not target.is_dir():
            raise UsageError(f"--c {text!r} is a file: give a directory (absent, empty or an earlier export)")
        if any(target.iterdir()) and not (target / _MARKER).is_file():
            raise UsageError(f"--c {text!r} is a folder with other files in it: give an absent or empty directory, or "
                             "an earlier export to replace")
    parent = target.absolute().parent
    if not parent.is_dir():
        raise UsageError(f"--c {text!r}: the folder {str(parent)!r} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--c {text!r}: cannot write in folder {str(parent)!r}; choose a writable place")
    return target


def _write_dir(target: Path, files: Mapping[str, bytes]) -> None:
    """Write the files into a temporary sibling of ``target``, then rename it into place."""
    parent = target.absolute().parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    old: Path | None = None
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        os.chmod(tmp, 0o755)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=parent))
            os.rmdir(old)
            os.rename(target, old)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not target.exists():
            os.rename(old, target)
            old = None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


__all__ = ["RUNTIME_FILES", "check_exportable", "check_target", "export_c", "plan_sources", "runtime_dir",
           "weight_blob"]
