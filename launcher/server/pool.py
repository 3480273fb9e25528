"""Shared model hosts: one ``EngineClient`` serves the app's chat and the local API in turns.

A model host generates one reply at a time (one llama.cpp context). Everything that wants a
reply from a loaded model - the app's chat pane, each API request - goes through the model's
``SharedModel``, which hands out *turns* from a ``FairQueue``: round-robin across sources (the
app is one source, API clients one per remote address), first come first served within a
source, so a busy API client cannot starve the user's chat and the other way round. When too
many requests already wait, a new one is refused at once with ``ModelBusyError`` (the server
answers 503 with ``Retry-After``) instead of piling up.

``ModelRegistry`` lists the models loaded right now under short names (the API's model ids);
a ``SharedModel`` adds itself when it loads and removes itself when it unloads or its host
crashes. ``SharedModel`` has the engine's own interface (``load``/``chat``/``complete``/
``cancel``/``unload``/``memory``), so the app wraps its ``EngineClient`` in one and nothing
else changes. See ARCHITECTURE.md, "Local API server".
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.errors import ModelBusyError, ModelUnavailableError

if TYPE_CHECKING:
    from launcher.engine.events import Event, ReplyFinished, Sampling

# The engine's modules are imported where used: the app builds a ModelRegistry before its
# window first paints, and importing the engine client then would delay that paint.

APP_SOURCE = "app"
DEFAULT_MAX_WAITING = 8


class Ticket:
    """One request's place in a model's queue (waiting, then holding the turn, then done)."""

    __slots__ = ("cancelled", "created_at", "granted", "granted_at", "source", "state")

    def __init__(self, source: str) -> None:
        self.source = source
        self.created_at = time.monotonic()
        self.state = "waiting"  # waiting | holding | done
        self.cancelled = False
        self.granted = threading.Event()
        self.granted_at = 0.0


class FairQueue:
    """Turns on one model host: round-robin across sources, FIFO within a source.

    At most ``slots`` tickets hold a turn at once (the host's parallel slots, each generating
    its reply in the same batch); at most ``max_waiting`` wait behind them (more are refused
    with ``ModelBusyError``, whose ``retry_after_s`` comes from recent turn lengths).
    """

    def __init__(self, max_waiting: int = DEFAULT_MAX_WAITING, slots: int = 1) -> None:
        self.max_waiting = max_waiting
        self.slots = max(1, slots)
        self._lock = threading.Lock()
        self._waiting: dict[str, deque[Ticket]] = {}
        self._rotation: deque[str] = deque()  # sources with waiters, next to serve first
        self._holders: list[Ticket] = []
        self._durations: deque[float] = deque(maxlen=16)
        self._closed_reason: str | None = None
        self.last_active = time.monotonic()  # when a turn last started or ended

    # ------------------------------------------------------------------ state
    @property
    def holder(self) -> Ticket | None:
        """The ticket holding a turn the longest (None when the host is idle)."""
        with self._lock:
            return self._holders[0] if self._holders else None

    def holding(self) -> int:
        """How many replies hold a turn (are being generated) now."""
        with self._lock:
            return len(self._holders)

    @property
    def busy(self) -> bool:
        """Whether any reply is being generated or waiting."""
        with self._lock:
            return bool(self._holders or self._rotation)

    def set_slots(self, slots: int) -> None:
        """How many turns may run at once (the loaded host's parallel slots)."""
        with self._lock:
            self.slots = max(1, slots)
            self._grant_next_locked()

    def waiting(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._waiting.values())

    def retry_after_s(self) -> int:
        """Seconds a refused client should wait: the queue ahead times a typical turn."""
        with self._lock:
            return self._retry_after_locked()

    def _retry_after_locked(self) -> int:
        typical = sorted(self._durations)[len(self._durations) // 2] if self._durations else 2.0
        ahead = 1 + sum(len(q) for q in self._waiting.values())
        return max(1, min(120, math.ceil(typical * ahead / self.slots)))

    # ------------------------------------------------------------------ turns
    def enqueue(self, source: str) -> Ticket:
        """A ticket for ``source``: holding the turn at once when the host is idle.

        Raises ``ModelBusyError`` when ``max_waiting`` requests already wait, and
        ``ModelUnavailableError`` when the model is being unloaded.
        """
        ticket = Ticket(source)
        with self._lock:
            if self._closed_reason is not None:
                raise ModelUnavailableError(self._closed_reason)
            if len(self._holders) < self.slots and not self._rotation:
                self._grant_locked(ticket)
                ticket.granted_at = ticket.created_at  # it did not wait
                return ticket
            waiting = sum(len(q) for q in self._waiting.values())
            if waiting >= self.max_waiting:
                retry = self._retry_after_locked()
                raise ModelBusyError(
                    f"The model is busy: {waiting} requests are already waiting for it. "
                    f"Try again in {retry} s.",
                    retry_after_s=retry,
                )
            if source not in self._waiting:
                self._waiting[source] = deque()
                self._rotation.append(source)
            self._waiting[source].append(ticket)
        return ticket

    def wait(self, ticket: Ticket, timeout: float | None = None) -> bool:
        """Block until ``ticket`` holds the turn (True), or ``timeout`` passes (False).

        Raises ``ModelUnavailableError`` when the queue closed while waiting. A cancelled
        ticket returns True with ``ticket.cancelled`` set and does not hold the turn.
        """
        if not ticket.granted.wait(timeout):
            return False
        if ticket.state != "holding" and not ticket.cancelled:
            raise ModelUnavailableError(self._closed_reason or "The model was unloaded.")
        return True

    def release(self, ticket: Ticket) -> None:
        """End ``ticket``'s turn (or give up its place in the queue); the next one starts."""
        with self._lock:
            if ticket.state == "holding" and ticket in self._holders:
                self._durations.append(time.monotonic() - ticket.granted_at)
                self._holders.remove(ticket)
                self.last_active = time.monotonic()
                self._grant_next_locked()
            elif ticket.state == "waiting":
                self._remove_locked(ticket)
            ticket.state = "done"

    def cancel_waiting(self, ticket: Ticket) -> bool:
        """Take a waiting ticket out of the queue (it wakes, cancelled). False if not waiting."""
        with self._lock:
            if ticket.state != "waiting":
                return False
            self._remove_locked(ticket)
            ticket.state = "done"
            ticket.cancelled = True
            ticket.granted.set()
            return True

    def close(self, reason: str) -> None:
        """Refuse new tickets and wake every waiter with ``ModelUnavailableError``."""
        with self._lock:
            self._closed_reason = reason
            for q in self._waiting.values():
                for t in q:
                    t.state = "done"
                    t.granted.set()
            self._waiting.clear()
            self._rotation.clear()

    def reopen(self) -> None:
        with self._lock:
            self._closed_reason = None

    def _grant_locked(self, ticket: Ticket) -> None:
        ticket.state = "holding"
        ticket.granted_at = self.last_active = time.monotonic()
        self._holders.append(ticket)
        ticket.granted.set()

    def _grant_next_locked(self) -> None:
        while self._rotation and len(self._holders) < self.slots:
            source = self._rotation.popleft()
            q = self._waiting[source]
            ticket = q.popleft()
            if q:
                self._rotation.append(source)  # its next request waits for the others' turn
            else:
                del self._waiting[source]
            self._grant_locked(ticket)

    def _remove_locked(self, ticket: Ticket) -> None:
        q = self._waiting.get(ticket.source)
        if q is None or ticket not in q:
            return
        q.remove(ticket)
        if not q:
            del self._waiting[ticket.source]
            self._rotation.remove(ticket.source)


def _cancelled_reply() -> ReplyFinished:
    """What a reply cancelled before its turn came looks like: empty, stop reason cancelled."""
    from launcher.engine.events import ReplyFinished, ReplyMetrics

    return ReplyFinished(
        text="",
        metrics=ReplyMetrics(
            ttft_s=0.0,
            prompt_tokens=0,
            prefill_s=0.0,
            prefill_tokens_per_s=0.0,
            generated_tokens=0,
            decode_s=0.0,
            decode_tokens_per_s=0.0,
            stop_reason="cancelled",
            template="",
        ),
    )


class TurnStream:
    """A reply that first waits for its turn on the model, then streams the engine's events.

    Iterate it like ``EngineClient.chat``'s stream. ``cancel()`` (any thread) leaves the queue
    or stops the generation; ``close()`` ends it early and frees the turn.
    """

    def __init__(
        self, model: SharedModel, ticket: Ticket, start: Callable[[], Iterator[Event]]
    ) -> None:
        self._model = model
        self.ticket = ticket
        self._start = start
        self._inner: Iterator[Event] | None = None
        self._done = False
        # Reentrant: _finish runs under it too, so a cancel() can never hit the next turn.
        self._lock = threading.RLock()

    def __iter__(self) -> TurnStream:
        return self

    @property
    def started(self) -> bool:
        """Whether the turn came and the engine was asked (False while queued)."""
        return self._inner is not None

    def __next__(self) -> Event:
        if self._done:
            raise StopIteration
        if self._inner is None:
            try:
                self._model.queue.wait(self.ticket)
            except BaseException:
                self._finish()
                raise
            with self._lock:
                if self.ticket.cancelled:
                    self._done = True
                    self._finish()
                    return _cancelled_reply()
                try:
                    self._inner = self._start()
                except BaseException:
                    self._finish()
                    raise
        from launcher.engine.events import HostCrashed, ReplyFinished

        inner = self._inner
        try:
            event = next(inner)
        except BaseException:
            self._done = True
            self._finish()
            raise
        if self.ticket.cancelled:
            # cancel() may have landed before the engine's stream was sent.
            self._cancel_inner(inner)
        if isinstance(event, ReplyFinished):
            event = self._with_queue_time(event)
        if isinstance(event, ReplyFinished | HostCrashed):
            # Close the engine's generator now: it holds the client's request lock until it
            # returns, and the next turn may start on another thread at once.
            close = getattr(inner, "close", None)
            if close is not None:
                close()
            self._done = True
            if isinstance(event, HostCrashed):
                self._model._on_host_crashed()
            self._finish()
        return event

    def _with_queue_time(self, event: ReplyFinished) -> ReplyFinished:
        """The reply's metrics with the wait for a turn counted: TTFT and total include it,
        ``queued_s`` says how much of them it was."""
        import dataclasses

        wait = max(0.0, self.ticket.granted_at - self.ticket.created_at)
        if wait <= 0:
            return event
        m = event.metrics
        metrics = dataclasses.replace(
            m, ttft_s=m.ttft_s + wait, total_s=m.total_s + wait, queued_s=m.queued_s + wait
        )
        return dataclasses.replace(event, metrics=metrics)

    def cancel(self) -> None:
        """Stop this reply from any thread: leave the queue, or stop the host generating it."""
        if self._model.queue.cancel_waiting(self.ticket):
            return
        with self._lock:
            if self.ticket.state != "holding":
                return
            self.ticket.cancelled = True
            if self._inner is not None:
                self._cancel_inner(self._inner)

    def _cancel_inner(self, inner: Iterator[Event]) -> None:
        """Stop only this reply (the engine's stream cancels itself; an engine without one
        stops what it generates)."""
        cancel = getattr(inner, "cancel", None)
        if callable(cancel):
            cancel()
        else:
            self._model.client.cancel()

    def close(self) -> None:
        """Stop iterating early: the engine cancels and drains the reply, the turn is freed."""
        inner, self._inner = self._inner, None
        if inner is not None and not self._done:
            close = getattr(inner, "close", None)
            if close is not None:
                close()
        self._done = True
        self._finish()

    def _finish(self) -> None:
        with self._lock:
            self._model.queue.release(self.ticket)
        self._model._forget(self)

    def __del__(self) -> None:
        # A stream dropped without being iterated to its end must not keep its turn.
        if self.ticket.state != "done":
            self._model.queue.release(self.ticket)


class SharedModel:
    """An engine client shared by the app and the local API, handing out fair turns.

    It has the engine's interface; ``chat``/``complete`` take a ``source`` (who asks: "app",
    or "api:<address>") and ``cancel(source)`` stops only that source's replies.
    """

    def __init__(
        self,
        client: Any,
        registry: ModelRegistry | None = None,
        *,
        name: str | None = None,
        max_waiting: int = DEFAULT_MAX_WAITING,
    ) -> None:
        self.client = client
        self.registry = registry
        self.name = name or ""
        self._fixed_name = name is not None
        self.queue = FairQueue(max_waiting)
        self._streams: set[TurnStream] = set()
        self._streams_lock = threading.Lock()
        self.created = int(time.time())
        if getattr(client, "is_loaded", False):
            self.queue.set_slots(int(getattr(client.loaded, "n_parallel", 1) or 1))
            if registry is not None:
                self._register(getattr(client.loaded, "path", "") or self.name or "model")

    # ------------------------------------------------------------------ engine interface
    @property
    def pid(self) -> int | None:
        return getattr(self.client, "pid", None)

    @property
    def loaded(self) -> Any:
        return getattr(self.client, "loaded", None)

    @property
    def is_loaded(self) -> bool:
        return bool(getattr(self.client, "is_loaded", False))

    def memory(self) -> tuple[int, int | None]:
        rss, gpu = self.client.memory()
        return int(rss), gpu

    @property
    def busy(self) -> bool:
        """Whether a reply is being generated or waits for this model."""
        return self.queue.busy

    def idle_s(self) -> float:
        """Seconds since this model last started or ended a reply (0 while busy)."""
        return 0.0 if self.busy else time.monotonic() - self.queue.last_active

    def load(
        self,
        path: str,
        params: Any = None,
        on_progress: Callable[[Any], None] | None = None,
        *,
        plan: Any = None,
    ) -> Any:
        """Load ``path`` in the host (replacing any model) and list it in the registry."""
        self._unregister("Another model is being loaded in its place.")
        self.cancel_all()  # replies in flight end now instead of delaying the new load
        loaded = self.client.load(path, params, on_progress=on_progress, plan=plan)
        self.queue.set_slots(int(getattr(loaded, "n_parallel", 1) or 1))
        self.queue.last_active = time.monotonic()  # idle from now on, not from the start
        self.queue.reopen()
        self._register(path)
        return loaded

    def unload(self) -> None:
        """Leave the registry, refuse the waiting requests, then end the host process."""
        self._unregister("The model was unloaded.")
        try:
            self.client.unload()
        finally:
            self.queue.reopen()

    close = unload

    def chat(
        self,
        messages: Sequence[Any],
        sampling: Sampling | None = None,
        *,
        source: str = APP_SOURCE,
    ) -> TurnStream:
        """A reply to ``messages`` when this source's turn comes (see ``EngineClient.chat``).

        Raises ``ModelBusyError`` at once when the queue is full.
        """
        msgs = list(messages)
        return self._stream(source, lambda: iter(self.client.chat(msgs, sampling)))

    def complete(
        self, prompt: str, sampling: Sampling | None = None, *, source: str = APP_SOURCE
    ) -> TurnStream:
        """A plain completion of ``prompt`` when this source's turn comes."""
        return self._stream(source, lambda: iter(self.client.complete(prompt, sampling)))

    def embed(self, texts: Sequence[str], *, source: str = APP_SOURCE) -> Any:
        """Embeddings of ``texts`` (``EngineClient.embed``) when this source's turn comes.

        Raises ``ModelBusyError`` at once when the queue is full, ``ModelUnavailableError``
        when the model goes away while waiting.
        """
        ticket = self.queue.enqueue(source)
        try:
            self.queue.wait(ticket)
            if ticket.cancelled:
                raise ModelUnavailableError("The request was cancelled while waiting.")
            return self.client.embed(list(texts))
        finally:
            self.queue.release(ticket)

    def cancel(self, source: str = APP_SOURCE) -> None:
        """Stop ``source``'s replies (waiting or generating); other sources' go on."""
        with self._streams_lock:
            mine = [s for s in self._streams if s.ticket.source == source]
        for stream in mine:
            stream.cancel()

    def cancel_all(self, prefix: str = "") -> None:
        """Stop every reply whose source starts with ``prefix`` (the server's shutdown)."""
        with self._streams_lock:
            streams = [s for s in self._streams if s.ticket.source.startswith(prefix)]
        for stream in streams:
            stream.cancel()

    # ------------------------------------------------------------------ internals
    def _stream(self, source: str, start: Callable[[], Iterator[Event]]) -> TurnStream:
        ticket = self.queue.enqueue(source)
        stream = TurnStream(self, ticket, start)
        with self._streams_lock:
            self._streams.add(stream)
        return stream

    def _forget(self, stream: TurnStream) -> None:
        with self._streams_lock:
            self._streams.discard(stream)

    def _on_host_crashed(self) -> None:
        if self.registry is not None:
            self.registry.remove(self)

    def _register(self, path: str) -> None:
        if self.registry is None:
            return
        if not self._fixed_name:
            self.name = model_id(path)
        self.registry.add(self)

    def _unregister(self, reason: str) -> None:
        if self.registry is not None:
            self.registry.remove(self)
        self.queue.close(reason)


def model_id(path: str) -> str:
    """The API's name for a model file: its file name without ``.gguf`` (and shard suffix)."""
    name = Path(path).name
    if name.lower().endswith(".gguf"):
        name = name[: -len(".gguf")]
    head, sep, tail = name.rpartition("-00001-of-")
    return head if sep and tail.isdigit() else name


class ModelRegistry:
    """The models loaded right now, by API id; shared by the app's chat and the server.

    Thread-safe. ``version`` grows on every change (the UI polls it instead of subscribing
    across threads).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, SharedModel] = {}
        self.version = 0
        #: Loads library models a request names (``OnDemand``); None: only loaded ones.
        self.on_demand: OnDemand | None = None

    def share(self, client: Any, **kwargs: Any) -> SharedModel:
        """Wrap ``client`` (an ``EngineClient``) so its loads are listed here."""
        return SharedModel(client, self, **kwargs)

    def add(self, model: SharedModel) -> str:
        """List ``model`` under its name (made unique with ``-2``, ``-3``...); returns it."""
        with self._lock:
            for key, value in list(self._models.items()):
                if value is model:
                    del self._models[key]
            base = model.name or "model"
            name, n = base, 2
            while name in self._models:
                name, n = f"{base}-{n}", n + 1
            model.name = name
            self._models[name] = model
            self.version += 1
            return name

    def remove(self, model: SharedModel) -> None:
        with self._lock:
            for key, value in list(self._models.items()):
                if value is model:
                    del self._models[key]
                    self.version += 1

    def get(self, name: str) -> SharedModel | None:
        with self._lock:
            return self._models.get(name)

    def models(self) -> list[SharedModel]:
        with self._lock:
            return list(self._models.values())

    def names(self) -> list[str]:
        with self._lock:
            return list(self._models)


class OnDemand:
    """Models loaded when a request names them, and unloaded when idle (what LM Studio's JIT
    loading and TTL, and Ollama's ``keep_alive``, give their users).

    ``library()``: the models that may be loaded, API id -> path. ``load(path)``: load one
    with the user's settings for it and return its ``SharedModel`` (listed in the registry).
    ``fits(path)``: None when it fits next to what is loaded now, else the reason it does not.
    When it does not, the least recently used *idle* model is unloaded and the question asked
    again; a model that is generating is never unloaded. Simultaneous requests for the same
    model wait for one load. ``idle_unload_s``: unload a model nobody used for that long
    (None: never), checked by a thread that :meth:`start` starts and :meth:`stop` ends.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        library: Callable[[], dict[str, str]],
        load: Callable[[str], SharedModel],
        *,
        fits: Callable[[str], str | None] | None = None,
        idle_unload_s: float | None = None,
    ) -> None:
        self.registry = registry
        self.library = library
        self._load = load
        self._fits = fits or (lambda _path: None)
        self.idle_unload_s = idle_unload_s
        self._lock = threading.Lock()  # one load (and its evictions) at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Models this loader unloaded, newest last (name, reason): the server says so.
        self.unloaded: deque[tuple[str, str]] = deque(maxlen=32)
        registry.on_demand = self

    def knows(self, name: str) -> bool:
        return name in self.library()

    def get(self, name: str) -> tuple[SharedModel, list[str]]:
        """The loaded model ``name`` (loading it first when needed) and the names of the idle
        models unloaded to make room. Raises ``ModelUnavailableError`` with the reason when it
        is not in the library or does not fit even with every idle model unloaded."""
        model = self.registry.get(name)
        if model is not None:
            return model, []
        with self._lock:  # a second request for the same model waits here, then finds it
            model = self.registry.get(name)
            if model is not None:
                return model, []
            path = self.library().get(name)
            if path is None:
                raise ModelUnavailableError(f"There is no model '{name}' in the library.")
            evicted: list[str] = []
            while (reason := self._fits(path)) is not None:
                idle = [m for m in self.registry.models() if not m.busy]
                if not idle:
                    raise ModelUnavailableError(
                        f"The model '{name}' does not fit next to the models that are "
                        f"generating now ({reason}). Try again when they are done."
                    )
                victim = max(idle, key=lambda m: m.idle_s())
                evicted.append(victim.name)
                victim.unload()
                self.unloaded.append((evicted[-1], f"unloaded to make room for {name}"))
            return self._load(path), evicted

    def sweep(self) -> list[str]:
        """Unload the models idle for longer than ``idle_unload_s``; their names."""
        if self.idle_unload_s is None:
            return []
        done = []
        with self._lock:
            for model in self.registry.models():
                if not model.busy and model.idle_s() >= self.idle_unload_s:
                    done.append(model.name)
                    model.unload()
                    self.unloaded.append((done[-1], "idle"))
        return done

    def start(self) -> None:
        """Check for idle models in a thread of this object's own (until :meth:`stop`)."""
        if self.idle_unload_s is None or self._thread is not None:
            return
        period = max(0.05, min(5.0, self.idle_unload_s / 4))

        def run() -> None:
            while not self._stop.wait(period):
                self.sweep()

        self._stop.clear()
        self._thread = threading.Thread(target=run, name="idle-unload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
