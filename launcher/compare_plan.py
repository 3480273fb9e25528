"""What a comparison is asked to do, and whether its models can share the machine.

Plain data and pure functions, no engine and no I/O: :class:`CompareRequest` (what the CLI or
the Compare view asks for), :class:`CompareModel` (one model, ready to load), and the residency
decision :func:`plan_residency` (all models loaded together with headroom, or one after
another, or impossible, and why in plain words). ``launcher.compare_models`` (the prepare step)
and ``launcher.compare`` (the session) both build on this module, which imports neither, so
the three form a line rather than a circle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from launcher.compare_results import CompareError
from launcher.compare_suites import PromptSuite, load_suite, single_prompt
from launcher.compare_workloads import is_workload, load_workload
from launcher.engine.api import Engine
from launcher.engine.events import EngineParams, Sampling
from launcher.hardware.profile import MachineProfile
from launcher.planning.budget import pool_capacity, pool_for_device
from launcher.planning.types import MemoryPlan

Mode = Literal["resident", "sequential", "impossible"]
GB = 1e9
DEFAULT_HEADROOM = 0.10
"""Share of the usable memory kept free when models share a machine (OS, page cache, spikes;
GB10 recipes keep 10-15% free)."""


# ---------------------------------------------------------------------------- residency


@dataclass(frozen=True)
class Footprint:
    """What one model needs in memory, taken from its memory plan."""

    label: str
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    total_bytes: int
    per_device: Mapping[str, int] = field(default_factory=dict)  # device name -> bytes
    fits_alone: bool | None = None  # the plan's own verdict; None: decide from the totals
    est_decode_tps: float | None = None
    est_prefill_tps: float | None = None

    @classmethod
    def from_plan(cls, label: str, plan: MemoryPlan) -> Footprint:
        """What a ``MemoryPlan`` says the model needs, per device and in all."""
        return cls(
            label=label,
            weights_bytes=plan.weights_bytes,
            kv_bytes=plan.kv_bytes,
            compute_bytes=plan.compute_bytes,
            total_bytes=plan.total_bytes,
            per_device={name: use.total for name, use in plan.per_device.items()},
            fits_alone=plan.verdict != "no_fit",
            est_decode_tps=plan.speed.decode_tokens_per_s,
            est_prefill_tps=plan.speed.prefill_tokens_per_s,
        )


@dataclass(frozen=True)
class ResidencyPlan:
    """Whether the models stay loaded together or take turns, and the reason in plain words."""

    mode: Mode  # what will happen
    recommended: Mode  # what the planner would choose on its own
    forced: bool
    reason: str
    needed_bytes: int  # all models together
    capacity_bytes: int  # memory the machine can give models
    headroom: float
    ctx: int | None
    footprints: tuple[Footprint, ...]
    warning: str | None = None

    @property
    def resident(self) -> bool:
        return self.mode == "resident"

    @property
    def budget_bytes(self) -> int:
        return int(self.capacity_bytes * (1.0 - self.headroom))

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["footprints"] = [
            {**dataclasses.asdict(f), "per_device": dict(f.per_device)} for f in self.footprints
        ]
        d["budget_bytes"] = self.budget_bytes
        return d

    def describe(self) -> str:
        """Multi-line text for the CLI: the decision, then one line per model."""
        lines = [f"Residency: {self.mode} — {self.reason}"]
        if self.warning:
            lines.append(f"Warning: {self.warning}")
        for f in self.footprints:
            est = f", est. {f.est_decode_tps:.1f} tok/s" if f.est_decode_tps else ""
            lines.append(
                f"  {f.label}: {_gb(f.weights_bytes)} GB weights + {_gb(f.kv_bytes)} GB KV + "
                f"{_gb(f.compute_bytes)} GB compute = {_gb(f.total_bytes)} GB{est}"
            )
        return "\n".join(lines)


def _gb(n: int) -> str:
    v = n / GB
    if v < 1:
        return f"{v:.2f}"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _ctx_text(ctx: int | None) -> str:
    if not ctx:
        return ""
    return f" at {ctx // 1024}k" if ctx % 1024 == 0 else f" at {ctx} tokens"


def plan_residency(
    footprints: Sequence[Footprint],
    machine: MachineProfile,
    ctx: int | None = None,
    force: Literal["resident", "sequential"] | None = None,
    headroom: float = DEFAULT_HEADROOM,
) -> ResidencyPlan:
    """Decide whether ``footprints`` can all stay loaded on ``machine``, and say why.

    Resident when the models together fit in the usable memory less ``headroom`` and no single
    device (a discrete GPU's VRAM) is over-committed; otherwise sequential, unless one model
    alone does not fit, which makes the comparison impossible as planned. ``force`` overrides
    the choice between resident and sequential (with a warning when it is risky).
    """
    if len(footprints) < 2:
        raise CompareError("a comparison needs at least two models")
    pools = {id(p): p for p in machine.pools}
    capacity = sum(pool_capacity(p) for p in pools.values())
    budget = int(capacity * (1.0 - headroom))
    needed = sum(f.total_bytes for f in footprints)
    n = len(footprints)
    both = "both" if n == 2 else f"all {n}"
    weights = " + ".join(_gb(f.weights_bytes) for f in footprints)
    kv = sum(f.kv_bytes for f in footprints)
    extra = sum(f.compute_bytes for f in footprints)
    ctx_s = _ctx_text(ctx)
    kept = f"{headroom * 100:.0f}% kept free"

    too_big = [f for f in footprints if f.fits_alone is False or f.total_bytes > budget]
    overloaded = _overloaded_devices(footprints, machine, headroom)

    if too_big:
        names = ", ".join(f"{f.label} needs {_gb(f.total_bytes)} GB" for f in too_big)
        if len(too_big) == n:
            head = "neither model fits" if n == 2 else "none of the models fits"
        else:
            head = f"{' and '.join(f.label for f in too_big)} does not fit even alone"
            if len(too_big) == 1:
                names = f"it needs {_gb(too_big[0].total_bytes)} GB"
        reason = (
            f"{head}: {names}{ctx_s}, but this machine can give models {_gb(budget)} GB "
            f"({_gb(capacity)} GB, {kept}). Choose a smaller quantization or a shorter "
            "context, or compare on a bigger machine."
        )
        recommended: Mode = "impossible"
    elif needed <= budget and not overloaded:
        reason = (
            f"{both} fit: {weights} GB of weights + {_gb(kv)} GB KV{ctx_s}"
            f"{f' + {_gb(extra)} GB compute' if extra >= 0.05 * GB else ''} = {_gb(needed)} GB "
            f"of {_gb(capacity)} GB ({kept}); they stay loaded together"
        )
        recommended = "resident"
    else:
        if overloaded:
            dev, need, cap = overloaded[0]
            why = (
                f"together they need {_gb(need)} GB on {dev}, which has {_gb(cap)} GB "
                "(layers would spill and speeds would not be fair)"
            )
        else:
            why = (
                f"together they need {_gb(needed)} GB ({weights} GB of weights + {_gb(kv)} GB "
                f"KV{ctx_s}) but this machine can give models {_gb(budget)} GB "
                f"({_gb(capacity)} GB, {kept})"
            )
        alone = ", ".join(f"{f.label} {_gb(f.total_bytes)} GB" for f in footprints)
        reason = f"one after another: {why}; each fits alone ({alone})"
        recommended = "sequential"

    mode: Mode = recommended
    warning = None
    if force and recommended != "impossible" and force != recommended:
        mode = force
        if force == "resident":
            warning = (
                "forced to keep all models loaded although they do not fit together with "
                "headroom: expect swapping, spilled layers or an out-of-memory crash"
            )
        else:
            warning = "forced to run one after another: each model is loaded and unloaded in turn"
    return ResidencyPlan(
        mode=mode,
        recommended=recommended,
        forced=bool(force) and force != recommended and recommended != "impossible",
        reason=reason,
        needed_bytes=needed,
        capacity_bytes=capacity,
        headroom=headroom,
        ctx=ctx,
        footprints=tuple(footprints),
        warning=warning,
    )


def _overloaded_devices(
    footprints: Sequence[Footprint], machine: MachineProfile, headroom: float
) -> list[tuple[str, int, int]]:
    """Discrete-GPU devices whose combined share exceeds their memory: (name, need, capacity)."""
    totals: dict[str, int] = {}
    for f in footprints:
        for dev, b in f.per_device.items():
            totals[dev] = totals.get(dev, 0) + b
    out = []
    for dev, need in totals.items():
        pool = pool_for_device(machine, dev)
        if pool is None or pool.kind != "vram":
            continue  # unified and RAM pools are covered by the total check
        cap = pool_capacity(pool)
        if need > cap * (1.0 - headroom):
            out.append((pool.name.removeprefix("VRAM: "), need, cap))
    return out


# ---------------------------------------------------------------------------- session


#: What a comparison drives: any engine (``launcher.engine.api.Engine``).
EngineLike = Engine


@dataclass
class CompareModel:
    """One model to compare: a label, the file to load, how to load it, what was estimated."""

    label: str
    path: Path
    params: EngineParams
    footprint: Footprint | None = None
    source: str | None = None


def make_labels(names: Sequence[str]) -> list[str]:
    """Short unique labels from file names or ids (``gemma-3-270m``, ``tiny-llama (2)``)."""
    out: list[str] = []
    for name in names:
        base = (
            Path(name).name.removesuffix(".gguf") if "/" in name or name.endswith(".gguf") else name
        )
        label, k = base, 2
        while label in out:
            label, k = f"{base} ({k})", k + 1
        out.append(label)
    return out


@dataclass(frozen=True)
class CompareRequest:
    """What the user asked for, from the CLI or the Compare view."""

    models: tuple[str, ...]  # GGUF paths or catalog ids (``qwen3-32b:Q4_K_M``)
    prompt: str | None = None
    suite: str | None = None
    ctx: int = 4096
    machine: str | None = None  # ``--machine`` spec; None: this machine
    force: Literal["resident", "sequential"] | None = None
    concurrent: bool = False
    blind: bool = False
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.0, max_tokens=256))
    seed: int = 1234
    kv_type: str = "f16"
    headroom: float = DEFAULT_HEADROOM
    limit: int | None = None  # only the first N prompts of the suite
    max_tokens_cap: int | None = None  # caps every prompt's own max_tokens too
    template: str | None = None  # the prompt template of a ``folder:PATH`` workload

    def to_json(self) -> dict[str, Any]:
        """Plain JSON, saved with the result so an interrupted comparison can be resumed."""
        data = dataclasses.asdict(self)
        data["models"] = list(self.models)
        data["sampling"] = self.sampling.to_dict()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CompareRequest:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["models"] = tuple(kwargs.get("models") or ())
        if isinstance(kwargs.get("sampling"), Mapping):
            kwargs["sampling"] = Sampling.from_dict(kwargs["sampling"])
        return cls(**kwargs)

    def prompt_suite(self) -> PromptSuite:
        if self.suite:
            suite = (
                load_workload(self.suite, template=self.template)
                if is_workload(self.suite)
                else load_suite(self.suite)
            ).head(self.limit)
            if self.max_tokens_cap:
                cap = self.max_tokens_cap
                suite = dataclasses.replace(
                    suite,
                    prompts=tuple(
                        dataclasses.replace(p, max_tokens=min(p.max_tokens or cap, cap))
                        for p in suite.prompts
                    ),
                )
            return suite
        if not self.prompt or not self.prompt.strip():
            raise CompareError("give a prompt (--prompt) or a prompt suite (--suite)")
        return single_prompt(self.prompt, self.sampling.max_tokens)
