"""Small fakes of the core services for widget tests (the end-to-end test uses real parts).

The event classes carry the engine's names (``Token``, ``ReplyFinished``, ``HostCrashed``)
because the UI dispatches on them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Token:
    text: str


@dataclass
class ReplyFinished:
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class HostCrashed:
    exit_code: int = -9
    likely_cause: str = "The process was killed (out of memory?)."


@dataclass
class LoadProgress:
    fraction: float


@dataclass
class Loaded:
    path: str
    rss_bytes: int = 300 * 2**20
    pid: int = 4242


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

    def load(self, path: str, plan: Any = None, on_progress: Any = None) -> Loaded:
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
        self.loaded_paths.append(path)
        return Loaded(path)

    def chat(self, messages: list[dict[str, str]], sampling: Any = None) -> Iterator[object]:
        self.prompts.append(messages)
        self.sampling.append(sampling)
        self.cancelled.clear()
        if self.reasoning:
            from launcher.engine.events import ReasoningToken

            for piece in self.reasoning.split(" "):
                yield ReasoningToken(piece + " ")
        words = self.reply.split(" ")
        n = 0
        i = 0
        while True:
            if self.cancelled.is_set():
                yield ReplyFinished({"stop_reason": "cancelled", "generated_tokens": n})
                return
            if i >= len(words):
                if not self.hold:
                    break
                self.started.set()
                self.cancelled.wait(0.01)
                continue
            if self.crash_after is not None and n >= self.crash_after:
                yield HostCrashed()
                return
            yield Token(words[i] + (" " if i < len(words) - 1 else ""))
            n += 1
            i += 1
        yield ReplyFinished(
            {
                "ttft_s": 0.05,
                "decode_tokens_per_s": 42.0,
                "generated_tokens": n,
                "stop_reason": "eos",
            }
        )

    def cancel(self) -> None:
        self.cancelled.set()

    def unload(self) -> None:
        self.unloaded += 1
        self._host_ended.set()
