"""Set-up on every machine: the backend and AMX decisions of tools/setup_llama.sh, the engine
self-check that ``make setup`` ends with, and the doctor's CPU and CUDA findings.

``setup_llama.sh --print-plan`` prints its decision and builds nothing, so it is run here with a
recorded ``/proc/cpuinfo`` (SPARK_CPUINFO) and a PATH holding stand-in ``nvidia-smi``/``nvcc``
scripts: the machine under test cannot be a Sapphire Rapids Xeon or a DGX Spark, but the
script's reading of one can be checked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from launcher.engine.host import FAULT_ENV, SEGV_WITH_EXTRA_BUFFERS
from launcher.hardware.doctor import AMX_REBUILD, CUDA_REBUILD, check_cpu, check_gpu_backend
from launcher.hardware.profile import GPUInfo, MachineProfile
from tests.core.test_engine_crashes import SAPPHIRE_RAPIDS_NATIVE, ZEN4

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "setup_llama.sh"
SPR = "fpu sse sse2 sse4_2 avx avx2 fma f16c bmi2 avx512f avx512_vnni avx512_bf16 amx_tile amx_int8"
ZEN4_FLAGS = "fpu sse sse2 sse4_2 avx avx2 fma f16c bmi2 avx512f avx512vbmi avx512_vnni"


def plan(tmp_path: Path, flags: str, *, path_dirs: list[Path] = (), **env: str) -> dict:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n", encoding="utf-8")
    base = {k: v for k, v in os.environ.items() if k not in ("LLAMA_BACKEND", "SPARK_LLAMA_AMX")}
    run_env = {
        **base,
        "SPARK_CPUINFO": str(cpuinfo),
        "PATH": os.pathsep.join([*map(str, path_dirs), "/usr/bin", "/bin"]),
        **env,
    }
    out = subprocess.run(
        ["bash", str(SCRIPT), "--print-plan"],
        capture_output=True,
        text=True,
        env=run_env,
        check=True,
        timeout=30,
    )
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


def fake_tool(folder: Path, name: str, output: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / name
    tool.write_text(f"#!/bin/sh\necho '{output}'\n", encoding="utf-8")
    tool.chmod(0o755)
    return tool


def test_an_amx_cpu_gets_its_own_instruction_sets_without_the_amx_kernels(
    tmp_path: Path,
) -> None:
    p = plan(tmp_path, SPR)
    assert p["backend"] == "cpu"
    cmake = p["cmake"].split()
    assert "-DGGML_NATIVE=OFF" in cmake and "-DGGML_NATIVE=ON" not in cmake
    for off in ("-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"):
        assert off in cmake
    for on in ("-DGGML_AVX2=ON", "-DGGML_AVX512=ON", "-DGGML_AVX512_VNNI=ON", "-DGGML_FMA=ON"):
        assert on in cmake
    assert "-DGGML_AVX512_VBMI=OFF" in cmake  # not in this CPU's flags
    assert "20824" in p["why"]
    # Asked for explicitly, the native build (with AMX) is what runs.
    assert plan(tmp_path, SPR, SPARK_LLAMA_AMX="on")["cmake"].split() == ["-DGGML_NATIVE=ON"]


def test_other_cpus_keep_the_native_build_unchanged(tmp_path: Path) -> None:
    # Byte for byte: the wheel cache's tag is a checksum of this string.
    assert plan(tmp_path, ZEN4_FLAGS)["cmake"] == "-DGGML_NATIVE=ON "
    assert plan(tmp_path, "fp asimd sve")["cmake"] == "-DGGML_NATIVE=ON "


def test_nvcc_outside_path_is_found_and_the_reason_is_printed(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    fake_tool(tools, "nvidia-smi", "GPU 0: NVIDIA GB10 (UUID: GPU-1)")
    cuda_home = tmp_path / "cuda"
    fake_tool(cuda_home / "bin", "nvcc", "Cuda compilation tools, release 13.0")
    # nvcc is not on PATH: before, this silently built a CPU-only engine.
    p = plan(tmp_path, "fp asimd", path_dirs=[tools], CUDA_HOME=str(cuda_home))
    assert p["backend"] == "cuda"
    assert str(cuda_home / "bin" / "nvcc") in p["why"]
    assert "-DGGML_CUDA=on" in p["cmake"]
    # No nvcc anywhere: a CPU build, and the reason says so instead of staying silent.
    p = plan(tmp_path, "fp asimd", path_dirs=[tools], CUDA_HOME=str(tmp_path / "none"))
    if not Path("/usr/local/cuda/bin/nvcc").exists():
        assert p["backend"] == "cpu"
        assert "no CUDA compiler" in p["why"]


def _profile(**kw: object) -> MachineProfile:
    base = MachineProfile(
        os="Linux",
        cpu_model="Intel Xeon Gold 6526Y",
        cpu_cores=16,
        cpu_threads=32,
        cpu_arch="x86_64",
        process_arch="x86_64",
        ram_total=256 << 30,
        ram_available=200 << 30,
        pools=(),
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_doctor_shows_llama_cpu_features_and_the_amx_finding() -> None:
    from launcher.hardware.cpufeatures import amx_risk, llama_cpu_features

    spr = _profile(
        system_info=SAPPHIRE_RAPIDS_NATIVE,
        cpu_features=llama_cpu_features(SAPPHIRE_RAPIDS_NATIVE),
        amx_risk=amx_risk(SAPPHIRE_RAPIDS_NATIVE, {"amx_int8"}),
    )
    check = check_cpu(spr)
    assert check.status == "warn"
    assert "AMX_INT8" in check.detail and "20824" in check.detail
    assert AMX_REBUILD in check.fix
    zen = _profile(system_info=ZEN4, cpu_features=llama_cpu_features(ZEN4))
    ok = check_cpu(zen)
    assert ok.status == "ok" and "AVX512" in ok.detail
    assert check_cpu(_profile()).status == "skip"


def test_doctor_gives_the_one_command_for_a_cpu_only_build_with_an_nvidia_gpu() -> None:
    gpu = GPUInfo(index=0, name="NVIDIA GB10", vendor="nvidia", unified=True)
    check = check_gpu_backend(_profile(gpus=(gpu,), gpu_offload=False))
    assert check.status == "fail"
    assert CUDA_REBUILD in check.fix and "/usr/local/cuda/bin" in check.fix


def _self_check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "launcher", "self-check", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_self_check_generates_with_the_apps_engine(gemma_path: Path) -> None:
    out = _self_check(str(gemma_path), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["ok"] is True and result["tokens"] >= 1 and result["text"]
    assert result["host_pid"] and result["host_pid"] != os.getpid()


def test_self_check_fails_loudly_with_the_cause_and_a_rebuild_command(gemma_path: Path) -> None:
    out = _self_check(str(gemma_path), env={FAULT_ENV: SEGV_WITH_EXTRA_BUFFERS})
    assert out.returncode == 1
    err = out.stderr
    assert "self-check FAILED" in err
    assert "SIGSEGV while generating" in err
    assert "CPU features llama.cpp was built for:" in err
    assert "llama.cpp build:" in err
    assert "rebuild it another way: rm -f .venv/.setup-stamp" in err


def test_self_check_names_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_bytes(b"hello, not a model")
    out = _self_check(str(bad))
    assert out.returncode == 1
    assert "not a GGUF" in out.stderr or "damaged" in out.stderr


def test_make_setup_ends_with_the_self_check() -> None:
    recipe = (ROOT / "Makefile").read_text(encoding="utf-8")
    setup = recipe[recipe.index("$(STAMP):") : recipe.index("run: setup")]
    lines = [ln.strip() for ln in setup.splitlines() if ln.strip()]
    assert "launcher self-check" in lines[-2] and "exit 1" in lines[-2]
    assert lines[-1] == "@touch $@"
