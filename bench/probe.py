"""Hardware probe time and memory-sampler cost, against references measured in the same run.

- Probe: the full ``launcher.hardware.probe()`` including the child process that asks
  llama.cpp/ggml about devices, against a bare Python start-up (``python -c pass``) and the
  child alone.
- Sampler: CPU time per ``MemorySampler.sample()`` with one tracked process, and the share
  of one core it costs at 1 Hz (the target is under 0.5 %), against a bare
  ``psutil.virtual_memory()`` call.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import psutil

from bench.common import median, table, timed

TITLE = "Hardware probe time and memory-sampler cost"


def _cpu_per_call(fn: Callable[[], object], n: int) -> float:
    """Median CPU seconds (this process, user + system) per call over 5 batches of n."""
    batches = []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        batches.append((time.process_time() - t0) / n)
    return median(batches)


def run() -> str:
    from launcher.hardware import MemorySampler, probe
    from launcher.hardware.adapters import BackendSource

    py_start = median(
        timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), repeat=5)
    )
    child = median(timed(lambda: BackendSource().read(), repeat=5))
    full = median(timed(probe, repeat=5))

    profile = probe()
    sampler = MemorySampler(profile)
    sampler.track(os.getpid(), "this benchmark")
    try:
        n = 2000
        sample_cpu = _cpu_per_call(sampler.sample, n)
        vm_cpu = _cpu_per_call(psutil.virtual_memory, n)
        sample_wall = median(timed(sampler.sample, repeat=200, warmup=5))
    finally:
        sampler.close()

    probe_rows = [
        ("python -c pass (reference)", py_start * 1000, 1.0),
        ("llama.cpp/ggml device query (child process)", child * 1000, child / py_start),
        ("probe(), full", full * 1000, full / py_start),
    ]
    sampler_rows = [
        ("psutil.virtual_memory() (reference)", vm_cpu * 1e6, 1.0, vm_cpu * 100),
        (
            "MemorySampler.sample(), 1 tracked process",
            sample_cpu * 1e6,
            sample_cpu / vm_cpu,
            sample_cpu * 100,
        ),
    ]
    return "\n\n".join(
        [
            f"Pools on this machine: {', '.join(p.name for p in profile.pools)}; "
            f"llama.cpp backend: {profile.backend}. Load average during the run: "
            f"{os.getloadavg()[0]:.1f} (wall times grow with it; CPU times much less).",
            "**Probe time** (median of 5, wall clock)\n\n"
            + table(("step", "ms", "× python start-up"), probe_rows),
            "**Sampler cost** (CPU time of this process per call, median of 5 × 2000 calls)\n\n"
            + table(
                ("call", "µs CPU per call", "× reference", "% of one core at 1 Hz"), sampler_rows
            ),
            f"Sampler wall time per sample: {sample_wall * 1e6:.0f} µs (median of 200). "
            f"At 1 Hz the sampler costs {sample_cpu * 100:.3f} % of one core "
            f"(target: under 0.5 %).",
        ]
    )
