"""memplan.pack: exact offsets for fixed-lifetime buffers, and ``memplan place``.

Every packing is checked here by a checker of this file's own (pairwise, no sweep); on tiny
instances "infeasible" is compared with an exhaustive search over every aligned offset. The
search is exercised alone (``quick=False``: no first fit or best fit in front of it) as well as
behind the heuristics. Data: tests/data/minimalloc (MiniMalloc's instances, Apache-2.0)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memplan.alloc import Block, extent, first_fit
from memplan.cli import main
from memplan.pack import INFEASIBLE, PACKED, TIMEOUT, pack, pack_result, parse_buffers_csv, read_buffers_csv

DATA = Path(__file__).resolve().parent / "data" / "minimalloc"


# ------------------------------------------------------------------------------ independent oracles
def conflicts(blocks: list[Block], offsets: dict[str, int], capacity: int, alignment: int = 1) -> list[str]:
    """Everything wrong with the offsets, pair by pair."""
    bad = []
    if set(offsets) != {b.name for b in blocks}:
        bad.append("offsets name other blocks")
        return bad
    for b in blocks:
        o = offsets[b.name]
        if o < 0 or o % alignment or o + b.size > capacity:
            bad.append(f"{b.name} at {o}")
    for i, a in enumerate(blocks):
        for b in blocks[i + 1:]:
            live_together = a.t0 < b.t1 and b.t0 < a.t1 and a.t1 > a.t0 and b.t1 > b.t0
            oa, ob = offsets[a.name], offsets[b.name]
            if live_together and a.size and b.size and oa < ob + b.size and ob < oa + a.size:
                bad.append(f"{a.name} and {b.name} overlap")
    return bad


def brute_force_packs(blocks: list[Block], capacity: int, alignment: int = 1) -> bool:
    """Whether any assignment of aligned offsets in [0, capacity - size] packs the blocks."""
    order = sorted(blocks, key=lambda b: -b.size)
    placed: list[tuple[Block, int]] = []

    def go(i: int) -> bool:
        if i == len(order):
            return True
        b = order[i]
        if b.size > capacity:
            return False
        for o in range(0, capacity - b.size + 1, alignment):
            if all(not (a.t0 < b.t1 and b.t0 < a.t1 and oa < o + b.size and o < oa + a.size) for a, oa in placed):
                placed.append((b, o))
                if go(i + 1):
                    return True
                placed.pop()
        return False

    return go(0)


def peak(blocks: list[Block]) -> int:
    points = {b.t0 for b in blocks}
    return max((sum(b.size for b in blocks if b.t0 <= t < b.t1) for t in points), default=0)


@st.composite
def instances(draw, max_n: int, max_size: int, max_t: int, slack: int, tight: bool = True):
    """Random blocks and a capacity near their peak load; sometimes "tight": one-step fillers
    bring the load at every time up to the peak (where packings are hardest)."""
    n = draw(st.integers(1, max_n))
    blocks = []
    for i in range(n):
        t0 = draw(st.integers(0, max_t - 1))
        t1 = draw(st.integers(t0 + 1, max_t))
        blocks.append(Block(f"b{i}", draw(st.integers(1, max_size)), t0, t1))
    top = peak(blocks)
    if tight and draw(st.booleans()):
        for t in range(max(b.t1 for b in blocks)):
            load = sum(b.size for b in blocks if b.t0 <= t < b.t1)
            if load < top:
                blocks.append(Block(f"f{t}", top - load, t, t + 1))
    capacity = max(1, top + draw(st.integers(-1, slack)))
    return blocks, capacity


# ------------------------------------------------------------------------------ the search alone
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(max_n=6, max_size=5, max_t=6, slack=2), st.sampled_from([1, 1, 2, 3]))
def test_search_agrees_with_brute_force_on_tiny_instances(inst, alignment) -> None:
    blocks, capacity = inst
    res = pack_result(blocks, capacity, time_limit_s=30, alignment=alignment, quick=False)
    assert res.status in (PACKED, INFEASIBLE)
    exists = brute_force_packs(blocks, capacity, alignment)
    assert (res.status == PACKED) == exists
    if res.status == PACKED:
        assert conflicts(blocks, dict(res.offsets), capacity, alignment) == []
    else:
        assert res.offsets is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(max_n=16, max_size=64, max_t=20, slack=24, tight=False), st.sampled_from([1, 4]))
def test_search_packs_whatever_first_fit_packs(inst, alignment) -> None:
    # random instances of up to 16 blocks: the search decides every one (tight ones with many
    # one-step fillers can still exhaust a time limit: see the module docstring of memplan.pack)
    blocks, capacity = inst
    res = pack_result(blocks, capacity, time_limit_s=20, alignment=alignment, quick=False)
    if extent(blocks, first_fit(blocks, alignment)) <= capacity:
        assert res.status == PACKED  # a packing exists: the search must find one, never claim none
    assert res.status != TIMEOUT
    if res.status == PACKED:
        assert conflicts(blocks, dict(res.offsets), capacity, alignment) == []
    full = pack_result(blocks, capacity, time_limit_s=20, alignment=alignment)
    assert full.status == res.status  # the heuristics in front change how, not whether
    if full.status == PACKED:
        assert conflicts(blocks, dict(full.offsets), capacity, alignment) == []


def test_infeasible_although_the_peak_fits() -> None:
    # four bytes are live at every time, yet the staircase of unit blocks u1, u2, u3 cannot leave
    # the two contiguous bytes that w needs at time 4: the search proves it
    blocks = [Block("w", 2, 4, 5), Block("u2", 1, 2, 5), Block("u1", 1, 1, 4), Block("u3", 1, 3, 6),
              Block("f0", 4, 0, 1), Block("f1", 3, 1, 2), Block("f2", 2, 2, 3), Block("f3", 1, 3, 4),
              Block("f5", 3, 5, 6)]
    assert peak(blocks) == 4 and not brute_force_packs(blocks, 4)
    res = pack_result(blocks, 4, time_limit_s=10)
    assert res.status == INFEASIBLE and res.method == "search" and res.offsets is None and res.nodes > 0
    assert pack(blocks, 4, time_limit_s=10) is None
    off = pack(blocks, 5, time_limit_s=10)
    assert off is not None and conflicts(blocks, off, 5) == []


def test_zero_slack_instance_first_fit_cannot_place() -> None:
    blocks = read_buffers_csv(DATA / "G.1048576.csv")
    assert len(blocks) == 308 and peak(blocks) == 1 << 20
    assert extent(blocks, first_fit(blocks)) > 1 << 20
    res = pack_result(blocks, 1 << 20, time_limit_s=40)
    assert res.status == PACKED and res.method == "search"
    assert conflicts(blocks, dict(res.offsets), 1 << 20) == []
    again = pack_result(blocks, 1 << 20, time_limit_s=40)
    assert again.offsets == res.offsets and again.nodes == res.nodes  # deterministic
    cut = pack_result(blocks, 1 << 20, time_limit_s=0.0)
    assert cut.status == TIMEOUT and cut.offsets is None and cut.nodes > 0
    assert pack(blocks, 1 << 20, time_limit_s=0.0) is None
    # a node budget stops the search whatever the machine's speed (deterministic solves use it)
    few = pack_result(blocks, 1 << 20, time_limit_s=600, max_nodes=100)
    assert few.status == TIMEOUT and 100 < few.nodes <= 101
    enough = pack_result(blocks, 1 << 20, time_limit_s=600, max_nodes=res.nodes)
    assert enough.status == PACKED and enough.offsets == res.offsets


def test_deterministic_on_random_instances() -> None:
    import random

    rng = random.Random(7)
    for _ in range(20):
        blocks = []
        for i in range(30):
            t0 = rng.randrange(40)
            blocks.append(Block(f"x{i}", rng.randrange(1, 100), t0, t0 + rng.randrange(1, 12)))
        capacity = peak(blocks)
        runs = [pack_result(blocks, capacity, time_limit_s=5, quick=False) for _ in range(2)]
        assert runs[0].status == runs[1].status and runs[0].nodes == runs[1].nodes
        assert runs[0].offsets == runs[1].offsets
        if runs[0].status == PACKED:
            assert conflicts(blocks, dict(runs[0].offsets), capacity) == []


def test_edge_cases() -> None:
    assert pack([], 0, time_limit_s=1) == {}
    # never-live and empty blocks get offset 0; a block larger than the capacity is a bound
    blocks = [Block("z", 0, 0, 5), Block("never", 3, 4, 4), Block("a", 4, 0, 5)]
    assert pack(blocks, 4, time_limit_s=1) == {"z": 0, "never": 0, "a": 0}
    res = pack_result([Block("big", 9, 0, 1)], 8, time_limit_s=1)
    assert res.status == INFEASIBLE and res.method == "bound"
    res = pack_result([Block("a", 5, 0, 2), Block("b", 4, 1, 3)], 8, time_limit_s=1)
    assert res.status == INFEASIBLE and res.method == "bound"  # 9 bytes live at time 1
    with pytest.raises(ValueError, match="twice"):
        pack([Block("a", 1, 0, 1), Block("a", 1, 1, 2)], 4, time_limit_s=1)
    with pytest.raises(ValueError, match="alignment"):
        pack([Block("a", 1, 0, 1)], 4, time_limit_s=1, alignment=0)
    # alignment: offsets are multiples of it, and it can make a packing impossible
    blocks = [Block("a", 3, 0, 2), Block("b", 3, 0, 2)]
    assert pack(blocks, 6, time_limit_s=1, alignment=4) is None
    assert pack_result(blocks, 6, time_limit_s=1, alignment=4, quick=False).status == INFEASIBLE
    assert pack(blocks, 6, time_limit_s=1) is not None
    off = pack(blocks, 7, time_limit_s=1, alignment=4)
    assert off is not None and conflicts(blocks, off, 7, 4) == []


def test_example_file_packs_at_its_peak() -> None:
    blocks = read_buffers_csv(DATA / "input.12.csv")
    assert [b.name for b in blocks] == ["b1", "b2", "b3", "b4", "b5"]
    off = pack(blocks, 12, time_limit_s=5)
    assert off is not None and conflicts(blocks, off, 12) == []
    assert pack_result(blocks, 11, time_limit_s=5).status == INFEASIBLE


# ------------------------------------------------------------------------------ memplan place
def _read_out(text: str) -> tuple[list[Block], dict[str, int]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and list(rows[0]) == ["id", "lower", "upper", "size", "offset"]
    blocks = [Block(r["id"], int(r["size"]), int(r["lower"]), int(r["upper"])) for r in rows]
    return blocks, {r["id"]: int(r["offset"]) for r in rows}


def test_place_writes_offsets(tmp_path, capsys) -> None:
    out = tmp_path / "out.csv"
    assert main(["place", str(DATA / "input.12.csv"), "--capacity", "12", "-o", str(out)]) == 0
    blocks, offsets = _read_out(out.read_text())
    assert blocks == read_buffers_csv(DATA / "input.12.csv")
    assert conflicts(blocks, offsets, 12) == []
    assert capsys.readouterr().out == ""
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary file left
    # stdout without -o, the same bytes
    assert main(["place", str(DATA / "input.12.csv"), "--capacity", "12"]) == 0
    assert capsys.readouterr().out == out.read_text()


def test_place_zero_slack_file(tmp_path) -> None:
    out = tmp_path / "g.csv"
    assert main(["place", str(DATA / "G.1048576.csv"), "--capacity", "1MiB", "--time-limit", "40", "-o", str(out)]) == 0
    blocks, offsets = _read_out(out.read_text())
    assert len(blocks) == 308 and conflicts(blocks, offsets, 1 << 20) == []


BAD_FILES = {
    "missing column": ("id,lower,size\na,0,4\n", "no column upper"),
    "not an integer": ("id,lower,upper,size\na,0,2,4\nb,1,x,4\n", "line 3"),
    "float": ("id,lower,upper,size\na,0,2,4.5\n", "line 2"),
    "negative size": ("id,lower,upper,size\na,0,2,4\nb,1,3,-4\n", "line 3"),
    "empty lifetime": ("id,lower,upper,size\na,2,2,4\n", "line 2"),
    "reversed lifetime": ("id,lower,upper,size\na,0,2,4\nb,5,3,1\n", "line 3"),
    "duplicate id": ("id,lower,upper,size\na,0,2,4\nb,1,3,4\na,3,5,1\n", "line 4"),
    "short row": ("id,lower,upper,size\na,0,2\n", "line 2"),
    "empty": ("", "empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_place_refuses_malformed_files(case, tmp_path, capsys) -> None:
    text, expected = BAD_FILES[case]
    src = tmp_path / "bad.csv"
    src.write_text(text)
    out = tmp_path / "out.csv"
    assert main(["place", str(src), "--capacity", "64", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memplan: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert expected in err
    assert not out.exists()
    with pytest.raises(Exception) as info:
        parse_buffers_csv(text)
    assert expected in str(info.value)


def test_place_no_packing(tmp_path, capsys) -> None:
    src = tmp_path / "b.csv"
    src.write_text("id,lower,upper,size\nw,4,5,2\nu2,2,5,1\nu1,1,4,1\nu3,3,6,1\nf0,0,1,4\nf1,1,2,3\n"
                   "f2,2,3,2\nf3,3,4,1\nf5,5,6,3\n")
    out = tmp_path / "out.csv"
    assert main(["place", str(src), "--capacity", "4", "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "proven" in err and "not proven" not in err
    assert not out.exists()
    # not found within the limit: says it is not proven
    assert main(["place", str(DATA / "G.1048576.csv"), "--capacity", "1048576", "--time-limit", "0.01"]) == 3
    err = capsys.readouterr().err
    assert "not proven impossible" in err and err.count("\n") == 1


def test_place_refuses_bad_arguments(tmp_path, capsys) -> None:
    assert main(["place", str(tmp_path / "nope.csv"), "--capacity", "64"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["place", str(DATA / "input.12.csv"), "--capacity", "lots"]) == 2
    assert "--capacity" in capsys.readouterr().err
