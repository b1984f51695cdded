"""Hardware profiles and solver configs, loaded by name or from a TOML path.

The shipped ones are package data: profiles in ``memplan/configs/hardware/``, solver configs
in ``memplan/configs/solver/``, read through :mod:`importlib.resources` so that they are found
from a wheel, a zip or an editable install alike.

A profile is validated before use: an unknown key, a missing key or a value of the wrong
type or range is a :class:`ConfigError` naming the key and the file.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, replace
from fractions import Fraction
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from memplan.errors import ConfigError, MemplanError, UsageError

#: the shipped configs inside the installed package: ``hardware/*.toml`` and ``solver/*.toml``
#: (a Traversable, not necessarily a file-system path: the package may be imported from a zip)
CONFIG_ROOT: Traversable = resources.files("memplan") / "configs"

_SIZE_RE = re.compile(r"^\s*([0-9]{1,30})\s*(B|KiB|MiB|GiB|KB|MB|K|M)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "kb": 1024, "m": 1 << 20, "mib": 1 << 20, "mb": 1 << 20, "gib": 1 << 30}


#: the largest SRAM a profile or ``--sram`` may give: on-chip memories of embedded
#: accelerators are KiB to a few MiB, and the executor that verifies a plan holds the SRAM
MAX_SRAM_BYTES = 4 << 30


def parse_size(text: str | int) -> int:
    """``256KiB``, ``1 MiB``, ``4096`` or ``4096B`` -> bytes (K/KB/KiB all mean 1024), at
    least 1 byte and at most :data:`MAX_SRAM_BYTES`."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        if not str(text).strip():
            raise UsageError("size is empty, not a byte count: write e.g. 256KiB, 1MiB or 65536")
        m = _SIZE_RE.match(str(text))
        if not m:
            shown = repr(text) if len(str(text)) <= 40 else repr(f"{str(text)[:30]}...")
            raise UsageError(f"size {shown} is not a byte count: write e.g. 256KiB, 1MiB or 65536")
        value = int(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    if value <= 0:
        raise UsageError(f"size {text!r} must be positive")
    if value > MAX_SRAM_BYTES:
        raise UsageError(f"size {text!r} is more than 4GiB, larger than any accelerator SRAM; give the on-chip "
                         "SRAM size, e.g. 512KiB or 2MiB")
    return value


@dataclass(frozen=True)
class TilingRules:
    """Hardware constraints on tiles."""

    row_only: bool = False  # tiles span whole rows (vertical splitting only)
    tile_multiple: int = 1  # tile height and width are multiples of this (except edge tiles)
    max_tiles: int = 64  # most tiles a group may be split into (rows x cols x channel splits)
    #: fused groups may also run as row stripes with rolling buffers (Tiling.rolling): the
    #: planner chooses per group between recomputing the overlap rows and caching them
    rolling_buffers: bool = False
    #: most channel slices of a fused depthwise tiling (FDT) group (memplan.geometry.fdt); 0: no
    #: FDT candidates. Off by default: see docs/fdt.md for the measured solve-time cost. Only
    #: profiles that read weights in place (weights_in_place) may enable it.
    fdt_slices: int = 0
    #: fused groups may emit tensors besides their anchor (memplan.geometry.group): a tensor
    #: produced inside a group and read after it is stored to DRAM from inside, tile by tile.
    #: Off by default (more candidates: see docs/multi-output.md). Not on profiles that keep
    #: feature maps in SRAM (such a tensor would have to stay resident, which is not built).
    multi_output: bool = False


@dataclass(frozen=True)
class HardwareProfile:
    """An accelerator: its SRAM, energy and throughput figures.

    Energies are in pJ. ``dram_bytes_per_cycle`` is the DMA bandwidth to the off-chip memory
    (DRAM or flash). ``feature_maps_in_sram`` says feature maps can never be spilled (MCU
    class: the whole network runs out of SRAM, weights are read in place from flash)."""

    name: str
    sram_bytes: int
    elem_bytes: int
    bias_bytes: int
    mac_pj: Fraction
    dram_pj_per_byte: Fraction
    sram_pj_per_byte: Fraction
    macs_per_cycle: int
    dram_bytes_per_cycle: Fraction
    clock_hz: int
    dma_overlaps_compute: bool
    feature_maps_in_sram: bool
    weights_in_place: bool
    tiling: TilingRules
    description: str = ""
    #: vector work (elementwise ops, pools, data movers) per cycle in the simple cycle model
    elementwise_elems_per_cycle: int = 16
    #: "simple" (MACs / macs_per_cycle + elements / elementwise_elems_per_cycle) or "ethos-u"
    #: (Vela's per-op model, memplan.cost.cycles), which needs the three fields below
    cycle_model: str = "simple"
    npu: str = ""  # the Ethos-U core: ethos-u55-256, ethos-u65-256, ethos-u55-128, ethos-u55-64
    sram_bytes_per_cycle: Fraction = Fraction(0)  # the NPU's SRAM bandwidth
    sram_latency: int = 0  # cycles before a block transfer from or to SRAM starts
    #: cycles before a DMA read from DRAM (or flash) delivers its first byte: each weight load
    #: that compute waits for, or that runs in the previous group's slack, takes it on top of
    #: its bytes (Vela's Dram_read_latency / OffChipFlash_read_latency)
    dram_read_latency: int = 0
    #: every SRAM buffer sits at a multiple of this (a power of two, bytes) and reserves its
    #: size rounded up to a multiple of it (as Vela allocates): the SRAM peak and every
    #: footprint count reserved bytes (16 on Ethos-U)
    sram_alignment: int = 1
    #: every feature-map SRAM buffer reserves its channels rounded up to a multiple of this
    #: (16 on Ethos-U: the depth of the NHCWB16 brick format, so a buffer holds a region in
    #: that format too); 1: raw channel counts
    channel_brick: int = 1
    #: the weight codec the profile names: "none" (int8 weights as they are, int32 biases) or
    #: "ethos-u" (Vela's Ethos-U weight codec, memplan.cost.weights)
    weight_codec: str = "none"
    #: what "ethos-u" falls back to when ethos-u-vela is not installed: "raw" (int8 weights
    #: unencoded, still with Ethos-U scale/bias records) or "error" (refuse the profile)
    weight_codec_fallback: str = "raw"
    #: bytes of the per-output-channel scale/bias record that travels with the weights: the
    #: int32 bias (bias_bytes, only for layers with a bias) without a codec, 10 with "ethos-u"
    #: (40-bit bias, 32-bit scale, 6-bit shift, on every channel)
    scale_bias_bytes: int = 4
    #: the encoding that sizes and lays out the weights, resolved when the profile is loaded
    #: (memplan.cost.weights.ENCODINGS): "int8", "ethos-u-mlw", or the fallback "ethos-u-raw";
    #: a plan records it and is verified with it
    weight_encoding: str = "int8"

    def with_sram(self, sram_bytes: int) -> HardwareProfile:
        return replace(self, sram_bytes=sram_bytes)

    def rates_fj(self) -> tuple[int, int, int]:
        """(per MAC, per DRAM byte, per SRAM byte) in integer femtojoules, the unit the solver
        and its bound count energy in."""
        out = []
        for pj in (self.mac_pj, self.dram_pj_per_byte, self.sram_pj_per_byte):
            fj = pj * 1000
            assert fj.denominator == 1, "energies must have at most three decimals of pJ"
            out.append(int(fj))
        return out[0], out[1], out[2]

    def with_tiling(self, **changes: Any) -> HardwareProfile:
        tiling = replace(self.tiling, **changes)
        if tiling.fdt_slices and not self.weights_in_place:
            raise ConfigError(f"profile {self.name}: FDT (fdt_slices) needs a profile that reads weights in place")
        if tiling.multi_output and self.feature_maps_in_sram:
            raise ConfigError(f"profile {self.name}: multi-output groups store their extra outputs to DRAM, and this "
                              "profile keeps feature maps in SRAM")
        return replace(self, tiling=tiling)


_NUMBER = (int, float)
_SPEC: dict[str, tuple[type | tuple[type, ...], bool]] = {
    # key: (type, required)
    "name": (str, True),
    "description": (str, False),
    "sram": ((str, int), True),
    "elem_bytes": (int, True),
    "bias_bytes": (int, False),
    "mac_pj": (_NUMBER, True),
    "dram_pj_per_byte": (_NUMBER, True),
    "sram_pj_per_byte": (_NUMBER, True),
    "macs_per_cycle": (int, True),
    "dram_bytes_per_cycle": (_NUMBER, True),
    "clock_mhz": (_NUMBER, True),
    "dma_overlaps_compute": (bool, True),
    "feature_maps_in_sram": (bool, False),
    "weights_in_place": (bool, False),
    "elementwise_elems_per_cycle": (int, False),
    "cycle_model": (str, False),
    "npu": (str, False),
    "sram_bytes_per_cycle": (_NUMBER, False),
    "sram_latency": (int, False),
    "dram_read_latency": (int, False),
    "sram_alignment": (int, False),
    "channel_brick": (int, False),
    "weight_codec": (str, False),
    "weight_codec_fallback": (str, False),
    "scale_bias_bytes": (int, False),
}
#: the cycle models a profile may name, and the Ethos-U cores the "ethos-u" model knows
CYCLE_MODELS = ("simple", "ethos-u")
NPU_NAMES = ("ethos-u55-256", "ethos-u65-256", "ethos-u55-128", "ethos-u55-64")
#: the weight codecs a profile may name, and what "ethos-u" may fall back to without its encoder
WEIGHT_CODECS = ("none", "ethos-u")
CODEC_FALLBACKS = ("raw", "error")
#: bytes of an Ethos-U scale/bias record (Vela's encode_bias: 40-bit bias, 32-bit scale, 6-bit shift)
ETHOS_U_RECORD_BYTES = 10
_TILING_SPEC: dict[str, type] = {"row_only": bool, "tile_multiple": int, "max_tiles": int, "rolling_buffers": bool,
                                 "fdt_slices": int, "multi_output": bool}


def _check(value: Any, typ: type | tuple[type, ...], key: str, source: str) -> Any:
    ok = isinstance(value, typ) and not (isinstance(value, bool) and bool not in (typ if isinstance(typ, tuple) else (typ,)))
    if not ok:
        names = "/".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))
        raise ConfigError(f"{source}: key {key!r} must be {names}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{source}: key {key!r} must be a finite number, got {value!r}")
    return value


#: plausible ranges of the numeric profile keys, (low, high) inclusive: far outside what real
#: hardware has, but small enough that every count the planner makes fits in 64 bits
_PROFILE_RANGES: dict[str, tuple[float, float]] = {
    "elem_bytes": (1, 8),
    "bias_bytes": (1, 8),
    "mac_pj": (0, 10_000),
    "dram_pj_per_byte": (0, 10_000),
    "sram_pj_per_byte": (0, 10_000),
    "macs_per_cycle": (1, 1 << 20),
    "dram_bytes_per_cycle": (0.001, 1 << 20),
    "clock_mhz": (0.001, 100_000),
    "elementwise_elems_per_cycle": (1, 1 << 20),
    "sram_bytes_per_cycle": (0.001, 1 << 20),
    "sram_latency": (0, 1 << 20),
    "dram_read_latency": (0, 1 << 20),
    "sram_alignment": (1, 4096),
    "channel_brick": (1, 256),
}
#: tiling rules, from the profile or the command line: (low, high) inclusive
TILING_RANGES: dict[str, tuple[int, int]] = {"tile_multiple": (1, 4096), "max_tiles": (1, 4096), "fdt_slices": (0, 4096)}


def _check_range(value: float, low: float, high: float, key: str, source: str) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{source}: key {key!r} must be from {low:,} to {high:,}, got {value!r}")


def profile_from_dict(data: dict[str, Any], source: str = "<profile>") -> HardwareProfile:
    data = dict(data)
    tiling_raw = data.pop("tiling", {})
    for key in data:
        if key not in _SPEC:
            raise ConfigError(f"{source}: unknown key {key!r} (known: {', '.join(sorted([*_SPEC, 'tiling']))})")
    for key, (typ, required) in _SPEC.items():
        if key in data:
            _check(data[key], typ, key, source)
        elif required:
            raise ConfigError(f"{source}: missing key {key!r}")
    if not isinstance(tiling_raw, dict):
        raise ConfigError(f"{source}: [tiling] must be a table")
    for key, value in tiling_raw.items():
        if key not in _TILING_SPEC:
            raise ConfigError(f"{source}: unknown key 'tiling.{key}' (known: {', '.join(sorted(_TILING_SPEC))})")
        _check(value, _TILING_SPEC[key], f"tiling.{key}", source)
    tiling = TilingRules(**tiling_raw)
    try:
        sram = parse_size(data["sram"])
    except UsageError as exc:
        raise ConfigError(f"{source}: key 'sram': {exc}") from None
    positives = ("elem_bytes", "macs_per_cycle", "dram_bytes_per_cycle", "clock_mhz")
    for key in positives:
        if data[key] <= 0:
            raise ConfigError(f"{source}: key {key!r} must be positive, got {data[key]!r}")
    for key in ("mac_pj", "dram_pj_per_byte", "sram_pj_per_byte"):
        if data[key] < 0:
            raise ConfigError(f"{source}: key {key!r} must not be negative, got {data[key]!r}")
        if (Fraction(str(data[key])) * 1000).denominator != 1:
            raise ConfigError(f"{source}: key {key!r} has more than three decimals ({data[key]!r}); energies are "
                              "counted in whole fJ, round it to 0.001 pJ")
    for key, (low, high) in _PROFILE_RANGES.items():
        if key in data:
            _check_range(data[key], low, high, key, source)
    align = data.get("sram_alignment", 1)
    if align & (align - 1):
        raise ConfigError(f"{source}: key 'sram_alignment' must be a power of two (1, 2, 4, ... 4096), got {align!r}")
    model = data.get("cycle_model", "simple")
    if model not in CYCLE_MODELS:
        raise ConfigError(f"{source}: key 'cycle_model' must be one of {', '.join(CYCLE_MODELS)}, got {model!r}")
    if model == "ethos-u":
        for key in ("npu", "sram_bytes_per_cycle", "sram_latency"):
            if key not in data:
                raise ConfigError(f"{source}: cycle_model 'ethos-u' needs key {key!r}")
        if data["npu"] not in NPU_NAMES:
            raise ConfigError(f"{source}: key 'npu' must be one of {', '.join(NPU_NAMES)}, got {data['npu']!r}")
        if data["npu"].split("-")[-1] != str(data["macs_per_cycle"]):
            raise ConfigError(f"{source}: npu {data['npu']!r} has {data['npu'].split('-')[-1]} MACs per cycle, but "
                              f"macs_per_cycle is {data['macs_per_cycle']}")
    codec, encoding, record = _weight_codec(data, source)
    if tiling.tile_multiple < 1 or tiling.max_tiles < 1:
        raise ConfigError(f"{source}: tiling.tile_multiple and tiling.max_tiles must be >= 1")
    for key, (low, high) in TILING_RANGES.items():
        _check_range(getattr(tiling, key), low, high, f"tiling.{key}", source)
    if tiling.fdt_slices and not data.get("weights_in_place", False):
        raise ConfigError(f"{source}: tiling.fdt_slices needs weights_in_place = true (FDT groups read each slice's "
                          "weights in place; weight buffers for slices are not implemented)")
    if tiling.multi_output and data.get("feature_maps_in_sram", False):
        raise ConfigError(f"{source}: tiling.multi_output needs a profile that spills feature maps (multi-output groups "
                          "store their extra outputs to DRAM)")
    return HardwareProfile(
        name=data["name"],
        description=data.get("description", ""),
        sram_bytes=sram,
        elem_bytes=data["elem_bytes"],
        bias_bytes=data.get("bias_bytes", 4),
        mac_pj=Fraction(str(data["mac_pj"])),
        dram_pj_per_byte=Fraction(str(data["dram_pj_per_byte"])),
        sram_pj_per_byte=Fraction(str(data["sram_pj_per_byte"])),
        macs_per_cycle=data["macs_per_cycle"],
        dram_bytes_per_cycle=Fraction(str(data["dram_bytes_per_cycle"])),
        clock_hz=int(Fraction(str(data["clock_mhz"])) * 1_000_000),
        dma_overlaps_compute=data["dma_overlaps_compute"],
        feature_maps_in_sram=data.get("feature_maps_in_sram", False),
        weights_in_place=data.get("weights_in_place", False),
        tiling=tiling,
        elementwise_elems_per_cycle=data.get("elementwise_elems_per_cycle", 16),
        cycle_model=model,
        npu=data.get("npu", ""),
        sram_bytes_per_cycle=Fraction(str(data.get("sram_bytes_per_cycle", 0))),
        sram_latency=data.get("sram_latency", 0),
        dram_read_latency=data.get("dram_read_latency", 0),
        sram_alignment=align,
        channel_brick=data.get("channel_brick", 1),
        weight_codec=codec,
        weight_codec_fallback=data.get("weight_codec_fallback", "raw"),
        scale_bias_bytes=record,
        weight_encoding=encoding,
    )


def _import_codec() -> Any:
    """Vela's weight codec module (``ethosu.mlw_codec``), or None when ``ethos-u-vela`` is not
    installed (tests replace this function to take the fallback path). Here, not in
    memplan.cost.weights, so that loading a profile imports nothing beyond this module."""
    try:
        from ethosu import mlw_codec
    except ImportError:
        return None
    return mlw_codec


def codec_available() -> bool:
    """Whether Vela's weight codec can be imported here."""
    return _import_codec() is not None


def _weight_codec(data: dict[str, Any], source: str) -> tuple[str, str, int]:
    """The profile's weight codec, the encoding it resolves to here and its record size.

    "ethos-u" resolves to "ethos-u-mlw" when Vela's codec imports (ethos-u-vela, the extra
    ``memplan[ethosu]``), else to its fallback: "ethos-u-raw" (int8 weights unencoded, with
    the same 10-byte records, so plans still fit and verify, only larger) or a ConfigError."""
    codec = data.get("weight_codec", "none")
    if codec not in WEIGHT_CODECS:
        raise ConfigError(f"{source}: key 'weight_codec' must be one of {', '.join(WEIGHT_CODECS)}, got {codec!r}")
    fallback = data.get("weight_codec_fallback", "raw")
    if fallback not in CODEC_FALLBACKS:
        raise ConfigError(f"{source}: key 'weight_codec_fallback' must be one of {', '.join(CODEC_FALLBACKS)}, "
                          f"got {fallback!r}")
    if codec == "none":
        if "weight_codec_fallback" in data:
            raise ConfigError(f"{source}: key 'weight_codec_fallback' needs weight_codec 'ethos-u'")
        record = data.get("bias_bytes", 4)
        if data.get("scale_bias_bytes", record) != record:
            raise ConfigError(f"{source}: key 'scale_bias_bytes' must equal bias_bytes ({record}) without a weight "
                              f"codec (the record is the bias), got {data['scale_bias_bytes']!r}")
        return codec, "int8", record
    if data.get("scale_bias_bytes", ETHOS_U_RECORD_BYTES) != ETHOS_U_RECORD_BYTES:
        raise ConfigError(f"{source}: key 'scale_bias_bytes' must be {ETHOS_U_RECORD_BYTES} with weight_codec 'ethos-u' "
                          f"(40-bit bias, 32-bit scale, 6-bit shift), got {data['scale_bias_bytes']!r}")
    if data.get("weights_in_place", False):
        raise ConfigError(f"{source}: weight_codec 'ethos-u' needs weights DMA'd into SRAM: weights_in_place must be false")
    if data.get("elem_bytes") != 1:
        raise ConfigError(f"{source}: weight_codec 'ethos-u' encodes int8 weights: elem_bytes must be 1")
    if codec_available():
        return codec, "ethos-u-mlw", ETHOS_U_RECORD_BYTES
    if fallback == "error":
        raise ConfigError(f"{source}: weight_codec 'ethos-u' needs Vela's weight codec, which is not installed, and "
                          "weight_codec_fallback is 'error': pip install 'memplan[ethosu]'")
    return codec, "ethos-u-raw", ETHOS_U_RECORD_BYTES


def _hardware_dirs() -> list[Traversable]:
    return [CONFIG_ROOT / "hardware"]


def _toml_stems(folder: Traversable) -> list[str]:
    """Names of the ``*.toml`` files in a shipped config folder, without the suffix."""
    if not folder.is_dir():
        return []
    return sorted(entry.name[: -len(".toml")] for entry in folder.iterdir() if entry.name.endswith(".toml") and entry.is_file())


def available_profiles() -> list[str]:
    names: set[str] = set()
    for d in _hardware_dirs():
        names.update(_toml_stems(d))
    return sorted(names)


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """Load a hardware profile by shipped name (``generic-npu``) or from a TOML file path."""
    path: Path | Traversable = Path(name_or_path)
    if Path(name_or_path).suffix != ".toml":
        for d in _hardware_dirs():
            if (d / f"{name_or_path}.toml").is_file():
                path = d / f"{name_or_path}.toml"
                break
        else:
            raise ConfigError(f"unknown hardware profile {str(name_or_path)!r}: use one of {', '.join(available_profiles())} or a .toml path")
    return profile_from_dict(_read_toml(path, "hardware profile"), source=str(path))


def _read_toml(path: Path | Traversable, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{what} file {str(path)!r} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text, so not TOML; save the file as UTF-8") from None
    except ValueError as exc:  # tomllib passes on int()'s refusal of numbers with 4300+ digits
        raise ConfigError(f"{path}: not valid TOML: {str(exc).splitlines()[0][:80]}") from None


# ---------------------------------------------------------------------------- solver settings
# ---------------------------------------------------------------------------- recompute budget
#: the budget's syntax: a share of the untiled network's MACs (``10%``) or a MAC count
#: (``250000``), from ``--max-recompute`` or a solver config's ``max_recompute``; the solver
#: turns it into MACs for a graph (memplan.solve.budget)
_PERCENT = re.compile(r"^\s*([0-9]{1,12}(?:\.[0-9]{1,6})?)\s*%\s*$")
_COUNT = re.compile(r"^\s*([0-9]{1,19})\s*$")
#: the largest MAC count a budget may give (CP-SAT's coefficients are 64-bit)
MAX_BUDGET_MACS = 1 << 60
_HELP = "write a share of the untiled network's MACs such as 10% or 2.5%, a MAC count such as 250000, or unlimited"


@dataclass(frozen=True)
class RecomputeBudget:
    """A share of the untiled MACs (``percent``) or an absolute MAC count (``macs``)."""

    percent: Fraction | None = None
    macs: int | None = None

    def limit(self, untiled_macs: int) -> int:
        """The budget in MACs for a network of ``untiled_macs`` (a share rounds down)."""
        if self.macs is not None:
            return self.macs
        assert self.percent is not None
        return int(untiled_macs * self.percent // 100)

    def __str__(self) -> str:
        if self.macs is not None:
            return f"{self.macs} MACs"
        assert self.percent is not None
        return f"{float(self.percent):g}%"


def parse_recompute(value: str | int | RecomputeBudget | None, what: str = "--max-recompute",
                    error: type[MemplanError] = UsageError) -> RecomputeBudget | None:
    """``10%`` -> a share, ``250000`` (or the int) -> a MAC count, ``unlimited``/None -> None.
    A bad value is an ``error`` naming ``what`` (the flag, or a config file's key)."""
    if value is None or isinstance(value, RecomputeBudget):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise error(f"{what} {value!r} is not a budget: {_HELP}")
    if isinstance(value, int):
        macs = value
    else:
        if value.strip().lower() in ("unlimited", "none", "inf"):
            return None
        m = _PERCENT.match(value)
        if m:
            return RecomputeBudget(percent=Fraction(m.group(1)))
        m = _COUNT.match(value)
        if not m:
            shown = repr(value) if len(value) <= 40 else repr(f"{value[:30]}...")
            raise error(f"{what} {shown} is not a budget: {_HELP}")
        macs = int(m.group(1))
    if not 0 <= macs <= MAX_BUDGET_MACS:
        raise error(f"{what} {value!r} must be a MAC count from 0 to {MAX_BUDGET_MACS:,}: {_HELP}")
    return RecomputeBudget(macs=macs)


@dataclass(frozen=True)
class SolverConfig:
    """CP-SAT settings, loaded by name (``default``, ``fast``, ``thorough``) or path.

    ``deterministic``: the solve is reproducible (interleaved search bounded by deterministic
    time instead of wall time), so the same input, config and seed give the same plan bytes."""

    name: str = "default"
    time_limit_s: float = 60.0
    workers: int = 2
    random_seed: int = 0
    log_progress: bool = False
    warm_start: bool = True
    deterministic: bool = False
    max_fuse_depth: int = 12
    balanced_energy: float = 0.5
    balanced_latency: float = 0.5
    #: a recompute budget every plan of this config honours, as ``--max-recompute`` takes it
    #: (``"10%"``, a MAC count, ``"unlimited"``); the flag, when given, replaces it
    max_recompute: str | int | None = None
    #: with the memory objective, the SRAM bytes one recomputed MAC costs: the first phase
    #: minimises SRAM bytes + recompute_weight x recompute MACs (0: the smallest SRAM whatever it
    #: recomputes); the weight is taken as a fraction with a denominator of at most 1000
    recompute_weight: float = 0.0

    def __post_init__(self) -> None:
        check_solver_values(self.__dict__, f"solver config {self.name!r}")
        parse_recompute(self.max_recompute, f"solver config {self.name!r}: max_recompute", ConfigError)


#: the largest random seed: CP-SAT takes a 32-bit signed seed
MAX_SEED = (1 << 31) - 1
#: ranges of the numeric solver settings, (low, high) inclusive, except that the time limit
#: (seconds) must be above 0: the solve command passes on what is left of it, however little
SOLVER_RANGES: dict[str, tuple[float, float]] = {
    "time_limit_s": (0, 1_000_000), "workers": (1, 256), "random_seed": (0, MAX_SEED),
    "max_fuse_depth": (1, 10_000), "balanced_energy": (0, 1_000_000), "balanced_latency": (0, 1_000_000),
    "recompute_weight": (0, 1_000_000),
}


def check_solver_values(data: Any, source: str) -> None:
    """Every numeric solver setting in ``data`` is a finite number in its range; the
    balanced weights are not both zero."""
    for key, (low, high) in SOLVER_RANGES.items():
        if key not in data:
            continue
        value = data[key]
        integral = key in ("workers", "random_seed", "max_fuse_depth")
        kind = "an integer" if integral else "a finite number"
        if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
            raise ConfigError(f"{source}: {key} must be {kind}, got {value!r}")
        if key == "time_limit_s" and not (math.isfinite(value) and low < value <= high):
            raise ConfigError(f"{source}: {key} must be a positive number of seconds up to {high:,}, got {value!r}")
        if not (math.isfinite(value) and low <= value <= high):
            raise ConfigError(f"{source}: {key} must be {kind} from {low:,} to {high:,}, got {value!r}")
    if data.get("balanced_energy", 1) == 0 and data.get("balanced_latency", 1) == 0:
        raise ConfigError(f"{source}: balanced_energy and balanced_latency are both 0; give one a positive weight")

_SOLVER_SPEC: dict[str, type | tuple[type, ...]] = {
    "time_limit_s": (int, float), "workers": int, "random_seed": int, "log_progress": bool, "warm_start": bool,
    "deterministic": bool, "max_fuse_depth": int, "balanced_energy": (int, float), "balanced_latency": (int, float),
    "max_recompute": (str, int), "recompute_weight": (int, float),
}


def load_solver_config(name_or_path: str | Path = "default") -> SolverConfig:
    """Load solver settings by shipped name (``default``, ``fast``, ``thorough``) or from a TOML path."""
    path: Path | Traversable = Path(name_or_path)
    name = Path(name_or_path).stem
    if Path(name_or_path).suffix != ".toml":
        shipped = CONFIG_ROOT / "solver"
        path = shipped / f"{name_or_path}.toml"
        if not path.is_file():
            raise ConfigError(f"unknown solver config {str(name_or_path)!r}: use one of {', '.join(_toml_stems(shipped))} or a .toml path")
    data = _read_toml(path, "solver config")
    for key, value in data.items():
        if key not in _SOLVER_SPEC:
            raise ConfigError(f"{path}: unknown key {key!r} (known: {', '.join(sorted(_SOLVER_SPEC))})")
        _check(value, _SOLVER_SPEC[key], key, str(path))
    check_solver_values(data, str(path))
    parse_recompute(data.get("max_recompute"), f"{path}: max_recompute", ConfigError)
    return SolverConfig(name=name, **data)
