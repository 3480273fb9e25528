"""Plain row records the item models show, and the adapters that build them from core objects.

The adapters are the only place in the UI that knows the shape of the core's objects
(recommendations, a Hub repository's options, library entries, doctor checks); the models
and views see these rows only. Each adapter takes the core's own type, so a renamed field is
a type error, not a blank column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launcher.hardware.doctor import Check
    from launcher.library import LocalModel, SetAsideFile
    from launcher.planning import MemoryPlan
    from launcher.recommend import Recommendation, RepoOption


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


def _params_label(params: Any) -> str:
    if isinstance(params, int | float) and params:
        return f"{params / 1e9:.1f}B" if params < 1e10 else f"{params / 1e9:.0f}B"
    return str(params or "")


def candidate_from(rec: Recommendation) -> CandidateRow:
    """A ``CandidateRow`` from a catalog file ranked by ``launcher.recommend.recommend``."""
    c = rec.candidate
    return _candidate_row(
        repo=c.quant.repo, files=c.quant.files, name=c.model.name, quant=c.quant.quant,
        size_bytes=c.quant.size_bytes, plan=rec.plan, params=c.model.params,
        capabilities=c.model.capabilities, uses=c.model.uses, note=rec.reason, source=rec,
    )  # fmt: skip


def candidate_from_option(opt: RepoOption) -> CandidateRow:
    """A ``CandidateRow`` from one GGUF choice of a Hub repository (``plan_repo``)."""
    return _candidate_row(
        repo=opt.repo, files=opt.files, name=opt.name, quant=opt.quant,
        size_bytes=opt.size_bytes, plan=opt.plan, params=opt.params, capabilities=(),
        uses=(), note=opt.reason, source=opt,
    )  # fmt: skip


def _candidate_row(
    *, repo: str, files: tuple[str, ...], name: str, quant: str, size_bytes: int,
    plan: MemoryPlan | None, params: int, capabilities: tuple[str, ...],
    uses: tuple[str, ...], note: str, source: Any,
) -> CandidateRow:  # fmt: skip
    filename = files[0] if files else ""
    return CandidateRow(
        key=f"{repo}/{filename}",
        name=name or filename or repo,
        repo=repo,
        filename=filename,
        quant=quant,
        size_bytes=size_bytes,
        verdict=plan.verdict if plan is not None else "unknown",
        gpu_layers=plan.gpu_layers if plan is not None else None,
        total_layers=plan.total_layers if plan is not None else None,
        weights_bytes=plan.weights_bytes if plan is not None else None,
        kv_bytes=plan.kv_bytes if plan is not None else None,
        compute_bytes=plan.compute_bytes if plan is not None else None,
        total_bytes=plan.total_bytes if plan is not None else None,
        tokens_per_s=plan.speed.decode_tokens_per_s if plan is not None else None,
        basis=plan.speed.basis if plan is not None else "estimated",
        basis_runs=plan.speed.runs if plan is not None else 0,
        capabilities=tuple(capabilities),
        uses=tuple(uses),
        params=_params_label(params),
        context=plan.context if plan is not None else None,
        note=note,
        source=source,
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


def local_model_from(entry: LocalModel) -> LocalModelRow:
    """A ``LocalModelRow`` from a ``launcher.library.LocalModel``."""
    label = _SOURCE_LABELS.get(entry.source.lower(), entry.source)
    ours = entry.owned
    return LocalModelRow(
        path=str(entry.path),
        name=entry.name or entry.path.name,
        size_bytes=entry.size,
        source="Spark Launcher" if ours else label,
        ours=ours,
        quant=entry.quant or "",
        architecture=entry.architecture or "",
        parameters=_params_label(entry.parameters),
        repo=entry.repo_id or "",
    )


def set_aside_from(entry: SetAsideFile) -> SetAsideRow:
    """A ``SetAsideRow`` from a ``launcher.library.SetAsideFile``."""
    return SetAsideRow(
        path=str(entry.path), name=entry.name or entry.path.name, size_bytes=entry.size,
        repo=entry.repo_id or "",
    )  # fmt: skip


def check_from(check: Check) -> CheckRow:
    """A ``CheckRow`` from a ``launcher.hardware.doctor`` check."""
    return CheckRow(name=check.title, status=check.status, detail=check.detail, fix=check.fix or "")
