"""Measured runs on this machine, stored to correct later speed estimates.

The engine records, after each load or reply, what it measured (decode and prefill
tokens/s, buffer sizes) with :meth:`CalibrationStore.record`. :func:`launcher.estimate.plan`
takes the store (``calibration=``) and turns an estimate into:

- ``measured``: this model was run on this machine with matching settings: the median of
  those runs is quoted;
- ``calibrated``: other models were run here: the estimate is scaled by the median ratio
  measured / estimated of those runs (the machine's real efficiency).

Loads of a model also record llama.cpp's real buffer sizes; a later plan of the same model
on the same machine scales its compute buffers by the measured / estimated ratio
(:meth:`CalibrationStore.memory_factor`).

The file is JSON written atomically (``AppPaths.calibration_file``); a corrupt file is
treated as empty rather than breaking planning.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.fsutil import atomic_write_json, read_json
from launcher.paths import AppPaths

if TYPE_CHECKING:
    from launcher.estimate import MemoryPlan, SpeedEstimate
    from launcher.hardware.profile import MachineProfile

#: Runs kept per (machine, model); older ones are dropped.
MAX_RUNS_PER_MODEL = 20
#: A measured ratio outside this range is an outlier (a stalled run), not a calibration.
RATIO_BOUNDS = (0.05, 20.0)
#: Buffer-size corrections beyond this range are a different setting, not a calibration.
MEMORY_RATIO_BOUNDS = (0.5, 4.0)
FORMAT_VERSION = 1


def machine_key(machine: MachineProfile) -> str:
    """A stable key for a machine: CPU, GPUs, RAM size (to the GiB) and llama.cpp backend."""
    parts = [
        machine.cpu_model,
        machine.cpu_arch,
        str(round(machine.ram_total / (1 << 30))),
        machine.backend,
        ",".join(g.name for g in machine.gpus),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class CalibrationStore:
    """Measured speeds and buffer sizes per (machine, model), persisted as JSON."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else AppPaths.default().calibration_file
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        data = read_json(self.path, default=None)
        if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
            return {"version": FORMAT_VERSION, "machines": {}}
        return data

    def record(
        self,
        machine_key: str,
        model_key: str,
        settings: dict[str, Any],
        measured: dict[str, Any],
    ) -> None:
        """Store one measured run.

        ``settings``: at least ``ctx``, ``kv_type``, ``gpu_layers`` and, to calibrate other
        models, ``estimated_decode_tokens_per_s`` / ``estimated_prefill_tokens_per_s``
        (:meth:`MemoryPlan.calibration_settings` gives all of them). ``measured``: any of
        ``decode_tokens_per_s``, ``prefill_tokens_per_s``, ``kv_bytes``, ``compute_bytes``...
        """
        entry = {
            "time": time.time(),
            "settings": dict(settings),
            "measured": {k: v for k, v in measured.items() if _is_number(v)},
        }
        with self._lock:
            data = self._load()
            runs = data["machines"].setdefault(machine_key, {}).setdefault(model_key, [])
            runs.append(entry)
            del runs[:-MAX_RUNS_PER_MODEL]
            atomic_write_json(self.path, data)

    def runs(self, machine_key: str, model_key: str | None = None) -> list[dict[str, Any]]:
        """Stored runs for a machine (and a model)."""
        models = self._load()["machines"].get(machine_key, {})
        if model_key is not None:
            return list(models.get(model_key, []))
        return [r for runs in models.values() for r in runs]

    def lookup(
        self, machine_key: str, model_key: str, settings: dict[str, Any]
    ) -> dict[str, float] | None:
        """Median measured values of this model's runs with matching settings, if any."""
        matching = [
            r["measured"]
            for r in self.runs(machine_key, model_key)
            if _same_settings(r.get("settings", {}), settings)
        ]
        if not matching:
            return None
        keys = {k for m in matching for k in m}
        return {k: statistics.median(m[k] for m in matching if k in m) for k in keys}

    def factor(self, machine_key: str, metric: str = "decode_tokens_per_s") -> float | None:
        """Median measured / estimated ratio over this machine's runs, if any."""
        ratios = []
        for r in self.runs(machine_key):
            est = r.get("settings", {}).get(f"estimated_{metric}")
            got = r.get("measured", {}).get(metric)
            if _is_number(est) and _is_number(got) and est > 0 and got > 0:
                q = got / est
                if RATIO_BOUNDS[0] <= q <= RATIO_BOUNDS[1]:
                    ratios.append(q)
        return statistics.median(ratios) if ratios else None

    def memory_factor(
        self, machine_key: str, model_key: str, metric: str = "compute_bytes"
    ) -> float | None:
        """Median measured / estimated ratio of a buffer (``compute_bytes``, ``kv_bytes``)
        over this model's loads on this machine, if any were recorded with their estimate."""
        ratios = []
        for r in self.runs(machine_key, model_key):
            est = r.get("settings", {}).get(f"estimated_{metric}")
            got = r.get("measured", {}).get(metric)
            if _is_number(est) and _is_number(got) and est > 0 and got > 0:
                q = got / est
                if MEMORY_RATIO_BOUNDS[0] <= q <= MEMORY_RATIO_BOUNDS[1]:
                    ratios.append(q)
        return statistics.median(ratios) if ratios else None

    def adjust(
        self, machine_key: str, model_key: str, plan: MemoryPlan, est: SpeedEstimate
    ) -> SpeedEstimate:
        """The estimate corrected by what was measured here (basis measured/calibrated)."""
        from launcher.estimate import SpeedEstimate

        settings = plan.calibration_settings()
        hit = self.lookup(machine_key, model_key, settings)
        if hit and "decode_tokens_per_s" in hit:
            return SpeedEstimate(
                round(hit["decode_tokens_per_s"], 2),
                round(hit.get("prefill_tokens_per_s", est.prefill_tokens_per_s), 1),
                "measured",
                "measured on this machine with these settings",
            )
        fd = self.factor(machine_key, "decode_tokens_per_s")
        if fd is None:
            return est
        fp = self.factor(machine_key, "prefill_tokens_per_s") or 1.0
        return SpeedEstimate(
            round(est.decode_tokens_per_s * fd, 2),
            round(est.prefill_tokens_per_s * fp, 1),
            "calibrated",
            f"{est.explanation}; x{fd:.2f} from runs measured on this machine",
        )


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _norm(key: str, value: Any) -> Any:
    """Settings written by different callers in different forms: KV types as names or ggml
    type ids, flash attention as bool or int."""
    if key == "kv_type" and isinstance(value, int) and not isinstance(value, bool):
        from launcher.estimate import KV_TYPES

        names = {v: k for k, v in KV_TYPES.items()}
        return names.get(value, value)
    if key == "kv_type" and isinstance(value, str):
        return value.lower()
    if key == "flash_attn":
        return bool(value)
    return value


def _same_settings(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Runs are comparable when placement and cache settings match (context within 2x)."""
    for k in ("kv_type", "gpu_layers", "flash_attn"):
        if k in a and k in b and _norm(k, a[k]) != _norm(k, b[k]):
            return False
    ca, cb = a.get("ctx"), b.get("ctx")
    return not (_is_number(ca) and _is_number(cb) and ca and cb and not 0.5 <= ca / cb <= 2.0)
