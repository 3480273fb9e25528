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

    __slots__ = ("cancelled", "granted", "granted_at", "source", "state")

    def __init__(self, source: str) -> None:
        self.source = source
        self.state = "waiting"  # waiting | holding | done
        self.cancelled = False
        self.granted = threading.Event()
        self.granted_at = 0.0


class FairQueue:
    """Turns on one model host: round-robin across sources, FIFO within a source.

    At most one ticket holds the turn; at most ``max_waiting`` wait behind it (more are
    refused with ``ModelBusyError``, whose ``retry_after_s`` comes from recent turn lengths).
    """

    def __init__(self, max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._waiting: dict[str, deque[Ticket]] = {}
        self._rotation: deque[str] = deque()  # sources with waiters, next to serve first
        self._holder: Ticket | None = None
        self._durations: deque[float] = deque(maxlen=16)
        self._closed_reason: str | None = None

    # ------------------------------------------------------------------ state
    @property
    def holder(self) -> Ticket | None:
        return self._holder

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
        return max(1, min(120, math.ceil(typical * ahead)))

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
            if self._holder is None and not self._rotation:
                self._grant_locked(ticket)
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
            if ticket.state == "holding" and self._holder is ticket:
                self._durations.append(time.monotonic() - ticket.granted_at)
                self._holder = None
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
        ticket.granted_at = time.monotonic()
        self._holder = ticket
        ticket.granted.set()

    def _grant_next_locked(self) -> None:
        while self._rotation:
            source = self._rotation.popleft()
            q = self._waiting[source]
            ticket = q.popleft()
            if q:
                self._rotation.append(source)  # its next request waits for the others' turn
            else:
                del self._waiting[source]
            self._grant_locked(ticket)
            return

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
            # cancel() may have landed before the engine cleared its flag for this request.
            self._model.client.cancel()
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

    def cancel(self) -> None:
        """Stop this reply from any thread: leave the queue, or stop the host generating it."""
        if self._model.queue.cancel_waiting(self.ticket):
            return
        with self._lock:
            if self.ticket.state != "holding":
                return
            self.ticket.cancelled = True
            if self._inner is not None:
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
        if getattr(client, "is_loaded", False) and registry is not None:
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
