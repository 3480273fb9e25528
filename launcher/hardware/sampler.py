"""``MemorySampler``: live memory snapshots for the gauge, per pool, per loaded model.

Each snapshot splits every pool of the ``MachineProfile`` into segments that add up to its
total: one per tracked model process (by PID, labelled), ``other`` (everything else in use),
``reclaimable`` (page cache the OS will give back, where it reports it) and ``free``.

Where the numbers come from:

- RAM and unified pools: ``/proc/meminfo`` on Linux (MemTotal, MemAvailable, MemFree),
  psutil elsewhere; a model's share is its resident set, plus its NVML per-process GPU
  memory on a unified pool (GB10 allocations are not in the RSS). File-backed pages of a
  model (an mmap-ed GGUF) are also in the page cache, so they are taken out of
  ``reclaimable`` rather than counted twice.
- VRAM pools: NVML total/free and per-process GPU memory.

A sample costs a few file reads and NVML calls (well under 1 ms; see ``bench/probe.py``),
so sampling at 1 Hz is negligible. Plain dataclasses, no Qt: the UI wraps it in a worker.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from launcher.hardware.adapters import (
    AdapterError,
    Adapters,
    MeminfoSource,
    NvmlSource,
    ProcessSource,
    VirtualMemorySource,
)
from launcher.hardware.detect import parse_meminfo
from launcher.hardware.profile import MachineProfile, MemoryPool, PoolKind


@dataclass(frozen=True)
class PoolSnapshot:
    """One pool at one instant. ``sum(models) + other + reclaimable + free == total``
    (up to rounding when the OS figures disagree with each other)."""

    name: str
    kind: PoolKind
    total: int
    available: int
    free: int
    reclaimable: int
    other: int
    models: dict[str, int] = field(default_factory=dict)  # label -> bytes held
    gpu_held: int | None = None  # all processes' GPU memory on this pool's GPU (NVML)

    @property
    def used(self) -> int:
        return self.total - self.available


@dataclass(frozen=True)
class MemorySnapshot:
    """All pools at one instant (``taken_at`` is ``time.time()``)."""

    taken_at: float
    pools: tuple[PoolSnapshot, ...]
    unknowns: dict[str, str] = field(default_factory=dict)

    def pool(self, name: str) -> PoolSnapshot | None:
        return next((p for p in self.pools if p.name == name), None)


@dataclass
class _Host:
    total: int
    available: int
    free: int


class MemorySampler:
    """Takes ``MemorySnapshot``s of a machine's pools; thread-safe ``track``/``untrack``.

    ``adapters`` defaults to live sources (NVML only when the profile has an NVIDIA GPU);
    tests pass :class:`~launcher.hardware.adapters.ReplayAdapters`.
    """

    def __init__(self, profile: MachineProfile, adapters: Adapters | None = None) -> None:
        self.profile = profile
        self._own = adapters is None
        if adapters is None:
            adapters = Adapters(
                system=_NoSource(),
                meminfo=MeminfoSource(),
                virtual_memory=VirtualMemorySource(),
                nvml=NvmlSource(),
                backend=_NoSource(),
                processes=ProcessSource(),
            )
        self._ad = adapters
        self._use_meminfo = profile.os == "Linux"
        self._use_nvml = any(g.nvml_index is not None for g in profile.gpus)
        self._lock = threading.Lock()
        self._tracked: dict[int, str] = {}

    def track(self, pid: int, label: str) -> None:
        """Attribute ``pid``'s memory to the model named ``label`` from now on."""
        with self._lock:
            self._tracked[pid] = label

    def untrack(self, pid: int) -> None:
        with self._lock:
            self._tracked.pop(pid, None)

    @property
    def tracked(self) -> dict[int, str]:
        with self._lock:
            return dict(self._tracked)

    def close(self) -> None:
        """Release NVML (only when this sampler opened it)."""
        if self._own:
            self._ad.close()

    # ------------------------------------------------------------------ sampling

    def sample(self) -> MemorySnapshot:
        """Read the machine now; never raises for a missing source (see ``unknowns``)."""
        unknowns: dict[str, str] = {}
        tracked = self.tracked
        host = self._host(unknowns)
        nvml = self._nvml(unknowns)
        procs: dict[int, dict[str, int]] = {}
        for pid in tracked:
            try:
                procs[pid] = self._ad.processes.memory(pid)
            except AdapterError:
                continue  # the model's process has ended: it drops out of the gauge
        pools = []
        for pool in self.profile.pools:
            if pool.kind == "vram":
                pools.append(self._vram(pool, tracked, nvml))
            else:
                pools.append(self._host_pool(pool, host, tracked, procs, nvml))
        return MemorySnapshot(taken_at=time.time(), pools=tuple(pools), unknowns=unknowns)

    def _host(self, unknowns: dict[str, str]) -> _Host | None:
        if self._use_meminfo:
            try:
                m = parse_meminfo(self._ad.meminfo.read())
                if "MemTotal" in m and "MemAvailable" in m and "MemFree" in m:
                    return _Host(m["MemTotal"], m["MemAvailable"], m["MemFree"])
                unknowns["meminfo"] = "/proc/meminfo lacks MemTotal/MemAvailable/MemFree"
            except AdapterError as exc:
                unknowns["meminfo"] = str(exc)
        try:
            vm = self._ad.virtual_memory.read()
        except AdapterError as exc:
            unknowns["virtual_memory"] = str(exc)
            return None
        total = int(vm.get("total", 0))
        available = int(vm.get("available", 0))
        # Windows reports available == free (no separate standby list in psutil).
        free = int(vm.get("free", available))
        return _Host(total, available, min(free, available))

    def _nvml(self, unknowns: dict[str, str]) -> dict[int, dict[str, Any]]:
        if not self._use_nvml:
            return {}
        try:
            return {int(d["index"]): d for d in self._ad.nvml.memory()}
        except AdapterError as exc:
            unknowns["nvml"] = str(exc)
            return {}

    def _gpu_device(self, pool: MemoryPool, nvml: dict[int, dict[str, Any]]) -> dict[str, Any]:
        if pool.gpu_index is None or pool.gpu_index >= len(self.profile.gpus):
            return {}
        idx = self.profile.gpus[pool.gpu_index].nvml_index
        return nvml.get(idx, {}) if idx is not None else {}

    @staticmethod
    def _gpu_by_pid(dev: dict[str, Any]) -> dict[int, int]:
        out: dict[int, int] = {}
        for p in dev.get("processes", []):
            if p.get("used_memory"):
                out[int(p["pid"])] = out.get(int(p["pid"]), 0) + int(p["used_memory"])
        return out

    def _vram(
        self, pool: MemoryPool, tracked: dict[int, str], nvml: dict[int, dict[str, Any]]
    ) -> PoolSnapshot:
        dev = self._gpu_device(pool, nvml)
        mem = dev.get("memory") or {}
        total = int(mem.get("total") or pool.total)
        available = int(mem["free"]) if "free" in mem else (pool.available or 0)
        by_pid = self._gpu_by_pid(dev)
        models = _by_label({pid: by_pid[pid] for pid in tracked if by_pid.get(pid)}, tracked)
        held = sum(models.values())
        return PoolSnapshot(
            name=pool.name,
            kind=pool.kind,
            total=total,
            available=available,
            free=available,
            reclaimable=0,
            other=max(0, total - available - held),
            models=models,
            gpu_held=sum(by_pid.values()) if dev else None,
        )

    def _host_pool(
        self,
        pool: MemoryPool,
        host: _Host | None,
        tracked: dict[int, str],
        procs: dict[int, dict[str, int]],
        nvml: dict[int, dict[str, Any]],
    ) -> PoolSnapshot:
        if host is None:
            avail = pool.available or 0
            host = _Host(pool.total, avail, avail)
        total, available, free = host.total, host.available, host.free
        if pool.total < total:
            # A unified pool smaller than RAM (RTX Spark: the GPU-usable part): scale to it.
            available = min(available, pool.total)
            free = min(free, available)
            total = pool.total
        gpu_by_pid: dict[int, int] = {}
        gpu_held = None
        if pool.kind == "unified":
            dev = self._gpu_device(pool, nvml)
            gpu_by_pid = self._gpu_by_pid(dev)
            gpu_held = sum(gpu_by_pid.values()) if dev else None
        held: dict[int, int] = {}
        anon = file_backed = 0
        for pid in tracked:
            p = procs.get(pid)
            gpu = gpu_by_pid.get(pid, 0)
            if p is None and not gpu:
                continue
            rss = p["rss"] if p else 0
            shared = min(p.get("shared", 0), rss) if p else 0
            held[pid] = rss + gpu
            anon += rss - shared + gpu
            file_backed += shared
        models = _by_label(held, tracked)
        return PoolSnapshot(
            name=pool.name,
            kind=pool.kind,
            total=total,
            available=available,
            free=free,
            reclaimable=max(0, available - free - file_backed),
            other=max(0, total - available - anon),
            models=models,
            gpu_held=gpu_held,
        )


def _by_label(per_pid: dict[int, int], tracked: dict[int, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for pid, n in per_pid.items():
        label = tracked[pid]
        out[label] = out.get(label, 0) + n
    return out


class _NoSource:
    def read(self) -> Any:
        raise AdapterError("not used by the sampler")
