"""``--machine`` values: reference machines, probe files, inline specs, and helpful errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from launcher.errors import MachineSpecError
from launcher.hardware.profile import MachineProfile
from launcher.machines import parse_size, reference_names, resolve_machine

GiB = 1 << 30

EXPECTED_REFERENCES = {
    "dgx-spark",
    "rtx-spark-128gb",
    "rtx-4090-64gb",
    "rtx-5090-64gb",
    "mac-studio-128gb",
    "laptop-16gb",
}


def test_every_reference_machine_loads_and_round_trips() -> None:
    assert set(reference_names()) >= EXPECTED_REFERENCES
    for name in reference_names():
        profile = resolve_machine(name)
        assert profile.name == name
        assert profile.pools, name
        assert MachineProfile.from_json(json.loads(json.dumps(profile.to_json()))) == profile
        # every pool a model can run from says how fast it is, and where that figure comes from
        for pool in profile.pools:
            assert pool.bandwidth_gbps and pool.bandwidth_gbps > 0, (name, pool.name)
            assert pool.notes, (name, pool.name)


@pytest.mark.parametrize(
    ("name", "kind", "gib"),
    [
        ("dgx-spark", "unified", 121.69),
        ("rtx-4090-64gb", "vram", 23.99),
        ("rtx-5090-64gb", "vram", 31.84),
        ("mac-studio-128gb", "unified", 128.0),
        ("laptop-16gb", "ram", 16.0),
    ],
)
def test_reference_machines_have_the_memory_a_buyer_expects(
    name: str, kind: str, gib: float
) -> None:
    profile = resolve_machine(name)
    assert profile.pools[0].kind == kind
    assert profile.pools[0].total / GiB == pytest.approx(gib, abs=0.01)


def test_dgx_spark_is_unified_and_gpu_capable() -> None:
    spark = resolve_machine("DGX-Spark")
    assert spark.unified
    assert spark.gpu_pools and spark.gpu_pools[0].bandwidth_gbps == 273.0
    laptop = resolve_machine("laptop-16gb")
    assert not laptop.gpu_pools and laptop.ram_pool is not None


def test_inline_unified_spec() -> None:
    profile = resolve_machine("unified=128GiB,bw=546")
    assert profile.unified
    assert profile.gpu_pools[0].total == 128 * GiB
    assert profile.gpu_pools[0].bandwidth_gbps == 546
    assert "bandwidth_gbps" not in profile.unknowns


def test_inline_discrete_gpu_spec_marks_assumed_bandwidths() -> None:
    profile = resolve_machine("vram=24GiB,ram=64GB")
    vram, ram = profile.pools
    assert (vram.kind, vram.total) == ("vram", 24 * GiB)
    assert (ram.kind, ram.total) == ("ram", 64 * 10**9)
    assert profile.ram_pool is ram
    assert "bandwidth_gbps" in profile.unknowns and "ram_bandwidth" in profile.unknowns


def test_inline_cpu_only_spec() -> None:
    profile = resolve_machine("ram=16GiB,ram_bw=100")
    assert not profile.gpu_pools
    assert profile.ram_pool is not None and profile.ram_pool.bandwidth_gbps == 100


def test_probe_json_file(tmp_path: Path) -> None:
    saved = resolve_machine("rtx-5090-64gb").to_json()
    saved["name"] = None
    path = tmp_path / "my-box.json"
    path.write_text(json.dumps(saved), encoding="utf-8")
    profile = resolve_machine(str(path))
    assert profile.gpus[0].name == "NVIDIA GeForce RTX 5090"


def test_this_machine_resolves_without_a_spec() -> None:
    profile = resolve_machine(None)
    assert profile.ram_total > 0
    assert profile.ram_pool is not None


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        ("dgx-sparkle", "dgx-spark, laptop-16gb"),
        ("vram=24GiB", "needs ram="),
        ("unified=lots", "128GiB"),
        ("unified=128GiB,ram=64GiB", "unified=128GiB alone"),
        ("vram=24GiB,ram=64GiB,bw=fast", "GB/s"),
        ("gpu=24GiB", "key=value"),
        ("ram=16GiB,ram=32GiB", "twice"),
        ("/nonexistent/machine.json", "probe --json"),
    ],
)
def test_bad_specs_say_what_to_write(spec: str, hint: str) -> None:
    with pytest.raises(MachineSpecError, match=re.escape(hint)):
        resolve_machine(spec)


def test_a_file_that_is_not_a_profile_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(MachineSpecError, match="probe --json"):
        resolve_machine(str(path))


def test_parse_size_units() -> None:
    assert parse_size("128GiB") == 128 * GiB
    assert parse_size("24 GB") == 24 * 10**9
    assert parse_size("1.5gib") == int(1.5 * GiB)
    with pytest.raises(MachineSpecError):
        parse_size("0GiB")
