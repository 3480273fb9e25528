"""Measured memory of one process: resident RAM (psutil) and GPU memory (NVML, per process).

NVML's per-process figure is the only per-model GPU number that is honest on every NVIDIA
machine, including unified-memory ones where device totals are not supported. Where there is
no NVIDIA driver (or no GPU use), the GPU figure is ``None``.
"""

from __future__ import annotations

import contextlib

import psutil


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (0 when the process is gone)."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def gpu_bytes(pid: int) -> int | None:
    """GPU memory NVML attributes to ``pid`` over all GPUs; ``None`` where NVML is unavailable.

    0 means NVML works and the process holds no GPU memory.
    """
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver / library: NVMLError and OSError subclasses vary by platform
        return None
    try:
        total = 0
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            procs = []
            for query in (
                pynvml.nvmlDeviceGetComputeRunningProcesses,
                pynvml.nvmlDeviceGetGraphicsRunningProcesses,
            ):
                with contextlib.suppress(pynvml.NVMLError):
                    procs.extend(query(handle))
            for p in procs:
                if p.pid == pid and p.usedGpuMemory is not None:
                    total += int(p.usedGpuMemory)
        return total
    except pynvml.NVMLError:
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
