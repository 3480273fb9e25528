"""Why a model host died, what to do about it, and what to change when it keeps happening.

A host that dies is read three ways: its exit code (``-11`` is SIGSEGV, ``-4`` SIGILL, ``-9``
SIGKILL, ``-6`` an abort), the tail of its log (llama.cpp's own lines: buffer names such as
``AMX model buffer size``, CUDA errors, ``GGML_ASSERT``), and what the machine is (the build's
``llama_print_system_info()`` and the CPU's flags). :func:`classify` turns those into a
:class:`Diagnosis`: a known signature with a sentence for the user and the fix.

Retrying blindly helps nobody: an AMX kernel or an illegal instruction crashes the same way at
every load. :class:`CrashHistory` remembers, per model file, the last crash and at which stage
(``load`` or ``reply``); the second crash of the same model at the same stage makes the client
offer *safe settings* (:func:`safe_settings`: no extra buffer types, no mmap, fewer threads,
CPU only when the GPU failed) and name each change. The history is a small JSON file written
atomically, and it is cleared for a model when a reply completes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from launcher.engine.events import EngineParams
from launcher.fsutil import atomic_write_json, read_json
from launcher.hardware.cpufeatures import AMX_ISSUE, amx_risk
from launcher.hardware.doctor import Check

Stage = Literal["load", "reply"]

SIGNALS = {-4: "SIGILL", -6: "SIGABRT", -7: "SIGBUS", -9: "SIGKILL", -11: "SIGSEGV", -15: "SIGTERM"}
# A shell reports death by signal N as 128 + N.
SIGNALS.update({128 - k: v for k, v in list(SIGNALS.items())})

# What each kind of crash may change when it repeats, in the order they are tried.
SAFE_CHANGES: dict[str, tuple[str, ...]] = {
    "amx": ("extra_buffers", "mmap", "threads"),
    "segfault": ("extra_buffers", "mmap", "threads", "cpu_only"),
    "abort": ("extra_buffers", "threads", "cpu_only"),
    "gpu_oom": ("cpu_only",),
    "gpu_arch": ("cpu_only",),
    "gpu_error": ("cpu_only",),
    "bus_error": ("mmap",),
    "unknown": ("extra_buffers", "mmap", "threads", "cpu_only"),
}


def signal_name(exit_code: int | None) -> str | None:
    """``"SIGSEGV"`` for -11 (or 139), ``None`` for a plain exit code or no code."""
    return None if exit_code is None else SIGNALS.get(exit_code)


@dataclass(frozen=True)
class Diagnosis:
    """One classified crash: ``kind`` is a stable key, ``cause`` and ``fix`` are for people."""

    kind: str
    cause: str
    fix: str

    @property
    def sentence(self) -> str:
        return f"{self.cause} {self.fix}".strip()


def _has(text: str, *needles: str) -> bool:
    return any(n in text for n in needles)


def classify(
    exit_code: int | None,
    log: Sequence[str],
    *,
    stage: Stage = "reply",
    system_info: str = "",
    cpu_flags: Iterable[str] | None = None,
    params: EngineParams | None = None,
) -> Diagnosis:
    """The known signature that fits a dead host best, most specific first."""
    text = "\n".join(log)
    low = text.lower()
    sig = signal_name(exit_code)
    when = "while loading" if stage == "load" else "while generating"
    extra_off = params is not None and params.use_extra_bufts is False
    if _has(low, "ggml_backend_amx", "amx model buffer") and sig in ("SIGSEGV", "SIGBUS", None):
        return Diagnosis(
            "amx",
            f"llama.cpp's Intel AMX kernels crashed {when} ({AMX_ISSUE}).",
            "Load with safe settings (no extra buffer types): the AMX weight buffer is then "
            "not used.",
        )
    if sig == "SIGSEGV" and not extra_off and amx_risk(system_info, cpu_flags):
        return Diagnosis(
            "amx",
            f"llama.cpp crashed {when} on a CPU with Intel AMX and a build with its AMX kernels "
            f"({AMX_ISSUE}).",
            "Load with safe settings (no extra buffer types).",
        )
    if sig == "SIGILL" or "illegal instruction" in low:
        return Diagnosis(
            "illegal_instruction",
            "llama.cpp used an instruction this CPU does not have: it was built for another "
            "processor (a build made with -march=native on a newer CPU, or a wheel from "
            "another machine).",
            "Rebuild llama.cpp on this machine: `rm -f .venv/.setup-stamp .venv/.llama-backend "
            "&& make setup` (the installed app: take the portable build).",
        )
    if _has(
        low,
        "no kernel image is available",
        "unsupported gpu architecture",
        "ptx was compiled with an unsupported toolchain",
        "cuda driver version is insufficient",
    ):
        return Diagnosis(
            "gpu_arch",
            "The CUDA build of llama.cpp does not support this GPU or driver (no kernels for "
            "its architecture).",
            "Rebuild for this GPU: `rm -f .venv/.setup-stamp .venv/.llama-backend && "
            "CUDA_ARCHITECTURES=native LLAMA_BACKEND=cuda make setup`, or update the NVIDIA "
            "driver; meanwhile load with safe settings (CPU only).",
        )
    if _has(low, "cuda error: out of memory", "cudamalloc failed", "out of memory") and (
        "cuda" in low or "metal" in low or "vulkan" in low
    ):
        return Diagnosis(
            "gpu_oom",
            f"The GPU ran out of memory {when}.",
            "Lower the context size or the GPU layers, close other models, or load with safe "
            "settings (CPU only).",
        )
    if _has(low, "cuda error", "ggml_cuda_error", "metal error", "vk::"):
        return Diagnosis(
            "gpu_error",
            f"The GPU backend failed {when}.",
            "Update the GPU driver, or load with safe settings (CPU only).",
        )
    if sig == "SIGKILL":
        return Diagnosis(
            "killed",
            "It was killed (SIGKILL), usually by the system's out-of-memory killer.",
            "Lower the context size, close other models or apps, or pick a smaller "
            "quantization, then load again.",
        )
    assert_line = next((ln.strip() for ln in reversed(log) if "GGML_ASSERT" in ln), None)
    if assert_line or sig == "SIGABRT":
        detail = f" ({assert_line})" if assert_line else ""
        return Diagnosis(
            "abort",
            f"llama.cpp aborted {when}{detail}.",
            "If it repeats, load with safe settings; report it if it still does.",
        )
    if sig == "SIGBUS":
        return Diagnosis(
            "bus_error",
            "The memory-mapped model file could not be read (SIGBUS): it may have been changed, "
            "truncated or sits on a disk that went away.",
            "Load with safe settings (no mmap), or download the model again.",
        )
    if sig == "SIGSEGV":
        return Diagnosis(
            "segfault",
            f"It crashed (segmentation fault) inside llama.cpp {when}.",
            "If it happens again, load with safe settings.",
        )
    if sig == "SIGTERM":
        return Diagnosis("terminated", "It was terminated (SIGTERM).", "Load the model again.")
    return Diagnosis(
        "unknown",
        f"It exited unexpectedly (exit code {exit_code}) {when}.",
        "Load the model again; if it repeats, load with safe settings.",
    )


def safe_settings(
    params: EngineParams, kind: str, *, cores: int | None = None
) -> tuple[EngineParams, tuple[str, ...]]:
    """``params`` with the safe changes for a crash ``kind``, and a phrase per change made.

    Only changes that differ from ``params`` are made and named; an empty tuple means there is
    nothing safer to try with these settings.
    """
    changes: dict[str, Any] = {}
    said: list[str] = []
    for change in SAFE_CHANGES.get(kind, ()):
        if change == "extra_buffers" and params.use_extra_bufts is not False:
            changes["use_extra_bufts"] = False
            said.append("no extra buffer types (weights are not repacked)")
        elif change == "mmap" and params.use_mmap:
            changes["use_mmap"] = False
            said.append("no memory-mapping (the file is read into memory)")
        elif change == "threads":
            threads = params.n_threads or cores or 0
            if threads > 1:
                fewer = max(1, threads // 2)
                changes["n_threads"] = fewer
                changes["n_threads_batch"] = fewer
                said.append(f"{fewer} threads instead of {threads}")
        elif change == "cpu_only" and params.n_gpu_layers != 0:
            changes["n_gpu_layers"] = 0
            changes["rpc_servers"] = ""
            changes["tensor_split"] = ()
            said.append("CPU only (no layers on the GPU)")
    return dataclasses.replace(params, **changes), tuple(said)


@dataclass(frozen=True)
class CrashRecord:
    """The last crash of one model file: where, what, and how many times in a row."""

    model: str
    stage: Stage
    kind: str
    cause: str
    count: int
    at: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class CrashHistory:
    """Per-model record of consecutive crashes, in ``crashes.json`` (atomic writes).

    Several clients (chat, compare, the API) may share one history: a lock guards the file,
    and every change re-reads it first. ``path=None`` keeps the history in memory only (one
    client's lifetime: scripts, benchmarks).
    """

    REPEAT = 2  # crashes of one model at one stage before safe settings are offered

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._memory: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, Any]]:
        if self.path is None:
            return dict(self._memory)
        data = read_json(self.path, default={})
        models = data.get("models") if isinstance(data, dict) else None
        return models if isinstance(models, dict) else {}

    def _write(self, models: dict[str, dict[str, Any]]) -> None:
        if self.path is None:
            self._memory = models
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {"models": models})

    def record(self, model: str, stage: Stage, diagnosis: Diagnosis) -> CrashRecord:
        """Count this crash; same model and stage as the last one means one more in a row."""
        with self._lock:
            models = self._read()
            last = models.get(model) or {}
            same = last.get("stage") == stage and isinstance(last.get("count"), int)
            rec = CrashRecord(
                model=model,
                stage=stage,
                kind=diagnosis.kind,
                cause=diagnosis.cause,
                count=(last["count"] + 1) if same else 1,
                at=time.time(),
            )
            models[model] = rec.to_json()
            self._write(models)
            return rec

    def clear(self, model: str) -> None:
        """Forget a model's crashes (it loaded and replied)."""
        with self._lock:
            models = self._read()
            if models.pop(model, None) is not None:
                self._write(models)

    def get(self, model: str) -> CrashRecord | None:
        entry = self._read().get(model)
        if not isinstance(entry, dict):
            return None
        try:
            return CrashRecord(**entry)
        except TypeError:
            return None

    def repeated(self) -> list[CrashRecord]:
        """Models that crashed at least :attr:`REPEAT` times in a row at one stage."""
        out = []
        for model in self._read():
            rec = self.get(model)
            if rec is not None and rec.count >= self.REPEAT:
                out.append(rec)
        return out


def crash_check(history: CrashHistory) -> Check:
    """The doctor's view of the history: models that keep crashing, and the way out."""
    title = "Models that keep crashing"
    repeated = history.repeated()
    if not repeated:
        return Check("crashes", title, "ok", "No model crashed twice in a row.")
    lines = [
        f"{Path(r.model).name} crashed {r.count} times in a row while "
        f"{'loading' if r.stage == 'load' else 'generating'}: {r.cause}"
        for r in repeated
    ]
    return Check(
        "crashes",
        title,
        "warn",
        " ".join(lines),
        "Load it with safe settings (Chat offers them after the second crash; in the terminal "
        "`spark-launcher chat MODEL --safe`); `spark-launcher doctor --json` gives the details "
        "to report.",
    )
