"""Side-by-side comparison sessions: residency planning and running models over prompts.

A comparison runs two or more models over one prompt or a prompt suite with the same sampling
settings and seed. Before anything loads, :func:`plan_residency` decides from the models'
memory plans whether they can all stay loaded together (with headroom) or must run one after
another (load A, answer, unload, load B, answer), and says why in plain words. The user can
force either.

:class:`ComparisonSession` then runs the models through their own ``EngineClient`` (one model
host process each), one model at a time by default so every speed figure is fair, or all at
once as an option (their decoding then shares memory bandwidth). It yields plain events the CLI
prints and the UI worker relays as signals. A host crash in one model becomes that model's
error; the other models go on and nothing already measured is lost.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import queue
import random
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import psutil

from launcher.compare_results import CompareError, ComparisonResult, ModelEntry, RunResult
from launcher.compare_suites import PromptSuite, load_suite, single_prompt
from launcher.engine.events import (
    EngineParams,
    HostCrashed,
    Loaded,
    ReplyFinished,
    Sampling,
    Token,
)
from launcher.errors import LauncherError, NotEnoughMemory
from launcher.hardware.profile import MachineProfile, MemoryPool
from launcher.paths import AppPaths

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
    def from_plan(cls, label: str, plan: Any) -> Footprint:
        """Read a ``launcher.estimate.MemoryPlan`` (or anything with the same fields)."""
        per_device = getattr(plan, "per_device", None) or {}
        if not isinstance(per_device, Mapping):
            per_device = _per_device_from_sequence(per_device)
        speed = getattr(plan, "speed", None)
        return cls(
            label=label,
            weights_bytes=int(getattr(plan, "weights_bytes", 0) or 0),
            kv_bytes=int(getattr(plan, "kv_bytes", 0) or 0),
            compute_bytes=int(getattr(plan, "compute_bytes", 0) or 0),
            total_bytes=int(plan.total_bytes),
            per_device={str(k): int(_bytes_of(v)) for k, v in per_device.items()},
            fits_alone=_verdict_fits(getattr(plan, "verdict", None)),
            est_decode_tps=_speed_field(speed, ("decode_tps", "decode_tokens_per_s", "tg")),
            est_prefill_tps=_speed_field(speed, ("prefill_tps", "prefill_tokens_per_s", "pp")),
        )


def _bytes_of(value: Any) -> int:
    if isinstance(value, int | float):
        return int(value)
    for name in ("total_bytes", "total", "bytes"):
        v = getattr(value, name, None)
        if isinstance(v, int | float):
            return int(v)
    if isinstance(value, Mapping):
        return int(sum(v for v in value.values() if isinstance(v, int | float)))
    return 0


def _per_device_from_sequence(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items or ():
        name = getattr(item, "device", None) or getattr(item, "name", None) or str(len(out))
        out[str(name)] = out.get(str(name), 0) + _bytes_of(item)
    return out


def _verdict_fits(verdict: Any) -> bool | None:
    """Interpret the estimate's verdict (an enum, a string, or an object with ``fits``)."""
    if verdict is None:
        return None
    fits = getattr(verdict, "fits", None)
    if isinstance(fits, bool):
        return fits
    text = str(getattr(verdict, "value", verdict)).lower()
    if any(w in text for w in ("no_fit", "not", "too", "wont", "won't", "does_not", "exceed")):
        return False
    return True if text else None  # "full_gpu", "partial", "cpu": it fits, somewhere


def _speed_field(speed: Any, names: Sequence[str]) -> float | None:
    if speed is None:
        return None
    for name in names:
        v = speed.get(name) if isinstance(speed, Mapping) else getattr(speed, name, None)
        if isinstance(v, int | float):
            return float(v)
    return None


def pool_capacity(pool: MemoryPool) -> int:
    """Bytes of a pool models may use: what is free (when known), capped by the GPU's share."""
    figures = [pool.total]
    if pool.available is not None:
        figures.append(pool.available)
    if pool.gpu_usable is not None and pool.kind != "ram":
        figures.append(pool.gpu_usable)
    return max(0, min(figures))


def _pool_for_device(machine: MachineProfile, device: str) -> MemoryPool | None:
    for p in machine.pools:
        if p.device == device:
            return p
    if device.upper().startswith("CPU"):
        return machine.ram_pool
    return None


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
        pool = _pool_for_device(machine, dev)
        if pool is None or pool.kind != "vram":
            continue  # unified and RAM pools are covered by the total check
        cap = pool_capacity(pool)
        if need > cap * (1.0 - headroom):
            out.append((pool.name.removeprefix("VRAM: "), need, cap))
    return out


# ---------------------------------------------------------------------------- session


class EngineLike(Protocol):
    """What a comparison needs from ``launcher.engine.EngineClient``."""

    def load(self, path: str | Path, params: Any) -> Loaded: ...

    def chat(self, messages: list[dict[str, str]], sampling: Sampling) -> Iterator[Any]: ...

    def cancel(self) -> None: ...

    def unload(self) -> None: ...


@dataclass
class CompareModel:
    """One model to compare: a label, the file to load, how to load it, what was estimated."""

    label: str
    path: Path
    params: EngineParams
    footprint: Footprint | None = None
    source: str | None = None


# Events the session yields (plain data; the UI relays them as signals).
@dataclass(frozen=True)
class ModelLoading:
    label: str


@dataclass(frozen=True)
class ModelReady:
    label: str
    load_s: float
    pid: int


@dataclass(frozen=True)
class ModelUnloaded:
    label: str
    unload_s: float


@dataclass(frozen=True)
class RunStarted:
    label: str
    prompt_id: str


@dataclass(frozen=True)
class RunToken:
    label: str
    prompt_id: str
    text: str


@dataclass(frozen=True)
class RunDone:
    result: RunResult


@dataclass(frozen=True)
class ModelFailed:
    label: str
    message: str


@dataclass(frozen=True)
class SessionDone:
    result: ComparisonResult
    saved_to: Path | None


CompareEvent = (
    ModelLoading
    | ModelReady
    | ModelUnloaded
    | RunStarted
    | RunToken
    | RunDone
    | ModelFailed
    | SessionDone
)


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


class ComparisonSession:
    """Runs models over prompts per a residency plan; iterate :meth:`run` for events.

    ``client_factory`` makes one engine client per model (the real ``EngineClient`` by
    default), so two models are two host processes. ``cancel`` (a ``threading.Event``) stops
    between tokens; what was measured so far stays in the result.
    """

    def __init__(
        self,
        models: Sequence[CompareModel],
        suite: PromptSuite,
        residency: ResidencyPlan,
        sampling: Sampling | None = None,
        seed: int = 1234,
        concurrent: bool = False,
        blind: bool = False,
        client_factory: Callable[[], EngineLike] | None = None,
        paths: AppPaths | None = None,
        save: bool = True,
        machine_name: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if len(models) < 2:
            raise CompareError("a comparison needs at least two models")
        if residency.mode == "impossible":
            raise NotEnoughMemory(residency.reason)
        if concurrent and not residency.resident:
            raise CompareError(
                "running the models at once needs them all loaded together; choose resident "
                "residency or run them one at a time"
            )
        self.models = list(models)
        self.suite = suite
        self.residency = residency
        base = sampling or Sampling(temperature=0.0, max_tokens=256)
        self.sampling = dataclasses.replace(base, seed=seed)
        self.concurrent = concurrent
        self.paths = paths
        self.save = save
        self._factory = client_factory or _default_client_factory
        self._clients: dict[str, EngineLike] = {}
        self._loaded: dict[str, Loaded] = {}
        self._unloadable: set[str] = set()  # models whose load failed: not retried
        self._cancel = threading.Event()
        self._lock = threading.Lock()  # runs are recorded from one thread per model at once
        self.result = ComparisonResult(
            models=[
                ModelEntry(
                    label=m.label,
                    source=m.source or str(m.path),
                    path=str(m.path),
                    weights_bytes=m.footprint.weights_bytes if m.footprint else None,
                    kv_bytes=m.footprint.kv_bytes if m.footprint else None,
                    total_bytes=m.footprint.total_bytes if m.footprint else None,
                    est_decode_tps=m.footprint.est_decode_tps if m.footprint else None,
                    est_prefill_tps=m.footprint.est_prefill_tps if m.footprint else None,
                )
                for m in self.models
            ],
            prompts=[p.to_json() for p in suite.prompts],
            suite=suite.name if suite.name != "prompt" else None,
            sampling=self.sampling.to_dict(),
            seed=seed,
            residency=residency.to_json(),
            concurrent=concurrent,
            machine=machine_name,
        )
        if blind:
            self.result.assign_blind_letters(rng)

    # -------------------------------------------------------------- control
    def cancel(self) -> None:
        """Stop as soon as possible (between tokens); safe from any thread."""
        self._cancel.set()
        for client in list(self._clients.values()):
            with contextlib.suppress(Exception):
                client.cancel()

    # -------------------------------------------------------------- running
    def run(self) -> Iterator[CompareEvent]:
        """Run the whole comparison, yielding events; the last one is :class:`SessionDone`."""
        try:
            if self.residency.resident:
                yield from self._run_resident()
            else:
                yield from self._run_sequential()
        finally:
            for label in list(self._clients):
                self._close(label)
        self.result.finished = dt_now()
        saved = self.result.save(self.paths) if self.save else None
        yield SessionDone(self.result, saved)

    def _run_sequential(self) -> Iterator[CompareEvent]:
        for model in self.models:
            if self._cancel.is_set():
                break
            for prompt in self.suite.prompts:
                if self._cancel.is_set():
                    break
                if (yield from self._ensure_loaded(model)):
                    yield from self._generate(model, prompt)
                else:
                    self._record_skip(model.label, prompt.id, "the model could not be loaded")
            if model.label in self._clients:
                yield from self._unload(model.label)

    def _run_resident(self) -> Iterator[CompareEvent]:
        for model in self.models:
            if self._cancel.is_set():
                return
            yield from self._ensure_loaded(model)
        for prompt in self.suite.prompts:
            live = []
            for model in self.models:
                if self._cancel.is_set():
                    return
                # A crashed host is started again for the next prompt, so one bad prompt does
                # not lose the rest of the suite; a model that failed to load is not retried.
                if not (yield from self._ensure_loaded(model)):
                    self._record_skip(model.label, prompt.id, "the model could not be loaded")
                elif self.concurrent:
                    live.append(model)
                else:
                    yield from self._generate(model, prompt)
            if live:
                yield from self._generate_concurrently(live, prompt)

    def _ensure_loaded(self, model: CompareModel) -> Generator[CompareEvent, None, bool]:
        """Load ``model`` unless its host is up; False when it cannot be loaded."""
        if model.label in self._clients:
            return True
        if model.label in self._unloadable:
            return False
        ok = yield from self._load(model)
        if not ok:
            self._unloadable.add(model.label)
        return ok

    def _load(self, model: CompareModel) -> Generator[CompareEvent, None, bool]:
        """Start a host for ``model``; returns (via StopIteration) whether it is ready."""
        yield ModelLoading(model.label)
        client = self._clients.get(model.label)
        if client is None:
            client = _remote_client(model, self.paths) or self._factory()
            self._clients[model.label] = client
        entry = self.result.model(model.label)
        try:
            loaded = client.load(model.path, model.params)
        except LauncherError as exc:
            yield ModelFailed(model.label, str(exc))
            self._close(model.label)
            return False
        self._loaded[model.label] = loaded
        entry.load_s = loaded.load_s
        entry.loads += 1
        yield ModelReady(model.label, loaded.load_s, loaded.pid)
        return True

    def _unload(self, label: str) -> Iterator[CompareEvent]:
        yield ModelUnloaded(label, self._close(label))

    def _close(self, label: str) -> float:
        """End ``label``'s host; returns (and records) how long that took."""
        client = self._clients.pop(label, None)
        self._loaded.pop(label, None)
        if client is None:
            return 0.0
        t0 = time.perf_counter()
        with contextlib.suppress(Exception):
            client.unload()
        close = getattr(client, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()
        dt = time.perf_counter() - t0
        self.result.model(label).unload_s = dt
        return dt

    def _messages(self, prompt: Any) -> list[dict[str, str]]:
        msgs = []
        if prompt.system:
            msgs.append({"role": "system", "content": prompt.system})
        msgs.extend(dict(m) for m in getattr(prompt, "history", ()))
        msgs.append({"role": "user", "content": prompt.text})
        return msgs

    def _sampling_for(self, prompt: Any) -> Sampling:
        changes: dict[str, Any] = {}
        if prompt.max_tokens:
            changes["max_tokens"] = prompt.max_tokens
        if getattr(prompt, "tools", ()):
            changes["tools"] = tuple(prompt.tools)
        schema = prompt.json_schema() if hasattr(prompt, "json_schema") else None
        if schema is not None:
            changes["json_schema"] = schema
        return dataclasses.replace(self.sampling, **changes) if changes else self.sampling

    def _new_run(self, model: CompareModel, prompt_id: str) -> RunResult:
        fp = model.footprint
        run = RunResult(
            model=model.label,
            prompt_id=prompt_id,
            est_decode_tps=fp.est_decode_tps if fp else None,
            est_prefill_tps=fp.est_prefill_tps if fp else None,
            est_memory_bytes=fp.total_bytes if fp else None,
        )
        with self._lock:
            self.result.runs = [
                r
                for r in self.result.runs
                if not (r.model == model.label and r.prompt_id == prompt_id)
            ] + [run]
        return run

    def _record_skip(self, label: str, prompt_id: str, why: str) -> None:
        model = next(m for m in self.models if m.label == label)
        run = self._new_run(model, prompt_id)
        run.error = f"not run: {why}"

    def _generate(self, model: CompareModel, prompt: Any) -> Generator[CompareEvent, None, bool]:
        """One model answers one prompt; returns whether its host is still alive."""
        alive = True
        for ev in self._stream(model, prompt):
            if isinstance(ev, bool):
                alive = ev
            else:
                yield ev
        return alive

    def _stream(self, model: CompareModel, prompt: Any) -> Iterator[CompareEvent | bool]:
        """Events of one generation, then a bool: whether the host survived."""
        run = self._new_run(model, prompt.id)
        client = self._clients[model.label]
        loaded = self._loaded[model.label]
        yield RunStarted(model.label, prompt.id)
        sampling = self._sampling_for(prompt)
        sampler = _PeakSampler(loaded)
        t0 = time.perf_counter()
        parts: list[str] = []
        tool_calls: tuple[Any, ...] = ()
        alive = True
        try:
            for ev in client.chat(self._messages(prompt), sampling):
                if isinstance(ev, Token):
                    parts.append(ev.text)
                    sampler.maybe_sample()
                    yield RunToken(model.label, prompt.id, ev.text)
                elif isinstance(ev, ReplyFinished):
                    m = ev.metrics
                    run.reply = ev.text
                    tool_calls = ev.tool_calls
                    run.tool_calls = [
                        {"name": c.name, "arguments": c.arguments} for c in ev.tool_calls
                    ]
                    run.ttft_s = m.ttft_s
                    run.prefill_tps = m.prefill_tokens_per_s
                    run.decode_tps = m.decode_tokens_per_s
                    run.total_s = m.total_s or (time.perf_counter() - t0)
                    run.prompt_tokens = m.prompt_tokens
                    run.completion_tokens = m.generated_tokens
                    run.stop_reason = m.stop_reason
                elif isinstance(ev, HostCrashed):
                    alive = False
                    run.reply = "".join(parts)
                    run.error = f"the model host crashed: {ev.likely_cause}"
                    yield ModelFailed(model.label, run.error)
        except LauncherError as exc:
            run.reply = run.reply or "".join(parts)
            run.error = str(exc)
            alive = self._host_alive(model.label)
            yield ModelFailed(model.label, run.error)
        sampler.sample()
        run.peak_memory_bytes = sampler.peak
        if run.error is None:
            run.check_passed, outcomes = _grade(prompt, run.reply, tool_calls)
            run.checks = [o.to_json() for o in outcomes]
        if not alive:
            self._close(model.label)
        yield RunDone(dataclasses.replace(run))  # a copy: receivers on other threads keep it
        yield alive

    def _host_alive(self, label: str) -> bool:
        loaded = self._loaded.get(label)
        if loaded is None:
            return False
        if loaded.pid <= 0:  # a remote model: no host here; the server reports its own errors
            return True
        try:
            return psutil.Process(loaded.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _generate_concurrently(
        self, models: Sequence[CompareModel], prompt: Any
    ) -> Iterator[CompareEvent]:
        """All models answer ``prompt`` at once (one thread per host); events are merged."""
        q: queue.Queue[tuple[str, CompareEvent | bool | None]] = queue.Queue()

        def pump(model: CompareModel) -> None:
            try:
                for ev in self._stream(model, prompt):
                    q.put((model.label, ev))
            finally:
                q.put((model.label, None))

        threads = [
            threading.Thread(target=pump, args=(m,), name=f"compare-{m.label}", daemon=True)
            for m in models
        ]
        for t in threads:
            t.start()
        pending = len(threads)
        try:
            while pending:
                _label, ev = q.get()
                if ev is None:
                    pending -= 1
                elif not isinstance(ev, bool):
                    yield ev
        finally:
            if pending:
                self.cancel()
            for t in threads:
                t.join()


class _PeakSampler:
    """Peak memory of one host process while it generates (RSS + its GPU memory).

    Sampled on the consuming thread every few tokens rather than by a timer thread: a reply
    is a stream of tokens anyway, and this leaves no thread to own or stop.
    """

    def __init__(self, loaded: Loaded, every: int = 16) -> None:
        self._gpu = loaded.gpu_bytes or 0
        self._every = every
        self._n = 0
        self.peak: int | None = loaded.rss_bytes + self._gpu if loaded.rss_bytes else None
        self._proc: psutil.Process | None = None
        if loaded.pid <= 0:  # a remote model: its memory is on the server, not measured here
            return
        try:
            self._proc = psutil.Process(loaded.pid)
        except psutil.Error:
            self._proc = None

    def maybe_sample(self) -> None:
        self._n += 1
        if self._n % self._every == 1:
            self.sample()

    def sample(self) -> None:
        if self._proc is None:
            return
        try:
            rss = self._proc.memory_info().rss
        except psutil.Error:
            self._proc = None
            return
        total = rss + self._gpu
        self.peak = total if self.peak is None else max(self.peak, total)


def _grade(prompt: Any, text: str, tool_calls: Sequence[Any]) -> tuple[bool | None, list[Any]]:
    """All of a prompt's checks on a reply (a check that cannot run counts as failed)."""
    from launcher.compare_checks import Outcome

    if hasattr(prompt, "grade"):
        try:
            passed, outcomes = prompt.grade(text, tool_calls)
        except (OSError, ValueError) as exc:  # e.g. no Python to run a code check with
            return False, [Outcome("error", False, f"the check could not run: {exc}")]
        return passed, list(outcomes)
    if prompt.check is None:
        return None, []
    ok = prompt.check.passes(text)
    return ok, [Outcome(prompt.check.kind, ok)]


def dt_now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _remote_client(model: CompareModel, paths: AppPaths | None) -> EngineLike | None:
    """A ``RemoteEngineClient`` for a ``remote:NAME/MODEL`` model, else None."""
    from launcher.remotes import is_remote_spec

    if not is_remote_spec(str(model.path)):
        return None
    from launcher.engine.remote import RemoteEngineClient

    return RemoteEngineClient(paths=paths)


def _default_client_factory() -> EngineLike:
    from launcher.engine import EngineClient

    client: EngineLike = EngineClient()
    return client


# ---------------------------------------------------------------------------- requests


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

    def prompt_suite(self) -> PromptSuite:
        if self.suite:
            suite = load_suite(self.suite).head(self.limit)
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


@dataclass(frozen=True)
class Planned:
    """First event of a job: the residency decision, before anything loads."""

    residency: ResidencyPlan
    labels: tuple[str, ...]
    prompts: tuple[str, ...]
    blind: bool
    result: ComparisonResult  # a snapshot before any run (letters, prompts): the UI's copy


class ComparisonJob:
    """Plan, then run, a :class:`CompareRequest`: what the CLI and the UI worker iterate."""

    def __init__(
        self,
        request: CompareRequest,
        paths: AppPaths | None = None,
        client_factory: Callable[[], EngineLike] | None = None,
        save: bool = True,
        rng: random.Random | None = None,
        machine: MachineProfile | None = None,
    ) -> None:
        self.request = request
        self.machine = machine  # None: resolved from request.machine (probing this one)
        self.paths = paths
        self.client_factory = client_factory
        self.save = save
        self.rng = rng
        self.session: ComparisonSession | None = None
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()
        if self.session is not None:
            self.session.cancel()

    def run(self) -> Iterator[Planned | CompareEvent]:
        from launcher.compare_models import prepare

        suite = self.request.prompt_suite()
        prepared = prepare(self.request, self.paths, self.machine)
        for m in prepared.models:
            if m.path is None:
                raise CompareError(
                    f"{m.source} is not on this machine; download it first "
                    "(or use --plan-only to see the plan without running it)"
                )
        session = ComparisonSession(
            [m.as_compare_model() for m in prepared.models],
            suite,
            prepared.residency,
            sampling=self.request.sampling,
            seed=self.request.seed,
            concurrent=self.request.concurrent,
            blind=self.request.blind,
            client_factory=self.client_factory,
            paths=self.paths,
            save=self.save,
            machine_name=prepared.machine_name,
            rng=self.rng,
        )
        self.session = session
        yield Planned(
            prepared.residency,
            tuple(m.label for m in prepared.models),
            tuple(p.id for p in suite.prompts),
            self.request.blind,
            copy.deepcopy(session.result),
        )
        if self._cancelled.is_set():
            session.cancel()
        yield from session.run()
