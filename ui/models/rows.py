"""Plain row records the item models show, and the adapters that build them from core objects.

The adapters are the only place in the UI that knows the shape of the core's objects
(recommendations, library entries, download progress, doctor checks); the models and views
see these rows only. They read attributes defensively (``getattr`` with defaults) so a field
the core does not report shows as unknown rather than breaking a view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CandidateRow:
    """A model the user could download and run, with its plan for this machine."""

    key: str  # unique: repo/filename
    name: str
    repo: str
    filename: str
    quant: str
    size_bytes: int | None
    verdict: str  # full_gpu / partial / cpu / no_fit
    gpu_layers: int | None = None
    total_layers: int | None = None
    weights_bytes: int | None = None
    kv_bytes: int | None = None
    compute_bytes: int | None = None
    total_bytes: int | None = None
    tokens_per_s: float | None = None
    basis: str = "estimated"  # estimated / calibrated / measured
    basis_runs: int = 0  # measured runs a calibrated / measured speed rests on
    capabilities: tuple[str, ...] = ()  # "tools", "reasoning", "vision" (catalog models)
    uses: tuple[str, ...] = ()
    params: str = ""
    context: int | None = None
    note: str = ""
    starter: bool = False  # the bundled Gemma 3 270M test model
    local_path: str | None = None  # set when the file is already on disk
    source: Any = field(default=None, compare=False, repr=False)  # the core object


@dataclass(frozen=True)
class LocalModelRow:
    """A GGUF on disk: ours, or found in another tool's folder (used in place)."""

    path: str
    name: str
    size_bytes: int | None
    source: str  # "Spark Launcher", "Hugging Face cache", "LM Studio", "Ollama", ...
    ours: bool
    quant: str = ""
    architecture: str = ""
    parameters: str = ""
    repo: str = ""


@dataclass(frozen=True)
class SetAsideRow:
    """A download kept aside after it failed sha256 verification (in the models folder)."""

    path: str
    name: str  # the file it should have been
    size_bytes: int | None
    repo: str = ""


@dataclass
class DownloadRow:
    """One download's latest state (mutable: progress events update it in place)."""

    id: str
    name: str
    state: str = "queued"  # queued downloading paused verifying done failed cancelled
    done_bytes: int = 0
    total_bytes: int | None = None
    speed: float | None = None  # bytes/s
    eta_s: float | None = None
    error: str = ""
    verified: bool = False
    path: str | None = None
    repo: str = ""
    filename: str = ""

    @property
    def fraction(self) -> float:
        if not self.total_bytes:
            return 0.0
        return min(1.0, self.done_bytes / self.total_bytes)


@dataclass(frozen=True)
class CheckRow:
    """One doctor check: its status, what was found and how to fix it."""

    name: str
    status: str  # ok / warn / fail / info
    detail: str
    fix: str = ""


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    """The first attribute (or mapping key) of ``obj`` among ``names`` that is not None."""
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return default


def _params_label(params: Any) -> str:
    if isinstance(params, int | float) and params:
        return f"{params / 1e9:.1f}B" if params < 1e10 else f"{params / 1e9:.0f}B"
    return str(params or "")


def candidate_from(rec: Any) -> CandidateRow:
    """A ``CandidateRow`` from a ``launcher.recommend.Recommendation``.

    Its ``candidate`` has ``model`` (name, params, uses) and ``quant`` (repo, files, size);
    its ``plan`` is the ``MemoryPlan`` with the verdict, breakdown and speed estimate.
    """
    cand = _get(rec, "candidate", default=rec)
    model = _get(cand, "model", default=cand)
    quant = _get(cand, "quant", default=cand)
    plan = _get(rec, "plan")
    speed = _get(plan, "speed") if plan is not None else None
    repo = str(_get(quant, "repo", "repo_id", default=""))
    files = _get(quant, "files", default=None)
    filename = str(files[0]) if files else str(_get(quant, "filename", default=""))
    verdict = _get(plan, "verdict", default="unknown") if plan is not None else "unknown"
    uses = _get(model, "uses", default=())
    return CandidateRow(
        key=f"{repo}/{filename}",
        name=str(_get(model, "name", default=filename or repo)),
        repo=repo,
        filename=filename,
        quant=str(_get(quant, "quant", default="")),
        size_bytes=_get(quant, "size_bytes", "size"),
        verdict=str(verdict),
        gpu_layers=_get(plan, "gpu_layers") if plan is not None else None,
        total_layers=_get(plan, "total_layers") if plan is not None else None,
        weights_bytes=_get(plan, "weights_bytes") if plan is not None else None,
        kv_bytes=_get(plan, "kv_bytes") if plan is not None else None,
        compute_bytes=_get(plan, "compute_bytes") if plan is not None else None,
        total_bytes=_get(plan, "total_bytes") if plan is not None else None,
        tokens_per_s=_get(speed, "decode_tokens_per_s") if speed is not None else None,
        basis=str(_get(speed, "basis", default="estimated")),
        basis_runs=int(_get(speed, "runs", default=0) or 0) if speed is not None else 0,
        capabilities=tuple(str(c) for c in _get(model, "capabilities", default=()) or ()),
        uses=tuple(str(u) for u in uses) if isinstance(uses, list | tuple) else (),
        params=_params_label(_get(model, "params")),
        context=_get(plan, "context") if plan is not None else None,
        note=str(_get(rec, "reason", default="") or ""),
        source=rec,
    )


_SOURCE_LABELS = {
    "ours": "Spark Launcher",
    "spark": "Spark Launcher",
    "library": "Spark Launcher",
    "hf_cache": "Hugging Face cache",
    "hf-cache": "Hugging Face cache",
    "folder": "Extra folder",
    "huggingface": "Hugging Face cache",
    "lmstudio": "LM Studio",
    "lm_studio": "LM Studio",
    "ollama": "Ollama",
    "llama_cpp": "llama.cpp cache",
    "llama.cpp": "llama.cpp cache",
    "imported": "Imported",
}


def local_model_from(entry: Any) -> LocalModelRow:
    """A ``LocalModelRow`` from a ``launcher.library.LocalModel``."""
    path = str(_get(entry, "path", default=""))
    source = str(_get(entry, "source", "origin", default="library"))
    label = _SOURCE_LABELS.get(source.lower(), source)
    owned = _get(entry, "owned", default=None)
    ours = bool(owned) if owned is not None else label == "Spark Launcher"
    return LocalModelRow(
        path=path,
        name=str(_get(entry, "name", "display_name", default=Path(path).name)),
        size_bytes=_get(entry, "size_bytes", "size"),
        source="Spark Launcher" if ours else label,
        ours=ours,
        quant=str(_get(entry, "quant", "quantization", default="") or ""),
        architecture=str(_get(entry, "architecture", "arch", default="") or ""),
        parameters=_params_label(_get(entry, "parameters")),
        repo=str(_get(entry, "repo_id", "repo", default="") or ""),
    )


def set_aside_from(entry: Any) -> SetAsideRow:
    """A ``SetAsideRow`` from a ``launcher.library.SetAsideFile``."""
    path = str(_get(entry, "path", default=""))
    return SetAsideRow(
        path=path,
        name=str(_get(entry, "name", default=Path(path).name)),
        size_bytes=_get(entry, "size", "size_bytes"),
        repo=str(_get(entry, "repo_id", "repo", default="") or ""),
    )


def check_from(check: Any) -> CheckRow:
    """A ``CheckRow`` from a ``launcher.hardware`` doctor check result."""
    status = _get(check, "status", "level", default="info")
    status = str(getattr(status, "value", status)).lower()
    ok = _get(check, "ok", "passed")
    if ok is not None and status == "info":
        status = "ok" if ok else "warn"
    return CheckRow(
        name=str(_get(check, "title", "name", default="check")),
        status=status,
        detail=str(_get(check, "detail", "message", "summary", default="")),
        fix=str(_get(check, "fix", "remedy", default="") or ""),
    )
