"""Which catalog model is best for this machine and this kind of work.

:func:`recommend` plans every catalog file on a machine (the instant formula estimate from
:mod:`launcher.planning`, so the whole catalog ranks in milliseconds) and orders the ones
that fit:

1. **Usable first.** A file is *usable* when it fits (full GPU, partial offload or CPU)
   and its estimated decode speed reaches the use's floor: 10 tokens/s for interactive
   work (assistant, coding, agents: about reading speed), 15 tokens/s for reasoning (long
   thinking traces must not take minutes), 5 tokens/s for large private work (batch-like
   jobs on long documents, where quality matters more than latency).
2. **Then quality.** Among usable files the higher quality wins: the catalog's editorial
   score for the use, minus a small penalty for lossier quants (Q4_K_M -2, Q5_K_M -1;
   Q8_0 and native MXFP4 0), so a bigger model at Q4 beats a smaller one at Q8, and the
   same model at Q8 beats itself at Q4 when both run at a usable speed. Partial offload
   costs 1.5 points (prompt processing drops by an order of magnitude when layers stay on
   the CPU), so a model's Q4 fully on the GPU beats its Q5 split across GPU and CPU.
3. **Then speed.** Ties go to the faster plan (full GPU before partial offload before CPU).

Files that fit but are too slow follow in two tiers: first the *nearly usable* ones (at
least half the floor), by quality and then speed; then the rest, fastest first, because on a
small machine a 4B model at 5 tokens/s serves the user better than a 32B at 0.8. Files that
do not fit are left out (or come last with ``include_no_fit``). Each
:class:`Recommendation` carries its :class:`~launcher.planning.MemoryPlan` (with the verdict
and the largest context that fits on the GPU) and its speed estimate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from launcher.catalog import Candidate, Catalog
from launcher.planning import MemoryPlan, SpeedEstimate, plan

if TYPE_CHECKING:
    from launcher.hardware.profile import MachineProfile
    from launcher.planning.calibration import CalibrationStore

#: Decode speed (tokens/s) a use needs to feel usable; see the module docstring.
USABLE_DECODE_TPS: dict[str, float] = {
    "assistant": 10.0,
    "coding": 10.0,
    "agents": 10.0,
    "reasoning": 15.0,
    "private-work": 5.0,
}
DEFAULT_USABLE_TPS = 10.0
#: Quality penalty of lossier quants (points on the catalog's 0-100 scale).
QUANT_PENALTY: dict[str, float] = {"Q4_K_M": 2.0, "Q5_K_M": 1.0, "Q6_K": 0.5}
#: Quality penalty of a plan that splits the layers between GPU and CPU.
PARTIAL_OFFLOAD_PENALTY = 1.5
_VERDICT_ORDER = {"full_gpu": 0, "partial": 1, "cpu": 2, "no_fit": 3}


@dataclass(frozen=True)
class Recommendation:
    """One ranked catalog file with its plan on the machine."""

    rank: int  # 1 = best
    candidate: Candidate
    plan: MemoryPlan
    usable: bool  # fits and reaches the use's speed floor
    quality: float  # the ranking score: catalog quality for the use - quant/offload penalties
    reason: str  # one line a user can read: where it runs, how fast, what limits it

    @property
    def verdict(self) -> str:
        return self.plan.verdict

    @property
    def speed(self) -> SpeedEstimate:
        return self.plan.speed

    def to_json(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "rank": self.rank,
            "key": c.key,
            "model": c.model.id,
            "name": c.model.name,
            "quant": c.quant.quant,
            "repo": c.quant.repo,
            "files": list(c.quant.files),
            "uri": c.quant.uri,
            "size_bytes": c.quant.size_bytes,
            "size_status": c.quant.size_status,
            "usable": self.usable,
            "quality": self.quality,
            "reason": self.reason,
            "summary_exact": c.summary_is_exact,
            "capabilities": list(c.model.capabilities),
            **self.plan.to_json(),
        }


def usable_floor(use: str | None) -> float:
    """The decode tokens/s below which a plan is "too slow" for ``use``."""
    return USABLE_DECODE_TPS.get(use or "", DEFAULT_USABLE_TPS)


def _reason(p: MemoryPlan, requested_ctx: int, floor: float) -> str:
    where = {
        "full_gpu": "runs fully on the GPU",
        "partial": f"partial offload: {p.gpu_layers} of {p.total_layers} layers on the GPU",
        "cpu": "runs on the CPU",
        "no_fit": "does not fit",
    }[p.verdict]
    gib = p.total_bytes / (1 << 30)
    parts = [f"{where}, {gib:.1f} GiB at {p.context} tokens"]
    if p.verdict != "no_fit":
        tps = p.speed.decode_tokens_per_s
        slow = "" if tps >= floor else f", below the {floor:g} tok/s usable floor"
        parts.append(f"~{tps:.0f} tok/s ({p.speed.basis_label}){slow}")
    if p.context < requested_ctx:
        parts.append(f"context limited to {p.context} by the model")
    if p.verdict == "partial" and p.max_context_full_gpu:
        parts.append(f"fully on the GPU up to {p.max_context_full_gpu} tokens")
    return "; ".join(parts)


def recommend(
    profile: MachineProfile,
    use: str | None = None,
    context: int = 8192,
    catalog: Catalog | None = None,
    kv_type: str = "f16",
    flash_attn: bool = True,
    quants: Iterable[str] | None = None,
    one_per_model: bool = False,
    include_no_fit: bool = False,
    calibration: CalibrationStore | None = None,
    capabilities: Iterable[str] = (),
) -> list[Recommendation]:
    """Rank the catalog's files for ``profile`` and ``use`` at ``context`` tokens.

    ``capabilities`` keeps only models that have all of them (``["tools"]``: models that call
    tools natively, for agents). ``one_per_model`` keeps only each model's best-ranked quant.
    ``include_no_fit`` appends the files that do not fit (last, for a "why not?" view). The
    ranking is explained in the module docstring.
    """
    catalog = catalog or Catalog.load()
    floor = usable_floor(use)
    scored: list[tuple[tuple[float, ...], Candidate, MemoryPlan, bool, float]] = []
    for cand in catalog.candidates(use=use, quants=quants, capabilities=capabilities):
        p = plan(
            cand.summary,
            profile,
            context,
            kv_type=kv_type,
            flash_attn=flash_attn,
            calibration=calibration,
        )
        fits = p.verdict != "no_fit"
        if not fits and not include_no_fit:
            continue
        usable = fits and p.speed.decode_tokens_per_s >= floor
        quality = cand.model.quality_for(use) - QUANT_PENALTY.get(cand.quant.quant.upper(), 0.0)
        if p.verdict == "partial":
            quality -= PARTIAL_OFFLOAD_PENALTY
        if usable:
            key = (0.0, -quality, float(_VERDICT_ORDER[p.verdict]), -p.speed.decode_tokens_per_s)
        elif fits and p.speed.decode_tokens_per_s >= floor / 2:
            # nearly usable: by the model's quality, then its fastest quant first
            key = (1.0, -float(cand.model.quality_for(use)), -p.speed.decode_tokens_per_s, 0.0)
        else:
            # far too slow (or no fit): fastest first, so small machines see small models first
            key = (
                2.0 if fits else 3.0,
                -p.speed.decode_tokens_per_s,
                -float(cand.model.quality_for(use)),
                0.0,
            )
        scored.append((key, cand, p, usable, quality))
    scored.sort(key=lambda t: (t[0], t[1].key))
    out: list[Recommendation] = []
    seen: set[str] = set()
    for _, cand, p, usable, quality in scored:
        if one_per_model:
            if cand.model.id in seen:
                continue
            seen.add(cand.model.id)
        out.append(
            Recommendation(
                rank=len(out) + 1,
                candidate=cand,
                plan=p,
                usable=usable,
                quality=quality,
                reason=_reason(p, context, floor),
            )
        )
    return out


# ------------------------------------------------------------------- any Hub repository
#: Headers are a few MB each (tokenizer arrays): a repository's usual quants are planned from
#: their headers, the rest only listed.
PLANNED_QUANTS = ("Q4_K_M", "Q5_K_M", "Q8_0", "MXFP4", "Q6_K")
MAX_PLANNED_FILES = 4


@dataclass(frozen=True)
class RepoOption:
    """One GGUF choice of a Hub repository, planned on the machine when its header was read."""

    repo: str
    name: str
    quant: str
    files: tuple[str, ...]
    size_bytes: int
    params: int  # 0: unknown (header not read)
    plan: MemoryPlan | None  # None: not planned (see ``reason``)
    reason: str


def plan_repo(
    repo: str,
    profile: MachineProfile,
    context: int,
    calibration: CalibrationStore | None = None,
) -> list[RepoOption]:
    """A Hub repository's GGUF choices, the usual quants first and planned from their headers
    (read by HTTP Range, no tensor data); the others listed unplanned. Hub errors raise."""
    from launcher import hub
    from launcher.catalog import read_remote_model
    from launcher.errors import LauncherError
    from launcher.planning import ModelSummary

    files = hub.list_gguf_files(repo)
    order = {q: i for i, q in enumerate(PLANNED_QUANTS)}
    ranked = sorted(files.choices, key=lambda c: order.get(c.quant or "", len(order)))
    out: list[RepoOption] = []
    for n, choice in enumerate(ranked):
        names = tuple(f.path for f in choice.files)
        p: MemoryPlan | None = None
        params = 0
        reason = "Not planned: only the usual quants are read from the Hub."
        if n < MAX_PLANNED_FILES:
            try:
                model, _ = read_remote_model(repo, names, files.revision)
                summary = ModelSummary.from_header(model)
                params = summary.n_params
                ctx = min(context, summary.context_length or context)
                p = plan(summary, profile, ctx, calibration=calibration)
                reason = f"Planned from the file's header at {ctx} tokens."
            except LauncherError as exc:
                reason = f"Could not read its header: {exc}"
        out.append(
            RepoOption(
                repo=repo,
                name=repo.split("/")[-1],
                quant=choice.quant or choice.label,
                files=names,
                size_bytes=choice.total_size,
                params=params,
                plan=p,
                reason=reason,
            )
        )
    return out
