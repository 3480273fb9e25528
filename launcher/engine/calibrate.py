"""Feeding measured loads and replies to the calibration store (``launcher.calibration``).

Each ``Loaded`` (buffer sizes, memory, load time) and each ``ReplyFinished`` long enough to
mean something (decode and prefill speed) becomes one ``CalibrationStore.record`` call keyed by
machine and model, with the settings that matter for comparing runs. When the load came from a
``MemoryPlan``, its ``calibration_settings()`` (with the estimated speeds) are stored as well, so
later estimates on this machine become ``calibrated``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from launcher.engine.events import Loaded, ReplyFinished

#: Replies shorter than this say little about decode speed; not recorded.
MIN_DECODE_TOKENS = 8
#: Prompts shorter than this say little about prefill speed.
MIN_PREFILL_TOKENS = 32


@lru_cache(maxsize=64)
def model_key(path: str) -> str:
    """The estimator's key for a model file (``ModelSummary.key``), or the file name and size."""
    try:
        from launcher.estimate import ModelSummary
        from launcher.gguf.reader import read_model

        return ModelSummary.from_header(read_model(path)).key
    except Exception:  # unreadable header: still record under a stable key
        import os

        return f"{os.path.basename(path)}|{os.path.getsize(path) if os.path.exists(path) else 0}"


@lru_cache(maxsize=1)
def this_machine_key() -> str:
    """The calibration key of this machine (probing it once per process)."""
    from launcher.calibration import machine_key
    from launcher.hardware import probe

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
) -> bool:
    """Record one measurement; returns whether anything was recorded."""
    measured = measured_for(what, result)
    if not measured:
        return False
    store.record(
        machine or this_machine_key(), model_key(loaded.path), settings_for(loaded, plan), measured
    )
    return True
