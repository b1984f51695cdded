"""Compute cycles of one compute command: the simple model and an Ethos-U model after Vela's.

Every evaluator of a plan's cycles calls :func:`command_work` with the same three things: the
layer, the shape ``(channels, rows, cols)`` of the command's output region, and the profile.
The candidate cost model (:mod:`memplan.cost.candidate`) sums it over a group's tiles, the
plan builder and the validator over the command stream, the tiled executor over the output
arrays its kernels return, so all four give the same integer. The input extent a command
reads is derived from its output shape (below), never from its position, so equal-sized tiles
cost the same wherever they sit.

A group's compute cycles are :func:`group_compute_cycles` of the sums over its commands; the
group's cycles stay :func:`memplan.plan.build.group_cycles` (compute and DMA overlap when the
profile double-buffers, otherwise they add).

Simple model (``cycle_model = "simple"``, the generic profiles)
---------------------------------------------------------------
* MAC layers (conv, conv-transpose, fully connected): ``ceil(group MACs / macs_per_cycle)``.
* Every other layer (add, sub, mul, max, min, pools, resize, concat, pad, slice, softmax,
  ...) is vector work: its output elements, ``ceil(group elements /
  elementwise_elems_per_cycle)``.
* Compute = the two added. (Before profiles had ``elementwise_elems_per_cycle`` the vector
  work was free.)

Ethos-U model (``cycle_model = "ethos-u"``), after Vela 5.2's ``npu_performance.py``
------------------------------------------------------------------------------------
Figures of the accelerator (``npu = "ethos-u65-256"`` etc., Vela's
``architecture_features.py``): MACs/cycle, the OFM micro-block ``ub = (h, w, c)`` (2x2x8 on a
256-MAC core, 2x1x8 on 128, 1x1x8 on 64), 48 (24, 16) SHRAM banks of 1 KiB, the output and
activation cycles per element tables. Feature maps are int8 in 16-channel bricks (NHCWB16):
element counts that the NPU writes or fetches round depth up to 16.

Every command runs as Vela runs an operator whose OFM is the command's output region.

1. **Op class.** Conv with one group: MxN convolution; conv with one group per input channel:
   depthwise; fully connected: vector product (1x1 kernel over all input elements);
   conv-transpose: MxN with its kernel at stride 1 (Vela upsamples the IFM); max/avg pool,
   global pools (kernel = the input's H x W), resize (nearest 1x1, linear 2x2 kernel) and the
   data movers (concat, pad, slice, channel shuffle, depth/space-to-depth: a 1x1 pooling copy,
   as Vela's memcpy): pooling; add/sub/mul/max/min: elementwise. Softmax is Vela's int8
   decomposition: one reduce-max pooling over the channels and 28 elementwise passes, 12 over
   the whole tensor and 16 over the per-pixel sums (``softmax.py``); LRN one elementwise pass.
2. **IFM extent of an OFM box** ``(h, w)``: ``(h - 1) * stride + (k - 1) * dilation + 1`` rows
   (likewise columns), at most the input's size (padding counts as fetched). Depth is the
   reduction depth (input channels per group; all input elements for FC).
3. **Block config** (Vela's ``find_block_config``, chosen once per layer from its whole
   shapes): OFM blocks ``(bh, bw, bd)`` on the micro-block grid up to 32 x 64 x 128, depth in
   steps of 8 but rounded to 16-channel splits while below the OFM depth. A block fits when
   its IFM block (rows ``(bh - 1) * s + min(k_area, 8)`` rounded to ``ub``; depth 32, or 16
   in part-kernel mode, for convolutions, else ``bd``; ``2 * ceil(bytes / 1024)`` banks rounded
   to the IFM granule) and its int32 accumulators (``2 * ceil(bh * bw * bd * 4 / 1024)`` banks,
   rounded to the accumulator granule; elementwise ops use a second IFM buffer instead) fit
   between the 2 reserved output banks and the 2 end banks. Among fitting blocks the one with
   the lowest fetch per output element (IFM fetch x sub-kernel repeats + weight fetch, halved
   when the whole IFM fits in two IFM blocks; elementwise: OFM elements per block) wins;
   Vela's tie rule (equal cost: the smaller IFM coverage among blocks up to 4 x 4) and its
   skip of transposed blocks are kept. Part-kernel mode: input depth <= 8, or its
   utilisation ``C*K / (ceil8(C) * ceil4(K))`` beats depth-first ``C / ceil32(C)``.
4. **DPU cycles per block** (``bo = min(box, block)``, ``n_x, n_y, n_z`` micro-blocks of
   ``bo``; the 1-D optimisation turns ``ub`` into 1 x 4 for an OFM of height 1, even width and
   a kernel of height 1). Per 8 x 8 sub-kernel of ``e`` elements, with ``wb = 4 * ub_c``:
   pooling ``max(4, e) * n_xy * n_z``; depthwise ``max(wb, 4 * n_xy) * ceil(e / 4) * n_z``;
   depth-first conv and FC ``max(wb, 4 * n_xy) * e * n_z``; part-kernel conv
   ``max(wb, 4 * n_xy) * ceil(e / 4) * ceil(ifm_block_depth / 8) * n_z``; plus 2 cycles per
   kernel step when the block is one micro-block wide and high (``x (steps - 1) * n_z`` when it
   is deeper). Conv and FC repeat it ``ceil(reduction depth / ifm_block_depth)`` times.
5. **Output cycles per block**: ``ceil(cpe * block elements)``, ``cpe`` = max(output table
   entry of the op: conv/FC/avg-pool/data movers 0.25, max-pool 0.125, add/sub 0.75, mul
   0.375 on a 256-MAC core; activation entry: ReLU/clip 0.25, sigmoid/tanh/LUT 1.0, none 0);
   at least ``10 * bd * latency / 256`` for the per-channel scale and bias of weighted ops.
6. **Command overhead**: the block's IFM and OFM transfers, each ``latency + bytes /
   bandwidth`` of SRAM (the NPU reads and writes SRAM on memplan's profiles), plus output and
   DPU cycles, over 4; DPU and output cycles per block are at least that.
7. **Op cycles**: ``blocks * max(dpu, out) + min(dpu, out)`` with ``blocks`` the OFM blocks
   covering the box. Elementwise: ``cpe' * OFM elements (brick-rounded)``, with ``cpe'`` at
   least the command overhead per element of a block.
8. **SRAM bandwidth**: the NPU's SRAM traffic of the command, IFM fetched per OFM block with
   its halo and brick-rounded depth, times the sub-kernel repeats (depthwise and pooling fetch
   their depth once; elementwise: each full input once), plus the brick-rounded OFM, over
   ``sram_bytes_per_cycle``. A command takes ``ceil(max(op cycles, SRAM cycles))``.

DMA (DRAM <-> SRAM) keeps memplan's engine: bytes over ``dram_bytes_per_cycle`` per group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from memplan.config import HardwareProfile
from memplan.ir.graph import Graph, Layer
from memplan.ir.ops import (
    WEIGHTED,
    ActKind,
    ConvAttrs,
    ConvTransposeAttrs,
    OpKind,
    PoolAttrs,
    ResizeAttrs,
    ceil_div,
)

# ---------------------------------------------------------------------------- accelerators
#: output cycles per element by op class (Vela's table order: 32-bit unary, 32-bit binary,
#: 32-bit mul, mul / 40-bit accumulators, simple add, add/sub, max-pool, other)
_OUT_256 = tuple(Fraction(x) for x in ("0.625", "1.125", "0.5", "0.375", "0.5", "0.75", "0.125", "0.25"))
_OUT_128 = tuple(Fraction(x) for x in ("0.75", "1.25", "0.75", "0.75", "1", "1.5", "0.25", "0.5"))
_OUT_64 = tuple(Fraction(x) for x in ("1", "1.5", "1.5", "1.5", "2", "3", "0.5", "1"))


@dataclass(frozen=True)
class Npu:
    """An Ethos-U core as Vela describes it: micro-block (h, w, c), SHRAM banks, the IFM
    (8-bit, 8-bit elementwise) and int32 accumulator bank granules, output and activation
    cycles per element (sigmoid/tanh/LUT, ReLU/clip, none)."""

    macs: int
    ublock: tuple[int, int, int]
    banks: int
    ifm_granule: int
    ifm_ew_granule: int
    acc_granule: int
    out_cpe: tuple[Fraction, ...]
    act_cpe: tuple[Fraction, Fraction, Fraction]


NPUS: dict[str, Npu] = {
    "ethos-u55-256": Npu(256, (2, 2, 8), 48, 8, 8, 16, _OUT_256, (Fraction(1), Fraction(1, 4), Fraction(0))),
    "ethos-u65-256": Npu(256, (2, 2, 8), 48, 8, 8, 16, _OUT_256, (Fraction(1), Fraction(1, 4), Fraction(0))),
    "ethos-u55-128": Npu(128, (2, 1, 8), 24, 4, 4, 8, _OUT_128, (Fraction(1), Fraction(1, 2), Fraction(0))),
    "ethos-u55-64": Npu(64, (1, 1, 8), 16, 2, 4, 4, _OUT_64, (Fraction(1), Fraction(1), Fraction(0))),
}

#: Vela's OFM block limit (h, w, c), sub-kernel limit, OFM depth split, brick depth, bank size
_BLOCK_MAX = (32, 64, 128)
_SUBKERNEL = 8
_SPLIT_DEPTH = 16
_BRICK = 16
_BANK = 1024
_RESERVED_OUT_BANKS = 2


def _reserved_end_banks(npu: Npu) -> int:
    return 2 if npu.banks > 16 else 0


# ---------------------------------------------------------------------------- op description
@dataclass(frozen=True)
class OpSpec:
    """What the Ethos-U model needs of a layer, independent of any tile."""

    block: str  # "conv", "dw", "fc", "pool", "ew"
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    depth: int  # reduction depth (conv/fc), else the output depth
    ifm_hw: tuple[int, int]  # the input's (H, W) (FC: (1, 1))
    ofm: tuple[int, int, int]  # the whole output (h, w, c)
    out_index: int  # entry of the output cycles table
    act_index: int  # entry of the activation cycles table
    biased: bool  # per-channel scale and bias are fetched
    ifm2: bool  # a second full-size input (elementwise)


def _act_index(layer: Layer) -> int:
    a = layer.activation
    if a is None:
        return 2
    if a.kind in (ActKind.RELU, ActKind.CLIP):
        return 1
    return 0  # a LUT activation


def op_spec(graph: Graph, layer: Layer) -> OpSpec:
    """The Ethos-U op class of ``layer`` and its fixed shapes (module docstring, item 1)."""
    _, c_in, h_in, w_in = graph.shape(layer.inputs[0])
    _, c, h, w = graph.shape(layer.output)
    op, a = layer.op, layer.attrs
    act = _act_index(layer)
    one = (1, 1)
    if op is OpKind.CONV:
        assert isinstance(a, ConvAttrs)
        depthwise = a.groups > 1 and a.groups == c_in
        return OpSpec("dw" if depthwise else "conv", a.kernel, a.stride, a.dilation, c_in // a.groups, (h_in, w_in),
                      (h, w, c), 7, act, True, False)
    if op is OpKind.CONV_TRANSPOSE:
        assert isinstance(a, ConvTransposeAttrs)
        return OpSpec("conv", a.kernel, one, a.dilation, c_in // a.groups, (h, w), (h, w, c), 7, act, True, False)
    if op is OpKind.FULLY_CONNECTED:
        return OpSpec("fc", one, one, one, c_in * h_in * w_in, one, (h, w, c), 7, act, True, False)
    if op in (OpKind.MAX_POOL, OpKind.AVG_POOL):
        assert isinstance(a, PoolAttrs)
        return OpSpec("pool", a.kernel, a.stride, one, c, (h_in, w_in), (h, w, c), 6 if op is OpKind.MAX_POOL else 7,
                      act, False, False)
    if op in (OpKind.GLOBAL_AVG_POOL, OpKind.GLOBAL_MAX_POOL):
        return OpSpec("pool", (h_in, w_in), (h_in, w_in), one, c, (h_in, w_in), (h, w, c),
                      6 if op is OpKind.GLOBAL_MAX_POOL else 7, act, False, False)
    if op is OpKind.RESIZE:
        assert isinstance(a, ResizeAttrs)
        k = one if a.mode == "nearest" else (2, 2)
        return OpSpec("pool", k, one, one, c, (h, w), (h, w, c), 7, act, False, False)
    if op in (OpKind.ADD, OpKind.SUB, OpKind.MUL, OpKind.MAX, OpKind.MIN):
        full2 = len(layer.inputs) > 1 and graph.tensors[layer.inputs[1]].numel > 1
        index = {OpKind.ADD: 5, OpKind.SUB: 5, OpKind.MUL: 3}.get(op, 7)
        return OpSpec("ew", one, one, one, c, (h, w), (h, w, c), index, act, False, full2)
    if op in (OpKind.SOFTMAX, OpKind.LRN):
        return OpSpec("ew", one, one, one, c, (h, w), (h, w, c), 7, act, False, False)
    # data movers: a 1x1 pooling copy of the output
    return OpSpec("pool", one, one, one, c, (h, w), (h, w, c), 7, act, False, False)


# ---------------------------------------------------------------------------- block config
@dataclass(frozen=True)
class BlockConfig:
    ofm: tuple[int, int, int]  # OFM block (h, w, c)
    ifm: tuple[int, int, int]  # IFM block (h, w, c)
    part_kernel: bool


def _round(x: int, q: int) -> int:
    return ceil_div(x, q) * q


def _area(k: int, d: int) -> int:
    return (k - 1) * d + 1


def _ifm_block(spec: OpSpec, npu: Npu, bh: int, bw: int) -> tuple[int, int]:
    uh, uw, _ = npu.ublock
    ih = (bh - 1) * spec.stride[0] + min(_area(spec.kernel[0], spec.dilation[0]), _SUBKERNEL)
    iw = (bw - 1) * spec.stride[1] + min(_area(spec.kernel[1], spec.dilation[1]), _SUBKERNEL)
    return _round(ih, uh), _round(iw, uw)


def _part_kernel(spec: OpSpec) -> bool:
    if spec.block not in ("conv", "dw"):
        return False
    c = spec.depth if spec.block == "conv" else spec.ofm[2]
    if c <= 8:
        return True
    k = spec.kernel[0] * spec.kernel[1]
    return Fraction(c * k, _round(c, 8) * _round(k, 4)) > Fraction(c, _round(c, 32))


@lru_cache(maxsize=4096)
def block_config(npu_name: str, spec: OpSpec) -> BlockConfig:
    """The OFM/IFM block Vela's search would pick for this op (docstring, item 3)."""
    npu = NPUS[npu_name]
    uh, uw, uc = npu.ublock
    oh, ow, oc = spec.ofm
    ew = spec.block == "ew"
    equal_depth = spec.block in ("ew", "pool", "dw")
    part = _part_kernel(spec)
    ifm_c = spec.depth if spec.block in ("conv", "fc") else oc
    ifm_h, ifm_w = spec.ifm_hw
    ifm_elems = ifm_h * ifm_w * ifm_c
    repeats = ceil_div(_area(spec.kernel[1], spec.dilation[1]), _SUBKERNEL) * \
        ceil_div(_area(spec.kernel[0], spec.dilation[0]), _SUBKERNEL)
    ifm_depth = _round(min(ifm_c, 16 if part else 32), uc)
    weight_wh = spec.kernel[0] * spec.kernel[1] if spec.block in ("conv", "dw") else 0
    space = tuple(_round(min(o, m), u) for o, m, u in zip(spec.ofm, _BLOCK_MAX, npu.ublock))
    lut_start = npu.banks - _reserved_end_banks(npu)
    granule = npu.ifm_ew_granule if ew else npu.ifm_granule
    ofm_elems = oh * ow * oc
    best: tuple[Fraction, Fraction] | None = None  # (cost, coverage)
    chosen: BlockConfig | None = None
    depth = max(uc, min(space[2], _SPLIT_DEPTH))
    if depth < oc:
        depth = _round(depth, _SPLIT_DEPTH)
    while depth <= space[2]:
        wont_fit: set[tuple[int, int]] = set()
        for bh in range(uh, space[0] + 1, uh):
            for bw in range(uw, space[1] + 1, uw):
                if (bh, bw) in wont_fit:
                    continue
                ih, iw = _ifm_block(spec, npu, bh, bw)
                id_ = depth if equal_depth else ifm_depth
                fh = 1 if (oh == 1 and spec.kernel[0] == 1 and uh == 2) else bh  # the 1-D case
                ifm_banks = _round(ceil_div(ih * iw * _round(id_, 8), _BANK) * 2, granule)
                ifm_end = _RESERVED_OUT_BANKS + ifm_banks
                if ew:
                    fits = ifm_end + (ifm_banks if spec.ifm2 else 0) <= lut_start
                else:
                    acc_banks = _round(ceil_div(fh * bw * _round(depth, 8) * 4, _BANK) * 2, npu.acc_granule)
                    fits = ifm_end <= lut_start - acc_banks
                if not fits:
                    wont_fit.add((bw, bh))  # Vela marks the transposed block as not fitting
                    continue
                full = (ceil_div(oh, fh), ceil_div(ow, bw), ceil_div(oc, depth))
                frac_wh = Fraction(oh, fh) * Fraction(ow, bw)
                wfetch = Fraction(weight_wh * ifm_c * full[0] * full[1])
                if spec.block != "dw":
                    wfetch *= depth * Fraction(oc, depth)
                ifetch = ih * iw * ifm_c * repeats * frac_wh
                if not equal_depth:
                    ifetch *= full[2]
                if ew:
                    cost = max(Fraction(ofm_elems, bh * bw * depth), Fraction(1))
                else:
                    cost = (ifetch + wfetch) / ofm_elems
                if ifm_elems < ih * iw * id_ * 2:
                    cost /= 2
                if best is None or cost < best[0]:
                    best = (cost, Fraction(10 ** 9))
                    chosen = BlockConfig((bh, bw, depth), (ih, iw, id_), part)
                elif cost == best[0]:
                    cov = Fraction(ifm_h * ifm_w, min(ifm_h, ih) * min(ifm_w, iw))
                    if cov <= best[1] and bh <= 4 and bw <= 4:
                        best = (cost, cov)
                        chosen = BlockConfig((bh, bw, depth), (ih, iw, id_), part)
        depth += uc
        if depth < oc:
            depth = _round(depth, _SPLIT_DEPTH)
    if chosen is None:  # nothing fits (cannot happen for int8 on these cores): the micro-block
        chosen = BlockConfig((uh, uw, uc), (*_ifm_block(spec, npu, uh, uw), uc), part)
    return chosen


# ---------------------------------------------------------------------------- cycles
@dataclass(frozen=True)
class EthosTiming:
    """The profile figures the Ethos-U model uses (hashable, for the caches)."""

    npu: str
    sram_bytes_per_cycle: Fraction
    sram_latency: int


def _timing(hw: HardwareProfile) -> EthosTiming:
    return EthosTiming(hw.npu, hw.sram_bytes_per_cycle, hw.sram_latency)


def _transfer(t: EthosTiming, elems: int) -> Fraction:
    """Cycles of one block transfer to or from SRAM: latency + bytes / bandwidth."""
    return t.sram_latency + Fraction(elems) / t.sram_bytes_per_cycle


def _ifm_extent(spec: OpSpec, h: int, w: int) -> tuple[int, int]:
    if spec.block == "fc":
        return 1, 1
    if spec.block == "ew":
        return h, w
    ih = (h - 1) * spec.stride[0] + _area(spec.kernel[0], spec.dilation[0])
    iw = (w - 1) * spec.stride[1] + _area(spec.kernel[1], spec.dilation[1])
    return min(ih, spec.ifm_hw[0]), min(iw, spec.ifm_hw[1])


def _cpe(npu: Npu, spec: OpSpec) -> Fraction:
    return max(npu.out_cpe[spec.out_index], npu.act_cpe[spec.act_index])


def _conv_cycles(t: EthosTiming, npu: Npu, spec: OpSpec, cfg: BlockConfig, dims: tuple[int, int, int]) -> Fraction:
    h, w, c = dims
    bh, bw, bd = (min(a, b) for a, b in zip(dims, cfg.ofm))
    uh, uw, uc = npu.ublock
    if uh == 2 and spec.block in ("conv", "dw", "fc") and h == 1 and w % 2 == 0 and spec.kernel[0] == 1:
        uh, uw, bh = 1, 4, 1  # the 1-D optimisation
    ifm_h, ifm_w = _ifm_extent(spec, h, w)
    ifm_depth = spec.depth if spec.block in ("conv", "fc") else c
    ib = (min(ifm_h, cfg.ifm[0]), min(ifm_w, cfg.ifm[1]), min(ifm_depth, cfg.ifm[2]))
    nx, ny, nz = ceil_div(bw, uw), ceil_div(bh, uh), ceil_div(bd, uc)
    nxy = nx * ny
    wb = 4 * uc
    limit = 1 if spec.block == "fc" else _SUBKERNEL
    kh, kw = (spec.kernel[0], spec.kernel[1]) if spec.block != "fc" else (1, 1)
    subs_y = [min(kh - i * limit, limit) for i in range(ceil_div(kh, limit))]
    subs_x = [min(kw - i * limit, limit) for i in range(ceil_div(kw, limit))]
    dpu = 0
    for sy in subs_y:
        for sx in subs_x:
            e = sy * sx
            if spec.block == "pool":
                steps, cyc = 1, max(4, e) * nxy * nz
            elif spec.block == "dw":
                steps = ceil_div(e, 4)
                cyc = max(wb, 4 * nxy) * steps * nz
            elif spec.block == "fc" or not cfg.part_kernel:
                steps = e
                cyc = max(wb, 4 * nxy) * steps * nz
            else:
                steps = ceil_div(e, 4)
                cyc = max(wb, 4 * nxy) * steps * ceil_div(ib[2], 8) * nz
            delay = 0
            if nx == 1 and ny == 1:
                if nz == 1:
                    delay = 2 * steps
                elif steps > 1:
                    delay = 2 * (steps - 1) * nz
            if spec.block == "conv" and cfg.part_kernel:
                delay *= ceil_div(ib[2], 8)
            dpu += cyc + delay
    if spec.block in ("conv", "fc"):
        dpu *= ceil_div(ifm_depth, ib[2])
    blocks = ceil_div(h, bh) * ceil_div(w, bw) * ceil_div(c, bd)
    block_elems = bh * bw * bd
    out = Fraction(math.ceil(_cpe(npu, spec) * block_elems))
    if spec.biased:
        out = max(out, Fraction(10 * bd * t.sram_latency, 256))
    cmd = (_transfer(t, ib[0] * ib[1] * ib[2]) + _transfer(t, block_elems) + out + dpu) / 4
    dpu_c, out_c = max(Fraction(dpu), cmd), max(out, cmd)
    return blocks * max(dpu_c, out_c) + min(dpu_c, out_c)


def _ew_cycles(t: EthosTiming, npu: Npu, spec: OpSpec, cfg: BlockConfig, dims: tuple[int, int, int],
               out_index: int | None = None) -> Fraction:
    h, w, c = dims
    index = spec.out_index if out_index is None else out_index
    cpe = max(npu.out_cpe[index], npu.act_cpe[spec.act_index])
    block_elems = cfg.ofm[0] * cfg.ofm[1] * cfg.ofm[2]
    present = min(h, cfg.ifm[0]) * min(w, cfg.ifm[1]) * min(c, cfg.ifm[2])
    out_present = min(h, cfg.ofm[0]) * min(w, cfg.ofm[1]) * min(c, cfg.ofm[2])
    cmd = (_transfer(t, present) + _transfer(t, out_present) + cpe * block_elems) / 4
    cpe = max(cpe, cmd / block_elems)
    return cpe * (h * w * _round(c, _BRICK))


def _sram_bytes(spec: OpSpec, cfg: BlockConfig, dims: tuple[int, int, int]) -> int:
    """The NPU's SRAM traffic for the command (docstring, item 8)."""
    h, w, c = dims
    out = h * w * _round(c, _BRICK)
    if spec.block == "ew":
        return out * (2 if spec.ifm2 else 1) + out
    bh, bw, bd = (min(a, b) for a, b in zip(dims, cfg.ofm))
    ifm_h, ifm_w = _ifm_extent(spec, h, w)
    ifm_depth = spec.depth if spec.block in ("conv", "fc") else c
    n_blocks = ceil_div(h, bh) * ceil_div(w, bw)
    if spec.block in ("conv", "fc"):
        n_blocks *= ceil_div(c, bd)
    ih, iw = min(ifm_h, cfg.ifm[0]), min(ifm_w, cfg.ifm[1])
    limit = 1 if spec.block == "fc" else _SUBKERNEL
    subs = ceil_div(spec.kernel[0], limit) * ceil_div(spec.kernel[1], limit)
    return ih * iw * _round(ifm_depth, _BRICK) * subs * n_blocks + out


@lru_cache(maxsize=1 << 16)
def _ethos_cycles(t: EthosTiming, spec: OpSpec, dims: tuple[int, int, int], softmax: bool) -> int:
    npu = NPUS[t.npu]
    cfg = block_config(t.npu, spec)
    if softmax:  # Vela's int8 decomposition: reduce-max, 12 full passes, 16 passes over the sums
        h, w, c = dims
        one = (h, w, 1)
        reduce = OpSpec("pool", (1, c), (1, c), (1, 1), 1, (h, w * c), one, 6, 2, False, False)
        total = _conv_cycles(t, npu, reduce, block_config(t.npu, reduce), one)
        cfg1 = block_config(t.npu, OpSpec("ew", (1, 1), (1, 1), (1, 1), 1, (h, w), one, 0, 2, False, False))
        total += 12 * _ew_cycles(t, npu, spec, cfg, dims, out_index=0)
        total += 16 * _ew_cycles(t, npu, spec, cfg1, one, out_index=0)
        sram = 14 * _sram_bytes(spec, cfg, dims)
        return math.ceil(max(total, Fraction(sram) / t.sram_bytes_per_cycle))
    if spec.block == "ew":
        op = _ew_cycles(t, npu, spec, cfg, dims)
    else:
        op = _conv_cycles(t, npu, spec, cfg, dims)
    return math.ceil(max(op, Fraction(_sram_bytes(spec, cfg, dims)) / t.sram_bytes_per_cycle))


# ---------------------------------------------------------------------------- public
def is_mac_layer(layer: Layer) -> bool:
    """Layers whose simple-model cost is their MACs (the rest are vector work)."""
    return layer.op in WEIGHTED


def command_work(graph: Graph, layer: Layer, dims: tuple[int, int, int], hw: HardwareProfile) -> tuple[int, int]:
    """(vector elements, NPU cycles) of one compute command of ``layer`` whose output region
    has ``dims = (channels, rows, cols)``. The simple model counts the elements of non-MAC
    layers (its MAC cycles come from the group's MACs); the Ethos-U model gives the cycles."""
    c, h, w = dims
    if c <= 0 or h <= 0 or w <= 0 or layer.op is OpKind.HOST:
        return 0, 0
    if hw.cycle_model == "simple":
        return (0 if is_mac_layer(layer) else c * h * w), 0
    spec = op_spec(graph, layer)
    return 0, _ethos_cycles(_timing(hw), spec, (h, w, c), layer.op is OpKind.SOFTMAX)


def group_compute_cycles(hw: HardwareProfile, macs: int, elems: int, npu: int) -> int:
    """Compute cycles of a group from the sums over its commands of MACs, vector elements and
    NPU cycles (:func:`command_work`)."""
    if hw.cycle_model == "simple":
        return ceil_div(macs, hw.macs_per_cycle) + ceil_div(elems, hw.elementwise_elems_per_cycle)
    return npu


__all__ = ["NPUS", "BlockConfig", "Npu", "OpSpec", "block_config", "command_work", "group_compute_cycles",
           "is_mac_layer", "op_spec"]
