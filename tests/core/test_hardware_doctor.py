"""The doctor checks and the ``probe``/``doctor`` commands, as a user runs them."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.cli import main
from launcher.hardware import MachineProfile, probe
from launcher.hardware.adapters import ReplayAdapters
from launcher.hardware.cpufeatures import llama_cpu_features
from launcher.hardware.doctor import QT_X11_LIBS, Check, check_disk, check_qt_libs, run_checks

DATA = Path(__file__).parent / "data" / "hardware"


def replayed(name: str) -> MachineProfile:
    return probe(ReplayAdapters.from_file(DATA / f"{name}.json"))


def by_id(profile: MachineProfile, tmp_path: Path) -> dict[str, Check]:
    checks = run_checks(profile, tmp_path, qt_check=lambda: check_qt_libs(platform="darwin"))
    return {c.id: c for c in checks}


def test_x64_python_emulated_on_an_arm_pc_fails_with_the_native_python_fix(
    tmp_path: Path,
) -> None:
    p = dataclasses.replace(replayed("rtx_spark_n1x"), process_arch="x86_64", emulation="prism")
    c = by_id(p, tmp_path)["emulation"]
    assert c.status == "fail" and "emulated" in c.detail
    assert "ARM64" in c.fix
    assert by_id(replayed("rtx_spark_n1x"), tmp_path)["emulation"].status == "ok"


def test_cpu_build_of_llama_cpp_with_an_nvidia_gpu_fails_with_the_cuda_rebuild(
    tmp_path: Path,
) -> None:
    p = dataclasses.replace(replayed("rtx4090_desktop"), gpu_offload=False, backend="cpu")
    c = by_id(p, tmp_path)["gpu_backend"]
    assert c.status == "fail" and "RTX 4090" in c.detail
    assert "LLAMA_BACKEND=cuda" in c.fix
    assert by_id(replayed("rtx4090_desktop"), tmp_path)["gpu_backend"].status == "ok"


def test_missing_nvml_warns_only_when_an_nvidia_gpu_is_present(tmp_path: Path) -> None:
    data = json.loads((DATA / "rtx4090_desktop.json").read_text())
    data["nvml"] = {"adapter_error": "NVML is not available (NVML Shared Library Not Found)"}
    c = by_id(probe(ReplayAdapters(data)), tmp_path)["nvml"]
    assert c.status == "warn" and "libnvidia-ml" in c.fix
    assert by_id(replayed("cpu_only"), tmp_path)["nvml"].status == "skip"


def test_little_free_disk_in_the_models_folder_is_reported(tmp_path: Path) -> None:
    models = tmp_path / "not" / "created" / "yet"
    huge = 1 << 60  # more than any disk has free
    c = check_disk(models, fail_below=huge, warn_below=huge)
    assert c.status == "fail" and str(models) in c.detail and "models folder" in c.fix
    assert check_disk(models, fail_below=0, warn_below=huge).status == "warn"
    assert check_disk(models, fail_below=0, warn_below=0).status == "ok"


def test_missing_qt_x11_libraries_are_named_with_the_apt_command() -> None:
    present = "\n".join(f"\t{lib} (libc6,x86-64) => /lib/{lib}" for lib in QT_X11_LIBS[1:])
    c = check_qt_libs(present, platform="linux")
    assert c.status == "warn" and QT_X11_LIBS[0] in c.detail and "apt-get" in (c.fix or "")
    full = present + f"\n\t{QT_X11_LIBS[0]} => /lib/x"
    assert check_qt_libs(full, platform="linux").status == "ok"
    assert check_qt_libs("", platform="win32").status == "skip"


def test_probe_command_json_is_the_machine_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--json", "--replay", str(DATA / "dgx_spark_gb10.json")]) == 0
    profile = MachineProfile.from_json(json.loads(capsys.readouterr().out))
    assert [p.kind for p in profile.pools] == ["unified"] and profile.backend == "cuda"


def test_a_saved_probe_is_accepted_as_a_machine_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from launcher.machines import resolve_machine

    assert main(["probe", "--json", "--replay", str(DATA / "rtx_spark_n1x.json")]) == 0
    saved = tmp_path / "n1x.json"
    saved.write_text(capsys.readouterr().out)
    assert resolve_machine(str(saved)) == replayed("rtx_spark_n1x")


def test_probe_command_text_names_the_pools(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--replay", str(DATA / "rtx4090_desktop.json")]) == 0
    out = capsys.readouterr().out
    assert "VRAM: NVIDIA GeForce RTX 4090: 24.0 GiB total" in out
    assert "System RAM" in out and "CUDA build" in out


def test_probe_and_doctor_run_here_from_the_command_line(app_home: Path) -> None:
    probe_out = subprocess.run(
        [sys.executable, "-m", "launcher", "probe", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe_out.returncode == 0, probe_out.stderr
    here = MachineProfile.from_json(json.loads(probe_out.stdout))
    assert here.pools[0].kind == "ram" and here.ram_total > 0
    # llama.cpp's own report, for a user to paste: its CPU section and the features in it.
    assert "CPU :" in here.system_info
    assert here.cpu_features == llama_cpu_features(here.system_info)

    doctor_out = subprocess.run(
        [sys.executable, "-m", "launcher", "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    checks = {c["id"]: c for c in json.loads(doctor_out.stdout)}
    assert set(checks) == {
        "emulation", "gpu_backend", "cpu", "nvml", "disk", "qt_libs", "rpc", "crashes"
    }  # fmt: skip
    assert checks["emulation"]["status"] == "ok"
    assert checks["cpu"]["status"] in ("ok", "warn")
    assert all(f in checks["cpu"]["detail"] for f in here.cpu_features)
    assert str(app_home) in checks["disk"]["detail"]  # the models folder under SPARK_LAUNCHER_HOME
    assert doctor_out.returncode == (
        1 if any(c["status"] == "fail" for c in checks.values()) else 0
    )
