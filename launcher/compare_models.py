"""The pure "prepare" step of a comparison: models resolved, planned, and a residency decided.

Nothing loads here. Each model given as a GGUF path or a catalog id (``qwen3-32b:Q4_K_M``) is
turned into a ``ModelSummary`` (the GGUF header, or the catalog's offline numbers), planned on
the chosen machine at the requested context (``launcher.planning.plan``), and the plans feed
:func:`launcher.compare_plan.plan_residency`. ``compare --plan-only`` prints exactly this, which
is why it works for reference machines and for models not downloaded yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.compare_plan import (
    CompareModel,
    CompareRequest,
    EngineLike,
    Footprint,
    ResidencyPlan,
    make_labels,
    plan_residency,
)
from launcher.compare_results import CompareError
from launcher.engine.events import EngineParams
from launcher.hardware.profile import MachineProfile
from launcher.paths import AppPaths
from launcher.remotes import is_remote_spec, parse_spec

DEFAULT_QUANT = "Q4_K_M"


@dataclass
class PreparedModel:
    """One model of a comparison, planned but not loaded."""

    label: str
    source: str  # what the user typed
    path: Path | None  # local GGUF; None for a catalog model not on this machine
    summary: Any  # launcher.planning.ModelSummary
    plan: Any  # launcher.planning.MemoryPlan
    footprint: Footprint

    def as_compare_model(self) -> CompareModel:
        if self.plan is None and is_remote_spec(self.source):  # a server's model: no plan here
            return CompareModel(self.label, Path(self.source), EngineParams(), self.footprint,
                                self.source)  # fmt: skip
        if self.path is None:
            raise CompareError(f"{self.source} is not on this machine; download it first")
        params = EngineParams.from_plan(self.plan)
        return CompareModel(self.label, self.path, params, self.footprint, self.source)


@dataclass
class PreparedComparison:
    """Every model planned, and the residency decision for all of them together."""

    models: list[PreparedModel]
    residency: ResidencyPlan
    machine: MachineProfile
    machine_name: str
    ctx: int


def resolve_model(spec: str, paths: AppPaths | None = None) -> tuple[str, Path | None, Any]:
    """(display name, local path or None, ModelSummary) for a GGUF path or a catalog id."""
    from launcher.planning import ModelSummary

    if is_remote_spec(spec):  # remote:NAME/MODEL: its memory is the server's; no summary
        remote_name, remote_model = parse_spec(spec)
        return f"{remote_model.rsplit('/', 1)[-1]} @{remote_name}", Path(spec), None

    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf" or path.exists():
        if not path.is_file():
            raise CompareError(f"there is no model file at {path}; check the path")
        from launcher.gguf.reader import read_model

        summary = ModelSummary.from_header(read_model(path))
        return path.name.removesuffix(".gguf"), path, summary

    from launcher.catalog import Candidate, Catalog

    model_id, _, quant_name = spec.partition(":")
    catalog = Catalog.load(paths)
    model = catalog.get(model_id)  # CatalogError names the command that lists ids
    quant = model.quant(quant_name or DEFAULT_QUANT) or (model.quants[0] if model.quants else None)
    if quant is None or (quant_name and quant.quant.lower() != quant_name.lower()):
        known = ", ".join(q.quant for q in model.quants) or "none"
        raise CompareError(f"{model_id} has no {quant_name or DEFAULT_QUANT} file; try: {known}")
    cand = Candidate(model, quant)
    local = _local_file(paths, quant.repo, quant.files[0])
    return cand.key, local, cand.summary


def _local_file(paths: AppPaths | None, repo: str, filename: str) -> Path | None:
    """A downloaded catalog file in the app's models folder, if it is there."""
    root = (paths or AppPaths.default()).models_dir
    for candidate in (root / repo / filename, root / filename):
        if candidate.is_file():
            return candidate
    return None


def prepare(
    request: CompareRequest,
    paths: AppPaths | None = None,
    machine: MachineProfile | None = None,
) -> PreparedComparison:
    """Resolve and plan every model of ``request`` and decide the residency; loads nothing."""
    from launcher.machines import resolve_machine
    from launcher.planning import plan

    if len(request.models) < 2:
        raise CompareError("compare needs at least two models (paths or catalog ids)")
    machine = machine or resolve_machine(request.machine)
    resolved = [resolve_model(spec, paths) for spec in request.models]
    labels = make_labels([name for name, _, _ in resolved])
    models = []
    for label, spec, (_name, path, summary) in zip(labels, request.models, resolved, strict=True):
        if summary is None:  # a remote model takes no memory on this machine
            footprint = Footprint(label, 0, 0, 0, 0, fits_alone=True)
            models.append(PreparedModel(label, spec, path, None, None, footprint))
            continue
        mplan = plan(summary, machine, request.ctx, kv_type=request.kv_type, flash_attn=True)
        models.append(
            PreparedModel(label, spec, path, summary, mplan, Footprint.from_plan(label, mplan))
        )
    residency = plan_residency(
        [m.footprint for m in models],
        machine,
        ctx=request.ctx,
        force=request.force,
        headroom=request.headroom,
    )
    name = machine.name or "this machine"
    return PreparedComparison(models, residency, machine, name, request.ctx)


def prepare_judge(
    spec: str,
    ctx: int,
    kv_type: str = "f16",
    paths: AppPaths | None = None,
    machine: MachineProfile | None = None,
) -> CompareModel:
    """The judge model of a comparison (a GGUF path, catalog id or ``remote:NAME/MODEL``),
    planned on ``machine`` like the compared models; loads nothing."""
    from launcher.machines import resolve_machine
    from launcher.planning import plan

    name, path, summary = resolve_model(spec, paths)
    label = f"{name} (judge)"
    if summary is None:  # a remote model: the server's memory
        return CompareModel(label, Path(spec), EngineParams(), None, spec)
    if path is None:
        raise CompareError(f"the judge {spec} is not on this machine; download it first")
    mplan = plan(summary, machine or resolve_machine(None), ctx, kv_type=kv_type, flash_attn=True)
    return CompareModel(label, path, EngineParams.from_plan(mplan), None, spec)


def load_judge(model: CompareModel, paths: AppPaths | None = None) -> Any:
    """Start the judge's engine (a model host, or a remote server's client) and load it."""
    client = remote_client(model, paths) or default_client_factory()
    try:
        client.load(model.path, model.params)
    except BaseException:
        close = getattr(client, "close", None)
        if callable(close):
            close()
        raise
    return client


def remote_client(model: CompareModel, paths: AppPaths | None) -> EngineLike | None:
    """A ``RemoteEngineClient`` for a ``remote:NAME/MODEL`` model, else None."""
    from launcher.remotes import is_remote_spec

    if not is_remote_spec(str(model.path)):
        return None
    from launcher.engine.remote import RemoteEngineClient

    return RemoteEngineClient(paths=paths)


def default_client_factory() -> EngineLike:
    """A new model host client (one process per model)."""
    from launcher.engine import EngineClient

    client: EngineLike = EngineClient()
    return client
