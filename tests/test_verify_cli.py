"""``memplan verify`` end to end: solve writes a plan, verify executes it; tampered plans,
foreign models and malformed files fail with one line and a non-zero exit code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memplan.cli import main
from memplan.errors import VerificationError
from memplan.frontend.export import save_onnx
from memplan.zoo import build_zoo_model

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(scope="module")
def solved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A toy chain model and the CP-SAT plan ``memplan solve`` wrote for it."""
    folder = tmp_path_factory.mktemp("verify")
    model = folder / "toy.onnx"
    save_onnx(build_zoo_model("toy_chain", n=3, h=24, w=24, c=8), model)
    plan = folder / "plan.json"
    code = main(["solve", str(model), "--sram", "12KiB", "--time-limit", "5", "--max-fuse-depth", "6", "--json",
                 "-o", str(plan)])
    assert code == 0
    return model, plan


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("memplan: error: ") and "\n" not in err
    return err


def _tampered(plan: Path, tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    doc = json.loads(plan.read_text())
    edit(doc)
    out = tmp_path / "tampered.json"
    out.write_text(json.dumps(doc))
    return out


def test_solve_then_verify(solved: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    model, plan = solved
    capsys.readouterr()
    assert main(["verify", str(model), str(plan)]) == 0
    out = capsys.readouterr().out
    assert "verified" in out and "bit-exact yes" in out and "MACs" in out
    assert main(["verify", str(model), str(plan), "--json", "--seed", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verified"] and doc["bit_exact"] and doc["counts_match"] and doc["seed"] == 3
    assert doc["measured"] == doc["predicted"]
    assert doc["sram_peak"] <= doc["sram_peak_planned"] <= doc["sram_bytes"]


def test_real_model_with_greedy_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = MODELS / "cifar10_float.onnx"
    plan = tmp_path / "cifar.json"
    assert main(["solve", str(model), "--strategy", "greedy", "--sram", "32KiB", "--json", "-o", str(plan)]) == 0
    capsys.readouterr()
    assert main(["verify", str(model), str(plan), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verified"] and doc["strategy"] == "greedy" and len(doc["tensors_compared"]) >= 1


def test_installed_command_exit_codes(solved: tuple[Path, Path], tmp_path: Path) -> None:
    model, plan = solved
    exe = shutil.which("memplan") or str(Path(sys.executable).parent / "memplan")
    ok = subprocess.run([exe, "verify", str(model), str(plan)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr

    def shift_first_compute(doc) -> None:  # type: ignore[no-untyped-def]
        c = next(c for c in doc["commands"] if c["op"] == "compute")
        c["inputs"][0]["offset"] += 1

    bad = subprocess.run([exe, "verify", str(model), str(_tampered(plan, tmp_path, shift_first_compute))],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == VerificationError.exit_code
    assert bad.stderr.startswith("memplan: error: command ") and bad.stderr.count("\n") == 1


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["commands"].remove(next(c for c in d["commands"] if c["op"] == "load")), "nothing has written|never written"),
    (lambda d: d["totals"].update(macs=d["totals"]["macs"] + 1), "macs measured|plan total macs"),
    (lambda d: d["buffers"][1].update(offset=d["buffers"][0]["offset"]), "at once|no buffer|belongs to|overlap"),
    (lambda d: d["commands"].remove(next(c for c in d["commands"] if c["op"] == "store")), "never written|never completely written|before it is written"),
])
def test_tampered_plan_fails_with_one_line(solved: tuple[Path, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str], edit, match: str) -> None:  # type: ignore[no-untyped-def]
    model, plan = solved
    capsys.readouterr()
    assert main(["verify", str(model), str(_tampered(plan, tmp_path, edit))]) == VerificationError.exit_code
    assert re.search(match, _error_line(capsys))


def test_plan_of_another_model(solved: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, plan = solved
    other = tmp_path / "other.onnx"
    save_onnx(build_zoo_model("toy_chain", n=3, h=24, w=24, c=8, seed=1), other)
    capsys.readouterr()
    assert main(["verify", str(other), str(plan)]) == VerificationError.exit_code
    assert "sha256" in _error_line(capsys)


def test_malformed_and_missing_plan(solved: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, plan = solved
    broken = _tampered(plan, tmp_path, lambda d: d.pop("commands"))
    capsys.readouterr()
    assert main(["verify", str(model), str(broken)]) != 0
    assert "misses the key 'commands'" in _error_line(capsys)
    assert main(["verify", str(model), str(tmp_path / "nope.json")]) != 0
    assert "does not exist" in _error_line(capsys)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory (VmHWM) from Linux's /proc")
def test_verify_memory_follows_the_sram_used_not_the_sram_declared(tmp_path: Path) -> None:
    """A 2 GiB profile under a plan that uses kilobytes: verify allocates what the buffers use
    (it once took 10 GB for this case). Measured as the child's peak resident set size (Linux)."""
    model = MODELS / "resnet8_float.onnx"
    plan = tmp_path / "plan.json"
    assert main(["solve", str(model), "--strategy", "greedy", "--sram", "2GiB", "-o", str(plan)]) == 0
    assert json.loads(plan.read_text())["sram_bytes"] == 2 << 30
    # VmHWM, the peak of this process's own memory: ru_maxrss would carry over the peak of the
    # forked copy of the test runner the child was exec'd from
    probe = ("import sys; from memplan.cli import main; code = main(['verify', sys.argv[1], sys.argv[2]]); "
             "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:'))); sys.exit(code)")
    run = subprocess.run([sys.executable, "-c", probe, str(model), str(plan)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    peak_kib = int(run.stdout.strip().splitlines()[-1])
    assert peak_kib < 512 * 1024, f"verify of a 2 GiB-profile plan peaked at {peak_kib / 1024:.0f} MiB"


@pytest.mark.parametrize("options", [["--objective", "latency"], ["--objective", "balanced"],
                                     ["--weights", "energy=0.3,latency=0.7"],
                                     ["--objective", "memory", "--hardware", "mcu-sram", "--sram", "64KiB"]])
def test_every_objective_verifies(solved: tuple[Path, Path], tmp_path: Path, options: list[str]) -> None:
    """The solver record of each objective (units, bound, gap, status) passes verify's checks."""
    model, _ = solved
    plan = tmp_path / "plan.json"
    sram = [] if "--sram" in options else ["--sram", "12KiB"]
    assert main(["solve", str(model), *sram, "--time-limit", "10", *options, "-o", str(plan)]) == 0
    assert main(["verify", str(model), str(plan)]) == 0


def test_version_1_plan_is_refused_in_one_line(solved: tuple[Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A plan written before format 2 (no tensor table, DRAM map or dependencies): exit 2, one
    line that says to re-run solve."""
    model, plan = solved

    def to_v1(d: dict) -> None:
        d["schema_version"] = 1
        for key in ("alignment", "tensors", "layers", "dram"):
            del d[key]

    capsys.readouterr()
    assert main(["verify", str(model), str(_tampered(plan, tmp_path, to_v1))]) == 2
    err = _error_line(capsys)
    assert "schema_version 1 is not 3" in err and "re-run memplan solve" in err


def test_plan_is_firmware_complete(solved: tuple[Path, Path]) -> None:
    """Every moved tensor has a DRAM address, every command names its buffer by id, and ids are
    table positions."""
    _, plan = solved
    doc = json.loads(plan.read_text())
    assert doc["schema_version"] == 3 and doc["alignment"] == {"sram": 1, "dram": 16}
    for table in ("tensors", "layers", "buffers", "commands"):
        assert [e["id"] for e in doc[table]] == list(range(len(doc[table])))
    for c in doc["commands"]:
        if c["op"] in ("load", "store"):
            t = doc["tensors"][c["tensor"]]
            assert t["home"] == "dram" and t["dram"]["offset"] % 16 == 0
            assert t["dram"]["first"] <= c["id"] <= t["dram"]["last"]
            assert doc["buffers"][c["buffer"]]["tensor"] == c["tensor"]
        if c["op"] == "load_weights":
            assert doc["buffers"][c["buffer"]]["layer"] == c["layer"]
            assert doc["layers"][c["layer"]]["weights"] is not None
        assert all(w < c["id"] for w in c["waits_for"])
    ends = [t["dram"]["offset"] + t["dram"]["size"] for t in doc["tensors"] if t["dram"]]
    assert ends and max(ends) <= doc["dram"]["arena_bytes"]


def test_tflite_plan_is_compared_with_tflite_micro(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """verify of an int8 .tflite runs TFLite Micro on the same input: identical outputs pass
    (``tflm_match`` true); an output TFLite Micro computes differently fails, in one line."""
    model = MODELS / "pretrainedResnet_quant.tflite"
    plan = tmp_path / "resnet.json"
    assert main(["solve", str(model), "--strategy", "greedy", "--sram", "64KiB", "-o", str(plan)]) == 0
    capsys.readouterr()
    assert main(["verify", str(model), str(plan), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verified"] and doc["tflm_match"] is True and len(doc["tflm_outputs"]) == 1

    import memplan.execute.tflm as tfl

    real = tfl.tflm_reference

    def off_by_one(path, inputs, **kw):  # type: ignore[no-untyped-def]
        out = real(path, inputs, **kw)
        name = next(iter(out))
        bad = out[name].copy()
        bad.flat[0] = bad.flat[0] + 1 if bad.flat[0] < 127 else 126
        return {**out, name: bad}

    monkeypatch.setattr(tfl, "tflm_reference", off_by_one)
    assert main(["verify", str(model), str(plan)]) == 4
    captured = capsys.readouterr()
    assert "differs from TFLite Micro's in 1 of" in captured.out + captured.err
