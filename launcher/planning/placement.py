"""Placing a model on a machine the way llama.cpp will, and the plan that results.

Blocks go back to front on the GPU, the input embedding stays on the CPU, the output layer
goes to the GPU only with full offload, each layer's KV cache sits next to its layer.
:func:`plan` picks the most GPU layers that fit and returns a :class:`MemoryPlan` whose
``llama_params()`` are exactly what the engine loads with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from launcher.hardware.profile import MachineProfile
from launcher.planning.budget import Budget, budget
from launcher.planning.ggml import kv_type_id
from launcher.planning.memory import CTX_PAD, compute_bytes_estimate, layer_kv_bytes
from launcher.planning.model import ModelSummary
from launcher.planning.speed import device_class, estimate_speed
from launcher.planning.types import DeviceUse, MemoryPlan, Verdict

if TYPE_CHECKING:
    from launcher.planning.calibration import CalibrationStore


def place_layers(
    s: ModelSummary,
    kv_layers: Sequence[int],
    ngl: int,
    output_gpu: bool,
    ctx: int,
    flash_attn: bool,
    n_ubatch: int,
    gpu_name: str | None,
    compute_scale: float = 1.0,
) -> dict[str, DeviceUse]:
    """Memory per device with the last ``ngl`` blocks on the GPU (llama.cpp's placement);
    ``compute_scale`` corrects the compute buffers by what loads here measured."""
    devices = _place_formula(s, kv_layers, ngl, output_gpu, ctx, flash_attn, n_ubatch, gpu_name)
    if compute_scale != 1.0:
        for d in devices.values():
            d.compute = round(d.compute * compute_scale)
    return devices


def _place_formula(
    s: ModelSummary, kv_layers: Sequence[int], ngl: int, output_gpu: bool, ctx: int,
    flash_attn: bool, n_ubatch: int, gpu_name: str | None,
) -> dict[str, DeviceUse]:  # fmt: skip
    cpu = DeviceUse()
    devices = {"CPU": cpu}
    first_gpu = s.n_layers - ngl
    cpu.weights += s.input_bytes
    if gpu_name is None or (ngl <= 0 and not output_gpu):
        cpu.weights += sum(s.layer_bytes) + s.output_bytes
        cpu.kv += sum(kv_layers)
        cpu.compute = compute_bytes_estimate(s, ctx, flash_attn, n_ubatch, "all")
        return devices
    gpu = DeviceUse()
    devices[gpu_name] = gpu
    for il in range(s.n_layers):
        dev = gpu if il >= first_gpu else cpu
        dev.weights += s.layer_bytes[il]
        dev.kv += kv_layers[il]
    if output_gpu:
        gpu.weights += s.output_bytes + (s.tied_output_bytes if s.tied_output else 0)
        gpu.compute = compute_bytes_estimate(s, ctx, flash_attn, n_ubatch, "gpu_full")
        cpu.compute = compute_bytes_estimate(s, ctx, flash_attn, n_ubatch, "cpu_with_gpu")
    else:
        cpu.weights += s.output_bytes
        gpu.compute = compute_bytes_estimate(s, ctx, flash_attn, n_ubatch, "gpu_partial")
        cpu.compute = compute_bytes_estimate(s, ctx, flash_attn, n_ubatch, "all")
    return devices


def gpu_fits_budget(devices: dict[str, DeviceUse], b: Budget) -> bool:
    gpu = devices[b.gpu_name].total if b.gpu_name and b.gpu_name in devices else 0
    return gpu <= b.gpu_budget


def fits_budget(devices: dict[str, DeviceUse], b: Budget) -> bool:
    cpu = devices["CPU"].total
    gpu = devices[b.gpu_name].total if b.gpu_name and b.gpu_name in devices else 0
    if b.shared:  # one physical memory: the GPU share is capped, and the sum must fit
        return gpu <= b.gpu_budget and cpu + gpu <= b.ram_budget
    return gpu <= b.gpu_budget and cpu <= b.ram_budget


def plan(
    summary: ModelSummary,
    machine: MachineProfile,
    ctx: int,
    kv_type: str = "f16",
    flash_attn: bool = True,
    n_ubatch: int = 512,
    gpu_layers: int | None = None,
    calibration: CalibrationStore | None = None,
) -> MemoryPlan:
    """Plan ``summary`` on ``machine`` at context ``ctx`` (formula estimate).

    ``gpu_layers`` forces the number of blocks on the GPU (``None``: as many as fit; a value
    above the block count also puts the output layer there, as llama.cpp's ``-ngl`` does).
    """
    s = summary
    kv_type = kv_type.lower()
    kv_type_id(kv_type)
    ctx = max(1, int(ctx))
    notes: list[str] = []
    if s.context_length and ctx > s.context_length:
        notes.append(f"Context capped at the model's own maximum, {s.context_length} tokens.")
        ctx = s.context_length
    n_ubatch = max(1, int(n_ubatch))
    type_v = kv_type if flash_attn else "f16"
    if not flash_attn and kv_type != "f16":
        notes.append("A quantized V cache needs flash attention; V stays f16.")
    kv_layers = layer_kv_bytes(s, ctx, kv_type, flash_attn, n_ubatch)
    b = budget(machine)
    n = s.n_layers
    scale = 1.0
    if calibration is not None:
        from launcher.planning.calibration import machine_key

        measured = calibration.memory_factor(machine_key(machine), s.key, "compute_bytes")
        if measured is not None and abs(measured - 1.0) > 0.02:
            scale = measured
            notes.append(f"Compute buffers x{scale:.2f}, from loads measured on this machine.")

    def place(ngl: int, out_gpu: bool) -> dict[str, DeviceUse]:
        return place_layers(
            s, kv_layers, ngl, out_gpu, ctx, flash_attn, n_ubatch, b.gpu_name, scale
        )

    if b.gpu_name is None:
        ngl, out_gpu = 0, False
        devices = place(0, False)
        verdict: Verdict = "cpu" if fits_budget(devices, b) else "no_fit"
    elif gpu_layers is not None:
        ngl, out_gpu = max(0, min(gpu_layers, n)), gpu_layers > n
        devices = place(ngl, out_gpu)
        if not fits_budget(devices, b):
            verdict = "no_fit"
        elif out_gpu:
            verdict = "full_gpu"
        else:
            verdict = "partial" if ngl > 0 else "cpu"
    else:
        devices = place(n, True)
        ngl, out_gpu = n, True
        if fits_budget(devices, b):
            verdict = "full_gpu"
        else:
            out_gpu = False
            # The GPU limit caps ngl from above and the RAM limit from below, so take the
            # most layers the GPU side holds (monotone in ngl), then check both sides there.
            lo, hi = 0, n
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if gpu_fits_budget(place(mid, False), b):
                    lo = mid
                else:
                    hi = mid - 1
            ngl = lo
            if ngl > 0:
                devices = place(ngl, False)
            else:  # nothing on the GPU: plan as llama.cpp runs a CPU-only model
                devices = place_layers(
                    s, kv_layers, 0, False, ctx, flash_attn, n_ubatch, None, scale
                )
            fits = fits_budget(devices, b)
            verdict = ("partial" if ngl > 0 else "cpu") if fits else "no_fit"
    for name, d in devices.items():
        d.budget = b.ram_budget if name == "CPU" else b.gpu_budget
    result = MemoryPlan(
        weights_bytes=sum(d.weights for d in devices.values()),
        kv_bytes=sum(d.kv for d in devices.values()),
        compute_bytes=sum(d.compute for d in devices.values()),
        per_device=devices,
        verdict=verdict,
        gpu_layers=ngl,
        total_layers=n,
        max_context_full_gpu=0,
        context=ctx,
        kv_type=kv_type,
        flash_attn=flash_attn,
        n_ubatch=n_ubatch,
        n_batch=max(n_ubatch, 512),
        output_on_gpu=out_gpu,
        use_mmap=not (
            verdict == "full_gpu" and b.shared and device_class(machine) == "nvidia_unified"
        ),
        type_v=type_v,
        notes=notes,
    )
    result.max_context_full_gpu = max_context_full_gpu(
        s, machine, kv_type, flash_attn, n_ubatch, scale
    )
    result.max_context = max_context(s, machine, kv_type, flash_attn, n_ubatch, ngl, out_gpu, scale)
    result.speed = estimate_speed(s, machine, result, calibration=calibration)
    return result


def max_context_full_gpu(
    s: ModelSummary,
    machine: MachineProfile,
    kv_type: str,
    flash_attn: bool,
    n_ubatch: int,
    compute_scale: float = 1.0,
) -> int:
    """The largest context (a multiple of 256, up to the model's own) with full offload."""
    if budget(machine).gpu_name is None:
        return 0
    return max_context(s, machine, kv_type, flash_attn, n_ubatch, s.n_layers, True, compute_scale)


def max_context(
    s: ModelSummary,
    machine: MachineProfile,
    kv_type: str,
    flash_attn: bool,
    n_ubatch: int,
    gpu_layers: int,
    output_on_gpu: bool,
    compute_scale: float = 1.0,
) -> int:
    """The largest context (a multiple of 256, up to the model's own) that fits with this
    placement (0: not even 256 tokens)."""
    b = budget(machine)
    gpu_name = b.gpu_name if (gpu_layers > 0 or output_on_gpu) else None
    limit = s.context_length or 131072

    def fits(c: int) -> bool:
        kv = layer_kv_bytes(s, c, kv_type, flash_attn, n_ubatch)
        return fits_budget(
            place_layers(
                s, kv, gpu_layers, output_on_gpu, c, flash_attn, n_ubatch, gpu_name, compute_scale
            ),
            b,
        )

    if not fits(CTX_PAD):
        return 0
    if fits(limit):
        return limit
    lo, hi = 1, limit // CTX_PAD  # in units of CTX_PAD
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid * CTX_PAD):
            lo = mid
        else:
            hi = mid - 1
    return lo * CTX_PAD
