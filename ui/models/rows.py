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


def candidate_from(rec: Any) -> CandidateRow:
    """A ``CandidateRow`` from a ``launcher.recommend.Recommendation`` (or a Hub result)."""
    cand = _get(rec, "candidate", default=rec)
    plan = _get(rec, "plan")
    speed = _get(rec, "speed")
    repo = str(_get(cand, "repo", "repo_id", default=""))
    filename = str(_get(cand, "filename", "file", default=""))
    verdict = _get(rec, "verdict", default=None) or _get(plan, "verdict", default="unknown")
    verdict = str(getattr(verdict, "value", verdict))
    name = str(_get(cand, "display_name", "name", default=filename or repo))
    params = _get(cand, "params_label", "parameters", default="")
    if isinstance(params, int | float) and params:
        params = f"{params / 1e9:.1f}B" if params < 1e10 else f"{params / 1e9:.0f}B"
    uses = _get(cand, "uses", default=())
    return CandidateRow(
        key=f"{repo}/{filename}",
        name=name,
        repo=repo,
        filename=filename,
        quant=str(_get(cand, "quant", "quantization", default="")),
        size_bytes=_get(cand, "size_bytes", "size", "file_size"),
        verdict=verdict,
        gpu_layers=_get(plan, "gpu_layers", "n_gpu_layers") if plan is not None else None,
        total_layers=_get(plan, "total_layers", "n_layers") if plan is not None else None,
        weights_bytes=_get(plan, "weights_bytes") if plan is not None else None,
        kv_bytes=_get(plan, "kv_bytes") if plan is not None else None,
        compute_bytes=_get(plan, "compute_bytes") if plan is not None else None,
        total_bytes=_get(plan, "total_bytes") if plan is not None else None,
        tokens_per_s=_get(speed, "decode_tokens_per_s", "tokens_per_s")
        if speed is not None
        else _get(rec, "decode_tokens_per_s"),
        basis=str(_get(speed, "basis", default="estimated") if speed is not None else "estimated"),
        uses=tuple(str(u) for u in uses) if isinstance(uses, list | tuple) else (),
        params=str(params or ""),
        context=_get(plan, "context", "n_ctx") if plan is not None else None,
        note=str(_get(rec, "note", "reason", default="") or ""),
        source=rec,
    )


_SOURCE_LABELS = {
    "ours": "Spark Launcher",
    "spark": "Spark Launcher",
    "library": "Spark Launcher",
    "hf_cache": "Hugging Face cache",
    "hf-cache": "Hugging Face cache",
    "huggingface": "Hugging Face cache",
    "lmstudio": "LM Studio",
    "lm_studio": "LM Studio",
    "ollama": "Ollama",
    "llama_cpp": "llama.cpp cache",
    "llama.cpp": "llama.cpp cache",
    "imported": "Imported",
}


def local_model_from(entry: Any) -> LocalModelRow:
    """A ``LocalModelRow`` from a ``launcher.library`` entry."""
    path = str(_get(entry, "path", default=""))
    source = str(_get(entry, "source", "origin", default="ours"))
    source = str(getattr(source, "value", source))
    label = _SOURCE_LABELS.get(source.lower(), source)
    return LocalModelRow(
        path=path,
        name=str(_get(entry, "name", "display_name", default=Path(path).name)),
        size_bytes=_get(entry, "size_bytes", "size"),
        source=label,
        ours=label == "Spark Launcher",
        quant=str(_get(entry, "quant", "quantization", default="") or ""),
        architecture=str(_get(entry, "architecture", "arch", default="") or ""),
        parameters=str(_get(entry, "parameters_label", "parameters", default="") or ""),
        repo=str(_get(entry, "repo", "repo_id", default="") or ""),
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
