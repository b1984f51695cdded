"""memplan sweep: SRAM range syntax, rows equal to in-process plans, failing points as rows,
resume (skipped rows, a recomputed removed row, a truncated last line dropped), and a sweep on
an external Dask scheduler and worker started here."""

from __future__ import annotations

import csv
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memplan.config import load_profile
from memplan.driver import plan_graph
from memplan.errors import UsageError
from memplan.frontend import load_model
from memplan.frontend.export import save_onnx
from memplan.sweep import COLUMNS, CsvOutput, Point, build_points, parse_sram_range, run_point, run_sweep
from memplan.zoo import build_zoo_model

import distributed  # noqa: E402,F401  a test dependency (the test extra): missing, these tests fail

KIB = 1024


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "toy_chain.onnx"
    save_onnx(build_zoo_model("toy_chain"), path)
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------- the SRAM range
@pytest.mark.parametrize(("text", "sizes"), [
    ("64KiB..2MiB:x2", [64 * KIB << i for i in range(6)]),
    ("64KiB..256KiB:+64KiB", [64 * KIB, 128 * KIB, 192 * KIB, 256 * KIB]),
    ("64KiB..200KiB:x2", [64 * KIB, 128 * KIB]),
    ("1MiB,64KiB,1MiB", [64 * KIB, 1024 * KIB]),
    ("4096", [4096]),
    ("64KiB..64KiB:x2", [64 * KIB]),
])
def test_sram_range(text: str, sizes: list[int]) -> None:
    assert parse_sram_range(text) == sizes


@pytest.mark.parametrize("text", ["", "64KiB..", "64KiB..1MiB", "1MiB..64KiB:x2", "64KiB..1MiB:x1", "64KiB..1MiB:xq",
                                  "64KiB..1MiB:+0", "64KiB,,1MiB", "64KiB,big", "1..1000000000:+1"])
def test_sram_range_errors_are_one_line(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_sram_range(text)
    assert "\n" not in info.value.message and "--sram" in info.value.message


# ---------------------------------------------------------------------------- one point, the output
def test_a_failing_point_is_a_row(toy: Path, tmp_path: Path) -> None:
    infeasible = run_point(Point(str(toy), "generic-npu", 16 * KIB, "greedy", "energy"))
    assert infeasible["status"] == "infeasible" and "cannot run in 16384 B" in infeasible["error"]
    missing = run_point(Point(str(tmp_path / "gone.onnx"), "generic-npu", 64 * KIB, "layer", "energy"))
    assert missing["status"] == "error" and missing["error"]
    bad = run_point(Point(str(toy), "generic-npu", 64 * KIB, "nope", "energy"))  # a UsageError inside the task
    assert bad["status"] == "error" and "unknown strategy" in bad["error"]
    assert set(infeasible) == set(COLUMNS)


def test_a_truncated_last_line_is_dropped(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    writer = CsvOutput(str(out))
    base = {c: None for c in COLUMNS}
    writer.append({**base, "model": "m.onnx", "hardware": "generic-npu", "sram_bytes": 65536, "strategy": "layer",
                   "objective": "energy", "status": "HEURISTIC"})
    writer.close()
    whole = out.read_bytes()
    out.write_bytes(whole + b"m.onnx,generic-npu,131072,lay")  # a crash in the middle of a row
    assert CsvOutput(str(out)).done() == {("m.onnx", "generic-npu", 65536, "layer", "energy")}
    assert out.read_bytes() == whole


# ---------------------------------------------------------------------------- a local cluster
def test_sweep_on_a_local_cluster_matches_in_process_and_resumes(toy: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    points = build_points([str(toy)], ["generic-npu"], [16 * KIB, 64 * KIB, 128 * KIB], ["layer", "greedy"], "energy")

    def sweep() -> dict:
        return run_sweep(points, str(out), workers=2).to_json()

    summary = sweep()
    rows = _rows(out)
    assert len(rows) == 6 and list(rows[0]) == list(COLUMNS)
    graph = load_model(toy)
    hw = load_profile("generic-npu")
    for row in rows:
        sram = int(row["sram_bytes"])
        if sram == 16 * KIB:  # too small for conv1: a row, and the other points still complete
            assert row["status"] == "infeasible" and "cannot run" in row["error"]
            continue
        totals = plan_graph(graph, hw.with_sram(sram), strategy=row["strategy"]).plan.totals
        assert (int(row["energy_fj"]), int(row["dram_total"])) == (totals.energy_fj, totals.dram_total)
        assert int(row["sram_peak"]) == totals.sram_peak and row["error"] == ""
    assert summary["computed"] == 6 and summary["statuses"] == {"HEURISTIC": 4, "infeasible": 2}

    assert sweep()["skipped"] == 6  # resume: nothing left to do, no rows added
    assert _rows(out) == rows

    lines = out.read_text().splitlines(keepends=True)
    removed = next(i for i, r in enumerate(rows) if r["sram_bytes"] == "65536" and r["strategy"] == "greedy")
    out.write_text("".join(line for i, line in enumerate(lines) if i != removed + 1))
    summary = sweep()
    assert (summary["computed"], summary["skipped"]) == (1, 5)
    again = _rows(out)
    assert len(again) == 6
    key = ("model", "hardware", "sram_bytes", "strategy", "objective", "energy_fj", "dram_total")
    assert sorted(tuple(r[k] for k in key) for r in again) == sorted(tuple(r[k] for k in key) for r in rows)


# ---------------------------------------------------------------------------- an external cluster
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own process group: the worker's nanny and its child
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def test_sweep_on_an_external_scheduler(toy: Path, tmp_path: Path) -> None:
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        try:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                 "--no-dashboard"], stdout=open(logs / "scheduler.log", "wb"), stderr=subprocess.STDOUT,
                start_new_session=True))
            deadline = time.monotonic() + 60
            while True:  # the scheduler listens before the worker is started
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if procs[0].poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"the dask scheduler did not start: {(logs / 'scheduler.log').read_text()[-300:]}")
                    time.sleep(0.2)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                 "--nworkers", "1", "--no-dashboard"], stdout=open(logs / "worker.log", "wb"), stderr=subprocess.STDOUT,
                start_new_session=True, cwd=tmp_path))
        except OSError as exc:
            pytest.fail(f"cannot start the external dask processes: {exc}")
        out = tmp_path / "external.csv"
        points = build_points([str(toy)], ["generic-npu"], parse_sram_range("64KiB..128KiB:x2"), ["greedy", "cpsat"],
                              "energy")
        summary = run_sweep(points, str(out), time_limit_s=10, verify=True, scheduler=address)
        rows = _rows(out)
        assert len(rows) == 4 and summary.computed == 4
        assert {r["verified"] for r in rows} == {"True"} and {r["error"] for r in rows} == {""}
        by_key = {(r["sram_bytes"], r["strategy"]): r for r in rows}
        assert by_key[("131072", "cpsat")]["status"] in ("OPTIMAL", "FEASIBLE")
        assert int(by_key[("131072", "cpsat")]["energy_fj"]) <= int(by_key[("131072", "greedy")]["energy_fj"])
    finally:
        for proc in reversed(procs):
            _stop(proc)
    assert all(proc.poll() is not None for proc in procs)


# ---------------------------------------------------------------------------- the command
def test_the_sweep_command(toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from memplan.cli import main

    out = tmp_path / "cli.csv"
    argv = ["sweep", str(toy), "--sram", "64KiB", "--strategy", "greedy", "--workers", "1", "-o", str(out), "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["statuses"] == {"HEURISTIC": 1}
    assert main(argv) == 0 and json.loads(capsys.readouterr().out)["skipped"] == 1
    assert len(_rows(out)) == 1


@pytest.mark.parametrize(("extra", "message"), [
    (["--sram", "1MiB..64KiB:x2"], "give the smaller size first"),
    (["--sram", "64KiB", "--hardware", "nope"], "unknown hardware profile 'nope'"),
    (["--sram", "64KiB", "--strategy", "layer,best"], "unknown strategy 'best'"),
    (["--sram", "64KiB", "--strategy", "layer", "--objective", "latency"], "has no objective to choose"),
    (["--sram", "64KiB", "--config", "nope"], "unknown solver config"),
    (["--sram", "64KiB", "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"], "--workers sizes the local cluster"),
])
def test_sweep_command_errors_are_one_line(toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           extra: list[str], message: str) -> None:
    from memplan.cli import main

    out = tmp_path / "r.csv"
    assert main(["sweep", str(toy), *extra, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize("name", ["r.parquet", "r.txt"])
def test_sweep_output_extension(toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    from memplan.cli import main

    code = main(["sweep", str(toy), "--sram", "64KiB", "--strategy", "layer", "--workers", "1", "-o",
                 str(tmp_path / name), "--json"])
    if name.endswith(".parquet") and importlib.util.find_spec("pyarrow") is not None:
        assert code == 0
        return
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and (".parquet needs pyarrow" in err or "written as .csv" in err)
