"""Intel AMX detection, the crash classifier, crash history and safe settings.

The suite cannot pick the CPU it runs on, so the decision is tested on recorded
``llama_print_system_info()`` strings and CPU flag sets of real machines, and the classifier on
recorded host logs. The end-to-end test makes a real host die by a real SIGSEGV, the way the AMX
kernels do (the host's test hook), twice, and checks that the second crash offers safe settings
that then load and reply.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from launcher.engine import EngineClient, EngineParams, HostCrashed, ReplyFinished, Sampling
from launcher.engine.crashes import CrashHistory, classify, crash_check, safe_settings
from launcher.engine.host import FAULT_ENV, SEGV_WITH_EXTRA_BUFFERS
from launcher.errors import ModelLoadError
from launcher.hardware.cpufeatures import (
    amx_risk,
    decide_extra_buffers,
    llama_cpu_features,
    parse_cpu_flags,
    parse_system_info,
)

# llama_print_system_info() of llama.cpp b6xxx-era builds (the format of the vendored one).
GB10 = (
    "CUDA : ARCHS = 1210 | USE_GRAPHS = 1 | PEER_MAX_BATCH_SIZE = 128 | CPU : NEON = 1 | "
    "ARM_FMA = 1 | FP16_VA = 1 | MATMUL_INT8 = 1 | SVE = 1 | DOTPROD = 1 | SVE_CNT = 16 | "
    "OPENMP = 1 | REPACK = 1 | "
)
SAPPHIRE_RAPIDS_NATIVE = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | "
    "BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | "
    "AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
SAPPHIRE_RAPIDS_NO_AMX_BUILD = SAPPHIRE_RAPIDS_NATIVE.replace("AMX_INT8 = 1 | ", "")
ZEN4 = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | "
    "OPENMP = 1 | REPACK = 1 | "
)
HASWELL = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
SPR_FLAGS = "fpu sse sse2 avx avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8"
ZEN4_FLAGS = "fpu sse sse2 avx avx2 avx512f avx512_vnni avx512_bf16"
GRACE_FLAGS = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp sve sve2"


def cpuinfo(flags: str, arm: bool = False) -> str:
    key = "Features" if arm else "flags"
    return f"processor\t: 0\nmodel name\t: test\n{key}\t\t: {flags}\n\nprocessor\t: 1\n"


@pytest.mark.parametrize(
    ("system_info", "flags", "unsafe", "features"),
    [
        (GB10, parse_cpu_flags(cpuinfo(GRACE_FLAGS, arm=True)), False, ("NEON", "SVE")),
        (SAPPHIRE_RAPIDS_NATIVE, parse_cpu_flags(cpuinfo(SPR_FLAGS)), True, ("AMX_INT8",)),
        (SAPPHIRE_RAPIDS_NATIVE, None, True, ("AVX512",)),  # flags unreadable: trust the build
        (SAPPHIRE_RAPIDS_NO_AMX_BUILD, parse_cpu_flags(cpuinfo(SPR_FLAGS)), False, ("AVX512",)),
        # A build with AMX copied to a CPU without it: ggml registers no AMX buffer there.
        (SAPPHIRE_RAPIDS_NATIVE, parse_cpu_flags(cpuinfo(ZEN4_FLAGS)), False, ("AVX512",)),
        (ZEN4, parse_cpu_flags(cpuinfo(ZEN4_FLAGS)), False, ("AVX512_VNNI",)),
        (HASWELL, frozenset({"avx2", "fma"}), False, ("AVX2", "FMA")),
    ],
)
def test_extra_buffers_are_off_exactly_where_amx_kernels_meet_an_amx_cpu(
    system_info: str, flags: frozenset[str] | None, unsafe: bool, features: tuple[str, ...]
) -> None:
    assert (amx_risk(system_info, flags) is not None) == unsafe
    decision = decide_extra_buffers(None, system_info, flags)
    assert decision.use is not unsafe
    if unsafe:
        assert "20824" in decision.reason
    assert set(features) <= set(llama_cpu_features(system_info))
    # What the user sets always wins.
    assert decide_extra_buffers(True, system_info, flags).use is True
    assert decide_extra_buffers(False, system_info, flags).use is False


def test_system_info_sections_parse_per_backend() -> None:
    parsed = parse_system_info(GB10)
    assert parsed["CUDA"]["ARCHS"] == "1210"
    assert parsed["CPU"]["SVE_CNT"] == "16"
    assert "AMX_INT8" not in parsed["CPU"]
    assert parse_system_info("") == {}
    assert "AVX512" not in llama_cpu_features(HASWELL)


AMX_CRASH_LOG = [
    "load_tensors: loading model tensors, this can take a while... (mmap = true)",
    "load_tensors:   CPU_Mapped model buffer size =   236.51 MiB",
    "load_tensors:          AMX model buffer size =   120.38 MiB",
    "llama_context: n_ctx = 4096",
    "Fatal Python error: Segmentation fault",
    "",
    "Current thread 0x00007f3b (most recent call first):",
    '  File "llama_cpp/llama_cpp.py", line 1510 in llama_decode',
    '  File "launcher/engine/host.py", line 290 in generate',
]
CUDA_OOM_LOG = [
    "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 8192.00 MiB on device 0: "
    "cudaMalloc failed: out of memory",
    "CUDA error: out of memory",
]
CUDA_ARCH_LOG = [
    "ggml_cuda_compute_forward: MUL_MAT failed",
    "CUDA error: no kernel image is available for execution on the device",
]


@pytest.mark.parametrize(
    ("exit_code", "log", "kw", "kind", "says"),
    [
        (-11, AMX_CRASH_LOG, {}, "amx", "20824"),
        # The stack alone (a user's gdb paste) names the AMX kernel too.
        (-11, ["#0 ggml_backend_amx_mul_mat(...) libggml-cpu.so.0"], {}, "amx", "AMX"),
        # No AMX buffer in the log, but the build and CPU are the crashing pair.
        (
            -11,
            ["llama_decode"],
            {"system_info": SAPPHIRE_RAPIDS_NATIVE, "cpu_flags": {"amx_int8"}},
            "amx",
            "AMX",
        ),
        # The same crash with extra buffers already off is not the AMX bug.
        (
            -11,
            ["llama_decode"],
            {
                "system_info": SAPPHIRE_RAPIDS_NATIVE,
                "cpu_flags": {"amx_int8"},
                "params": EngineParams(use_extra_bufts=False),
            },
            "segfault",
            "segmentation fault",
        ),
        (-11, ["llama_decode"], {"system_info": ZEN4, "cpu_flags": {"avx2"}}, "segfault", "fault"),
        (-4, ["Fatal Python error: Illegal instruction"], {}, "illegal_instruction", "Rebuild"),
        (132, [], {}, "illegal_instruction", "another"),
        (-6, CUDA_OOM_LOG, {}, "gpu_oom", "out of memory"),
        (-6, CUDA_ARCH_LOG, {}, "gpu_arch", "CUDA_ARCHITECTURES"),
        (-9, ["llama_decode: ..."], {}, "killed", "SIGKILL"),
        (-6, ["ggml.c:123: GGML_ASSERT(x) failed"], {}, "abort", "GGML_ASSERT"),
        (-7, [], {}, "bus_error", "mmap"),
        (3, [], {}, "unknown", "exit code 3"),
    ],
)
def test_crash_classifier_names_known_signatures(
    exit_code: int, log: list[str], kw: dict, kind: str, says: str
) -> None:
    d = classify(exit_code, log, **kw)
    assert d.kind == kind
    assert says in d.sentence


def test_classifier_says_the_stage() -> None:
    assert "while loading" in classify(-11, [], stage="load").cause
    assert "while generating" in classify(-11, [], stage="reply").cause


def test_safe_settings_name_each_change_and_only_real_ones() -> None:
    params = EngineParams(n_threads=8, n_gpu_layers=-1, use_mmap=True)
    safe, said = safe_settings(params, "segfault")
    assert safe.use_extra_bufts is False and safe.use_mmap is False
    assert safe.n_threads == 4 and safe.n_threads_batch == 4
    assert safe.n_gpu_layers == 0
    assert len(said) == 4 and any("4 threads instead of 8" in s for s in said)
    # Settings that are already safe are not "changed" again.
    again, said_again = safe_settings(safe.__class__(**{**safe.to_dict(), "n_threads": 1}), "amx")
    assert said_again == ()
    # A GPU out-of-memory crash only moves the model off the GPU.
    gpu_safe, gpu_said = safe_settings(params, "gpu_oom")
    assert gpu_safe.n_gpu_layers == 0 and gpu_safe.use_mmap is True
    assert gpu_said == ("CPU only (no layers on the GPU)",)
    assert again.n_threads == 1


def test_history_counts_repeats_per_model_and_stage(tmp_path: Path) -> None:
    history = CrashHistory(tmp_path / "crashes.json")
    d = classify(-11, [])
    assert history.record("/m/a.gguf", "reply", d).count == 1
    assert history.record("/m/a.gguf", "load", d).count == 1  # another stage starts over
    assert history.record("/m/a.gguf", "load", d).count == 2
    assert history.record("/m/b.gguf", "load", d).count == 1
    # Written to disk: a new history (a restarted app) sees the same.
    again = CrashHistory(tmp_path / "crashes.json")
    assert [r.model for r in again.repeated()] == ["/m/a.gguf"]
    check = crash_check(again)
    assert check.status == "warn" and "a.gguf crashed 2 times" in check.detail
    again.clear("/m/a.gguf")
    assert history.repeated() == []
    assert crash_check(history).status == "ok"
    # A damaged file is an empty history, not an error.
    (tmp_path / "crashes.json").write_text("{not json", encoding="utf-8")
    assert CrashHistory(tmp_path / "crashes.json").repeated() == []


def test_a_crash_that_repeats_offers_safe_settings_that_load_and_reply(
    gemma_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The host dies by a real SIGSEGV at its first decode while extra buffer types are on,
    # as llama.cpp's AMX kernels do; loading the same way crashes the same way again.
    monkeypatch.setenv(FAULT_ENV, SEGV_WITH_EXTRA_BUFFERS)
    history = CrashHistory(tmp_path / "crashes.json")
    client = EngineClient(crash_history=history)
    params = EngineParams(n_ctx=256, n_threads=2, use_extra_bufts=True)
    crashes: list[HostCrashed] = []
    try:
        for _ in range(2):
            loaded = client.load(gemma_path, params)
            assert loaded.extra_buffers is True
            events = list(client.complete("Hello", Sampling(max_tokens=4, temperature=0)))
            assert isinstance(events[-1], HostCrashed)
            crashes.append(events[-1])
        first, second = crashes
        assert first.exit_code == -signal.SIGSEGV and first.stage == "reply"
        assert first.repeats == 1 and first.safe_params is None
        assert any("Segmentation fault" in line for line in first.last_log_lines)
        assert second.repeats == 2
        assert second.safe_params is not None
        assert second.safe_params.use_extra_bufts is False
        assert any("extra buffer" in c for c in second.safe_changes)
        assert crash_check(history).status == "warn"
        # One click: load with the safe settings; it replies, and the streak is forgotten.
        loaded = client.load(gemma_path, second.safe_params)
        assert loaded.extra_buffers is False
        events = list(client.complete("Hello", Sampling(max_tokens=4, temperature=0)))
        assert isinstance(events[-1], ReplyFinished)
        assert events[-1].metrics.generated_tokens > 0
        assert history.get(str(gemma_path)) is None
    finally:
        client.unload()


def test_a_host_dying_while_loading_is_diagnosed_at_the_load_stage(
    gemma_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = EngineClient()
    # The host's "system" message arrives before the file is read; kill the host right
    # after it, while llama.cpp is loading.
    original = client._await_loaded

    def killing(path: str, params: EngineParams, on_progress: object) -> dict:
        def kill_on_progress(_p: object) -> None:
            if client.pid is not None:
                import os

                os.kill(client.pid, signal.SIGKILL)

        return original(path, params, kill_on_progress)

    monkeypatch.setattr(client, "_await_loaded", killing)
    with pytest.raises(ModelLoadError) as info:
        client.load(gemma_path, EngineParams(n_ctx=256))
    crash = info.value.crash
    assert isinstance(crash, HostCrashed)
    assert crash.stage == "load" and crash.kind == "killed"
    assert crash.model_path == str(gemma_path)
    assert client.pid is None
