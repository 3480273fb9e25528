"""Expected decode and prefill speed for a plan: bytes read per token over the device's
bandwidth times a measured efficiency (roofline), corrected by calibration when runs were
measured on this machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from launcher.hardware.profile import MachineProfile, MemoryPool
from launcher.planning.budget import budget
from launcher.planning.ggml import GiB
from launcher.planning.memory import layer_kv_bytes
from launcher.planning.model import ModelSummary
from launcher.planning.types import MemoryPlan, SpeedEstimate

if TYPE_CHECKING:
    from launcher.planning.calibration import CalibrationStore


#: Decode efficiency (fraction of peak bandwidth) per device class, dense / MoE, from the
#: measured llama.cpp table in the reference (memory-and-speed.md §5).
EFFICIENCY: dict[str, tuple[float, float]] = {
    "nvidia_discrete": (0.65, 0.55),
    "nvidia_unified": (0.80, 0.65),
    "apple": (0.60, 0.55),
    "other_gpu": (0.55, 0.5),
    "cpu": (0.55, 0.5),
}
#: Peak FLOPS per GB/s of bandwidth per class (prefill is compute-bound), and the fraction
#: llama.cpp reaches. Calibrated on the DGX Spark pp2048 figures in the reference.
FLOPS_PER_BW: dict[str, float] = {
    "nvidia_discrete": 150e9,
    "nvidia_unified": 350e9,
    "apple": 70e9,
    "other_gpu": 60e9,
}
PREFILL_EFFICIENCY = 0.35
#: Effective quantized matmul throughput per core (AVX2/AVX-512 int8 dot products), fitted to
#: llama.cpp prompt processing on an EPYC (Gemma 3 270M: about 700 tokens/s on 2 cores).
CPU_FLOPS_PER_CORE = 400e9
#: Bandwidth one core can stream (decode on few cores is core-bound, not DRAM-bound).
CPU_BANDWIDTH_PER_CORE_GBPS = 15.0
DEFAULT_RAM_BANDWIDTH_GBPS = 50.0
DEFAULT_GPU_BANDWIDTH_GBPS = 300.0
#: Host-to-GPU copies during prompt processing with partial offload (PCIe 4.0 x16, real).
PCIE_BANDWIDTH_GBPS = 20.0
#: Fixed per-token cost (kernel launches, sampling, Python) that caps small models.
PER_TOKEN_OVERHEAD_S = 0.002
#: Fixed cost per prompt token (graph scheduling, sampling set-up), caps tiny models.
PREFILL_OVERHEAD_S = 2e-5
#: Depth at which decode speed is quoted (KV read per token grows with the conversation).
SPEED_DEPTH = 2048


def device_class(machine: MachineProfile) -> str:
    gpu = machine.gpus[0] if machine.gpus else None
    if machine.backend == "metal" or (gpu is not None and gpu.vendor == "apple"):
        return "apple"
    if gpu is not None and gpu.vendor == "nvidia":
        return "nvidia_unified" if gpu.unified else "nvidia_discrete"
    if gpu is not None:
        return "other_gpu"
    return "cpu"


def bandwidth(machine: MachineProfile, pool: MemoryPool | None, gpu: bool) -> tuple[float, bool]:
    """(GB/s, known) for a pool."""
    if pool is not None and pool.bandwidth_gbps:
        return float(pool.bandwidth_gbps), True
    if gpu and machine.gpus and machine.gpus[0].bandwidth_gbps:
        return float(machine.gpus[0].bandwidth_gbps or 0), True
    return (DEFAULT_GPU_BANDWIDTH_GBPS if gpu else DEFAULT_RAM_BANDWIDTH_GBPS), False


def estimate_speed(
    s: ModelSummary,
    machine: MachineProfile,
    p: MemoryPlan,
    calibration: CalibrationStore | None = None,
) -> SpeedEstimate:
    """Decode and prefill tokens/s for a plan (roofline x measured efficiency)."""
    moe = s.n_expert > 0 and s.n_expert_used > 0
    cls = device_class(machine)
    b = budget(machine)
    first_gpu = s.n_layers - p.gpu_layers
    depth = min(p.context, SPEED_DEPTH)
    kv_depth = layer_kv_bytes(s, depth, p.kv_type, p.flash_attn, p.n_ubatch)
    gpu_bytes = cpu_bytes = 0
    for il in range(s.n_layers):
        read = s.active_layer_bytes(il) + kv_depth[il]
        if il >= first_gpu and p.gpu_layers > 0 and p.verdict != "cpu":
            gpu_bytes += read
        else:
            cpu_bytes += read
    out_read = s.output_bytes + (s.tied_output_bytes if s.tied_output else 0)
    if p.output_on_gpu:
        gpu_bytes += out_read
    else:
        cpu_bytes += out_read
    eff_gpu = EFFICIENCY.get(cls, EFFICIENCY["other_gpu"])[1 if moe else 0]
    eff_cpu = EFFICIENCY["cpu"][1 if moe else 0]
    if cls in ("nvidia_unified", "apple"):
        eff_cpu = eff_gpu  # the CPU reads the same fast memory
    bw_gpu, gpu_known = bandwidth(machine, b.gpu_pool, True)
    bw_ram, ram_known = bandwidth(machine, b.ram_pool, False)
    if b.shared:
        bw_ram, ram_known = bw_gpu, gpu_known
    # a few CPU cores cannot pull the memory's full bandwidth (per-core streaming limit)
    bw_ram = min(bw_ram, CPU_BANDWIDTH_PER_CORE_GBPS * max(1, machine.cpu_cores))
    t = PER_TOKEN_OVERHEAD_S
    if gpu_bytes:
        t += gpu_bytes / (eff_gpu * bw_gpu * 1e9)
    if cpu_bytes:
        t += cpu_bytes / (eff_cpu * bw_ram * 1e9)
    decode = 1.0 / t
    active = max(1, s.active_params or int(s.weights_bytes / 0.6))
    if b.gpu_name and p.gpu_layers > 0:
        flops = FLOPS_PER_BW.get(cls, FLOPS_PER_BW["other_gpu"]) * bw_gpu
    else:
        flops = CPU_FLOPS_PER_CORE * max(1, machine.cpu_cores)
    prefill = 1.0 / (2 * active / (PREFILL_EFFICIENCY * flops) + PREFILL_OVERHEAD_S)
    if p.verdict == "partial":
        # llama.cpp's op offload streams the CPU-resident weights to the GPU once per ubatch
        # for prompt processing, so the prompt runs at GPU speed plus a PCIe transfer
        prefill = 1.0 / (
            1.0 / prefill + cpu_bytes / (PCIE_BANDWIDTH_GBPS * 1e9 * max(1, p.n_ubatch))
        )
    where = {"cpu": "CPU", "full_gpu": "GPU", "partial": "GPU+CPU", "no_fit": "-"}[p.verdict]
    assumed = (
        []
        if (gpu_known or not gpu_bytes) and (ram_known or not cpu_bytes)
        else ["bandwidth assumed (not reported by the machine profile)"]
    )
    moe_note = f"MoE: shared + {s.n_expert_used}/{s.n_expert} experts, " if moe else ""
    explanation = (
        f"{where}: reads {(gpu_bytes + cpu_bytes) / GiB:.2f} GiB per token "
        f"({moe_note}"
        f"KV at depth {depth}); "
        + (f"GPU {bw_gpu:.0f} GB/s x {eff_gpu:.2f}" if gpu_bytes else "")
        + ("; " if gpu_bytes and cpu_bytes else "")
        + (f"RAM {bw_ram:.0f} GB/s x {eff_cpu:.2f}" if cpu_bytes else "")
        + (f"; {assumed[0]}" if assumed else "")
    )
    est = SpeedEstimate(round(decode, 2), round(prefill, 1), "estimated", explanation)
    if p.verdict == "no_fit":
        est = SpeedEstimate(0.0, 0.0, "estimated", "does not fit in this machine's memory")
    if calibration is not None and p.verdict != "no_fit":
        from launcher.planning.calibration import machine_key

        est = calibration.adjust(machine_key(machine), s.key, p, est)
    return est
