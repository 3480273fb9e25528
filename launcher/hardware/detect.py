"""``probe()``: turn the machine's readings into a ``MachineProfile`` with the right pools.

The rules per machine class (sources in the project's reference notes):

- discrete NVIDIA: one VRAM pool per GPU (NVML figures; ggml's when NVML is missing) plus a
  system RAM pool;
- DGX Spark / GB10 and other integrated GPUs on Linux: one unified pool, total MemTotal and
  available MemAvailable (NVML memory queries return NOT_SUPPORTED there, and cudaMemGetInfo
  counts page cache as used);
- RTX Spark / N1X on Windows: one unified pool sized by the CUDA/ggml figure (NVML reports
  only the dedicated carve-out);
- Apple Silicon: one unified pool, with the Metal working-set limit as the GPU-usable part;
- CPU only: system RAM.

"Unified" is decided from the device being integrated (ggml device type ``igpu``, or a known
integrated device name), never from a failed NVML query alone: an RTX 5090 was once
misclassified that way. Anything that cannot be read is left unknown, with the reason in
``profile.unknowns``; the probe itself never raises for a missing or odd source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from launcher.hardware.adapters import (
    NVML_ERROR_NOT_SUPPORTED,
    AdapterError,
    Adapters,
    live_adapters,
)
from launcher.hardware.cpufeatures import amx_risk, llama_cpu_features
from launcher.hardware.profile import GPUInfo, MachineProfile, MemoryPool

GIB = 1 << 30

# Integrated GPUs that share system memory, by a fragment of the device name. Used with the
# ggml device type (``igpu``), which is authoritative where the backend could be asked.
INTEGRATED_NAME_HINTS = ("gb10", "n1x", "rtx spark", "thor", "orin", "tegra", "xavier", "apple m")

# Peak memory bandwidth (GB/s) of common devices, for the speed estimate. NVML reports bus
# width and clock but not the data-rate multiplier of GDDR6X/GDDR7/LPDDR5X, so a small table
# of published figures is more reliable than computing it.
KNOWN_BANDWIDTH_GBPS = {
    "gb10": 273.0,
    "rtx 5090": 1792.0,
    "rtx 4090": 1008.0,
    "rtx 4080": 716.8,
    "rtx 3090": 936.2,
    "h100 80gb hbm3": 3350.0,
    "h200": 4800.0,
    "apple m3 max": 400.0,
    "apple m4 max": 546.0,
    "apple m2 ultra": 800.0,
}


@dataclass
class _Readings:
    system: dict[str, Any]
    meminfo: dict[str, int] | None
    vm: dict[str, int] | None
    nvml: dict[str, Any] | None
    backend: dict[str, Any] | None


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as bytes per key; lines that do not parse are skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_()]+):\s+(\d+)\s*(kB)?\s*$", line)
        if not m:
            continue
        value = int(m.group(2))
        out[m.group(1)] = value * 1024 if m.group(3) else value
    return out


def bandwidth_for(name: str) -> float | None:
    low = name.lower()
    for key, gbps in KNOWN_BANDWIDTH_GBPS.items():
        if key in low:
            return gbps
    return None


def is_integrated_name(name: str) -> bool:
    low = name.lower()
    return any(h in low for h in INTEGRATED_NAME_HINTS)


def _read(source: Any, key: str, unknowns: dict[str, str]) -> Any:
    try:
        return source.read()
    except AdapterError as exc:
        unknowns[key] = str(exc)
    except Exception as exc:  # a broken adapter must never take the app down
        unknowns[key] = f"{key} could not be read ({type(exc).__name__}: {exc})"
    return None


def _gib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / GIB:.1f} GiB"


def probe(adapters: Adapters | None = None) -> MachineProfile:
    """Read this machine (or the given adapters, e.g. a replay) into a MachineProfile."""
    own = adapters is None
    ad = adapters or live_adapters()
    try:
        return _probe(ad)
    finally:
        if own:
            ad.close()


def _probe(ad: Adapters) -> MachineProfile:
    unknowns: dict[str, str] = {}
    system = _read(ad.system, "system", unknowns) or {}
    meminfo_text = _read(ad.meminfo, "meminfo", unknowns) if system.get("os") == "Linux" else None
    meminfo = parse_meminfo(meminfo_text) if isinstance(meminfo_text, str) else None
    r = _Readings(
        system=system,
        meminfo=meminfo,
        vm=_read(ad.virtual_memory, "virtual_memory", unknowns),
        nvml=_read(ad.nvml, "nvml", unknowns),
        backend=_read(ad.backend, "backend", unknowns),
    )
    ram_total, ram_available = _ram(r, unknowns)
    gpus, ggml_by_gpu = _gpus(r, unknowns)
    offload = bool(r.backend and r.backend.get("supports_gpu_offload"))
    pools = _pools(r, gpus, ggml_by_gpu, ram_total, ram_available, offload, unknowns)
    if not system:
        unknowns.setdefault("system", "the OS and CPU could not be read")
    system_info = str((r.backend or {}).get("system_info", ""))
    flags = system.get("cpu_flags")  # None where the OS does not list them
    return MachineProfile(
        os=str(system.get("os") or "unknown"),
        os_version=str(system.get("os_version") or ""),
        cpu_model=str(system.get("cpu_model") or "unknown CPU"),
        cpu_cores=int(system.get("cpu_cores") or system.get("cpu_threads") or 1),
        cpu_threads=int(system.get("cpu_threads") or system.get("cpu_cores") or 1),
        cpu_arch=str(system.get("cpu_arch") or "unknown"),
        process_arch=str(system.get("process_arch") or "unknown"),
        emulation=system.get("emulation"),
        ram_total=ram_total or 0,
        ram_available=ram_available,
        pools=tuple(pools),
        gpus=tuple(gpus),
        backend=_backend_name(r.backend, unknowns),
        gpu_offload=offload,
        unknowns=unknowns,
        system_info=system_info,
        cpu_features=llama_cpu_features(system_info),
        amx_risk=amx_risk(system_info, flags if isinstance(flags, list) else None),
    )


def _ram(r: _Readings, unknowns: dict[str, str]) -> tuple[int | None, int | None]:
    """System RAM (total, available): /proc/meminfo on Linux, else psutil."""
    vm = r.vm or {}
    if r.meminfo is not None:
        total = r.meminfo.get("MemTotal")
        avail = r.meminfo.get("MemAvailable")
        if total and avail is not None and 0 <= avail <= total:
            return total, avail
        if total:
            unknowns["meminfo.MemAvailable"] = (
                "/proc/meminfo has no usable MemAvailable; using psutil's estimate"
            )
            return total, _plausible(vm.get("available"), total)
        unknowns["meminfo"] = "/proc/meminfo has no MemTotal line; using psutil"
    total = vm.get("total") or None
    if not total:
        unknowns["ram_total"] = "neither /proc/meminfo nor psutil gave the RAM size"
        return None, None
    return total, _plausible(vm.get("available"), total)


def _plausible(value: int | None, total: int) -> int | None:
    return value if value is not None and 0 <= value <= total else None


def _gpus(
    r: _Readings, unknowns: dict[str, str]
) -> tuple[list[GPUInfo], dict[int, dict[str, Any]]]:
    """GPUs from NVML and ggml, matched by name (then by order); their ggml device by index."""
    system = r.system
    nv_devs = [d for d in (r.nvml or {}).get("devices", []) if d.get("name")]
    driver = (r.nvml or {}).get("driver")
    ggml_gpus = [
        d for d in (r.backend or {}).get("devices", []) if d.get("type") in ("gpu", "igpu")
    ]
    if r.backend and r.backend.get("devices_error"):
        unknowns["ggml"] = str(r.backend["devices_error"])
    unmatched = list(ggml_gpus)
    gpus: list[GPUInfo] = []
    ggml_by_gpu: dict[int, dict[str, Any]] = {}

    def take_ggml(name: str) -> dict[str, Any] | None:
        for g in unmatched:
            if g.get("description", "").strip().lower() == name.strip().lower():
                unmatched.remove(g)
                return g
        for g in unmatched:  # CUDA devices without a name match: take them in order
            if g.get("name", "").upper().startswith("CUDA"):
                unmatched.remove(g)
                return g
        return None

    for d in nv_devs:
        name = str(d["name"])
        g = take_ggml(name)
        mem = d.get("memory") or {}
        mem_ok = "total" in mem and not mem.get("error") and mem.get("total", 0) > 0
        if not mem_ok:
            code = mem.get("code")
            why = "NOT_SUPPORTED" if code == NVML_ERROR_NOT_SUPPORTED else mem.get("error")
            unknowns[f"gpu{d['index']}.memory"] = (
                f"NVML gives no memory figures for {name} ({why or 'no value'})"
            )
        integrated = (g is not None and g.get("type") == "igpu") or is_integrated_name(name)
        info = GPUInfo(
            index=len(gpus),
            name=name,
            vendor="nvidia",
            unified=integrated,
            memory_total=int(mem["total"]) if mem_ok else None,
            memory_free=int(mem["free"]) if mem_ok and "free" in mem else None,
            ggml_memory_total=g.get("memory_total") or None if g else None,
            ggml_memory_free=g.get("memory_free") or None if g else None,
            compute_capability=d.get("compute_capability"),
            driver=driver,
            bandwidth_gbps=bandwidth_for(name),
            nvml_index=int(d["index"]),
        )
        if g is not None:
            ggml_by_gpu[info.index] = g
        gpus.append(info)

    for g in unmatched:  # devices only ggml sees: NVML missing, Metal, Vulkan ...
        desc = str(g.get("description") or g.get("name") or "GPU")
        dev_name = str(g.get("name", ""))
        vendor = _vendor(desc, dev_name)
        integrated = g.get("type") == "igpu" or is_integrated_name(desc) or vendor == "apple"
        info = GPUInfo(
            index=len(gpus),
            name=desc,
            vendor=vendor,
            unified=integrated,
            ggml_memory_total=g.get("memory_total") or None,
            ggml_memory_free=g.get("memory_free") or None,
            bandwidth_gbps=bandwidth_for(desc),
        )
        ggml_by_gpu[info.index] = g
        gpus.append(info)

    # Apple Silicon always has its GPU, even when llama.cpp here is a CPU build or the
    # backend query failed: name it after the chip.
    if (
        not gpus
        and system.get("os") == "Darwin"
        and "arm64" in (system.get("cpu_arch"), system.get("process_arch"))
    ):
        chip = str(system.get("cpu_model") or "Apple Silicon")
        gpus.append(
            GPUInfo(
                index=0, name=chip, vendor="apple", unified=True, bandwidth_gbps=bandwidth_for(chip)
            )
        )
    return gpus, ggml_by_gpu


def _vendor(description: str, dev_name: str) -> str:
    low = f"{description} {dev_name}".lower()
    if "nvidia" in low or dev_name.upper().startswith("CUDA"):
        return "nvidia"
    if any(h in low for h in ("gb10", "n1x", "thor", "orin", "tegra")):
        return "nvidia"
    if "apple" in low or "metal" in low or dev_name.upper().startswith("MTL"):
        return "apple"
    if any(h in low for h in ("amd", "radeon", "rocm")):
        return "amd"
    if "intel" in low:
        return "intel"
    return "other"


def _pools(
    r: _Readings,
    gpus: list[GPUInfo],
    ggml_by_gpu: dict[int, dict[str, Any]],
    ram_total: int | None,
    ram_available: int | None,
    offload: bool,
    unknowns: dict[str, str],
) -> list[MemoryPool]:
    os_name = r.system.get("os")
    pools: list[MemoryPool] = []
    unified = [g for g in gpus if g.unified]
    for g in gpus:
        if g.unified:
            continue
        gg = ggml_by_gpu.get(g.index)
        total = g.memory_total or g.ggml_memory_total
        if not total:
            unknowns[f"gpu{g.index}.pool"] = (
                f"no memory size for {g.name}: NVML and the llama.cpp device query both failed"
            )
            continue
        notes: list[str] = []
        if not g.memory_total:
            notes.append("sized by llama.cpp (NVML unavailable)")
        if not offload:
            notes.append("this llama.cpp build cannot use the GPU")
        pools.append(
            MemoryPool(
                name=f"VRAM: {g.name}",
                kind="vram",
                total=int(total),
                available=g.memory_free if g.memory_total else g.ggml_memory_free,
                gpu_usable=g.ggml_memory_total or int(total),
                device=str(gg["name"]) if gg and offload else None,
                bandwidth_gbps=g.bandwidth_gbps,
                notes=tuple(notes),
                gpu_index=g.index,
            )
        )

    if unified:
        g = unified[0]
        gg = ggml_by_gpu.get(g.index)
        notes = []
        total, available = ram_total, ram_available
        gpu_usable = g.ggml_memory_total
        if os_name == "Windows" and g.ggml_memory_total:
            # RTX Spark: NVML reports only the dedicated carve-out; CUDA/ggml report what the
            # GPU can really use (carve-out plus the shared part of system memory).
            total = g.ggml_memory_total
            avail_gpu = g.ggml_memory_free
            available = min(x for x in (avail_gpu, ram_available, total) if x is not None)
            if g.memory_total and g.memory_total < total:
                notes.append(
                    f"NVML reports only the {_gib(g.memory_total)} dedicated carve-out; "
                    f"the GPU can use {_gib(total)} of {_gib(ram_total)} system memory"
                )
        elif os_name == "Windows":
            unknowns["unified.gpu_usable"] = (
                "the llama.cpp device query failed, so the GPU's share of memory is unknown; "
                "NVML reports only the dedicated carve-out on this device"
            )
        elif os_name == "Darwin" and gpu_usable:
            notes.append(f"Metal lets the GPU use up to {_gib(gpu_usable)} (working-set limit)")
        elif g.vendor == "nvidia" and not g.memory_total:
            notes.append("NVML reports no memory figures here; sized from the OS (MemAvailable)")
        if total is None:
            unknowns["unified.total"] = "the size of unified memory could not be read"
        else:
            device = str(gg["name"]) if gg and offload else "CPU"
            pools.insert(
                0,
                MemoryPool(
                    name="Unified memory",
                    kind="unified",
                    total=int(total),
                    available=available,
                    gpu_usable=gpu_usable if gpu_usable else (total if offload else None),
                    device=device,
                    bandwidth_gbps=g.bandwidth_gbps,
                    notes=tuple(notes),
                    gpu_index=g.index,
                ),
            )
        return pools

    if ram_total:
        pools.append(
            MemoryPool(
                name="System RAM",
                kind="ram",
                total=ram_total,
                available=ram_available,
                device="CPU",
            )
        )
    return pools


def _backend_name(backend: dict[str, Any] | None, unknowns: dict[str, str]) -> str:
    """ "cuda", "metal", "vulkan", "rocm", "sycl" or "cpu", from the devices and system info."""
    if backend is None:
        unknowns.setdefault("backend", "the llama.cpp backend could not be asked")
        return "cpu"
    names = " ".join(
        str(d.get("name", "")) for d in backend.get("devices", []) if d.get("type") != "cpu"
    ).upper()
    info = str(backend.get("system_info", "")).upper()
    for key, label in (
        ("CUDA", "cuda"),
        ("METAL", "metal"),
        ("ROCM", "rocm"),
        ("HIP", "rocm"),
        ("VULKAN", "vulkan"),
        ("SYCL", "sycl"),
    ):
        if key in names or re.search(rf"\b{key}\s*:", info):
            return label
    return "cpu"
