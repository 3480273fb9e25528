"""What a machine offers a model: the one memory budget the plan, the residency plan and
the gauge's ghost all use (free memory less headroom, per device; unified memory shared)."""

from __future__ import annotations

from dataclasses import dataclass

from launcher.hardware.profile import MachineProfile, MemoryPool
from launcher.planning.ggml import GiB, MiB
from launcher.planning.types import MemoryPlan

#: Memory kept free per device (llama.cpp's ``--fit`` default margin is 1024 MiB).
HEADROOM_GPU = 1 * GiB
HEADROOM_RAM = 1 * GiB + 512 * MiB


@dataclass
class Budget:
    gpu_name: str | None
    gpu_pool: MemoryPool | None
    ram_pool: MemoryPool | None
    gpu_budget: int
    ram_budget: int
    shared: bool  # GPU and CPU draw from the same physical memory (unified)


def pool_capacity(pool: MemoryPool) -> int:
    """Bytes of a pool models may use now: what is free (when known), capped by the share the
    GPU may map (a unified pool's carve-out, a discrete GPU's usable VRAM)."""
    figures = [pool.total]
    if pool.available is not None:
        figures.append(pool.available)
    if pool.gpu_usable is not None and pool.kind != "ram":
        figures.append(pool.gpu_usable)
    return max(0, min(figures))


def pool_for_device(machine: MachineProfile, device: str) -> MemoryPool | None:
    """The memory pool behind a llama.cpp device ("CUDA0", "Metal", "CPU")."""
    for p in machine.pools:
        if p.device == device:
            return p
    if device.upper().startswith("CPU"):
        return machine.ram_pool
    return None


def budget(machine: MachineProfile) -> Budget:
    """What the planner may place: each pool's capacity less headroom; unified memory is one
    pool that the GPU share and the CPU share must fit together."""
    gpus = machine.gpu_pools if machine.gpu_offload or machine.backend != "cpu" else ()
    gpu = gpus[0] if gpus else None
    ram = machine.ram_pool
    ram_budget = max(0, pool_capacity(ram) - HEADROOM_RAM) if ram else 0
    if gpu is None:
        return Budget(None, None, ram, 0, ram_budget, False)
    shared = gpu.kind == "unified" and (ram is None or ram.kind == "unified" or ram is gpu)
    name = gpu.device or "GPU0"
    return Budget(name, gpu, ram, max(0, pool_capacity(gpu) - HEADROOM_GPU), ram_budget, shared)


def bytes_per_pool(plan: MemoryPlan, machine: MachineProfile) -> dict[str, int]:
    """A plan's bytes per memory pool name (the gauge's ghost of a model not loaded yet): the
    plan counts per llama.cpp device, each pool names its device; CPU bytes land in system
    RAM, or in the unified pool where there is one."""
    out: dict[str, int] = {}
    for device, use in plan.per_device.items():
        pool = pool_for_device(machine, device)
        if pool is not None:
            out[pool.name] = out.get(pool.name, 0) + use.total
    if not out and machine.ram_pool is not None:
        out[machine.ram_pool.name] = plan.total_bytes
    return out
