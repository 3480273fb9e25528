"""What a machine offers a model: the one memory budget the plan, the residency plan and
the gauge's ghost all use (free memory less headroom, per device; unified memory shared)."""

from __future__ import annotations

from dataclasses import dataclass

from launcher.hardware.profile import MachineProfile, MemoryPool
from launcher.planning.ggml import GiB, MiB

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


def pool_free(p: MemoryPool) -> int:
    return p.available if p.available is not None else p.total


def budget(machine: MachineProfile) -> Budget:
    gpus = machine.gpu_pools if machine.gpu_offload or machine.backend != "cpu" else ()
    gpu = gpus[0] if gpus else None
    ram = machine.ram_pool
    ram_budget = max(0, pool_free(ram) - HEADROOM_RAM) if ram else 0
    if gpu is None:
        return Budget(None, None, ram, 0, ram_budget, False)
    usable = gpu.gpu_usable if gpu.gpu_usable is not None else pool_free(gpu)
    if gpu.available is not None:
        usable = min(usable, gpu.available)
    shared = gpu.kind == "unified" and (ram is None or ram.kind == "unified" or ram is gpu)
    name = gpu.device or "GPU0"
    return Budget(name, gpu, ram, max(0, usable - HEADROOM_GPU), ram_budget, shared)
