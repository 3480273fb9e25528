"""The memory plan and speed estimate as a user sees them: verdicts, layers, context, speed.

Models are header-only files shaped like Qwen3-32B, Llama-3.3-70B and Qwen3-30B-A3B at
Q4_K_M (exact tensor tables); machines are built here so the tests pin the planner, not the
reference machine files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from launcher.dryrun import dry_run, parse_log
from launcher.errors import ModelLoadError
from launcher.gguf import read_model
from launcher.hardware.profile import GPUInfo, MachineProfile, MemoryPool
from launcher.paths import AppPaths
from launcher.planning import ModelSummary, plan
from launcher.planning.calibration import CalibrationStore, machine_key
from tests.support import gguf_builders as gb

GiB = 1 << 30


def _machine(kind: str, ram_gb: int = 64) -> MachineProfile:
    base: dict[str, Any] = dict(
        os="Linux", cpu_model="test cpu", cpu_cores=8, cpu_threads=16, cpu_arch="x86_64",
        process_arch="x86_64",
    )  # fmt: skip
    if kind == "unified128":
        pool = MemoryPool(
            "Unified memory", "unified", 128 * GiB, 120 * GiB, 120 * GiB, "CUDA0", 273.0
        )
        gpu = GPUInfo(0, "NVIDIA GB10", "nvidia", True, bandwidth_gbps=273.0)
        return MachineProfile(
            **base, ram_total=128 * GiB, ram_available=120 * GiB, pools=(pool,), gpus=(gpu,),
            backend="cuda", gpu_offload=True,
        )  # fmt: skip
    if kind == "rtx24":
        vram = MemoryPool("VRAM", "vram", 24 * GiB, 23 * GiB, 23 * GiB, "CUDA0", 1008.0)
        avail = (ram_gb - 6) * GiB
        ram = MemoryPool("System RAM", "ram", ram_gb * GiB, avail, None, "CPU", 80.0)
        gpu = GPUInfo(0, "RTX 4090", "nvidia", False, bandwidth_gbps=1008.0)
        return MachineProfile(
            **base, ram_total=ram_gb * GiB, ram_available=avail, pools=(vram, ram), gpus=(gpu,),
            backend="cuda", gpu_offload=True,
        )  # fmt: skip
    ram_gb = {"cpu64": 64, "cpu8": 8}[kind]
    ram = MemoryPool("System RAM", "ram", ram_gb * GiB, (ram_gb - 2) * GiB, None, "CPU", 60.0)
    return MachineProfile(
        **base, ram_total=ram_gb * GiB, ram_available=(ram_gb - 2) * GiB, pools=(ram,)
    )


@pytest.fixture(scope="module")
def models() -> dict[str, ModelSummary]:
    out = {}
    for name, preset in (
        ("32b", gb.QWEN3_32B),
        ("70b", gb.LLAMA33_70B),
        ("moe", gb.QWEN3_30B_A3B),
    ):
        out[name] = ModelSummary.from_header(
            read_model(gb.cached_model(header_only=True, **preset))
        )
    return out


def test_classic_question_128gb_unified_vs_24gb_gpu(models: dict[str, ModelSummary]) -> None:
    spark, rtx = _machine("unified128"), _machine("rtx24")
    for name in ("32b", "70b"):
        p = plan(models[name], spark, 32768)
        assert p.verdict == "full_gpu", name
        assert p.gpu_layers == p.total_layers
        assert p.max_context_full_gpu >= 32768
    p70 = plan(models["70b"], rtx, 32768)
    assert p70.verdict == "partial"
    assert 0 < p70.gpu_layers < p70.total_layers == 80
    assert p70.max_context_full_gpu == 0  # 40 GB of weights never fit in 24 GB
    assert p70.per_device["CUDA0"].total <= p70.per_device["CUDA0"].budget  # type: ignore[operator]
    # the 70B on a 24 GB card is several times slower than on the GPU alone, and says why
    assert (
        p70.speed.decode_tokens_per_s < plan(models["70b"], spark, 32768).speed.decode_tokens_per_s
    )
    assert "RAM" in p70.speed.explanation and "GPU" in p70.speed.explanation


def test_partial_offload_uses_the_gpu_to_make_room_in_a_small_ram(
    models: dict[str, ModelSummary],
) -> None:
    # 42 GB of weights, 24 GB of VRAM, 32 GB of RAM: neither alone holds the 70B, both do
    p = plan(models["70b"], _machine("rtx24", ram_gb=32), 8192)
    assert p.verdict == "partial"
    for d in p.per_device.values():
        assert d.total <= d.budget  # type: ignore[operator]
    assert plan(models["70b"], _machine("rtx24", ram_gb=16), 8192).verdict == "no_fit"


def test_partial_offload_places_layers_like_llama_cpp(models: dict[str, ModelSummary]) -> None:
    s = models["70b"]
    p = plan(s, _machine("rtx24"), 8192, gpu_layers=20)
    gpu, cpu = p.per_device["CUDA0"], p.per_device["CPU"]
    assert gpu.weights == sum(s.layer_bytes[-20:])  # the last 20 blocks, no output layer
    assert cpu.weights == s.input_bytes + sum(s.layer_bytes[:-20]) + s.output_bytes
    assert gpu.kv * 60 == cpu.kv * 20  # each layer's KV sits with its layer
    assert p.weights_bytes == s.weights_bytes
    params = p.llama_params()
    assert params["n_gpu_layers"] == 20 and params["swa_full"] is False
    full = plan(s, _machine("unified128"), 8192)
    assert full.llama_params()["n_gpu_layers"] == 81  # blocks + the output layer
    # integrated CUDA (GB10): no mmap, or the weights sit in memory twice
    assert full.llama_params()["use_mmap"] is False and params["use_mmap"] is True


def test_verdicts_on_cpu_machines_and_too_small_ones(models: dict[str, ModelSummary]) -> None:
    p = plan(models["32b"], _machine("cpu64"), 8192)
    assert p.verdict == "cpu" and p.gpu_layers == 0 and set(p.per_device) == {"CPU"}
    assert p.max_context_full_gpu == 0
    assert p.llama_params()["n_gpu_layers"] == 0
    tiny = plan(models["32b"], _machine("cpu8"), 8192)
    assert tiny.verdict == "no_fit" and tiny.max_context == 0
    assert tiny.speed.decode_tokens_per_s == 0
    # in 64 GB of RAM a 70B fits, but not at its full 128k context: the plan says how far
    edge = plan(models["70b"], _machine("cpu64"), 8192).max_context
    assert 8192 < edge < 131072
    assert plan(models["70b"], _machine("cpu64"), edge).verdict == "cpu"
    assert plan(models["70b"], _machine("cpu64"), edge + 256).verdict == "no_fit"


def test_max_context_is_the_edge_of_full_offload(models: dict[str, ModelSummary]) -> None:
    rtx = _machine("rtx24")
    s = models["moe"]  # 17 GiB of weights, small KV: fits the 24 GB card up to some context
    edge = plan(s, rtx, 4096).max_context_full_gpu
    assert 4096 < edge <= s.context_length
    assert plan(s, rtx, edge).verdict == "full_gpu"
    if edge < s.context_length:
        assert plan(s, rtx, edge + 256).verdict == "partial"


def test_kv_type_and_flash_attention_change_the_plan(models: dict[str, ModelSummary]) -> None:
    s, m = models["32b"], _machine("unified128")
    f16 = plan(s, m, 32768)
    q8 = plan(s, m, 32768, kv_type="q8_0")
    q4 = plan(s, m, 32768, kv_type="q4_0")
    assert f16.kv_bytes == 8 * GiB
    assert q8.kv_bytes == 8 * GiB * 34 // 64 and q4.kv_bytes == 8 * GiB * 18 // 64
    no_fa = plan(s, m, 32768, kv_type="q8_0", flash_attn=False)
    assert no_fa.llama_params()["type_v"] == 1  # a quantized V cache needs flash attention
    assert no_fa.compute_bytes > 4 * f16.compute_bytes  # full KQ matrix without flash attention
    assert any("flash attention" in n for n in no_fa.notes)


def test_moe_decodes_faster_than_a_dense_model_of_the_same_size(
    models: dict[str, ModelSummary],
) -> None:
    m = _machine("unified128")
    moe, dense = plan(models["moe"], m, 8192), plan(models["32b"], m, 8192)
    assert abs(moe.weights_bytes - dense.weights_bytes) < 3 * GiB
    assert moe.speed.decode_tokens_per_s > 4 * dense.speed.decode_tokens_per_s
    assert moe.speed.basis == dense.speed.basis == "estimated"
    # the reference's DGX Spark figures: dense 32B about 10 t/s, 70B about 5 t/s
    assert 7 < dense.speed.decode_tokens_per_s < 14
    assert 3.5 < plan(models["70b"], m, 8192).speed.decode_tokens_per_s < 7


def test_summary_json_round_trip_plans_the_same(models: dict[str, ModelSummary]) -> None:
    m = _machine("rtx24")
    for s in models.values():
        compact = json.loads(json.dumps(s.to_json()))
        again = ModelSummary.from_json(compact)
        assert plan(again, m, 16384).to_json() == plan(s, m, 16384).to_json()
    # the catalog may store only totals: weights stay exact, placement approximate
    s = models["70b"]
    loose = ModelSummary.from_json(
        {
            **{k: v for k, v in s.to_json().items() if k not in ("layer_bytes", "input_bytes")},
            "layer_bytes_total": sum(s.layer_bytes),
            "non_layer_bytes": s.input_bytes,
        }
    )
    assert abs(loose.weights_bytes - s.weights_bytes) < 128
    assert plan(loose, m, 8192).verdict == plan(s, m, 8192).verdict


def test_calibration_turns_estimates_into_measurements(
    models: dict[str, ModelSummary], app_home: Path
) -> None:
    m = _machine("rtx24")
    store = CalibrationStore()
    assert store.path == AppPaths.default().calibration_file
    key = machine_key(m)
    p32 = plan(models["32b"], m, 8192, calibration=store)
    assert p32.speed.basis == "estimated"
    measured = p32.speed.decode_tokens_per_s / 2
    store.record(
        key, models["32b"].key, p32.calibration_settings(), {"decode_tokens_per_s": measured}
    )
    again = plan(models["32b"], m, 8192, calibration=store)
    assert again.speed.basis == "measured"
    assert again.speed.decode_tokens_per_s == pytest.approx(measured, rel=0.01)
    # the engine may write the KV type as a ggml type id: still the same settings
    other = {**p32.calibration_settings(), "kv_type": 1}
    store.record(key, models["32b"].key, other, {"decode_tokens_per_s": measured})
    assert plan(models["32b"], m, 8192, calibration=store).speed.basis == "measured"
    # another model on the same machine is corrected by the same measured/estimated ratio
    raw = plan(models["moe"], m, 8192)
    corrected = plan(models["moe"], m, 8192, calibration=CalibrationStore(store.path))
    assert corrected.speed.basis == "calibrated"
    assert corrected.speed.decode_tokens_per_s == pytest.approx(
        raw.speed.decode_tokens_per_s / 2, rel=0.02
    )
    # another machine is untouched; a corrupt file is ignored rather than breaking planning
    assert plan(models["moe"], _machine("unified128"), 8192, calibration=store).speed.basis == (
        "estimated"
    )
    # a load whose compute buffers were measured 1.5x the estimate corrects later plans
    loaded = {"compute_bytes": p32.compute_bytes * 1.5, "kv_bytes": p32.kv_bytes}
    store.record(key, models["32b"].key, p32.calibration_settings(), loaded)
    fixed = plan(models["32b"], m, 8192, calibration=store)
    assert fixed.compute_bytes == pytest.approx(p32.compute_bytes * 1.5, rel=0.01)
    assert fixed.kv_bytes == p32.kv_bytes
    assert any("measured on this machine" in n for n in fixed.notes)
    store.path.write_text("{not json")
    assert plan(models["moe"], m, 8192, calibration=store).speed.basis == "estimated"


CUDA_LOG = """\
load_tensors: offloading 80 repeating layers to GPU
load_tensors:        CUDA0 model buffer size = 40543.11 MiB
load_tensors:   CPU_Mapped model buffer size =   563.62 MiB
llama_context:  CUDA_Host  output buffer size =     0.49 MiB
llama_kv_cache:      CUDA0 KV buffer size =  2560.00 MiB
llama_kv_cache: size = 2560.00 MiB (  8192 cells,  80 layers,  1/1 seqs), K (f16): 1280.00 MiB, V (f16): 1280.00 MiB
sched_reserve:      CUDA0 compute buffer size =   282.50 MiB
sched_reserve:  CUDA_Host compute buffer size =    32.01 MiB
"""  # noqa: E501


def test_log_parser_reads_per_device_sizes() -> None:
    r = parse_log(CUDA_LOG.splitlines())
    MiB = 1 << 20
    assert r.model_by_device == {
        "CUDA0": round(40543.11 * MiB),
        "CPU_Mapped": round(563.62 * MiB),
    }
    assert r.kv_bytes == 2560 * MiB and r.kv_by_device == {"CUDA0": 2560 * MiB}
    assert r.kv_caches[0].cells == 8192 and r.kv_caches[0].layers == 80
    assert r.compute_by_device == {"CUDA0": round(282.5 * MiB), "CUDA_Host": round(32.01 * MiB)}
    assert parse_log([]).kv_bytes == 0  # missing lines: the caller keeps the formula
    # host buffers (CUDA_Host, CPU_Mapped) count as the CPU's memory in a plan
    from launcher.dryrun import _by_plan_device

    assert _by_plan_device(r.compute_by_device, ["CPU", "CUDA0"]) == {
        "CUDA0": round(282.5 * MiB),
        "CPU": round(32.01 * MiB),
    }
    assert _by_plan_device({"MTL0_Mapped": 5, "CPU": 1}, ["CPU", "Metal"]) == {"Metal": 5, "CPU": 1}


def test_dry_run_of_a_broken_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(ModelLoadError):
        dry_run(bad, 4096)


def test_a_dying_dry_run_child_is_reported_with_its_last_words() -> None:
    from launcher.dryrun import _in_child

    with pytest.raises(ModelLoadError, match="ValueError"):
        _in_child({"path": "x.gguf", "real_load": False, "jobs": [{"n_gpu_layers": "?"}]}, "x", 60)
