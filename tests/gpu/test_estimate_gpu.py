"""The formula plan checked against a CUDA build of llama.cpp (skipped without one).

Full and partial offload of a header-only Qwen3-32B shape (no-alloc dry run: nothing is
allocated, so any NVIDIA GPU will do) and a real load of a tiny model with half of its
layers on the GPU: KV and weights per device within 1 MiB, compute within 25%.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.dryrun import DryRunJob, _by_plan_device, dry_run_many
from launcher.gguf import read_model
from launcher.planning import ModelSummary, layer_kv_bytes, place_layers
from tests.support import gguf_builders as gb

MiB = 1 << 20


def _cuda_build() -> bool:
    try:
        import llama_cpp
    except ImportError:
        return False
    return bool(llama_cpp.llama_supports_gpu_offload())


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _cuda_build(), reason="needs a GPU build of llama.cpp"),
]


def _compare(s: ModelSummary, job: DryRunJob, r: object, real: bool) -> None:
    ngl = job.n_gpu_layers
    blocks = min(ngl, s.n_layers)
    kv = layer_kv_bytes(s, job.ctx, job.kv_type, job.flash_attn, job.n_ubatch)
    plan = place_layers(s, kv, blocks, ngl > s.n_layers, job.ctx, True, job.n_ubatch, "CUDA0")
    assert abs(sum(kv) - r.kv_bytes) <= MiB  # type: ignore[attr-defined]
    compute = _by_plan_device(r.compute_by_device, list(plan))  # type: ignore[attr-defined]
    gpu_compute = compute.get("CUDA0", 0)
    assert abs(plan["CUDA0"].compute - gpu_compute) <= 0.25 * gpu_compute + 8 * MiB
    if real:
        kv_dev = _by_plan_device(r.kv_by_device, list(plan))  # type: ignore[attr-defined]
        model = _by_plan_device(r.model_by_device, list(plan))  # type: ignore[attr-defined]
        assert abs(plan["CUDA0"].kv - kv_dev.get("CUDA0", 0)) <= MiB
        assert abs(plan["CUDA0"].weights - model.get("CUDA0", 0)) <= MiB


def test_full_and_partial_offload_dry_run_on_cuda() -> None:
    path = gb.cached_model(header_only=True, sparse=True, **gb.QWEN3_32B)
    s = ModelSummary.from_header(read_model(path))
    jobs = [DryRunJob(8192, n_gpu_layers=s.n_layers + 1), DryRunJob(8192, n_gpu_layers=32)]
    for job, r in zip(jobs, dry_run_many(path, jobs), strict=True):
        _compare(s, job, r, real=False)


def test_partial_offload_real_load_on_cuda(tmp_path: Path) -> None:
    path = gb.build_model(tmp_path / "tiny.gguf", **{**gb.TINY_LLAMA, "n_layers": 4})
    s = ModelSummary.from_header(read_model(path))
    jobs = [DryRunJob(4096, n_gpu_layers=2), DryRunJob(4096, n_gpu_layers=5)]
    for job in jobs:
        (r,) = dry_run_many(path, [job], real_load=True)
        _compare(s, job, r, real=True)
