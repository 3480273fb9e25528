"""Measured runs on this machine, stored to correct later speed estimates.

The engine records, after each load or reply, what it measured (decode and prefill
tokens/s, buffer sizes) with :meth:`CalibrationStore.record`. :func:`launcher.planning.plan`
takes the store (``calibration=``) and turns an estimate into:

- ``measured``: this model was run on this machine with matching settings: the median of
  those runs is quoted;
- ``calibrated``: other models were run here: the estimate is scaled by the ratio
  measured / estimated of those runs (the machine's real efficiency).

Measurements are noisy in one direction: another program busy on the CPU (a build, a second
model) slows a run down, sometimes more than tenfold, while nothing makes a run faster than the
machine can go. So one run must not rewrite every estimate:

- each reply is recorded with the machine's load during it (``conditions``: the share of CPU
  time other processes used, the load average; :mod:`launcher.engine.calibrate` measures it).
  Runs measured under contention (:data:`CONTENDED_CPU_SHARE`) are kept but never used: not
  for other models, not for the model itself (its speed then stays estimated or calibrated);
- the statistic is the upper median of the per-run ratios (:func:`robust_center`): a slow
  outlier among several runs does not move it, and a later clean run outweighs earlier slow
  ones;
- other models are calibrated only from :data:`MIN_CALIBRATION_RUNS` clean runs, and the
  factor is bounded by :data:`FACTOR_BOUNDS`;
- the estimate says what it rests on (``SpeedEstimate.runs``: "calibrated from 5 runs").

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
    from launcher.hardware.profile import MachineProfile
    from launcher.planning.types import MemoryPlan, SpeedEstimate

#: Runs kept per (machine, model); older ones are dropped.
MAX_RUNS_PER_MODEL = 20
#: A measured ratio outside this range is an outlier (a stalled run), not a calibration.
RATIO_BOUNDS = (0.05, 20.0)
#: How far calibration may move an estimate: the measured / estimated factor is clamped to this
#: range. The reference's measured efficiencies spread about 0.46-0.87 around the 0.6 the
#: formula assumes, so a real correction stays well inside it; a run far outside it was noise.
FACTOR_BOUNDS = (1 / 3, 3.0)
#: Clean runs needed before other models are calibrated (the same model's runs count from one).
MIN_CALIBRATION_RUNS = 2
#: A run during which other processes used at least this share of the machine's CPU time was
#: measured under contention: llama.cpp's threads wait for the slowest of them, so even a few
#: busy cores slow decoding down a lot.
CONTENDED_CPU_SHARE = 0.25
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
        conditions: dict[str, Any] | None = None,
    ) -> None:
        """Store one measured run.

        ``settings``: at least ``ctx``, ``kv_type``, ``gpu_layers`` and, to calibrate other
        models, ``estimated_decode_tokens_per_s`` / ``estimated_prefill_tokens_per_s``
        (:meth:`MemoryPlan.calibration_settings` gives all of them). ``measured``: any of
        ``decode_tokens_per_s``, ``prefill_tokens_per_s``, ``kv_bytes``, ``compute_bytes``...
        ``conditions``: the machine's load during the run (``other_cpu_share``: 0-1 of all
        CPU time used by other processes; ``load_avg_1m``); runs without it count as clean.
        """
        entry: dict[str, Any] = {
            "time": time.time(),
            "settings": dict(settings),
            "measured": {k: v for k, v in measured.items() if _is_number(v)},
        }
        if conditions:
            entry["conditions"] = {k: v for k, v in conditions.items() if _is_number(v)}
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
        """Robust centre (:func:`robust_center`) of this model's clean runs (not measured under
        contention) with matching settings; ``None`` without any."""
        found = self._lookup(machine_key, model_key, settings)
        return found[0] if found else None

    def _lookup(
        self, machine_key: str, model_key: str, settings: dict[str, Any]
    ) -> tuple[dict[str, float], int] | None:
        """(values, clean runs the decode speed rests on)."""
        matching = [
            r
            for r in self.runs(machine_key, model_key)
            if _same_settings(r.get("settings", {}), settings)
            and isinstance(r.get("measured"), dict)
            and not is_contended(r)
        ]
        if not matching:
            return None
        values: dict[str, float] = {}
        counts: dict[str, int] = {}
        for k in {k for r in matching for k in r["measured"]}:
            xs = [r["measured"][k] for r in matching if _is_number(r["measured"].get(k))]
            if xs:
                values[k], counts[k] = robust_center(xs), len(xs)
        return values, counts.get("decode_tokens_per_s", max(counts.values(), default=0))

    def factor(self, machine_key: str, metric: str = "decode_tokens_per_s") -> float | None:
        """Measured / estimated factor for this machine, if enough clean runs were recorded."""
        found = self.factor_with_runs(machine_key, metric)
        return found[0] if found else None

    def factor_with_runs(
        self, machine_key: str, metric: str = "decode_tokens_per_s"
    ) -> tuple[float, int] | None:
        """(factor, clean runs it rests on): the robust centre of the per-run ratios
        measured / estimated, over runs not measured under contention, clamped to
        :data:`FACTOR_BOUNDS`; ``None`` with fewer than :data:`MIN_CALIBRATION_RUNS`."""
        ratios = []
        for r in self.runs(machine_key):
            if is_contended(r):
                continue
            est = r.get("settings", {}).get(f"estimated_{metric}")
            got = r.get("measured", {}).get(metric)
            if _is_number(est) and _is_number(got) and est > 0 and got > 0:
                q = got / est
                if RATIO_BOUNDS[0] <= q <= RATIO_BOUNDS[1]:
                    ratios.append(q)
        if len(ratios) < MIN_CALIBRATION_RUNS:
            return None
        lo, hi = FACTOR_BOUNDS
        return min(hi, max(lo, robust_center(ratios))), len(ratios)

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
        from launcher.planning.types import SpeedEstimate

        settings = plan.calibration_settings()
        hit = self._lookup(machine_key, model_key, settings)
        if hit and "decode_tokens_per_s" in hit[0]:
            values, n = hit
            return SpeedEstimate(
                round(values["decode_tokens_per_s"], 2),
                round(values.get("prefill_tokens_per_s", est.prefill_tokens_per_s), 1),
                "measured",
                f"measured on this machine with these settings ({_runs(n)})",
                runs=n,
            )
        decode = self.factor_with_runs(machine_key, "decode_tokens_per_s")
        if decode is None:
            return est
        fd, n = decode
        prefill = self.factor_with_runs(machine_key, "prefill_tokens_per_s")
        fp = prefill[0] if prefill else 1.0
        bound = " (the most calibration may move it)" if fd in FACTOR_BOUNDS else ""
        return SpeedEstimate(
            round(est.decode_tokens_per_s * fd, 2),
            round(est.prefill_tokens_per_s * fp, 1),
            "calibrated",
            f"{est.explanation}; x{fd:.2f}{bound} from {_runs(n)} measured on this machine",
            runs=n,
        )


def robust_center(values: list[float]) -> float:
    """The upper median: slow outliers (contention, a stalled run) do not move it, and of two
    runs the faster one counts, since interference only ever slows a run down."""
    return float(statistics.median_high(values))


def is_contended(run: dict[str, Any]) -> bool:
    """Whether a stored run was measured while other processes kept the CPU busy."""
    cond = run.get("conditions")
    share = cond.get("other_cpu_share") if isinstance(cond, dict) else None
    return isinstance(share, (int, float)) and share >= CONTENDED_CPU_SHARE


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _norm(key: str, value: Any) -> Any:
    """Settings written by different callers in different forms: KV types as names or ggml
    type ids, flash attention as bool or int."""
    if key == "kv_type" and isinstance(value, int) and not isinstance(value, bool):
        from launcher.planning.ggml import KV_TYPES

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
