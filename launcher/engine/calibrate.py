"""Feeding measured loads and replies to the calibration store (``launcher.planning.calibration``).

Each ``Loaded`` (buffer sizes, memory, load time) and each ``ReplyFinished`` long enough to
mean something (decode and prefill speed) becomes one ``CalibrationStore.record`` call keyed by
machine and model, with the settings that matter for comparing runs. When the load came from a
``MemoryPlan``, its ``calibration_settings()`` (with the estimated speeds) are stored as well, so
later estimates on this machine become ``calibrated``.

A reply is also recorded with the machine's load while it ran (:func:`cpu_mark` at its start,
:func:`conditions_since` at its end): the share of all CPU time that processes other than the
app and its model host used. The store discounts runs measured under contention, so a chat
during a build does not rewrite every estimate.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import psutil

from launcher.engine.events import Loaded, ReplyFinished

#: Replies shorter than this say little about decode speed; not recorded.
MIN_DECODE_TOKENS = 8
#: Prompts shorter than this say little about prefill speed.
MIN_PREFILL_TOKENS = 32
#: Runs shorter than this are too short for CPU-time counters (10 ms ticks) to say much.
MIN_CONDITIONS_S = 0.2


@dataclass(frozen=True)
class CpuMark:
    """CPU-time counters at the start of a run (see :func:`conditions_since`)."""

    at: float  # time.monotonic()
    busy_s: float  # non-idle CPU time of the whole machine, all CPUs
    ours_s: float  # CPU time of the processes that are the run itself
    pids: tuple[int, ...]


def _busy_s() -> float:
    t = psutil.cpu_times()
    # guest time is already counted in user/nice; idle and iowait are not work
    idle = sum(getattr(t, k, 0.0) for k in ("idle", "iowait", "guest", "guest_nice"))
    return float(sum(t)) - idle


def _cpu_s(pids: tuple[int, ...]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except (psutil.Error, OSError):
            continue  # the host ended: its time is simply not subtracted
        total += t.user + t.system
    return total


def cpu_mark(*pids: int | None) -> CpuMark | None:
    """Counters at the start of a run whose own CPU use is this process and ``pids`` (the
    model host); ``None`` when the counters cannot be read."""
    own = tuple(dict.fromkeys(p for p in (os.getpid(), *pids) if p))
    try:
        return CpuMark(time.monotonic(), _busy_s(), _cpu_s(own), own)
    except (psutil.Error, OSError, AttributeError):
        return None


def conditions_since(mark: CpuMark | None) -> dict[str, float]:
    """The machine's load since ``mark``: ``other_cpu_share`` (0-1 of all CPU time used by
    other processes), ``cpu_count``, ``load_avg_1m``; empty when unknown or too short."""
    if mark is None:
        return {}
    wall = time.monotonic() - mark.at
    if wall < MIN_CONDITIONS_S:
        return {}
    try:
        busy = _busy_s() - mark.busy_s
        ours = _cpu_s(mark.pids) - mark.ours_s
    except (psutil.Error, OSError, AttributeError):
        return {}
    n = psutil.cpu_count() or 1
    out = {"other_cpu_share": round(min(1.0, max(0.0, busy - ours) / (wall * n)), 3)}
    out["cpu_count"] = float(n)
    try:
        out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # not on Windows
        pass
    return out


@lru_cache(maxsize=64)
def model_key(path: str) -> str:
    """The estimator's key for a model file (``ModelSummary.key``), or the file name and size."""
    try:
        from launcher.gguf.reader import read_model
        from launcher.planning import ModelSummary

        return ModelSummary.from_header(read_model(path)).key
    except Exception:  # unreadable header: still record under a stable key
        import os

        return f"{os.path.basename(path)}|{os.path.getsize(path) if os.path.exists(path) else 0}"


@lru_cache(maxsize=1)
def this_machine_key() -> str:
    """The calibration key of this machine (probing it once per process)."""
    from launcher.hardware import probe
    from launcher.planning.calibration import machine_key

    return machine_key(probe())


def settings_for(loaded: Loaded, plan: Any = None) -> dict[str, Any]:
    """What a run is compared on: the plan's settings when there was one, else the params."""
    if plan is not None and callable(getattr(plan, "calibration_settings", None)):
        return dict(plan.calibration_settings())
    p = loaded.params
    return {
        "ctx": loaded.n_ctx,
        "kv_type": p.type_k,
        "flash_attn": bool(p.flash_attn),
        "gpu_layers": p.n_gpu_layers,
        "n_ubatch": p.n_ubatch,
    }


def measured_for(what: str, result: Loaded | ReplyFinished) -> dict[str, float]:
    """The numbers worth keeping from a load or a reply (empty: nothing to record)."""
    if isinstance(result, Loaded):
        out: dict[str, float] = {
            "load_s": result.load_s,
            "rss_bytes": result.rss_bytes,
            "model_bytes": result.buffer_total("model"),
            "kv_bytes": result.buffer_total("kv"),
            "compute_bytes": result.buffer_total("compute"),
        }
        if result.gpu_bytes is not None:
            out["gpu_bytes"] = result.gpu_bytes
        return out
    m = result.metrics
    out = {}
    if m.generated_tokens >= MIN_DECODE_TOKENS and m.decode_tokens_per_s > 0:
        out["decode_tokens_per_s"] = m.decode_tokens_per_s
    if m.prompt_tokens >= MIN_PREFILL_TOKENS and m.prefill_tokens_per_s > 0:
        out["prefill_tokens_per_s"] = m.prefill_tokens_per_s
    return out


def record(
    store: Any,
    machine: str | None,
    loaded: Loaded,
    what: str,
    result: Loaded | ReplyFinished,
    plan: Any = None,
    conditions: dict[str, float] | None = None,
) -> bool:
    """Record one measurement; returns whether anything was recorded. ``conditions``: the
    machine's load during the run (:func:`conditions_since`), stored with it when given."""
    measured = measured_for(what, result)
    if not measured:
        return False
    key = machine or this_machine_key()
    settings = settings_for(loaded, plan)
    if conditions:
        store.record(key, model_key(loaded.path), settings, measured, conditions=conditions)
    else:
        store.record(key, model_key(loaded.path), settings, measured)
    return True
