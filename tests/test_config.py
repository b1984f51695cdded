"""Hardware profiles and solver configs: shipped ones load; a bad one names the bad key."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from memplan.config import available_profiles, load_profile, load_solver_config, parse_size
from memplan.errors import ConfigError, UsageError


def test_shipped_profiles_load() -> None:
    assert {"generic-npu", "ethos-u55-256", "ethos-u65-256", "mcu-sram"} <= set(available_profiles())
    g = load_profile("generic-npu")
    assert (g.mac_pj, g.dram_pj_per_byte, g.elem_bytes) == (1, 80, 1)  # Synopsys: 1 pJ/MAC, 10 pJ/bit
    u65 = load_profile("ethos-u65-256")  # Vela's Ethos_U65_High_End (issue 12: was 12 B/cycle, Client_Server's)
    assert (u65.macs_per_cycle, u65.dram_bytes_per_cycle, u65.clock_hz) == (256, Fraction(15, 4), 1_000_000_000)
    mcu = load_profile("mcu-sram")
    assert mcu.feature_maps_in_sram and mcu.weights_in_place
    for name in ("default", "fast", "thorough"):
        assert load_solver_config(name).time_limit_s > 0


@pytest.mark.parametrize("text,expected", [("256KiB", 262144), ("1MiB", 1048576), ("4096", 4096), ("512 K", 524288), (100, 100)])
def test_parse_size(text, expected) -> None:  # type: ignore[no-untyped-def]
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "1.5MiB", "-4", "0", "12 parsecs"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="byte count|positive"):
        parse_size(text)


@pytest.mark.parametrize("edit,key", [
    ('sram = "512KiB"', "sram"),
    ("macs_per_cycle = 256", "macs_per_cycle"),
    ("dram_pj_per_byte = 80.0", "dram_pj_per_byte"),
])
def test_bad_profile_names_the_key(tmp_path: Path, edit: str, key: str) -> None:
    text = (Path(__file__).resolve().parents[1] / "src" / "memplan" / "configs" / "hardware" / "generic-npu.toml").read_text()
    bad_value = {"sram": 'sram = "lots"', "macs_per_cycle": 'macs_per_cycle = "fast"', "dram_pj_per_byte": "dram_pj_per_byte = -1"}[key]
    p = tmp_path / "bad.toml"
    p.write_text(text.replace(edit, bad_value))
    with pytest.raises(ConfigError, match=key):
        load_profile(p)


def test_unknown_and_missing_keys(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[1] / "src" / "memplan" / "configs" / "hardware" / "generic-npu.toml").read_text()
    p = tmp_path / "typo.toml"
    p.write_text(text.replace("mac_pj", "mac_pJ"))
    with pytest.raises(ConfigError, match="unknown key 'mac_pJ'"):
        load_profile(p)
    p.write_text(text.replace("row_only", "rows_only"))
    with pytest.raises(ConfigError, match="tiling.rows_only"):
        load_profile(p)
    p.write_text("\n".join(line for line in text.splitlines() if not line.startswith("clock_mhz")))
    with pytest.raises(ConfigError, match="missing key 'clock_mhz'"):
        load_profile(p)
    with pytest.raises(ConfigError, match="unknown hardware profile"):
        load_profile("tpu-v9")
    bad = tmp_path / "solver.toml"
    bad.write_text("time_limit_s = 5\nworkerz = 2\n")
    with pytest.raises(ConfigError, match="workerz"):
        load_solver_config(bad)


def test_ethos_profiles_are_vela_system_configs() -> None:
    """The Ethos-U profiles carry Vela 5.2's vela.ini figures: a 128-bit AXI port (16 B/cycle) on
    U65 times the memory's clock scale, 64-bit (8 B/cycle) on U55."""
    high = load_profile("ethos-u65-256")  # Ethos_U65_High_End: Dram_clock_scale 0.234375 x 16 B
    assert (high.dram_bytes_per_cycle, high.clock_hz, high.sram_bytes_per_cycle, high.sram_latency) == \
        (Fraction(15, 4), 1_000_000_000, 16, 32)
    assert (high.cycle_model, high.npu, high.feature_maps_in_sram) == ("ethos-u", "ethos-u65-256", False)
    client = load_profile("ethos-u65-256-client-server")  # Ethos_U65_Client_Server: 0.75 x 16 B
    assert (client.dram_bytes_per_cycle, client.clock_hz, client.sram_bytes_per_cycle) == (12, 1_000_000_000, 16)
    u55 = load_profile("ethos-u55-256")  # Ethos_U55_High_End_Embedded, Shared_Sram: flash 0.125 x 8 B
    assert (u55.dram_bytes_per_cycle, u55.clock_hz, u55.sram_bytes_per_cycle) == (1, 500_000_000, 8)
    assert u55.feature_maps_in_sram and not u55.weights_in_place  # the arena never spills; weights DMA'd from flash
    assert load_profile("generic-npu").cycle_model == "simple"
    assert (load_profile("generic-npu").elementwise_elems_per_cycle, load_profile("mcu-sram").elementwise_elems_per_cycle) == (16, 1)


@pytest.mark.parametrize("extra,match", [
    ('cycle_model = "vela"', "cycle_model"),
    ('cycle_model = "ethos-u"', "needs key 'npu'"),
    ('cycle_model = "ethos-u"\nnpu = "ethos-u85-256"\nsram_bytes_per_cycle = 16\nsram_latency = 32', "key 'npu'"),
    ('cycle_model = "ethos-u"\nnpu = "ethos-u55-128"\nsram_bytes_per_cycle = 16\nsram_latency = 32', "128 MACs per cycle"),
    ("elementwise_elems_per_cycle = 0", "elementwise_elems_per_cycle"),
])
def test_bad_cycle_model_names_the_key(tmp_path: Path, extra: str, match: str) -> None:
    text = (Path(__file__).resolve().parents[1] / "src" / "memplan" / "configs" / "hardware" / "generic-npu.toml").read_text()
    text = text.replace("elementwise_elems_per_cycle = 16\n", "")
    p = tmp_path / "bad.toml"
    p.write_text(text.replace("[tiling]", extra + "\n\n[tiling]"))
    with pytest.raises(ConfigError, match=match):
        load_profile(p)
