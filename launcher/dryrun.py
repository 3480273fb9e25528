"""Ask llama.cpp itself what a model will need: the no-alloc dry run, in a child process.

llama.cpp's own ``--fit`` loads the model with ``no_alloc = true`` and ``load_mode = NONE``
and creates a context with the wanted parameters: nothing is allocated and no tensor data is
read, but every buffer size is computed and logged. We do the same through llama-cpp-python's
low-level API in a spawned child process (``multiprocessing``), because a wrong flag makes
llama.cpp abort the whole process (``no_alloc`` with the default mmap load mode asserts),
and read the sizes from the log with ONE parser, :func:`parse_log`.

It works on a remote model too: the header fetched by HTTP Range, saved as a sparse file of
the declared size (:func:`materialize_header`), loads in dry-run mode without any data.
Several contexts for one model are measured in one child (one model load).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.childproc import call_in_child
from launcher.errors import GGUFError, ModelLoadError
from launcher.hardware.cpufeatures import decide_extra_buffers, read_cpu_flags

if TYPE_CHECKING:
    from launcher.hardware.profile import MachineProfile
    from launcher.planning import MemoryPlan, ModelSummary
    from launcher.planning.calibration import CalibrationStore

MiB = 1 << 20
#: A dry run takes well under a second; this only guards against a wedged child.
DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class KVCacheInfo:
    """One ``llama_kv_cache: size = ...`` line (sliding-window models have two)."""

    size_bytes: int
    cells: int
    layers: int
    k_type: str
    v_type: str
    k_bytes: int
    v_bytes: int


@dataclass
class DryRunResult:
    """Buffer sizes llama.cpp reported, per device (``CPU``, ``CUDA0``, ``Metal``...)."""

    n_ctx: int = 0
    kv_caches: list[KVCacheInfo] = field(default_factory=list)
    kv_by_device: dict[str, int] = field(default_factory=dict)  # real loads only
    compute_by_device: dict[str, int] = field(default_factory=dict)
    model_by_device: dict[str, int] = field(default_factory=dict)  # real loads only
    output_by_device: dict[str, int] = field(default_factory=dict)
    flash_attn: bool | None = None
    elapsed_s: float = 0.0
    real_load: bool = False
    error: str | None = None

    @property
    def kv_bytes(self) -> int:
        return sum(c.size_bytes for c in self.kv_caches)

    @property
    def compute_bytes(self) -> int:
        return sum(self.compute_by_device.values())

    @property
    def model_bytes(self) -> int:
        """Weights as llama.cpp placed them (mapped + repacked + device copies)."""
        return sum(self.model_by_device.values())

    @property
    def mapped_model_bytes(self) -> int:
        """The weights of the file itself (``*_Mapped`` or plain buffers, no repack copies)."""
        return sum(v for k, v in self.model_by_device.items() if "REPACK" not in k)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(kv_bytes=self.kv_bytes, compute_bytes=self.compute_bytes)
        return d


# ------------------------------------------------------------------------------ the parser

_NUM = r"([0-9]+(?:\.[0-9]+)?)"
_RE_KV = re.compile(
    rf"llama_kv_cache: size = +{_NUM} MiB \( *(\d+) cells, +(\d+) layers,.*?\), "
    rf"K \((\w+)\): +{_NUM} MiB, V \((\w+)\): +{_NUM} MiB"
)
_RE_BUF = re.compile(rf"^\S+: +(\S+) +(model|compute|KV|output) buffer size = +{_NUM} MiB")
_RE_NCTX = re.compile(r"llama_context: n_ctx += (\d+)")
_RE_FA = re.compile(r"llama_context: flash_attn += (\w+)")


def _mib(s: str) -> int:
    return round(float(s) * MiB)


def parse_log(lines: Sequence[str]) -> DryRunResult:
    """Read buffer sizes from llama.cpp log lines (the one place that knows their format).

    MiB figures are printed with two decimals, so each size is exact to 0.005 MiB.
    """
    r = DryRunResult()
    for raw in lines:
        line = raw.strip()
        if m := _RE_KV.search(line):
            r.kv_caches.append(
                KVCacheInfo(
                    size_bytes=_mib(m.group(1)),
                    cells=int(m.group(2)),
                    layers=int(m.group(3)),
                    k_type=m.group(4),
                    k_bytes=_mib(m.group(5)),
                    v_type=m.group(6),
                    v_bytes=_mib(m.group(7)),
                )
            )
        elif m := _RE_BUF.search(line):
            dev, kind, size = m.group(1), m.group(2), _mib(m.group(3))
            table = {
                "model": r.model_by_device,
                "compute": r.compute_by_device,
                "KV": r.kv_by_device,
                "output": r.output_by_device,
            }[kind]
            table[dev] = table.get(dev, 0) + size
        elif m := _RE_NCTX.search(line):
            r.n_ctx = int(m.group(1))
        elif m := _RE_FA.search(line):
            r.flash_attn = m.group(1) in ("enabled", "1", "true")
    r.kv_by_device = {k: v for k, v in r.kv_by_device.items() if v}
    return r


# ------------------------------------------------------------------------------ parent side


@dataclass(frozen=True)
class DryRunJob:
    """One context to measure."""

    ctx: int
    kv_type: str = "f16"
    flash_attn: bool = True
    n_gpu_layers: int = -1
    n_ubatch: int = 512
    n_batch: int = 512


def dry_run_many(
    path: str | os.PathLike[str],
    jobs: Sequence[DryRunJob],
    real_load: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[DryRunResult]:
    """Measure several contexts for one model in one child process (one model load each
    distinct ``n_gpu_layers``). ``real_load`` really loads the weights (small files only)."""
    from launcher.planning import kv_type_id

    p = Path(path)
    if not p.is_file():
        raise GGUFError(f"{p} does not exist; pick a GGUF file.")
    payload = {
        "path": str(p),
        "real_load": real_load,
        "jobs": [
            {
                **dataclasses.asdict(j),
                "type_k": kv_type_id(j.kv_type),
                "type_v": kv_type_id(j.kv_type if j.flash_attn else "f16"),
            }
            for j in jobs
        ],
    }
    t0 = time.perf_counter()
    results_raw = _in_child(payload, p.name, timeout)
    elapsed = time.perf_counter() - t0
    results = []
    for item in results_raw:
        r = parse_log(item["log"])
        r.real_load = real_load
        r.error = item.get("error")
        r.elapsed_s = elapsed / max(1, len(jobs))
        results.append(r)
    return results


def dry_run(
    path: str | os.PathLike[str],
    ctx: int,
    kv_type: str = "f16",
    flash_attn: bool = True,
    n_gpu_layers: int = -1,
    n_ubatch: int = 512,
    n_batch: int = 512,
    real_load: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> DryRunResult:
    """llama.cpp's own KV and compute buffer sizes for one context (child process)."""
    job = DryRunJob(ctx, kv_type, flash_attn, n_gpu_layers, n_ubatch, n_batch)
    (r,) = dry_run_many(path, [job], real_load=real_load, timeout=timeout)
    if r.error:
        raise ModelLoadError(
            f"llama.cpp could not create a context for {Path(path).name}: {r.error}"
        )
    return r


def materialize_header(header_bytes: bytes, total_size: int, path: str | os.PathLike[str]) -> Path:
    """Save a fetched GGUF header as a sparse file of the model's declared size.

    llama.cpp refuses files shorter than their data section; extended with a hole (no disk
    used), the header loads in dry-run mode without reading any tensor data.
    """
    if total_size < len(header_bytes):
        raise GGUFError("The declared model size is smaller than its header; corrupt header.")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as fh:
        fh.write(header_bytes)
        fh.truncate(total_size)
    return target


def plan_exact(
    summary: ModelSummary,
    path: str | os.PathLike[str],
    machine: MachineProfile,
    ctx: int,
    kv_type: str = "f16",
    flash_attn: bool = True,
    n_ubatch: int = 512,
    gpu_layers: int | None = None,
    calibration: CalibrationStore | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> MemoryPlan:
    """The formula plan, with KV and compute replaced by llama.cpp's own figures.

    Placement (layers on the GPU) comes from the formula plan; the dry run is then done with
    exactly that placement. Sizes missing from the log keep their formula value.
    """
    from launcher.planning import estimate_speed, plan

    p = plan(summary, machine, ctx, kv_type, flash_attn, n_ubatch, gpu_layers, calibration)
    r = dry_run(
        path,
        p.context,
        p.kv_type,
        p.flash_attn,
        n_gpu_layers=p.n_gpu_layers,
        n_ubatch=p.n_ubatch,
        n_batch=p.n_batch,
        timeout=timeout,
    )
    devices = list(p.per_device)
    kv_split = _by_plan_device(r.kv_by_device, devices)
    if r.kv_caches:
        if len(devices) == 1 or not kv_split:
            # one device, or a dry run that does not report KV per device: keep the formula's
            # split, scaled to llama.cpp's total
            scale = r.kv_bytes / p.kv_bytes if p.kv_bytes else 0.0
            for d in p.per_device.values():
                d.kv = round(d.kv * scale)
            drift = r.kv_bytes - sum(d.kv for d in p.per_device.values())
            max(p.per_device.values(), key=lambda d: d.kv).kv += drift
        else:
            for name, d in p.per_device.items():
                d.kv = kv_split.get(name, 0)
    compute = _by_plan_device(r.compute_by_device, devices)
    if compute:
        output = _by_plan_device(r.output_by_device, devices)
        for name, d in p.per_device.items():
            d.compute = compute.get(name, 0) + output.get(name, 0)
    p.kv_bytes = sum(d.kv for d in p.per_device.values())
    p.compute_bytes = sum(d.compute for d in p.per_device.values())
    p.source = "dry_run"
    p.speed = estimate_speed(summary, machine, p, calibration=calibration)
    return p


def _by_plan_device(sizes: dict[str, int], devices: list[str]) -> dict[str, int]:
    """llama.cpp buffer names mapped onto the plan's devices.

    Host buffers (``CPU``, ``CPU_Mapped``, ``CPU_REPACK``, ``CUDA_Host``...) belong to "CPU";
    a buffer named after a plan device (``CUDA0``) to it; any other (``Metal``, ``MTL0``,
    ``Vulkan0``...) to the plan's GPU device.
    """
    gpus = [d for d in devices if d != "CPU"]
    out: dict[str, int] = {}
    for name, size in sizes.items():
        base = name.removesuffix("_Mapped").removesuffix("_REPACK")
        if base in devices:
            dev = base
        elif base.startswith("CPU") or base.endswith("_Host"):
            dev = "CPU"
        else:
            dev = gpus[0] if gpus else "CPU"
        out[dev] = out.get(dev, 0) + size
    return out


# ------------------------------------------------------------------------------ child side


def _in_child(payload: dict[str, Any], name: str, timeout: float) -> list[dict[str, Any]]:
    """Run the jobs in a spawned child process; its llama.cpp log lines per job come back."""
    answer = call_in_child(_run_jobs, (payload,), name="llama-dry-run", timeout=timeout)
    if answer.timed_out:
        raise ModelLoadError(
            f"llama.cpp took more than {timeout:.0f} s to plan {name}; the estimate from "
            "the header is used instead."
        )
    if not isinstance(answer.value, list):
        raise ModelLoadError(
            f"llama.cpp could not plan {name} (exit code {answer.exitcode}): "
            f"{' / '.join(answer.stderr_tail) or 'no output'}. The file may be damaged or use "
            "an architecture this llama.cpp build does not know; update llama-cpp-python or "
            "pick another model."
        )
    return answer.value


def _run_jobs(payload: dict[str, Any]) -> list[dict[str, Any]]:  # pragma: no cover - child
    import ctypes

    import llama_cpp

    lines: list[str] = []
    pending = [""]

    @llama_cpp.llama_log_callback
    def _log(level: int, text: bytes, user: Any) -> None:
        s = pending[0] + text.decode("utf-8", "replace")
        *done, rest = s.split("\n")
        lines.extend(done)
        pending[0] = rest

    llama_cpp.llama_log_set(_log, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    real = bool(payload.get("real_load"))
    # The same extra-buffer decision as the model host, so sizes match what a load allocates
    # (and a real load here never takes the AMX path that crashes, cpufeatures.py).
    system_info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    extra = decide_extra_buffers(None, system_info, read_cpu_flags()).use
    results: list[dict[str, Any]] = [{} for _ in payload["jobs"]]
    groups: dict[int, list[int]] = {}
    for i, j in enumerate(payload["jobs"]):
        groups.setdefault(int(j["n_gpu_layers"]), []).append(i)
    for ngl, idxs in groups.items():
        lines.clear()
        mp = llama_cpp.llama_model_default_params()
        mp.n_gpu_layers = ngl
        mp.use_extra_bufts = extra
        if not real:
            mp.no_alloc = True
            mp.load_mode = 0  # LLAMA_LOAD_MODE_NONE: no_alloc with mmap aborts the process
        model = llama_cpp.llama_model_load_from_file(payload["path"].encode(), mp)
        model_lines = list(lines)
        if not model:
            for i in idxs:
                results[i] = {"log": model_lines, "error": "the model could not be loaded"}
            continue
        for i in idxs:
            j = payload["jobs"][i]
            lines.clear()
            cp = llama_cpp.llama_context_default_params()
            cp.n_ctx = int(j["ctx"])
            cp.n_batch = int(j["n_batch"])
            cp.n_ubatch = int(j["n_ubatch"])
            cp.flash_attn_type = 1 if j["flash_attn"] else 0
            cp.type_k = int(j["type_k"])
            cp.type_v = int(j["type_v"])
            cp.swa_full = False
            cp.offload_kqv = True
            ctx = llama_cpp.llama_init_from_model(model, cp)
            err = None if ctx else "the context could not be created"
            if ctx:
                llama_cpp.llama_free(ctx)
            results[i] = {"log": model_lines + list(lines), "error": err}
        llama_cpp.llama_model_free(model)
    return results
