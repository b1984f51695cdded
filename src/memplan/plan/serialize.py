"""Plan JSON: what firmware and ``memplan verify`` read.

Layout (``schema_version`` 3; JSON Schema in ``memplan/schema/plan.schema.json``, the format
for firmware engineers in ``docs/plan-format.md``): the model name and sha256, the hardware
profile, the weight encoding (``int8``, or Ethos-U slices ``ethos-u-mlw``/``ethos-u-raw``, with
the encoder that made them), objective and strategy, solver statistics; the tensor table (integer id, name, shape,
layout, dtype, the model's quantisation, and where the tensor lives: a DRAM home from
:mod:`memplan.plan.memory_map`, a resident SRAM buffer, or transient tiles only), the layer
table (id, name, op, tensor ids, its record in the weight blob), the DRAM summary (arena and
weight-blob sizes), the decisions, SRAM buffers with ids, offsets, live steps and the byte
layout of what they hold, the command stream (ids, references to tensors, layers and buffers
by id, and the commands each waits for: :mod:`memplan.plan.hazards`), the totals (and, when
the model has host layers, ``host_totals``), the floor and baseline summaries. Everything the
tables restate is derived from the plan and the graph; :func:`check_derived` insists on it.
Regions are ``[c0, c1, y0, y1, x0, x1]``, half-open.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, replace
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

from memplan.config import HardwareProfile, TilingRules
from memplan.cost.candidate import ACC_BYTES
from memplan.cost.weights import INT8, RECORD_BYTES, encoder, reproducible
from memplan.errors import PlanError
from memplan.geometry.group import Tiling
from memplan.geometry.region import Region
from memplan.host import tensor_dtype
from memplan.ir.graph import Graph
from memplan.plan.hazards import waits_for
from memplan.plan.memory_map import DRAM_ALIGN, MemoryMap, memory_map, tensor_order
from memplan.plan.model import (
    SCHEMA_VERSION,
    Buffer,
    BufferKind,
    Command,
    Decisions,
    GroupDecision,
    HostTotals,
    Op,
    Operand,
    Plan,
    Provenance,
    Totals,
)


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _num(x: Fraction) -> int | float:
    return int(x) if x.denominator == 1 else float(x)


def _tiling_json(rules: TilingRules) -> dict[str, Any]:
    """The tiling rules; ``rolling_buffers``, ``fdt_slices`` and ``multi_output`` only when on
    (plans without them read as before)."""
    return {k: v for k, v in asdict(rules).items() if k not in ("rolling_buffers", "fdt_slices", "multi_output") or v}


def profile_to_json(hw: HardwareProfile) -> dict[str, Any]:
    return {
        "name": hw.name, "description": hw.description, "sram": hw.sram_bytes, "elem_bytes": hw.elem_bytes,
        "bias_bytes": hw.bias_bytes, "mac_pj": _num(hw.mac_pj), "dram_pj_per_byte": _num(hw.dram_pj_per_byte),
        "sram_pj_per_byte": _num(hw.sram_pj_per_byte), "macs_per_cycle": hw.macs_per_cycle,
        "dram_bytes_per_cycle": _num(hw.dram_bytes_per_cycle), "clock_mhz": _num(Fraction(hw.clock_hz, 1_000_000)),
        "dma_overlaps_compute": hw.dma_overlaps_compute, "feature_maps_in_sram": hw.feature_maps_in_sram,
        "weights_in_place": hw.weights_in_place, "tiling": _tiling_json(hw.tiling),
        "elementwise_elems_per_cycle": hw.elementwise_elems_per_cycle, "cycle_model": hw.cycle_model,
        **({"npu": hw.npu, "sram_bytes_per_cycle": _num(hw.sram_bytes_per_cycle), "sram_latency": hw.sram_latency}
           if hw.cycle_model == "ethos-u" else {}),
        **({"dram_read_latency": hw.dram_read_latency} if hw.dram_read_latency else {}),
        **({"sram_alignment": hw.sram_alignment} if hw.sram_alignment != 1 else {}),
        **({"channel_brick": hw.channel_brick} if hw.channel_brick != 1 else {}),
        **({"weight_codec": hw.weight_codec, "weight_codec_fallback": hw.weight_codec_fallback,
            "scale_bias_bytes": hw.scale_bias_bytes} if hw.weight_codec != "none" else {}),
    }


def profile_from_json(data: dict[str, Any], weight_encoding: str | None = None) -> HardwareProfile:
    """The plan's hardware profile. ``weight_encoding``: the encoding the plan records, which
    replaces the one the profile resolves to here (a plan is verified with the encoding it was
    made with, or refused: :func:`memplan.cost.weights.reproducible`)."""
    from memplan.config import profile_from_dict

    hw = profile_from_dict(data, source="plan hardware profile")
    if weight_encoding is not None and weight_encoding != hw.weight_encoding:
        if (weight_encoding == INT8) != (hw.weight_codec == "none"):
            raise PlanError(f"the plan's weight encoding {weight_encoding!r} does not belong to its profile's weight_codec "
                            f"{hw.weight_codec!r}: re-run memplan solve")
        hw = replace(hw, weight_encoding=weight_encoding)
    return hw


def _region(r: Region | None) -> list[int] | None:
    return None if r is None else r.as_list()


#: what a buffer of each kind holds, and how: feature-map regions channel-major ``(C, H, W)``
#: rows of int8 (one element per ``elem_bytes``), weight slices as int8 rows then int32 biases
LAYOUT_CHW, LAYOUT_WEIGHTS = "chw", "weight_rows_then_int32_biases"
#: what a weight buffer of an encoded (Ethos-U) plan holds: one slice's records, then its stream
LAYOUT_ENCODED = "ethos_u_records_then_stream"
#: SRAM offsets are multiples of this unless the profile says otherwise (its ``sram_alignment``,
#: which the plan's ``alignment.sram`` record states)
SRAM_ALIGN = 1


class _Refs:
    """Integer ids of a plan's tensors, layers and buffers, and the buffer a command's SRAM
    range lies in (the one live at its step, of its tensor or layer, that contains it)."""

    def __init__(self, plan: Plan, graph: Graph) -> None:
        self.tensor = {t: i for i, t in enumerate(tensor_order(graph))}
        self.layer = {layer.id: i for i, layer in enumerate(graph.layers)}
        self.by_owner: dict[tuple[str, str | None], list[tuple[int, Buffer]]] = {}
        for i, b in enumerate(plan.buffers):
            key = ("layer", b.layer) if b.tensor is None else ("tensor", b.tensor)
            self.by_owner.setdefault(key, []).append((i, b))

    def buffer(self, kind: str, owner: str | None, step: int, offset: int | None, size: int) -> int | None:
        if offset is None:
            return None
        for i, b in self.by_owner.get((kind, owner), ()):
            if b.t0 <= step < b.t1 and b.offset <= offset and offset + size <= b.end:
                return i
        return None

    def tid(self, name: str | None) -> int | None:
        return None if name is None else self.tensor.get(name, -1)

    def lid(self, name: str | None) -> int | None:
        return None if name is None else self.layer.get(name, -1)


def _operand(o: Operand, refs: _Refs, step: int, eb: int) -> dict[str, Any]:
    return {"tensor": refs.tid(o.tensor), "buffer": refs.buffer("tensor", o.tensor, step, o.offset, o.region.numel * eb),
            "region": o.region.as_list(), "offset": o.offset}


def _command(k: int, c: Command, refs: _Refs, mm: MemoryMap, waits: tuple[int, ...], eb: int) -> dict[str, Any]:
    d: dict[str, Any] = {"id": k, "op": c.op.value, "step": c.step, "group": c.group, "tile": c.tile}
    if c.op in (Op.LOAD, Op.STORE):
        assert c.region is not None
        held = c.output.region if c.output is not None else c.region  # a load or store in a view: the view
        d.update(tensor=refs.tid(c.tensor), buffer=refs.buffer("tensor", c.tensor, c.step, c.offset, held.numel * eb),
                 region=_region(c.region), offset=c.offset)
        if c.output is not None:
            d["output"] = _operand(c.output, refs, c.step, eb)
    elif c.op is Op.LOAD_WEIGHTS:
        rec = mm.weight(c.layer or "")
        n = rec.slice_bytes(*c.channels) if rec is not None and c.channels else 0
        d.update(layer=refs.lid(c.layer), buffer=refs.buffer("layer", c.layer, c.step, c.offset, n),
                 channels=list(c.channels or ()), offset=c.offset)
    elif c.op is Op.HOST:
        d.update(layer=refs.lid(c.layer), inputs=[refs.tid(t) for t in c.host_inputs],
                 outputs=[refs.tid(t) for t in c.host_outputs])
    elif c.op is Op.COPY:
        d.update(tensor=refs.tid(c.tensor), region=_region(c.region), inputs=[_operand(o, refs, c.step, eb) for o in c.inputs],
                 output=_operand(c.output, refs, c.step, eb) if c.output else None)
    else:
        rec = mm.weight(c.layer or "")
        n = rec.slice_bytes(c.region.c0, c.region.c1) if rec is not None and c.region is not None else 0
        # an FDT accumulator holds int32 partial sums: 4 bytes an element
        acc_in = c.op is Op.REQUANTIZE
        acc_out = c.accumulate is not None
        d.update(layer=refs.lid(c.layer), region=_region(c.region),
                 inputs=[_operand(o, refs, c.step, ACC_BYTES if acc_in else eb) for o in c.inputs],
                 output=_operand(c.output, refs, c.step, ACC_BYTES if acc_out else eb) if c.output else None,
                 weights_buffer=refs.buffer("layer", c.layer, c.step, c.weights_offset, n),
                 weights_offset=c.weights_offset)
        if acc_out:
            assert c.in_channels is not None
            d.update(in_channels=list(c.in_channels), accumulate=c.accumulate)
    d["waits_for"] = list(waits)
    return d


def _quant(graph: Graph, name: str) -> dict[str, Any] | None:
    q = graph.tensors[name].quant
    if q is None:
        return None
    return {"scale": [float(v) for v in q.scale], "zero_point": [int(v) for v in q.zero_point], "axis": q.axis}


def _tensor_table(plan: Plan, graph: Graph, mm: MemoryMap) -> list[dict[str, Any]]:
    resident = {b.tensor: i for i, b in enumerate(plan.buffers) if b.kind is BufferKind.RESIDENT}
    out = []
    for i, name in enumerate(tensor_order(graph)):
        t = graph.tensors[name]
        home = mm.dram(name)
        where = "dram" if home is not None else ("sram" if name in resident else "transient")
        out.append({
            "id": i, "name": name, "shape": list(t.shape), "layout": "NCHW" if t.is_feature_map else "row_major",
            "dtype": tensor_dtype(graph, name), "quant": _quant(graph, name), "home": where,
            "dram": None if home is None else {"offset": home.offset, "size": home.size, "first": home.first,
                                               "last": home.last, "role": home.role},
            "buffer": resident.get(name),
        })
    return out


def _layer_table(graph: Graph, mm: MemoryMap, refs: _Refs) -> list[dict[str, Any]]:
    out = []
    for i, layer in enumerate(graph.layers):
        rec = mm.weight(layer.id)
        weights = None if rec is None else {
            "offset": rec.offset, "row_bytes": rec.row_bytes, "channels": rec.channels, "encoding": rec.encoding,
            "bias_offset": rec.bias_offset, "bias_encoding": None if rec.bias_offset is None else "int32le"}
        if rec is not None and rec.encoding != INT8:
            weights["bias_encoding"] = "ethos_u_records"
            weights["slices"] = [{"channels": [sl.c0, sl.c1], "offset": sl.offset, "bytes": sl.size,
                                  "stream_offset": sl.stream_offset, "stream_bytes": sl.stream_bytes} for sl in rec.slices]
        out.append({"id": i, "name": layer.id, "op": layer.op.value, "inputs": [refs.tid(t) for t in layer.inputs],
                    "output": refs.tid(layer.output), "weights": weights})
    return out


def _model_record(name: str, sha256: str | None, input_shapes: dict[str, list[int]] | None) -> dict[str, Any]:
    """The plan's ``model`` field; ``input_shapes`` (the shapes the inputs were pinned to) only
    when the plan was made from a model file."""
    record: dict[str, Any] = {"name": name, "sha256": sha256}
    if input_shapes is not None:
        record["input_shapes"] = {k: list(v) for k, v in input_shapes.items()}
    return record


def _shapes(graph: Graph) -> dict[str, tuple[int, int, int]]:
    return {name: t.shape[1:] for name, t in graph.tensors.items() if t.is_feature_map}  # type: ignore[misc]


def plan_to_json(plan: Plan, hw: HardwareProfile, graph: Graph, claims: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The plan document. ``claims``: the ``floor``, ``baselines`` and ``settings`` records
    (what the solve computed beside the plan; written after the totals)."""
    prov = plan.provenance
    dec = plan.decisions
    layer_ids = [layer.id for layer in graph.layers]
    mm = memory_map(plan, graph)
    refs = _Refs(plan, graph)
    waits = waits_for(plan, mm, _shapes(graph))
    eb = plan.elem_bytes
    return {
        "schema_version": SCHEMA_VERSION,
        "model": _model_record(plan.graph_name, prov.model_sha256, prov.model_input_shapes),
        "hardware": profile_to_json(hw),
        "objective": prov.objective,
        "strategy": prov.strategy,
        "solver": None if prov.solver is None else dict(prov.solver),
        "sram_bytes": plan.sram_bytes,
        "elem_bytes": plan.elem_bytes,
        "bias_bytes": plan.bias_bytes,
        "alignment": {"sram": hw.sram_alignment, "dram": DRAM_ALIGN},
        "weight_encoding": {"name": plan.weight_encoding, "encoder": encoder(plan.weight_encoding),
                            "record_bytes": plan.bias_bytes if plan.weight_encoding == INT8 else RECORD_BYTES},
        "tensors": _tensor_table(plan, graph, mm),
        "layers": _layer_table(graph, mm, refs),
        "dram": {"arena_bytes": mm.arena_bytes, "weights_bytes": mm.weights_bytes},
        "decisions": {
            "groups": [{"start": g.start, "stop": g.stop, "layers": layer_ids[g.start:g.stop], "tiling": g.tiling.to_json(),
                        **({"rolling": True} if g.tiling.rolling else {})}
                       for g in dec.groups],
            "keep": sorted(dec.keep),
            "resident": sorted(dec.resident),
            "prefetch": sorted(dec.prefetch),
            "double": sorted(dec.double),
        },
        "buffers": [{"id": i, "name": b.name, "kind": b.kind.value, "offset": b.offset, "size": b.size, "t0": b.t0,
                     "t1": b.t1, "tensor": refs.tid(b.tensor), "layer": refs.lid(b.layer),
                     "layout": LAYOUT_CHW if b.tensor is not None else (
                         LAYOUT_WEIGHTS if plan.weight_encoding == INT8 else LAYOUT_ENCODED)}
                    for i, b in enumerate(plan.buffers)],
        "commands": [_command(k, c, refs, mm, waits[k], eb) for k, c in enumerate(plan.commands)],
        "totals": plan.totals.to_json(),
        **({"host_totals": plan.host.to_json()} if plan.host.layers else {}),
        **dict(claims or {}),
    }


#: plan fields not derived from the plan itself, beside its provenance: what the floor and the
#: baselines claim and the settings to recompute them (``memplan verify`` recomputes both)
CLAIMS = ("floor", "baselines", "settings")


def check_derived(data: dict[str, Any], plan: Plan, hw: HardwareProfile, graph: Graph) -> None:
    """Raise :class:`PlanError` unless ``data`` is exactly what :func:`plan_to_json` writes for
    the plan parsed from it: a field that restates another (``dram_total``, ``energy_pj``, the
    layer names of a group, ...) must agree with it, and nothing the parser ignores may differ."""
    canonical = plan_to_json(plan, hw, graph, {k: data[k] for k in CLAIMS if k in data})
    diff = _first_difference(data, canonical, ())
    if diff is not None:
        path, got, want = diff
        raise PlanError(f"plan field {json_path(path)} is {_short(got)}, but the rest of the plan gives {_short(want)}: "
                        "re-run memplan solve")


_MISSING = object()


def _first_difference(got: Any, want: Any, path: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], Any, Any] | None:
    """The first place where two JSON values differ, bools and numbers told apart."""
    if isinstance(want, dict) and isinstance(got, dict):
        for key in [*want, *(k for k in got if k not in want)]:
            d = _first_difference(got.get(key, _MISSING), want.get(key, _MISSING), (*path, key))
            if d is not None:
                return d
        return None
    if isinstance(want, list) and isinstance(got, list):
        for i in range(max(len(got), len(want))):
            d = _first_difference(got[i] if i < len(got) else _MISSING, want[i] if i < len(want) else _MISSING, (*path, i))
            if d is not None:
                return d
        return None
    if isinstance(got, bool) != isinstance(want, bool) or type(got) is not type(want) and not (
            isinstance(got, (int, float)) and isinstance(want, (int, float))) or got != want:
        return path, None if got is _MISSING else got, None if want is _MISSING else want
    return None


class _Names:
    """Tensor and layer names of the ids a plan document uses, from its own tables."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.tensors = [t["name"] for t in data["tensors"]]
        self.layers = [layer["name"] for layer in data["layers"]]

    def _get(self, names: list[str], i: int | None, what: str, where: str) -> str | None:
        if i is None:
            return None
        if not 0 <= i < len(names):
            raise PlanError(f"plan field {where} is {i}, not a {what} id (the plan has {len(names)} {what}s): "
                            "re-run memplan solve")
        return names[i]

    def tensor(self, i: int | None, where: str) -> str | None:
        return self._get(self.tensors, i, "tensor", where)

    def layer(self, i: int | None, where: str) -> str | None:
        return self._get(self.layers, i, "layer", where)


def _operand_from(d: dict[str, Any], names: _Names, where: str) -> Operand:
    return Operand(names.tensor(d["tensor"], f"{where}.tensor") or "", Region(*d["region"]), d["offset"])


def plan_from_json(data: dict[str, Any]) -> tuple[Plan, HardwareProfile]:
    """Parse a plan JSON document: it is checked against the schema first, so a malformed
    document raises :class:`PlanError` naming the field, and the parser sees only the shapes
    the schema allows. A plan of an older version (1: no tensor table or DRAM map; 2: no weight
    encoding) is refused, and so is one whose weight encoding cannot be reproduced here."""
    check_document(data)
    encoding = data["weight_encoding"]
    why = reproducible(encoding["name"], encoding["encoder"])
    if why is not None:
        raise PlanError(f"this plan cannot be checked here: {why}")
    try:
        hw = profile_from_json(data["hardware"], encoding["name"])
        names = _Names(data)
        dec = data["decisions"]
        decisions = Decisions(
            tuple(GroupDecision(g["start"], g["stop"], Tiling(*g["tiling"], rolling=g.get("rolling", False))) for g in dec["groups"]),
            frozenset(dec["keep"]), frozenset(dec["resident"]), frozenset(dec.get("prefetch", ())),
            frozenset(dec.get("double", ())))
        buffers = tuple(Buffer(b["name"], BufferKind(b["kind"]), b["offset"], b["size"], b["t0"], b["t1"],
                               names.tensor(b["tensor"], f"buffers[{i}].tensor"),
                               names.layer(b["layer"], f"buffers[{i}].layer")) for i, b in enumerate(data["buffers"]))
        commands = []
        for k, c in enumerate(data["commands"]):
            op = Op(c["op"])
            at = f"commands[{k}]"
            if op in (Op.LOAD, Op.STORE):
                view = _operand_from(c["output"], names, f"{at}.output") if "output" in c else None
                commands.append(Command(op, c["step"], c["group"], c["tile"], tensor=names.tensor(c["tensor"], f"{at}.tensor"),
                                        region=Region(*c["region"]), offset=c["offset"], output=view))
            elif op is Op.LOAD_WEIGHTS:
                commands.append(Command(op, c["step"], c["group"], c["tile"], layer=names.layer(c["layer"], f"{at}.layer"),
                                        channels=tuple(c["channels"]), offset=c["offset"]))
            elif op is Op.HOST:
                commands.append(Command(
                    op, c["step"], c["group"], c["tile"], layer=names.layer(c["layer"], f"{at}.layer"),
                    host_inputs=tuple(names.tensor(t, f"{at}.inputs[{j}]") or "" for j, t in enumerate(c["inputs"])),
                    host_outputs=tuple(names.tensor(t, f"{at}.outputs[{j}]") or "" for j, t in enumerate(c["outputs"]))))
            elif op is Op.COPY:
                commands.append(Command(
                    op, c["step"], c["group"], c["tile"], tensor=names.tensor(c["tensor"], f"{at}.tensor"),
                    region=Region(*c["region"]),
                    inputs=tuple(_operand_from(o, names, f"{at}.inputs[{j}]") for j, o in enumerate(c["inputs"])),
                    output=_operand_from(c["output"], names, f"{at}.output")))
            else:
                commands.append(Command(
                    op, c["step"], c["group"], c["tile"], layer=names.layer(c["layer"], f"{at}.layer"),
                    region=Region(*c["region"]),
                    inputs=tuple(_operand_from(o, names, f"{at}.inputs[{j}]") for j, o in enumerate(c["inputs"])),
                    output=_operand_from(c["output"], names, f"{at}.output"), weights_offset=c["weights_offset"],
                    in_channels=tuple(c["in_channels"]) if "in_channels" in c else None, accumulate=c.get("accumulate")))
        t = data["totals"]
        totals = Totals(t["dram_read_fm"], t["dram_write_fm"], t["dram_read_weights"], t["macs"], t["recompute_macs"],
                        t["sram_peak"], t["sram_access"], t["energy_fj"], t["cycles"])
        shapes = data["model"].get("input_shapes")
        provenance = Provenance(data["strategy"], data["objective"], data["solver"], data["model"]["sha256"],
                                None if shapes is None else {k: tuple(v) for k, v in shapes.items()})
        h = data.get("host_totals", {})
        host = HostTotals(h.get("layers", 0), h.get("dram_read", 0), h.get("dram_write", 0))
        plan = Plan(data["model"]["name"], data["sram_bytes"], data["elem_bytes"], data["bias_bytes"], decisions, buffers,
                    tuple(commands), totals, provenance, host, hw.weight_encoding)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"plan JSON is malformed ({type(exc).__name__}: {exc}): re-run memplan solve") from None
    return plan, hw


def read_plan_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object in a plan file (:func:`plan_from_json` checks it against the schema)."""
    where = str(path)
    try:
        text = Path(path).read_bytes()
    except FileNotFoundError:
        raise PlanError(f"plan file {where!r} does not exist: give the file memplan solve -o wrote") from None
    except IsADirectoryError:
        raise PlanError(f"plan file {where!r} is a directory: give the file memplan solve -o wrote") from None
    except OSError as exc:
        raise PlanError(f"plan file {where!r} cannot be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PlanError(f"plan file {where!r} is not JSON ({str(exc).splitlines()[0]}): give the file memplan solve -o wrote") from None
    if not isinstance(data, dict):
        raise PlanError(f"plan file {where!r} is not a plan (expected a JSON object): give the file memplan solve -o wrote")
    return data


def load_plan_file(path: str | os.PathLike[str]) -> tuple[Plan, HardwareProfile, dict[str, Any]]:
    data = read_plan_document(path)
    plan, hw = plan_from_json(data)
    return plan, hw, data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def schema() -> dict[str, Any]:
    text = resources.files("memplan").joinpath("schema/plan.schema.json").read_text()
    return json.loads(text)


@functools.cache
def _validator() -> Any:
    import jsonschema

    full = schema()
    # the local references inlined: the same schema, validated about twice as fast
    return jsonschema.Draft202012Validator(_inline_refs(full, full.get("$defs", {})))


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def json_path(path: Iterable[str | int]) -> str:
    """``("commands", 3, "offset")`` -> ``commands[3].offset``: how errors name a plan field."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the document)"


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_version(data: dict[str, Any]) -> None:
    """Refuse a plan of another format version before anything else is read from it."""
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise PlanError(f"plan schema_version {version!r} is not {SCHEMA_VERSION} (this memplan writes version "
                        f"{SCHEMA_VERSION} plans, with the tensor table, DRAM map, command dependencies and "
                        "encoded weight slices): re-run memplan solve")


def check_document(data: dict[str, Any]) -> None:
    """Raise :class:`PlanError` naming the first field where ``data`` breaks the plan schema
    (a plan of another version: :func:`check_version`'s error)."""
    import jsonschema

    check_version(data)

    error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if error is None:
        return
    where = json_path(error.absolute_path)
    kind = error.validator
    if kind == "required":
        missing = next((k for k in error.validator_value if k not in error.instance), "?")
        what = f"misses the key {missing!r}"
    elif kind == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        what = f"has the unknown key {extra[0]!r}" if extra else "has an unknown key"
    elif kind == "type":
        want = error.validator_value if isinstance(error.validator_value, str) else " or ".join(error.validator_value)
        what = f"is {_short(error.instance)}, not of type {want}"
    elif kind in ("enum", "const"):
        allowed = error.validator_value if kind == "enum" else [error.validator_value]
        what = f"is {_short(error.instance)}, not one of {_short(allowed, 120)}"
    elif kind in ("minimum", "exclusiveMinimum"):
        what = f"is {_short(error.instance)}, below the minimum {error.validator_value}"
    elif kind in ("minItems", "maxItems"):
        what = f"has {len(error.instance)} items, outside the allowed count"
    elif kind == "uniqueItems":
        what = "repeats an item"
    elif kind == "oneOf":
        what = f"is not a well-formed {error.instance.get('op', '?') if isinstance(error.instance, dict) else ''} command"
    else:
        what = f"is {_short(error.instance)}: {error.message.splitlines()[0][:120]}"
    raise PlanError(f"plan field {where} {what} (the plan schema says so): re-run memplan solve")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename: never a half-written file."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets the mode open() would give
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, separators=(",", ":"))
            f.write("\n")
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = ["CLAIMS", "check_derived", "check_document", "file_sha256", "json_path", "load_plan_file", "plan_from_json",
           "plan_to_json", "profile_to_json", "read_plan_document", "schema",
           "write_json_atomic", "TilingRules"]
