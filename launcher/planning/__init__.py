"""Planning: will a model fit this machine, where does its memory go, how fast will it run.

Layers inside, each importing only those above it in this list:

- :mod:`~launcher.planning.ggml`: ggml type sizes, the KV cache types;
- :mod:`~launcher.planning.model`: :class:`ModelSummary`, what the planner knows of a model;
- :mod:`~launcher.planning.types`: the results (:class:`MemoryPlan`, :class:`DeviceUse`,
  :class:`SpeedEstimate`);
- :mod:`~launcher.planning.memory`: KV cache and compute-buffer sizes;
- :mod:`~launcher.planning.budget`: the one memory budget of a machine;
- :mod:`~launcher.planning.calibration`: measured runs that correct the estimates;
- :mod:`~launcher.planning.speed`: the speed estimate;
- :mod:`~launcher.planning.placement`: placement and :func:`plan`.

Formulas and sources: ``../shared/reference/memory-and-speed.md``; the dry run that makes a
plan exact lives in :mod:`launcher.dryrun`.
"""

from launcher.planning.budget import (
    HEADROOM_GPU,
    HEADROOM_RAM,
    Budget,
    budget,
    bytes_per_pool,
    pool_capacity,
    pool_for_device,
)
from launcher.planning.calibration import CalibrationStore, machine_key
from launcher.planning.ggml import KV_TYPES, GiB, MiB, kv_type_id, type_row_bytes
from launcher.planning.memory import CTX_PAD, compute_bytes_estimate, kv_cells, layer_kv_bytes
from launcher.planning.model import MAX_LAYERS, ModelSummary
from launcher.planning.placement import max_context, max_context_full_gpu, place_layers, plan
from launcher.planning.speed import bandwidth, device_class, estimate_speed
from launcher.planning.types import Basis, DeviceUse, MemoryPlan, SpeedEstimate, Verdict

__all__ = [
    "CTX_PAD",
    "HEADROOM_GPU",
    "HEADROOM_RAM",
    "KV_TYPES",
    "MAX_LAYERS",
    "Basis",
    "Budget",
    "CalibrationStore",
    "DeviceUse",
    "GiB",
    "MemoryPlan",
    "MiB",
    "ModelSummary",
    "SpeedEstimate",
    "Verdict",
    "bandwidth",
    "budget",
    "bytes_per_pool",
    "compute_bytes_estimate",
    "device_class",
    "estimate_speed",
    "kv_cells",
    "kv_type_id",
    "layer_kv_bytes",
    "machine_key",
    "max_context",
    "max_context_full_gpu",
    "place_layers",
    "plan",
    "pool_capacity",
    "pool_for_device",
    "type_row_bytes",
]  # fmt: skip
