"""The one contract between an engine and everything that uses it.

The chat pane, compare, the local API server and the CLI all talk to an :class:`Engine`: it
loads one model at a time and streams each reply as events. Only the frozen dataclasses of
:mod:`launcher.engine.events` cross it (``Token``, ``ReasoningToken``, ``ToolCall``,
``ReplyFinished(metrics: ReplyMetrics)``, ``HostCrashed``, ``Loaded``...), so a caller
dispatches with ``match event:`` on those classes and never guesses a field name.

Implementations: ``EngineClient`` (a model host process running llama.cpp),
``RemoteEngineClient`` (an OpenAI-compatible server), ``LocalOrRemoteClient`` (either, what
the app's chat holds); the API server's ``SharedModel`` and the app's planned engine wrap
one. Test fakes implement it with the real event classes. mypy checks the engine package's
own implementations against it (``_conforms`` at the end of ``remote.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from launcher.engine.events import EngineParams, Event, Loaded, LoadProgress, Sampling

if TYPE_CHECKING:
    from launcher.planning import MemoryPlan

#: A chat message: ``role`` and ``content``, plus OpenAI's tool-use fields (an assistant's
#: ``tool_calls``, a tool result's ``tool_call_id``) and ``reasoning_content``.
Message = Mapping[str, Any]


class Engine(Protocol):
    """Loads one model at a time and streams replies as events (see the module docstring)."""

    @property
    def is_loaded(self) -> bool: ...

    @property
    def loaded(self) -> Loaded | None: ...

    def load(
        self,
        path: str | os.PathLike[str],
        params: EngineParams | MemoryPlan | Mapping[str, Any] | None = None,
        on_progress: Callable[[LoadProgress], None] | None = None,
        *,
        plan: MemoryPlan | None = None,
    ) -> Loaded:
        """Load ``path`` (replacing any model); raise ``ModelLoadError`` saying what to do."""
        ...

    def chat(
        self, messages: Sequence[Message], sampling: Sampling | None = None
    ) -> Iterator[Event]:
        """Stream a reply to ``messages``: tokens, then ``ReplyFinished`` or ``HostCrashed``."""
        ...

    def complete(self, prompt: str, sampling: Sampling | None = None) -> Iterator[Event]:
        """Stream a plain completion of ``prompt`` (no chat template)."""
        ...

    def cancel(self) -> None:
        """Stop the reply being generated, from any thread; returns at once."""
        ...

    def unload(self) -> None:
        """Free the model (end its process); safe to call when nothing is loaded."""
        ...

    def memory(self) -> tuple[int, int | None]:
        """(RSS bytes, GPU bytes or None where unknown) the engine holds right now."""
        ...
