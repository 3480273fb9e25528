"""The hardware probe: replays of recorded machine classes, odd sources, and this machine."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from launcher.hardware import MachineProfile, probe
from launcher.hardware.adapters import ReplayAdapters, record
from launcher.hardware.detect import parse_meminfo

DATA = Path(__file__).parent / "data" / "hardware"
MiB, GiB = 1 << 20, 1 << 30


def readings(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.json").read_text())


def replay(data: dict[str, Any]) -> MachineProfile:
    return probe(ReplayAdapters(copy.deepcopy(data)))


def test_dgx_spark_gb10_shows_one_unified_pool_of_memtotal() -> None:
    p = replay(readings("dgx_spark_gb10"))
    assert [(pool.kind, pool.name) for pool in p.pools] == [("unified", "Unified memory")]
    pool = p.pools[0]
    assert pool.total == 127_600_748 * 1024  # MemTotal: the 121.7 GiB a user can use
    assert round(pool.total / GiB, 1) == 121.7
    assert pool.available == 79_433_728 * 1024  # MemAvailable, not cudaMemGetInfo's MemFree
    assert pool.device == "CUDA0" and p.gpu_pools == (pool,)
    assert p.backend == "cuda" and p.gpu_offload
    gpu = p.gpus[0]
    assert gpu.name == "NVIDIA GB10" and gpu.unified and gpu.memory_total is None
    assert gpu.compute_capability == "12.1"
    assert "NOT_SUPPORTED" in p.unknowns["gpu0.memory"]


def test_gb10_stays_unified_when_nvml_reports_memtotal_or_ggml_is_missing() -> None:
    data = readings("dgx_spark_gb10")
    # Some drivers are said to answer with total == MemTotal instead of NOT_SUPPORTED.
    data["nvml"]["devices"][0]["memory"] = {
        "total": 127_600_748 * 1024,
        "free": 50 * GiB,
        "used": 70 * GiB,
    }
    data["backend"] = {"adapter_error": "the llama.cpp device query failed (exit 1)"}
    p = replay(data)
    assert [pool.kind for pool in p.pools] == ["unified"]
    assert p.pools[0].available == 79_433_728 * 1024
    assert "device query failed" in p.unknowns["backend"]


def test_rtx_spark_n1x_pool_is_sized_by_cuda_not_the_nvml_carve_out() -> None:
    p = replay(readings("rtx_spark_n1x"))
    assert [pool.kind for pool in p.pools] == ["unified"]
    pool = p.pools[0]
    assert pool.total == 46477 * MiB
    assert p.gpus[0].memory_total == 8128 * MiB  # what NVML says, kept for the record
    assert round(p.ram_total / GiB, 1) == 54.2
    assert any("carve-out" in n for n in pool.notes)
    assert pool.device == "CUDA0"
    assert p.os == "Windows" and p.cpu_arch == "arm64" and p.emulation is None


def test_rtx_4090_desktop_has_a_vram_pool_and_a_ram_pool() -> None:
    p = replay(readings("rtx4090_desktop"))
    assert [(pool.kind, pool.name) for pool in p.pools] == [
        ("vram", "VRAM: NVIDIA GeForce RTX 4090"),
        ("ram", "System RAM"),
    ]
    vram, ram = p.pools
    assert vram.total == 24564 * MiB and vram.available == 9512 * MiB
    assert vram.device == "CUDA0" and vram.bandwidth_gbps == 1008.0
    assert ram.total == 65_536_000 * 1024 and ram.device == "CPU"
    assert not p.unified and p.gpus[0].compute_capability == "8.9"
    assert p.gpus[0].driver == "580.82.07"


def test_a_failed_nvml_memory_query_alone_does_not_make_a_discrete_gpu_unified() -> None:
    # The llama.cpp regression that called an RTX 5090 "UMA": never decide from a failure.
    data = readings("rtx4090_desktop")
    data["nvml"]["devices"][0]["memory"] = {"error": "Not Supported", "code": 3}
    p = replay(data)
    assert [pool.kind for pool in p.pools] == ["vram", "ram"]
    assert p.pools[0].total == 24217 * MiB  # sized by llama.cpp's figure instead
    assert not p.gpus[0].unified


def test_m3_max_has_one_unified_pool_with_the_metal_working_set() -> None:
    p = replay(readings("m3_max"))
    assert [pool.kind for pool in p.pools] == ["unified"]
    pool = p.pools[0]
    assert pool.total == 64 * GiB and pool.gpu_usable == 48 * GiB
    assert pool.device == "Metal" and p.backend == "metal"
    assert p.gpus[0].vendor == "apple" and p.gpus[0].unified


def test_cpu_only_machine_has_system_ram_only() -> None:
    p = replay(readings("cpu_only"))
    assert [pool.kind for pool in p.pools] == ["ram"]
    assert p.gpus == () and p.backend == "cpu" and not p.gpu_offload
    assert p.gpu_pools == ()


@pytest.mark.parametrize(
    "meminfo",
    [
        "garbage\n\x00\x01 not meminfo at all",
        "MemTotal: lots\nMemAvailable: 12 kB",
        "MemTotal:       1000 kB\nMemAvailable:   5000 kB\n",  # available > total
        {"adapter_error": "cannot read /proc/meminfo: Permission denied"},
    ],
)
def test_odd_proc_meminfo_is_reported_as_unknown_not_a_crash(meminfo: Any) -> None:
    data = readings("cpu_only")
    data["meminfo"] = meminfo
    p = replay(data)
    assert p.pools[0].kind == "ram"
    assert p.ram_total == data["virtual_memory"]["total"] or p.ram_total == 1000 * 1024
    assert any(k.startswith("meminfo") for k in p.unknowns)


def test_nothing_readable_still_gives_a_profile_with_reasons() -> None:
    p = probe(ReplayAdapters({}))
    assert p.pools == () and p.ram_total == 0
    assert {"system", "virtual_memory", "nvml", "backend", "ram_total"} <= set(p.unknowns)


def test_profile_json_round_trips() -> None:
    for name in ("dgx_spark_gb10", "rtx4090_desktop", "m3_max"):
        p = replay(readings(name))
        assert MachineProfile.from_json(json.loads(json.dumps(p.to_json()))) == p


def test_parse_meminfo_reads_kb_as_bytes() -> None:
    assert parse_meminfo("MemTotal:  2 kB\nHugePages_Total:  3\nbad line") == {
        "MemTotal": 2048,
        "HugePages_Total": 3,
    }


def test_real_probe_on_this_machine_matches_proc_meminfo() -> None:
    p = probe()
    meminfo = parse_meminfo(Path("/proc/meminfo").read_text())
    assert p.ram_total == meminfo["MemTotal"]
    assert p.os == "Linux" and p.cpu_threads >= 1 and p.process_arch == p.cpu_arch
    # This machine has no GPU: system RAM only, and the child asked llama.cpp (CPU build).
    assert [pool.kind for pool in p.pools] == ["ram"]
    assert p.backend == "cpu" and "backend" not in p.unknowns
    assert "nvml" in p.unknowns  # no NVIDIA driver here: said, not crashed


def test_recording_this_machine_replays_to_the_same_pools() -> None:
    data = record()
    assert json.loads(json.dumps(data)) == data
    p = probe(ReplayAdapters(data))
    assert [(x.kind, x.total) for x in p.pools] == [("ram", p.ram_total)]


@pytest.mark.parametrize(
    ("python", "reason"),
    [("/nonexistent/python3", "could not start"), ("/bin/false", "failed (exit 1)")],
)
def test_a_failing_backend_query_leaves_the_backend_unknown_with_the_reason(
    python: str, reason: str
) -> None:
    from launcher.hardware.adapters import BackendSource, live_adapters

    ad = live_adapters()
    ad.backend = BackendSource(python=python, use_spawn=False)
    p = probe(ad)
    ad.close()
    assert reason in p.unknowns["backend"]
    assert [pool.kind for pool in p.pools] == ["ram"] and p.backend == "cpu"


def test_backend_query_also_runs_as_a_spawned_child_as_in_the_frozen_app() -> None:
    # Run in a fresh interpreter so multiprocessing's helper processes end with it.
    code = (
        "import json; from launcher.hardware.adapters import BackendSource; "
        "print(json.dumps(BackendSource(use_spawn=True).read()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    data = json.loads(out.stdout)
    assert data["supports_gpu_offload"] is False
    assert [d["type"] for d in data["devices"]] == ["cpu"]


@pytest.mark.parametrize(
    ("system", "machine", "wow64", "translated", "expected"),
    [
        # x64 Python on a Windows on Arm PC: not WOW64, so IsWow64Process2 says "unknown"
        # for the process and ARM64 for the machine.
        ("Windows", "AMD64", (0x0000, 0xAA64), None, ("arm64", "x86_64", "prism")),
        ("Windows", "ARM64", (0x0000, 0xAA64), None, ("arm64", "arm64", None)),
        ("Windows", "x86", (0x014C, 0xAA64), None, ("arm64", "x86", "prism")),  # 32-bit
        ("Windows", "AMD64", (0x0000, 0x8664), None, ("x86_64", "x86_64", None)),
        ("Windows", "AMD64", None, None, ("x86_64", "x86_64", None)),  # call unavailable
        ("Darwin", "x86_64", None, 1, ("arm64", "x86_64", "rosetta")),
        ("Darwin", "arm64", None, 0, ("arm64", "arm64", None)),
        ("Linux", "aarch64", None, None, ("arm64", "arm64", None)),
    ],
)
def test_emulation_is_detected_from_what_the_os_reports(
    system: str,
    machine: str,
    wow64: tuple[int, int] | None,
    translated: int | None,
    expected: tuple[str, str, str | None],
) -> None:
    from launcher.hardware.adapters import decide_arch

    assert decide_arch(system, machine, wow64, translated) == expected


def test_arm_cpus_are_named_from_proc_cpuinfo_part_numbers() -> None:
    from launcher.hardware.adapters import _arm_core_names

    cpuinfo = "".join(
        f"processor\t: {i}\nCPU implementer\t: 0x41\nCPU part\t: {part}\n\n"
        for i, part in enumerate(["0xd85", "0xd85", "0xd87", "0xfff"])
    )
    assert _arm_core_names(cpuinfo) == "Cortex-X925 + Cortex-A725 + Arm core 0xfff"
    assert _arm_core_names("model name : whatever") is None


@given(text=st.text(max_size=300))
@settings(max_examples=80, deadline=None)
def test_any_proc_meminfo_text_gives_a_ram_pool(text: str) -> None:
    data = readings("cpu_only")
    data["meminfo"] = text
    p = replay(data)
    assert [pool.kind for pool in p.pools] == ["ram"] and p.ram_total > 0
    assert p.ram_available is None or 0 <= p.ram_available <= p.ram_total
