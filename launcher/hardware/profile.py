"""The machine profile: the plain data every other part plans against.

A profile comes from ``probe()`` on this machine, from a reference machine in
``resources/machines/``, from a ``probe --json`` file, or from an inline spec such as
``unified=128GiB``. Its JSON form (``to_json``/``from_json``) is the machine format every
command accepts with ``--machine``. Sizes are bytes; ``None`` means unknown, and
``unknowns`` says why.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

PoolKind = Literal["vram", "unified", "ram"]


@dataclass(frozen=True)
class GPUInfo:
    """One GPU as the driver (NVML, Metal) and ggml report it."""

    index: int
    name: str
    vendor: str  # "nvidia", "apple", "amd", "intel", "other"
    unified: bool  # integrated / shares system memory (GB10, N1X, Apple)
    memory_total: int | None = None  # driver-reported (NVML); None: not supported / unknown
    memory_free: int | None = None
    ggml_memory_total: int | None = None  # what the llama.cpp backend sees (CUDA / Metal)
    ggml_memory_free: int | None = None
    compute_capability: str | None = None  # "9.0", "12.1"
    driver: str | None = None
    bandwidth_gbps: float | None = None  # peak memory bandwidth, GB/s, when known
    nvml_index: int | None = None  # NVML device index, when NVML knows this GPU


@dataclass(frozen=True)
class MemoryPool:
    """A pool of memory a model can be placed in, as a user should see it."""

    name: str  # "VRAM: NVIDIA GeForce RTX 4090", "Unified memory", "System RAM"
    kind: PoolKind
    total: int
    available: int | None
    gpu_usable: int | None = None  # how much of it the GPU backend may use (unified / VRAM)
    device: str | None = None  # llama.cpp device name: "CUDA0", "Metal", "CPU"
    bandwidth_gbps: float | None = None
    notes: tuple[str, ...] = ()
    gpu_index: int | None = None  # index into MachineProfile.gpus of the GPU using this pool


@dataclass(frozen=True)
class MachineProfile:
    """Everything the planner and the gauge need to know about a machine."""

    os: str  # "Linux", "Windows", "Darwin"
    cpu_model: str
    cpu_cores: int  # physical
    cpu_threads: int  # logical
    cpu_arch: str  # native: "x86_64", "arm64"
    process_arch: str  # this Python's: differs under emulation
    ram_total: int
    ram_available: int | None
    pools: tuple[MemoryPool, ...]
    gpus: tuple[GPUInfo, ...] = ()
    backend: str = "cpu"  # what the installed llama.cpp was built with: "cuda", "metal", "cpu"
    gpu_offload: bool = False  # llama_supports_gpu_offload()
    emulation: str | None = None  # "prism" / "rosetta" when the process runs emulated
    os_version: str = ""
    name: str | None = None  # reference machine name, or None for a probed one
    unknowns: dict[str, str] = field(default_factory=dict)  # field -> reason
    #: llama.cpp's own report (``llama_print_system_info()``), the instruction sets its CPU
    #: backend uses (``cpufeatures.REPORTED``), and why extra buffer types are off, if they are.
    system_info: str = ""
    cpu_features: tuple[str, ...] = ()
    amx_risk: str | None = None

    @property
    def unified(self) -> bool:
        return any(p.kind == "unified" for p in self.pools)

    @property
    def gpu_pools(self) -> tuple[MemoryPool, ...]:
        """Pools a GPU backend can place layers in (VRAM, or unified when GPU-capable)."""
        return tuple(
            p
            for p in self.pools
            if p.kind == "vram" or (p.kind == "unified" and p.device not in (None, "CPU"))
        )

    @property
    def ram_pool(self) -> MemoryPool | None:
        """The pool that holds CPU-side weights (system RAM, or the unified pool)."""
        for kind in ("ram", "unified"):
            for p in self.pools:
                if p.kind == kind:
                    return p
        return None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MachineProfile:
        d = dict(data)
        d["pools"] = tuple(
            MemoryPool(**{**p, "notes": tuple(p.get("notes", ()))}) for p in d.get("pools", ())
        )
        d["gpus"] = tuple(GPUInfo(**g) for g in d.get("gpus", ()))
        d["cpu_features"] = tuple(d.get("cpu_features", ()))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
