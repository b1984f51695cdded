"""Plan JSON: what firmware and ``memplan verify`` read.

Layout (``schema_version`` 1, JSON Schema in ``memplan/schema/plan.schema.json``): the model
name and sha256, the hardware profile, objective and strategy, solver statistics, the
decisions, buffers with offsets and live steps, the command stream, the totals, the floor and
baseline summaries. Regions are ``[c0, c1, y0, y1, x0, x1]``, half-open.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

from memplan.config import HardwareProfile, TilingRules
from memplan.errors import PlanError
from memplan.geometry.group import Tiling
from memplan.geometry.region import Region
from memplan.plan.model import (
    SCHEMA_VERSION,
    Buffer,
    BufferKind,
    Command,
    Decisions,
    GroupDecision,
    Op,
    Operand,
    Plan,
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


def profile_to_json(hw: HardwareProfile) -> dict[str, Any]:
    return {
        "name": hw.name, "description": hw.description, "sram": hw.sram_bytes, "elem_bytes": hw.elem_bytes,
        "bias_bytes": hw.bias_bytes, "mac_pj": _num(hw.mac_pj), "dram_pj_per_byte": _num(hw.dram_pj_per_byte),
        "sram_pj_per_byte": _num(hw.sram_pj_per_byte), "macs_per_cycle": hw.macs_per_cycle,
        "dram_bytes_per_cycle": _num(hw.dram_bytes_per_cycle), "clock_mhz": _num(Fraction(hw.clock_hz, 1_000_000)),
        "dma_overlaps_compute": hw.dma_overlaps_compute, "feature_maps_in_sram": hw.feature_maps_in_sram,
        "weights_in_place": hw.weights_in_place, "tiling": asdict(hw.tiling),
    }


def profile_from_json(data: dict[str, Any]) -> HardwareProfile:
    from memplan.config import profile_from_dict

    return profile_from_dict(data, source="plan hardware profile")


def _region(r: Region | None) -> list[int] | None:
    return None if r is None else r.as_list()


def _operand(o: Operand) -> dict[str, Any]:
    return {"tensor": o.tensor, "region": o.region.as_list(), "offset": o.offset}


def _command(c: Command) -> dict[str, Any]:
    d: dict[str, Any] = {"op": c.op.value, "step": c.step, "group": c.group, "tile": c.tile}
    if c.op in (Op.LOAD, Op.STORE):
        d.update(tensor=c.tensor, region=_region(c.region), offset=c.offset)
    elif c.op is Op.LOAD_WEIGHTS:
        d.update(layer=c.layer, channels=list(c.channels or ()), offset=c.offset)
    else:
        d.update(layer=c.layer, region=_region(c.region), inputs=[_operand(o) for o in c.inputs],
                 output=_operand(c.output) if c.output else None, weights_offset=c.weights_offset)
    return d


def plan_to_json(plan: Plan, hw: HardwareProfile, layer_ids: list[str]) -> dict[str, Any]:
    meta = dict(plan.meta)
    dec = plan.decisions
    return {
        "schema_version": SCHEMA_VERSION,
        "model": {"name": plan.graph_name, "sha256": meta.pop("model_sha256", None)},
        "hardware": profile_to_json(hw),
        "objective": meta.pop("objective", None),
        "strategy": meta.pop("strategy", None),
        "solver": meta.pop("solver", None),
        "sram_bytes": plan.sram_bytes,
        "elem_bytes": plan.elem_bytes,
        "bias_bytes": plan.bias_bytes,
        "decisions": {
            "groups": [{"start": g.start, "stop": g.stop, "layers": layer_ids[g.start:g.stop], "tiling": g.tiling.to_json()}
                       for g in dec.groups],
            "keep": sorted(dec.keep),
            "resident": sorted(dec.resident),
        },
        "buffers": [{"name": b.name, "kind": b.kind.value, "offset": b.offset, "size": b.size, "t0": b.t0, "t1": b.t1,
                     "tensor": b.tensor, "layer": b.layer} for b in plan.buffers],
        "commands": [_command(c) for c in plan.commands],
        "totals": plan.totals.to_json(),
        **{k: v for k, v in meta.items()},
    }


def _operand_from(d: dict[str, Any]) -> Operand:
    return Operand(d["tensor"], Region(*d["region"]), d["offset"])


def plan_from_json(data: dict[str, Any]) -> tuple[Plan, HardwareProfile]:
    """Parse a plan JSON document (already schema-checked or not: malformed input raises
    PlanError)."""
    try:
        if data.get("schema_version") != SCHEMA_VERSION:
            raise PlanError(f"plan schema_version {data.get('schema_version')!r} is not {SCHEMA_VERSION}: re-run memplan solve")
        hw = profile_from_json(data["hardware"])
        dec = data["decisions"]
        decisions = Decisions(
            tuple(GroupDecision(g["start"], g["stop"], Tiling(*g["tiling"])) for g in dec["groups"]),
            frozenset(dec["keep"]), frozenset(dec["resident"]))
        buffers = tuple(Buffer(b["name"], BufferKind(b["kind"]), b["offset"], b["size"], b["t0"], b["t1"], b.get("tensor"),
                               b.get("layer")) for b in data["buffers"])
        commands = []
        for c in data["commands"]:
            op = Op(c["op"])
            if op in (Op.LOAD, Op.STORE):
                commands.append(Command(op, c["step"], c["group"], c["tile"], tensor=c["tensor"], region=Region(*c["region"]),
                                        offset=c["offset"]))
            elif op is Op.LOAD_WEIGHTS:
                commands.append(Command(op, c["step"], c["group"], c["tile"], layer=c["layer"], channels=tuple(c["channels"]),
                                        offset=c["offset"]))
            else:
                commands.append(Command(op, c["step"], c["group"], c["tile"], layer=c["layer"], region=Region(*c["region"]),
                                        inputs=tuple(_operand_from(o) for o in c["inputs"]),
                                        output=_operand_from(c["output"]), weights_offset=c["weights_offset"]))
        t = data["totals"]
        totals = Totals(t["dram_read_fm"], t["dram_write_fm"], t["dram_read_weights"], t["macs"], t["recompute_macs"],
                        t["sram_peak"], t["sram_access"], t["energy_fj"], t["cycles"])
        meta = {k: data.get(k) for k in ("objective", "strategy", "solver")}
        meta["model_sha256"] = data["model"]["sha256"]
        plan = Plan(data["model"]["name"], data["sram_bytes"], data["elem_bytes"], data["bias_bytes"], decisions, buffers,
                    tuple(commands), totals, meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"plan JSON is malformed ({type(exc).__name__}: {exc}): re-run memplan solve") from None
    return plan, hw


def load_plan_file(path: str | os.PathLike[str]) -> tuple[Plan, HardwareProfile, dict[str, Any]]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PlanError(f"plan file {str(path)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"plan file {str(path)!r} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PlanError(f"plan file {str(path)!r} is not a plan (expected a JSON object)")
    plan, hw = plan_from_json(data)
    return plan, hw, data


def schema() -> dict[str, Any]:
    text = resources.files("memplan").joinpath("schema/plan.schema.json").read_text()
    return json.loads(text)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename: never a half-written file."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, separators=(",", ":"))
            f.write("\n")
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = ["file_sha256", "load_plan_file", "plan_from_json", "plan_to_json", "profile_to_json", "schema",
           "write_json_atomic", "TilingRules"]
