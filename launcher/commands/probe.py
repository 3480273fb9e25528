"""``spark-launcher probe [--json] [--replay FILE]``: what this machine is, as the planner sees it.

The JSON is ``MachineProfile.to_json()``: save it to a file and pass it to any command with
``--machine FILE``. ``--replay`` reads recorded readings (``python -m
launcher.hardware.record`` writes them) instead of this machine.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from launcher.hardware import MachineProfile, probe
from launcher.hardware.adapters import ReplayAdapters

GIB = 1 << 30


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "probe",
        help="show this machine's CPU, GPUs, memory pools and llama.cpp backend",
        description=__doc__,
    )
    p.add_argument("--json", action="store_true", help="print the machine profile as JSON")
    p.add_argument("--replay", metavar="FILE", help="probe recorded readings instead")
    p.set_defaults(func=handler)


def _gib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / GIB:.1f} GiB"


def describe(p: MachineProfile) -> str:
    """The profile as a few lines of text for people."""
    arch = p.process_arch if not p.emulation else f"{p.process_arch}, emulated ({p.emulation})"
    lines = [
        f"Machine:   {p.os} {p.os_version} on {p.cpu_arch}".rstrip(),
        f"CPU:       {p.cpu_model} ({p.cpu_cores} cores, {p.cpu_threads} threads)",
        f"Python:    {arch}",
        f"RAM:       {_gib(p.ram_total)} total, {_gib(p.ram_available)} available",
        f"llama.cpp: {p.backend.upper()} build" + ("" if p.gpu_offload else " (no GPU offload)"),
    ]
    if p.gpus:
        lines.append("GPUs:")
        for g in p.gpus:
            # On unified devices NVML under-reports (carve-out) or fails; llama.cpp's figure is
            # what the GPU can use.
            if g.unified:
                mem = g.ggml_memory_total or g.memory_total
            else:
                mem = g.memory_total or g.ggml_memory_total
            kind = "unified memory" if g.unified else "discrete"
            extra = [f"{_gib(mem)}" if mem else "memory not reported", kind]
            if g.compute_capability:
                extra.append(f"compute {g.compute_capability}")
            if g.driver:
                extra.append(f"driver {g.driver}")
            lines.append(f"  {g.index}: {g.name} ({', '.join(extra)})")
    else:
        lines.append("GPUs:      none found")
    lines.append("Memory pools:")
    for pool in p.pools:
        usable = f", GPU may use {_gib(pool.gpu_usable)}" if pool.kind == "unified" else ""
        lines.append(
            f"  {pool.name}: {_gib(pool.total)} total, {_gib(pool.available)} available"
            f"{usable} [{pool.device or 'not usable by llama.cpp'}]"
        )
        lines += [f"    note: {n}" for n in pool.notes]
    if p.unknowns:
        lines.append("Unknown:")
        lines += [f"  {k}: {v}" for k, v in p.unknowns.items()]
    return "\n".join(lines)


def handler(args: argparse.Namespace) -> int:
    profile = probe(ReplayAdapters.from_file(args.replay) if args.replay else None)
    if args.json:
        print(json.dumps(profile.to_json(), indent=2))
    else:
        print(describe(profile))
    return 0
