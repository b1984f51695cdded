"""Packaging: the wheel works on its own, away from the checkout.

The test builds a wheel from a copy of the working tree, installs it into a new virtual
environment and runs the ``memplan`` script and ``python -m memplan`` from a folder that is not
the checkout, so a config or schema that is not declared package data, or a lookup that still
reaches into the checkout, fails here. The same wheel is also imported as a zip. Last, plan
files get the user's umask like any file the user writes.

How the new environment gets the dependencies without downloading them: ``venv
--system-site-packages`` does not do it, because a venv made from inside a venv inherits the
*base* interpreter's site-packages, not the outer venv's (where ortools, onnx and numpy are).
So the new venv is plain, the wheel is installed into it first (with ``--no-deps``, while it
sees no other memplan), and then a ``.pth`` file adds the outer interpreter's site-packages
folders *after* its own. Folders named in a ``.pth`` file are put on ``sys.path`` but their own
``.pth`` files are not run, so the outer editable install (a ``.pth`` pointing at ``src/`` or
an import hook started by one) stays off; the test checks that ``memplan`` is imported from
the new venv all the same.
"""

from __future__ import annotations

import os
import shutil
import site
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import memplan

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "resnet8_float.onnx"


def _run(cmd: list[str | Path], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def _clean_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH")}
    env["PYTHONNOUSERSITE"] = "1"
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("packaging")
    # build from a copy: the build writes build/ and *.egg-info beside the sources, and the
    # checkout is shared with others working in it
    src = base / "source"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    dist = base / "dist"
    # no build isolation and no index: nothing is downloaded; setuptools (>= 70.1, which has
    # bdist_wheel) comes from the test extras
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
          "--no-build-isolation", "--no-index", "-w", dist, src], cwd=base, timeout=180)
    (wheel,) = dist.glob("memplan-*.whl")

    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--disable-pip-version-check",
          "--no-deps", "--no-index", wheel], cwd=base, env=_clean_env(venv), timeout=180)
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=base).stdout.strip())
    outer = [p for p in site.getsitepackages() if Path(p).is_dir() and Path(p).resolve() != purelib.resolve()]
    (purelib / "_memplan_test_outer_site.pth").write_text("".join(f"{p}\n" for p in outer))

    work = base / "work"
    work.mkdir()
    shutil.copy2(MODEL, work / MODEL.name)
    return {"wheel": wheel, "venv": venv, "python": python, "work": work}


def test_wheel_holds_every_package_file(wheel_env: dict[str, Path]) -> None:
    """Every file under src/memplan (code, configs, schema, py.typed) is in the wheel."""
    package = ROOT / "src" / "memplan"
    expected = {f"memplan/{p.relative_to(package).as_posix()}" for p in package.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    with zipfile.ZipFile(wheel_env["wheel"]) as zf:
        names = set(zf.namelist())
    assert expected - names == set()
    assert {"memplan/configs/hardware/generic-npu.toml", "memplan/configs/solver/default.toml"} <= names


def test_installed_package_is_the_wheels(wheel_env: dict[str, Path]) -> None:
    venv, work = wheel_env["venv"], wheel_env["work"]
    out = _run([wheel_env["python"], "-c",
                "import memplan, memplan.config as c, importlib.metadata as m\n"
                "print(memplan.__file__); print(c.CONFIG_ROOT); print(m.version('memplan'))\n"
                "print(','.join(c.available_profiles()))"], cwd=work, env=_clean_env(venv)).stdout.splitlines()
    module_file, config_root, version, profiles = (Path(out[0]).resolve(), Path(out[1]).resolve(), out[2], out[3])
    assert module_file.is_relative_to(venv.resolve()), f"memplan imported from {module_file}, not the wheel in {venv}"
    assert not module_file.is_relative_to(ROOT)
    assert config_root.is_relative_to(venv.resolve())
    assert version == memplan.__version__
    assert {"generic-npu", "ethos-u55-256", "ethos-u65-256", "mcu-sram"} <= set(profiles.split(","))


def test_version_from_script_and_module(wheel_env: dict[str, Path]) -> None:
    venv, work = wheel_env["venv"], wheel_env["work"]
    env = _clean_env(venv)
    want = f"memplan {memplan.__version__}"
    assert want == "memplan 0.1.0"
    assert _run([venv / "bin" / "memplan", "--version"], cwd=work, env=env).stdout.strip() == want
    assert _run([wheel_env["python"], "-m", "memplan", "--version"], cwd=work, env=env).stdout.strip() == want


def test_solve_and_verify_from_the_wheel(wheel_env: dict[str, Path]) -> None:
    """The default hardware profile and solver config are loaded by name from the wheel."""
    venv, work = wheel_env["venv"], wheel_env["work"]
    env = _clean_env(venv)
    memplan_script = venv / "bin" / "memplan"
    _run([memplan_script, "solve", MODEL.name, "--sram", "64KiB", "--strategy", "greedy", "-o", "plan.json"], cwd=work, env=env)
    assert (work / "plan.json").is_file()
    _run([memplan_script, "verify", MODEL.name, "plan.json"], cwd=work, env=env)
    _run([wheel_env["python"], "-m", "memplan", "solve", MODEL.name, "--sram", "64KiB", "--strategy", "greedy",
          "--hardware", "ethos-u65-256-client-server", "--config", "fast", "-o", "plan_u65.json"], cwd=work, env=env)


def test_configs_load_from_a_zip(wheel_env: dict[str, Path]) -> None:
    """Imported straight from the wheel (zipimport), the shipped configs are still found:
    they are read through importlib.resources, not as files beside the module."""
    env = {**_clean_env(wheel_env["venv"]), "PYTHONPATH": str(wheel_env["wheel"])}
    out = _run([sys.executable, "-c",
                "import memplan, memplan.config as c\n"
                "print(memplan.__file__)\n"
                "print(c.load_profile('ethos-u65-256').name, c.load_solver_config('thorough').name, *c.available_profiles())"],
               cwd=wheel_env["work"], env=env).stdout.splitlines()
    assert out[0].startswith(str(wheel_env["wheel"])), out[0]
    assert out[1].split() == ["ethos-u65-256", "thorough", "ethos-u55-256", "ethos-u65-256", "ethos-u65-256-client-server",
                              "generic-npu", "mcu-sram"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077], ids=lambda u: f"umask{u:03o}")
def test_plan_file_mode_follows_the_umask(tmp_path: Path, umask: int) -> None:
    """``-o plan.json`` gets the mode ``open()`` would give (0666 less the umask), as any other
    file the user writes, not the 0600 of a temporary file."""
    from memplan.plan.serialize import write_json_atomic

    target = tmp_path / "plan.json"
    old = os.umask(umask)
    try:
        write_json_atomic(target, {"plan": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # no temporary file left beside it
