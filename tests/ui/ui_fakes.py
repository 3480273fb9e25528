"""A small fake engine for widget tests (the end-to-end tests use real parts).

``FakeEngine`` implements ``launcher.engine.api.Engine`` and streams the engine's own event
classes (``Token``, ``ReasoningToken``, ``ReplyFinished`` with real ``ReplyMetrics``,
``HostCrashed``), so the UI is tested on exactly what a real engine sends.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

from launcher.engine.events import (
    EngineParams,
    Event,
    HostCrashed,
    Loaded,
    LoadProgress,
    ReasoningToken,
    ReplyFinished,
    ReplyMetrics,
    Token,
)

__all__ = ["FakeEngine", "fake_loaded", "started_app"]


def fake_loaded(path: str, **changes: Any) -> Loaded:
    """What a real load of a small chat model reports (300 MiB held, a chat template)."""
    loaded = Loaded(
        path=path, pid=4242, load_s=0.1, buffers=(), rss_bytes=300 * 2**20, gpu_bytes=None,
        n_ctx=4096, n_ctx_train=32768, n_params=1_000_000_000, model_size_bytes=2**30,
        description="fake 1B", chat_template="{{ messages }}", params=EngineParams(),
    )  # fmt: skip
    return dataclasses.replace(loaded, **changes)


def _metrics(generated: int, stop: Any, ttft_s: float = 0.05, tps: float = 42.0) -> ReplyMetrics:
    return ReplyMetrics(
        ttft_s=ttft_s, prompt_tokens=12, prefill_s=0.01, prefill_tokens_per_s=1200.0,
        generated_tokens=generated, decode_s=generated / tps, decode_tokens_per_s=tps,
        stop_reason=stop, template="gguf chat template",
    )  # fmt: skip


class FakeEngine:
    """Streams ``reply`` word by word; ``hold`` keeps streaming until cancelled."""

    def __init__(
        self,
        reply: str = "Hello **world**, nice to meet you.",
        hold: bool = False,
        reasoning: str = "",
    ):
        self.reply = reply
        self.reasoning = reasoning  # streamed first, as the engine's ReasoningToken events
        self.hold = hold
        self.crash_after: int | None = None
        self.fail_load: str | None = None
        self.cancelled = threading.Event()
        self.loaded_paths: list[str] = []
        self.unloaded = 0
        self.prompts: list[list[dict[str, str]]] = []
        self.sampling: list[Any] = []
        self.started = threading.Event()
        self.slow_load = False  # load blocks until unload() ends the "host"
        self.load_started = threading.Event()
        self._host_ended = threading.Event()

    @property
    def is_loaded(self) -> bool:
        return bool(self.loaded_paths) and not self._host_ended.is_set()

    @property
    def loaded(self) -> Loaded | None:
        return fake_loaded(self.loaded_paths[-1]) if self.is_loaded else None

    def memory(self) -> tuple[int, int | None]:
        return (300 * 2**20, None) if self.is_loaded else (0, None)

    def complete(self, prompt: str, sampling: Any = None) -> Iterator[Event]:
        return self.chat([{"role": "user", "content": prompt}], sampling)

    def load(
        self, path: Any, params: Any = None, on_progress: Any = None, *, plan: Any = None
    ) -> Loaded:
        if self.fail_load:
            from launcher.errors import ModelLoadError

            raise ModelLoadError(self.fail_load)
        if self.slow_load:
            self._host_ended.clear()
            self.load_started.set()
            if self._host_ended.wait(30):
                from launcher.errors import ModelLoadError

                raise ModelLoadError("The model host ended while loading.")
        if on_progress is not None:
            on_progress(LoadProgress(0.5))
            on_progress(LoadProgress(1.0))
        self._host_ended.clear()
        self.loaded_paths.append(str(path))
        return fake_loaded(str(path))

    def chat(self, messages: Any, sampling: Any = None) -> Iterator[Event]:
        self.prompts.append(list(messages))
        self.sampling.append(sampling)
        self.cancelled.clear()
        if self.reasoning:
            for piece in self.reasoning.split(" "):
                yield ReasoningToken(piece + " ")
        words = self.reply.split(" ")
        n = 0
        i = 0
        while True:
            if self.cancelled.is_set():
                yield ReplyFinished(" ".join(words[:i]), _metrics(n, "cancelled"))
                return
            if i >= len(words):
                if not self.hold:
                    break
                self.started.set()
                self.cancelled.wait(0.01)
                continue
            if self.crash_after is not None and n >= self.crash_after:
                yield HostCrashed(-9, (), "The process was killed (out of memory?).", "sigkill")
                return
            yield Token(words[i] + (" " if i < len(words) - 1 else ""))
            n += 1
            i += 1
        yield ReplyFinished(self.reply, _metrics(n, "eos"))

    def cancel(self) -> None:
        self.cancelled.set()

    def unload(self) -> None:
        self.unloaded += 1
        self._host_ended.set()


def started_app(qtbot: Any) -> Iterator[Any]:
    """A real ``AppContext`` on a 16 GiB unified-memory machine, shown and started; closed
    after the test (for ``yield from`` in a fixture that needs the app's settings views)."""
    from launcher.machines import resolve_machine
    from launcher.paths import AppPaths
    from ui.app import AppContext

    context = AppContext(
        AppPaths.default(), profile=resolve_machine("unified=16GiB"), live_gauge=False
    )
    qtbot.addWidget(context.window)
    context.window.show()
    context.start()
    try:
        yield context
    finally:
        context.window.close()
