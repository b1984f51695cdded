"""The cycle models of memplan.cost.cycles: numbers derived by hand from the documented formulas,
and one integer from the cost model, the plan, the validator and the executor on Ethos-U."""

from __future__ import annotations

from pathlib import Path

import pytest

import memplan
from memplan.config import load_profile, parse_size
from memplan.cost.cycles import block_config, command_work, group_compute_cycles, op_spec
from memplan.ir.builder import GraphBuilder
from memplan.plan.validate import validate_plan

ROOT = Path(__file__).resolve().parents[1]
KWS = ROOT / "models" / "kws_ref_model.tflite"


def test_simple_model_counts_elementwise_work() -> None:
    """generic-npu: MAC layers cost ceil(MACs / 256); every other layer its output elements
    over elementwise_elems_per_cycle (16)."""
    b = GraphBuilder("ew")
    x = b.input((1, 16, 8, 8))
    y = b.conv(x, 16, 1)
    g = b.build(b.add(x, y))
    hw = load_profile("generic-npu")
    conv, add = g.layers
    assert command_work(g, conv, (16, 8, 8), hw) == (0, 0)  # its cost is its MACs
    assert command_work(g, add, (16, 8, 8), hw) == (1024, 0)
    # conv: 16 x 8 x 8 outputs x 16 MACs = 16,384 MACs / 256 = 64; add: 1,024 elements / 16 = 64
    assert group_compute_cycles(hw, 16_384, 1024, 0) == 64 + 64
    assert group_compute_cycles(hw, 16_385, 1, 0) == 65 + 1  # each term rounds up on its own
    mcu = load_profile("mcu-sram")  # 2 MACs and 1 element per cycle
    assert group_compute_cycles(mcu, 16_384, 1024, 0) == 8192 + 1024


def _kws_layer(i: int):  # type: ignore[no-untyped-def]
    g = memplan.load_model(KWS)
    return g, g.layers[i]


def test_ethos_depthwise_cycles_by_hand() -> None:
    """KWS depthwise 3x3, 64 channels, 25x5, ReLU, on ethos-u65-256 (ublock 2x2x8). Vela 5.2
    (regor) picks the same blocks and estimates NPU 4668 (mac_cycles 4304)."""
    g, dw = _kws_layer(1)
    spec = op_spec(g, dw)
    assert (spec.block, spec.kernel, spec.ofm) == ("dw", (3, 3), (25, 5, 64))
    # block search: 14x6x32 OFM block, 16x8 IFM block ((14-1)+3 = 16 rows, (6-1)+3 = 8 columns)
    assert block_config("ethos-u65-256", spec).ofm == (14, 6, 32)
    # box 25x5x64, block clipped to 14x5x32: n_x = ceil(5/2) = 3, n_y = ceil(14/2) = 7, n_z = 4
    # DPU per block: max(4*8, 4*21) * ceil(9/4) * 4 = 84 * 3 * 4 = 1008 (no delay: n_x > 1)
    # output per block: floor(max(0.25 conv, 0.25 ReLU) * 14*5*32) = 560 >= bias 10*32*32/256 = 40
    # overhead: floor((1008 + 560) / 4) = 392 < both
    # blocks (real): 25/14 * 5/5 * 64/32 = 25/7 -> 25/7 * 1008 + 560 = 3600 + 560 = 4160
    # fill: IFM block present 16x5x32 = 2560 B, burst min(32, 16*8) = 32 -> 32 + 2560/16 = 192;
    #       OFM block 14x5x32 = 2240 B -> 32 + 140 = 172; 4160 + 364 = 4524
    # SRAM: IFM 16*5*64 per spatial block x 2 blocks + OFM 8000 = 18,240 B / 16 = 1140 < 4524
    hw = load_profile("ethos-u65-256")
    assert command_work(g, dw, (64, 25, 5), hw) == (0, 4524)


def test_ethos_pointwise_cycles_by_hand() -> None:
    """KWS 1x1 conv 64 -> 64 on 25x5: depth-first (utilisation 64/64 beats part-kernel's 0.25).
    Vela 5.2 estimates NPU 3660."""
    g, pw = _kws_layer(2)
    hw = load_profile("ethos-u65-256")
    cfg = block_config("ethos-u65-256", op_spec(g, pw))
    assert (cfg.ofm, cfg.ifm, cfg.part_kernel) == ((10, 6, 64), (10, 6, 32), False)
    # block clipped to 10x5x64: n_x = 3, n_y = 5, n_z = 8; DPU max(32, 60) * 1 * 8 = 480, times
    # ceil(64 input channels / 32 per IFM block) = 960; output floor(0.25 * 3200) = 800
    # blocks 25/10 = 5/2 -> 5/2 * 960 + 800 = 3200; fill: IFM 10x5x32 = 1600 B -> 32 + 100,
    # OFM 10x5x64 = 3200 B -> 32 + 200: 364 -> 3564
    assert command_work(g, pw, (64, 25, 5), hw) == (0, 3564)
    # 12 rows: blocks 12/10 -> 1152 + 800 + the same fill 364 = 2316
    assert command_work(g, pw, (64, 12, 5), hw) == (0, 2316)


def test_ethos_fully_connected_cycles_by_hand() -> None:
    """KWS dense 64 -> 12: Vela 5.2 estimates NPU 230 (mac_cycles 143, cmd_cycles 35)."""
    g, fc = _kws_layer(10)
    spec = op_spec(g, fc)
    assert (spec.block, spec.depth) == ("fc", 64)
    cfg = block_config("ethos-u65-256", spec)
    assert (cfg.ofm, cfg.ifm) == ((2, 2, 16), (2, 2, 32))
    # box 1x1x12: n_xy = 1, n_z = 2; DPU max(32, 4) * 1 * 2 = 64 (no delay: one kernel step),
    # x ceil(64 / 32) = 128; output floor(0.25 * 12) = 3 < bias floor(10 * 12 * 32 / 256) = 15
    # overhead floor((128 + 15) / 4) = 35 -> output 35; 1 block: 128 + 35 = 163
    # fill: IFM 32 B, burst min(32, 16 * 2) -> 32 + 2; OFM 12 B, brick stride 16 = block depth
    # 16 -> burst 2 * 16 = 32 -> 32 + 0.75: 163 + 66.75 -> ceil 230
    assert command_work(g, fc, (12, 1, 1), load_profile("ethos-u65-256")) == (0, 230)


def _toy():  # type: ignore[no-untyped-def]
    b = GraphBuilder("toy")
    x = b.input((1, 16, 32, 32))
    y = b.conv(x, 16, 1)
    a = b.add(x, y)
    return b.build(b.avg_pool(a, 2))


def test_ethos_add_cycles_by_hand() -> None:
    """Add of two 32x32x16 tensors (Vela 5.2: 12,288 on ResNet-8's first add, the same shape)."""
    g = _toy()
    add = g.layers[1]
    cfg = block_config("ethos-u65-256", op_spec(g, add))
    assert cfg.ofm == (16, 32, 16)
    # cpe max(0.75 add, 0 no activation); overhead per element: (IFM 32 + 8192/16 + OFM 32 +
    # 8192/16 + 0.75 * 8192) / 4 / 8192 = 0.22 < 0.75 -> 0.75 * 32*32*16 = 12,288
    # (SRAM: 3 x 16,384 B / 16 = 3072 < 12,288)
    assert command_work(g, add, (16, 32, 32), load_profile("ethos-u65-256")) == (0, 12288)


def test_ethos_avg_pool_cycles_by_hand() -> None:
    """2x2 stride-2 average pool 32x32x16 -> 16x16x16."""
    g = _toy()
    pool = g.layers[2]
    cfg = block_config("ethos-u65-256", op_spec(g, pool))
    assert (cfg.ofm, cfg.ifm) == ((4, 4, 16), (8, 8, 16))
    # n_x = n_y = n_z = 2: DPU max(4, 4) * 4 * 2 * 4 (int8: x ifm_bits / 2) = 128; output
    # floor(0.25 * 256) = 64; overhead floor(192 / 4) = 48; blocks 4 * 4 * 1 = 16 -> 16 * 128 +
    # 64 = 2112; fill: IFM 8x8x16 = 1024 B -> 32 + 64, OFM 4x4x16 = 256 B -> 32 + 16: 2256
    assert command_work(g, pool, (16, 16, 16), load_profile("ethos-u65-256")) == (0, 2256)


def test_ethos_global_average_pool_is_vela_mean() -> None:
    """A global average pool over 3x3x1280 (MobileNetV2's head) runs as Vela's MEAN: a depthwise
    3x3 sum and an int32 multiply (Vela 5.2: 16,618 + 1,440 NPU cycles)."""
    b = GraphBuilder("mean")
    g = b.build(b.global_avg_pool(b.input((1, 1280, 3, 3))))
    gap = g.layers[0]
    spec = op_spec(g, gap)
    assert (spec.block, spec.kernel, spec.stride, spec.biased) == ("dw", (3, 3), (1, 1), True)
    assert block_config("ethos-u65-256", spec).ofm == (2, 2, 128)
    # depthwise, box 1x1x1280, block 1x1x128: n_xy = 1, n_z = 16; DPU max(32, 4) * ceil(9/4) * 16
    # = 1536 + delay 2 * (3 - 1) * 16 = 64 -> 1600; output max(floor(0.25 * 128), bias 160) = 160,
    # overhead floor(1760 / 4) = 440 -> output 440; 10 blocks: 16,000 + 440; fill: IFM 3x3x128 =
    # 1152 B, burst min(32, 16 * 4) -> 32 + 72; OFM 128 B, burst 32 -> 32 + 8: 16,584
    # multiply: 1.125 (32-bit binary) * 1280 = 1440 -> 18,024
    assert command_work(g, gap, (1280, 1, 1), load_profile("ethos-u65-256")) == (0, 18024)


def test_ethos_1x1_depthwise_is_an_elementwise_op() -> None:
    """memplan lowers TFLite's MUL by a per-channel constant (and ADD of one, and standalone
    activations) to a 1x1 depthwise conv; Vela runs those as one elementwise op (MobileNetV3's
    squeeze-excite Mul_5 on 1x1x144: 0.375 * 144 = 54 cycles, as memplan now)."""
    b = GraphBuilder("scale")
    x = b.input((1, 144, 1, 1))
    g = b.build(b.conv(b.conv(x, 144, 1, groups=144, activation=None, bias=False), 144, 1, groups=144,
                       activation=None))
    mul, add = g.layers
    hw = load_profile("ethos-u65-256")
    assert (op_spec(g, mul).block, op_spec(g, mul).out_index) == ("ew", 3)  # no bias: Vela's MUL
    assert (op_spec(g, add).block, op_spec(g, add).out_index) == ("ew", 5)  # a bias: Vela's ADD
    # block 2x2x128: overhead per element ((IFM 32 + 128/16) + (OFM 32 + 128/16)) / 512 + 0.375)
    # / 4 = 0.13 < 0.375 -> 0.375 * 144 = 54; the add 0.75 * 144 = 108
    assert command_work(g, mul, (144, 1, 1), hw) == (0, 54)
    assert command_work(g, add, (144, 1, 1), hw) == (0, 108)
    # a 3x3 depthwise stays a depthwise convolution
    b = GraphBuilder("dw")
    g = b.build(b.depthwise(b.input((1, 16, 8, 8))))
    assert op_spec(g, g.layers[0]).block == "dw"


@pytest.mark.parametrize("model", ["kws_ref_model", "pretrainedResnet_quant"])
def test_ethos_cycles_grow_with_the_box_and_tiles_cost_more(model: str) -> None:
    """More rows never cost fewer cycles, and a layer split into two row halves costs at least
    as much as the whole (each half pays its own fill and partial blocks)."""
    g = memplan.load_model(ROOT / "models" / f"{model}.tflite")
    hw = load_profile("ethos-u65-256")
    for layer in g.layers:
        _, c, h, w = g.shape(layer.output)
        cycles = [command_work(g, layer, (c, r, w), hw)[1] for r in range(1, h + 1)]
        assert cycles == sorted(cycles), layer.id
        if h >= 2:
            half = h // 2
            split = command_work(g, layer, (c, half, w), hw)[1] + command_work(g, layer, (c, h - half, w), hw)[1]
            assert split >= cycles[-1], layer.id


@pytest.mark.parametrize("strategy,sram", [("layer", "64KiB"), ("greedy", "12KiB")])
def test_ethos_cycles_agree_everywhere(strategy: str, sram: str) -> None:
    """Candidate costs, the plan's totals, the validator's recomputation and the executor's
    measurement give the same cycles on an Ethos-U profile (verify compares them exactly)."""
    g = memplan.load_model(KWS)
    hw = load_profile("ethos-u65-256").with_sram(parse_size(sram))
    result = memplan.solve(g, hw, strategy=strategy)
    assert validate_plan(result.plan, g, hw).cycles == result.plan.totals.cycles
    memplan.verify(KWS, result)  # raises unless the executor measures the plan's cycles
    if strategy == "greedy":
        assert any(c.tile > 0 for c in result.plan.commands)  # tiles, not only whole layers
