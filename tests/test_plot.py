"""memplan.plot: every plot on real plans and solves, its artists checked against the data;
saving by extension; ``memplan plot`` and ``memplan solve --plot`` and their one-line errors."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import memplan
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from memplan import plot
from memplan.cli import main
from memplan.config import load_profile, load_solver_config, parse_size
from memplan.driver import plan_graph
from memplan.solve.run import SolveResult
from memplan.errors import UsageError
from memplan.frontend import load_model
from memplan.frontend.export import save_onnx
from memplan.zoo import build_zoo_model

MODELS = Path(__file__).resolve().parent.parent / "models"
RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


@pytest.fixture(scope="module")
def outcomes() -> dict[str, SolveResult]:
    """ResNet-8 at 64 KiB planned by each strategy."""
    graph = load_model(MODELS / "resnet8_float.onnx", {})
    hw = load_profile("generic-npu").with_sram(64 * 1024)
    config = replace(load_solver_config("default"), time_limit_s=10)
    return {s: plan_graph(graph, hw, strategy=s, config=config) for s in ("layer", "greedy", "cpsat")}


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("memplan: error: ") and "\n" not in err
    return err


# ---------------------------------------------------------------------------- memory map
@pytest.mark.parametrize("strategy", ["layer", "greedy", "cpsat"])
def test_memory_map_draws_every_buffer(outcomes: dict[str, SolveResult], strategy: str) -> None:
    out = outcomes[strategy]
    plan = out.plan
    fig = plot.plot_memory_map(plan, out.hw.name)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    rects = {p.get_gid(): p for p in ax.patches if isinstance(p, Rectangle)}
    assert len(rects) == len(plan.buffers) == len(ax.patches)
    for b in plan.buffers:
        r = rects[b.name]
        assert (r.get_x(), r.get_y(), r.get_width(), r.get_height()) == (b.t0, b.offset, b.t1 - b.t0, b.size)
        assert r.get_facecolor()[:3] == pytest.approx(to_rgb(plot.KIND_COLOURS[b.kind]))
    capacity = [line for line in ax.get_lines() if line.get_gid() == "capacity"]
    assert len(capacity) == 1 and list(capacity[0].get_ydata()) == [plan.sram_bytes] * 2
    boundaries = sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_gid() == "group-boundary")
    assert boundaries == [g.start for g in plan.decisions.groups[1:]]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    kinds = {b.kind for b in plan.buffers}
    assert labels[:-1] == [plot.KIND_LABELS[k] for k in plot.KIND_LABELS if k in kinds]
    assert labels[-1].startswith("SRAM capacity")
    used = max(b.end for b in plan.buffers)
    title = ax.get_title()
    assert plan.graph_name in title and out.hw.name in title and strategy in title
    assert f"{used / 1024:.1f} KiB / 64.0 KiB" in title


# ---------------------------------------------------------------------------- traffic per group
@pytest.mark.parametrize("strategy", ["layer", "greedy", "cpsat"])
def test_group_traffic_adds_up_to_the_totals(outcomes: dict[str, SolveResult], strategy: str) -> None:
    out = outcomes[strategy]
    plan, totals = out.plan, out.plan.totals
    rows = plot.group_traffic(plan)
    with_graph = plot.group_traffic(plan, out.graph)
    assert len(rows) == len(plan.decisions.groups)
    assert sum(r.load for r in rows) == totals.dram_read_fm
    assert sum(r.store for r in rows) == totals.dram_write_fm
    assert sum(r.weights for r in rows) == totals.dram_read_weights > 0
    assert [r.weights for r in rows] == [r.weights for r in with_graph]  # buffer-derived slices are exact
    assert all(r.macs is None for r in rows)
    assert sum(r.macs or 0 for r in with_graph) == totals.macs

    fig = plot.plot_group_traffic(plan, out.hw, out.graph)
    bytes_ax, energy_ax = fig.axes[0], fig.axes[1]
    bars = {c.get_label(): [p.get_height() for p in c.patches] for c in bytes_ax.containers}
    assert bars == {"feature maps loaded": [r.load for r in rows], "feature maps stored": [r.store for r in rows],
                    "weights loaded": [r.weights for r in rows]}
    unit = energy_ax.get_ylabel().split("(")[1].rstrip(")")
    size = {"pJ": 1.0, "nJ": 1e3, "uJ": 1e6, "mJ": 1e9}[unit]
    dram = [p.get_height() * size for p in energy_ax.containers[0].patches]
    assert dram == pytest.approx([float(out.hw.dram_pj_per_byte) * r.dram for r in rows])
    macs = next(line for ax in fig.axes for line in ax.get_lines() if line.get_gid() == "macs")
    assert list(macs.get_ydata()) == [r.macs for r in with_graph]
    assert [t.get_text() for t in energy_ax.get_xticklabels()] == [f"g{i}" for i in range(len(rows))]


def test_group_traffic_without_a_profile_has_one_panel(outcomes: dict[str, SolveResult]) -> None:
    fig = plot.plot_group_traffic(outcomes["greedy"].plan)
    assert len(fig.axes) == 1 and "DRAM traffic per group" in fig.axes[0].get_title()


# ---------------------------------------------------------------------------- metric vs SRAM size
def test_sram_sweep_one_line_per_strategy_and_the_floor(outcomes: dict[str, SolveResult]) -> None:
    rows = [
        {"model": "m", "hardware": "generic-npu", "sram_bytes": 65536, "strategy": "cpsat", "status": "OPTIMAL",
         "energy_fj": 30, "dram_total": 300},
        {"model": "m", "sram_bytes": 32768, "strategy": "cpsat", "status": "OPTIMAL", "energy_fj": 50, "dram_total": 500},
        {"model": "m", "sram_bytes": 32768, "strategy": "layer", "energy_fj": 90, "dram_total": 900},
        {"model": "m", "sram_bytes": 65536, "strategy": "layer", "energy_fj": 80, "dram_total": 800},
        {"model": "m", "sram_bytes": 16384, "strategy": "layer", "status": "infeasible", "energy_fj": "", "dram_total": ""},
        {"model": "m", "sram_bytes": 32768, "strategy": "floor", "energy_fj": 20, "dram_total": 200},
        {"model": "m", "sram_bytes": 65536, "strategy": "floor", "energy_fj": 20, "dram_total": 200},
        {"model": "other", "sram_bytes": 65536, "strategy": "layer", "energy_fj": 1, "dram_total": 1},
    ]
    fig = plot.plot_sram_sweep(rows, metric="dram_total", model="m")
    assert len(fig.axes) == 1
    lines = {line.get_gid(): line for line in fig.axes[0].get_lines()}
    assert set(lines) == {"cpsat", "layer", "floor"}
    assert list(lines["cpsat"].get_xdata()) == [32768, 65536] and list(lines["cpsat"].get_ydata()) == [500, 300]
    assert list(lines["layer"].get_xdata()) == [32768, 65536]  # the infeasible 16 KiB row left out
    assert lines["floor"].get_linestyle() == "--" and list(lines["floor"].get_ydata()) == [200, 200]
    assert "DRAM traffic" in fig.axes[0].get_ylabel()
    assert len(plot.plot_sram_sweep(rows).axes) == 2  # a panel per model
    with pytest.raises(UsageError, match="cycles"):
        plot.plot_sram_sweep(rows, metric="cycles")


def test_sram_sweep_reads_a_csv(tmp_path: Path) -> None:
    source = RESULTS / "sweep_small.csv"
    with open(source, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["model"] == "zoo:resnet8"]
    fig = plot.plot_sram_sweep(source, metric="energy_uJ", model="zoo:resnet8")
    lines = {line.get_gid(): line for line in fig.axes[0].get_lines()}
    assert set(lines) == {r["strategy"] for r in rows}
    layer = sorted((parse_size(r["sram"]), float(r["energy_uJ"])) for r in rows
                   if r["strategy"] == "layer")
    assert list(zip(lines["layer"].get_xdata(), lines["layer"].get_ydata())) == layer
    plot.save_figure(fig, tmp_path / "sweep.png")


# ---------------------------------------------------------------------------- fusion-depth U curve
def test_fusion_curve_marks_the_bottom() -> None:
    # benchmarks/results/toy_c32_single_buffer.log: energy per conv relative to no forwarding
    rows = [(1, 1.0), (2, 0.73), (3, 0.89), (4, 1.47), (5, 1.96), (6, 2.61)]
    seed = {2: 0.70, 3: 0.61, 4: 0.57, 5: 0.58}
    fig = plot.plot_fusion_curve(rows, ylabel="energy per conv (1 = no forwarding)", reference=seed)
    lines = {line.get_gid(): line for line in fig.axes[0].get_lines()}
    assert list(lines["curve"].get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(lines["curve"].get_ydata()) == [e for _, e in rows]
    assert (list(lines["best"].get_xdata()), list(lines["best"].get_ydata())) == ([2], [0.73])
    assert list(lines["reference"].get_xdata()) == [2, 3, 4, 5]
    assert "2 fused" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()][1]


# ---------------------------------------------------------------------------- solver progress
def test_progress_recorder_traces_a_real_cpsat_solve() -> None:
    graph = build_zoo_model("toy_chain", n=6, h=32, w=32, c=8)
    hw = load_profile("generic-npu").with_sram(12 * 1024)
    recorder = plot.ProgressRecorder()
    # deterministic: the search is bounded by CP-SAT's deterministic time, not the wall clock, so a
    # loaded machine cannot cut it short before it finds its plan
    config = replace(load_solver_config("default"), time_limit_s=5, deterministic=True)
    out = plan_graph(graph, hw, objective="latency", config=config, progress=recorder)
    trace = recorder.trace
    assert out.plan.provenance.solver["plan_source"] == "cpsat" and len(trace) >= 2
    objectives, bounds, seconds = [t[1] for t in trace], [t[2] for t in trace], [t[0] for t in trace]
    assert any(o < float("inf") for o in objectives)
    assert all(a >= b for a, b in zip(objectives, objectives[1:]))  # the incumbent only improves
    assert all(a <= b for a, b in zip(bounds, bounds[1:]))  # the bound only tightens
    assert seconds == sorted(seconds)
    assert any(text == "CP-SAT search" for _, text in recorder.stages)

    fig = plot.plot_progress(recorder, ylabel="latency (cycles)")
    lines = {line.get_gid(): line for line in fig.axes[0].get_lines()}
    finite = [(s, o) for s, o, _ in trace if o < float("inf")]
    assert list(zip(lines["incumbent"].get_xdata(), lines["incumbent"].get_ydata())) == finite
    assert list(lines["bound"].get_ydata()) == [b for b in bounds if b > 0]
    assert lines["incumbent"].get_drawstyle() == "steps-post"
    assert sum(1 for line in fig.axes[0].get_lines() if line.get_gid() == "stage") == len(recorder.stages)
    # plain rows work too
    assert len(plot.plot_progress(trace).axes[0].get_lines()) == 2


# ---------------------------------------------------------------------------- Pareto front
def test_pareto_front_connects_exactly_the_non_dominated() -> None:
    points = [(100, 50, "a"), (200, 30, "b"), (150, 60, "dominated by a"), (300, 10, "c"), (300, 20, "dominated by c"),
              (100, 50, "a again"), (400, 10, "dominated by c too"), (50, 90, "d")]
    front = plot.pareto_front(points)
    assert [p[2] for p in front] == ["d", "a", "b", "c"]
    fig = plot.plot_pareto(points)
    ax = fig.axes[0]
    line = next(line for line in ax.get_lines() if line.get_gid() == "front")
    assert list(zip(line.get_xdata(), line.get_ydata())) == [(50, 90), (100, 50), (200, 30), (300, 10)]
    scatter = next(c for c in ax.collections if c.get_gid() == "points")
    assert len(scatter.get_offsets()) == len(points)
    assert sorted(t.get_text() for t in ax.texts) == sorted(p[2] for p in points)
    assert "4 of 8" in ax.get_title()


def test_pareto_of_real_plans(outcomes: dict[str, SolveResult]) -> None:
    points = [(o.plan.totals.cycles, o.plan.totals.energy_fj, s) for s, o in outcomes.items()]
    front = plot.pareto_front(points)
    for c, e, label in points:  # every plan off the front is dominated by one on it
        if (c, e, label) not in front:
            assert any(c2 <= c and e2 <= e for c2, e2, _ in front)
    line = next(line for line in plot.plot_pareto(points).axes[0].get_lines() if line.get_gid() == "front")
    assert len(line.get_xdata()) == len(front)


# ---------------------------------------------------------------------------- saving
@pytest.mark.parametrize(("ext", "magic"), [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_save_by_extension(outcomes: dict[str, SolveResult], tmp_path: Path, ext: str, magic: bytes) -> None:
    path = tmp_path / f"map{ext}"
    plot.save_figure(plot.plot_memory_map(outcomes["cpsat"].plan), path)
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_save_refuses_an_unknown_extension(outcomes: dict[str, SolveResult], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"\.png"):
        plot.save_figure(plot.plot_memory_map(outcomes["cpsat"].plan), tmp_path / "map.jpg")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def solved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """``memplan solve -o plan.json --plot map.png`` on a toy chain."""
    folder = tmp_path_factory.mktemp("plot")
    model = folder / "toy.onnx"
    save_onnx(build_zoo_model("toy_chain", n=3, h=24, w=24, c=8), model)
    plan, image = folder / "plan.json", folder / "map.png"
    code = main(["solve", str(model), "--sram", "12KiB", "--time-limit", "5", "--json", "-o", str(plan),
                 "--plot", str(image)])
    assert code == 0
    return model, plan, image


def test_solve_writes_the_memory_map(solved: tuple[Path, Path, Path]) -> None:
    _, _, image = solved
    data = image.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000


@pytest.mark.parametrize("kind", ["memory-map", "traffic"])
def test_plot_command_writes_a_png(solved: tuple[Path, Path, Path], tmp_path: Path, kind: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    _, plan, _ = solved
    out = tmp_path / f"{kind}.png"
    assert main(["plot", str(plan), "--kind", kind, "-o", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 10_000
    assert f"wrote {out}" in capsys.readouterr().out


def test_plot_command_errors(solved: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    model, plan, _ = solved
    out = tmp_path / "map.png"
    with pytest.raises(SystemExit) as exc:
        main(["plot", str(plan), "--kind", "heatmap", "-o", str(out)])
    assert exc.value.code == 2 and "invalid choice" in _error_line(capsys)
    assert main(["plot", str(plan), "-o", str(tmp_path / "missing" / "map.png")]) == 2
    assert "does not exist" in _error_line(capsys)
    assert main(["plot", str(plan), "-o", str(tmp_path / "map.jpg")]) == 2
    assert ".png" in _error_line(capsys)
    not_a_plan = tmp_path / "other.json"
    not_a_plan.write_text(json.dumps({"hello": "world"}))
    assert main(["plot", str(not_a_plan), "-o", str(out)]) == 2
    _error_line(capsys)
    assert main(["plot", str(model), "-o", str(out)]) == 2  # the ONNX file, not a plan
    assert "not JSON" in _error_line(capsys)
    assert main(["plot", str(plan), "-o", str(plan)]) == 2  # would overwrite its input
    _error_line(capsys)
    assert json.loads(plan.read_text())["schema_version"] == 3
    monkeypatch.delitem(sys.modules, "memplan.plot")
    monkeypatch.delattr(memplan, "plot")
    for name in [n for n in sys.modules if n.split(".")[0] == "matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    assert main(["plot", str(plan), "-o", str(out)]) == 2
    assert "memplan[plot]" in _error_line(capsys)
    assert main(["solve", str(model), "--sram", "12KiB", "--plot", str(out)]) == 2
    assert "--plot needs matplotlib" in _error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json"]  # no image left by any failure
