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
    """KWS depthwise 3x3, 64 channels, 25x5, ReLU, on ethos-u65-256 (ublock 2x2x8)."""
    g, dw = _kws_layer(1)
    spec = op_spec(g, dw)
    assert (spec.block, spec.kernel, spec.ofm) == ("dw", (3, 3), (25, 5, 64))
    # block search: 14x6x32 OFM block, 16x8 IFM block ((14-1)+3 = 16 rows, (6-1)+3 = 8 columns)
    assert block_config("ethos-u65-256", spec).ofm == (14, 6, 32)
    # box 25x5x64, block clipped to 14x5x32: n_x = ceil(5/2) = 3, n_y = ceil(14/2) = 7, n_z = 4
    # DPU per block: max(4*8, 4*21) * ceil(9/4) * 4 = 84 * 3 * 4 = 1008 (no delay: n_x > 1)
    # output per block: ceil(max(0.25 conv, 0.25 ReLU) * 14*5*32) = 560 >= bias 10*32*32/256 = 40
    # overhead: (32 + 16*5*32/16 + 32 + 2240/16 + 560 + 1008) / 4 = 483 < both
    # blocks: ceil(25/14) * ceil(5/5) * ceil(64/32) = 4 -> 4 * 1008 + 560 = 4592
    # SRAM: IFM 16*5*64 per spatial block x 2 blocks + OFM 8000 = 18,240 B / 16 = 1140 < 4592
    hw = load_profile("ethos-u65-256")
    assert command_work(g, dw, (64, 25, 5), hw) == (0, 4592)


def test_ethos_pointwise_cycles_by_hand() -> None:
    """KWS 1x1 conv 64 -> 64 on 25x5: depth-first (utilisation 64/64 beats part-kernel's 0.25)."""
    g, pw = _kws_layer(2)
    hw = load_profile("ethos-u65-256")
    cfg = block_config("ethos-u65-256", op_spec(g, pw))
    assert (cfg.ofm, cfg.ifm, cfg.part_kernel) == ((10, 6, 64), (10, 6, 32), False)
    # block clipped to 10x5x64: n_x = 3, n_y = 5, n_z = 8; DPU max(32, 60) * 1 * 8 = 480, times
    # ceil(64 input channels / 32 per IFM block) = 960; output ceil(0.25 * 3200) = 800
    # blocks ceil(25/10) = 3 -> 3 * 960 + 800 = 3680
    assert command_work(g, pw, (64, 25, 5), hw) == (0, 3680)
    # half the rows: block 10x5x64 still, ceil(12/10) = 2 blocks -> 2 * 960 + 800 = 2720
    # (SRAM: IFM 10*5*64 x 2 blocks + OFM 12*5*64 = 10,240 B / 16 = 640 < 2720)
    assert command_work(g, pw, (64, 12, 5), hw) == (0, 2720)


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
