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
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from launcher.compare_models import default_client_factory, prepare, remote_client
from launcher.compare_plan import (
    DEFAULT_HEADROOM,
    GB,
    CompareModel,
    CompareRequest,
    EngineLike,
    Footprint,
    Mode,
    ResidencyPlan,
    make_labels,
    plan_residency,
    pool_capacity,
)
from launcher.compare_results import CompareError, ComparisonResult, ModelEntry, RunResult
from launcher.compare_suites import PromptSuite, SuiteError
from launcher.engine.events import HostCrashed, Loaded, ReplyFinished, Sampling, Token
from launcher.errors import LauncherError, NotEnoughMemory
from launcher.hardware.profile import MachineProfile
from launcher.paths import AppPaths

__all__ = [  # the residency names are re-exported: callers know them as launcher.compare's
    "DEFAULT_HEADROOM",
    "GB",
    "CompareModel",
    "CompareRequest",
    "ComparisonJob",
    "ComparisonSession",
    "EngineLike",
    "Footprint",
    "Mode",
    "ModelFailed",
    "ModelLoading",
    "ModelReady",
    "ModelUnloaded",
    "Planned",
    "Progress",
    "ResidencyPlan",
    "RunDone",
    "RunStarted",
    "RunToken",
    "SessionDone",
    "make_labels",
    "plan_residency",
    "pool_capacity",
]


# ---------------------------------------------------------------------------- session


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
class Progress:
    """After each answer: answers finished (resumed ones included) of all, and an estimate of
    the time left from this session's pace (None before its first answer)."""

    done: int
    total: int
    elapsed_s: float
    eta_s: float | None


@dataclass(frozen=True)
class SessionDone:
    """The last event. ``complete`` is False when it was stopped: ``--resume`` finishes it."""

    result: ComparisonResult
    saved_to: Path | None
    complete: bool = True


CompareEvent = (
    ModelLoading
    | ModelReady
    | ModelUnloaded
    | RunStarted
    | RunToken
    | RunDone
    | ModelFailed
    | Progress
    | SessionDone
)


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
        previous: ComparisonResult | None = None,
        request: dict[str, Any] | None = None,
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
        self._factory = client_factory or default_client_factory
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
            request=dict(request or {}),
        )
        if blind:
            self.result.assign_blind_letters(rng)
        if previous is not None:
            self._adopt(previous)

    def _adopt(self, previous: ComparisonResult) -> None:
        """Resume ``previous``: its id, prompts, letters, votes and finished answers are kept;
        only the answers it lacks (or that were cut short) are asked for again."""
        if previous.labels != self.result.labels:
            raise CompareError(
                f"cannot resume: the saved comparison has {', '.join(previous.labels)}, "
                f"this one {', '.join(self.result.labels)}"
            )
        fresh = self.result
        self.result = copy.deepcopy(previous)
        self.result.finished = None
        self.result.residency = fresh.residency
        self.result.machine = fresh.machine or previous.machine
        for entry, new in zip(self.result.models, fresh.models, strict=True):
            entry.path = new.path
            entry.est_decode_tps = new.est_decode_tps
            entry.est_prefill_tps = new.est_prefill_tps
        self.result.runs = [r for r in self.result.runs if r.finished]

    def _done(self, label: str, prompt_id: str) -> bool:
        run = self.result.run_for(label, prompt_id)
        return run is not None and run.finished

    def _todo(self, model: CompareModel) -> list[Any]:
        return [p for p in self.suite.prompts if not self._done(model.label, p.id)]

    # -------------------------------------------------------------- control
    def cancel(self) -> None:
        """Stop as soon as possible (between tokens); safe from any thread."""
        self._cancel.set()
        for client in list(self._clients.values()):
            with contextlib.suppress(Exception):
                client.cancel()

    # -------------------------------------------------------------- running
    def run(self) -> Iterator[CompareEvent]:
        """Run the whole comparison, yielding events; the last one is :class:`SessionDone`.

        The result is saved atomically after every answer (and a :class:`Progress` event
        follows it), so a comparison stopped by Ctrl-C, a closed app or a crash keeps every
        finished answer and can be resumed (``ComparisonJob(..., resume=saved)``).
        """
        total = len(self.models) * len(self.suite.prompts)
        start = time.monotonic()
        answered = 0
        saved: Path | None = None
        try:
            inner = self._run_resident() if self.residency.resident else self._run_sequential()
            for ev in inner:
                if isinstance(ev, RunDone):  # on disk before anyone hears of it
                    saved = self._checkpoint() or saved
                yield ev
                if isinstance(ev, RunDone):
                    answered += 1
                    elapsed = time.monotonic() - start
                    done = self._finished_count()
                    eta = elapsed / answered * max(0, total - done)
                    yield Progress(done, total, elapsed, eta)
        finally:
            for label in list(self._clients):
                self._close(label)
        complete = self._finished_count() >= total and not self._cancel.is_set()
        self.result.finished = dt_now() if complete else None
        saved = self._checkpoint() or saved
        yield SessionDone(self.result, saved, complete)

    def _finished_count(self) -> int:
        with self._lock:
            return sum(1 for r in self.result.runs if r.finished)

    def _checkpoint(self) -> Path | None:
        """Save the result as it stands (atomic: the old file or the new one, never torn)."""
        if not self.save:
            return None
        with self._lock:
            return self.result.save(self.paths)

    def _run_sequential(self) -> Iterator[CompareEvent]:
        for model in self.models:
            if self._cancel.is_set():
                break
            for prompt in self._todo(model):
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
            if self._todo(model):  # a resumed model with nothing left is not loaded
                yield from self._ensure_loaded(model)
        for prompt in self.suite.prompts:
            live = []
            for model in self.models:
                if self._cancel.is_set():
                    return
                if self._done(model.label, prompt.id):
                    continue
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
            client = remote_client(model, self.paths) or self._factory()
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

    def _messages(self, prompt: Any) -> list[dict[str, Any]]:
        if hasattr(prompt, "messages"):
            return list(prompt.messages())
        msgs: list[dict[str, Any]] = []
        if prompt.system:
            msgs.append({"role": "system", "content": prompt.system})
        msgs.append({"role": "user", "content": prompt.text})
        return msgs

    def _sampling_for(self, prompt: Any) -> Sampling:
        changes: dict[str, Any] = {}
        if prompt.max_tokens:
            changes["max_tokens"] = prompt.max_tokens
        if getattr(prompt, "tools", ()):
            changes["tools"] = tuple(prompt.tools)
            changes["tool_choice"] = getattr(prompt, "tool_choice", "auto")
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
        resume: ComparisonResult | None = None,
    ) -> None:
        self.request = request
        self.resume = resume  # a saved, unfinished comparison to finish
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

    @classmethod
    def resuming(
        cls, saved: ComparisonResult, paths: AppPaths | None = None, **kwargs: Any
    ) -> ComparisonJob:
        """A job that finishes ``saved`` (an unfinished comparison) with the request it was
        started with; its finished answers are kept, not asked again."""
        if not saved.request:
            raise CompareError(
                "this comparison was saved by an older version and does not say how it was "
                "started, so it cannot be resumed; start it again"
            )
        return cls(CompareRequest.from_json(saved.request), paths, resume=saved, **kwargs)

    def _suite(self) -> PromptSuite:
        """The request's prompts; when resuming, the saved prompts (the suite file may have
        changed since, and the answers kept belong to these)."""
        if self.resume is None:
            return self.request.prompt_suite()
        try:
            return PromptSuite.from_json(
                {"prompts": self.resume.prompts}, self.resume.suite or "prompt"
            )
        except (SuiteError, KeyError, TypeError, ValueError):
            wanted = {p["id"] for p in self.resume.prompts}
            suite = self.request.prompt_suite()
            prompts = tuple(p for p in suite.prompts if p.id in wanted)
            return dataclasses.replace(suite, prompts=prompts)

    def run(self) -> Generator[Planned | CompareEvent, None, None]:
        suite = self._suite()
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
            previous=self.resume,
            request=self.request.to_json(),
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
