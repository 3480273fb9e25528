"""What every API route hands the HTTP layer: a validated generation request and a renderer.

``GenRequest`` is API-neutral (the engine's messages or prompt, its ``Sampling``, whether to
stream). A ``Renderer`` turns the engine's events into one API's bytes: the whole reply as one
JSON object, or a stream (its opening, one piece per event, its end, an error in mid-stream).
``openai_api.py``, ``anthropic_api.py`` and ``responses_api.py`` each provide one, so
``app.py`` runs every API through the same queue, disconnect and error handling.

``Blocks`` is the state machine the streamed formats share: it turns the engine's interleaved
``ReasoningToken`` / ``Token`` / ``ToolCall`` events into opened and closed content blocks
(Anthropic's content blocks, the Responses API's output items).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from launcher.engine.events import Event, ReasoningToken, ReplyFinished, Sampling, Token, ToolCall
from launcher.server.errors import ApiError


@dataclass(frozen=True)
class GenRequest:
    """One validated request for a reply."""

    kind: Literal["chat", "completion"]
    model: str | None
    sampling: Sampling
    stream: bool
    messages: tuple[dict[str, Any], ...] = ()
    prompt: str = ""

    def preview(self, limit: int = 200) -> str:
        """The last user text (or the prompt), shortened, for the request log."""
        text = self.prompt
        if self.kind == "chat":
            users = [m for m in self.messages if m["role"] in ("user", "tool")]
            last = users[-1] if users else (self.messages[-1] if self.messages else {})
            text = str(last.get("content") or "")
        text = " ".join(text.split())
        return text if len(text) <= limit else text[: limit - 1] + "…"


class Renderer(Protocol):
    """One API's reply format. Streams are server-sent events (``sse_event``)."""

    def whole(self, done: ReplyFinished) -> dict[str, Any]: ...

    def stream_start(self) -> bytes: ...

    def stream_event(self, event: Event) -> bytes: ...

    def stream_end(self, done: ReplyFinished) -> bytes: ...

    def stream_error(self, err: ApiError) -> bytes: ...

    def error_body(self, err: ApiError) -> dict[str, Any]: ...


def sse(obj: Any, event: str | None = None) -> bytes:
    """One server-sent event carrying ``obj`` as compact JSON (with an ``event:`` line)."""
    data = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
    return b"event: " + event.encode() + b"\n" + data if event else data


SSE_DONE = b"data: [DONE]\n\n"


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def arguments_object(arguments: str) -> Any:
    """A tool call's JSON arguments as a value (``{}`` for empty text; the text when invalid)."""
    if not arguments.strip():
        return {}
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


BlockKind = Literal["reasoning", "text", "tool"]


@dataclass
class Block:
    """One content block of a streamed reply, in order of appearance."""

    index: int
    kind: BlockKind
    text: str = ""  # reasoning or answer text so far
    call: ToolCall | None = None


@dataclass
class Blocks:
    """Opens and closes content blocks as the engine's event types change.

    ``feed(event)`` returns the actions to render, in order: ``("open", block)``,
    ``("delta", block, text)``, ``("close", block)``; a tool call is an open, one delta of its
    whole arguments, and a close. ``finish()`` closes what is open.
    """

    blocks: list[Block] = field(default_factory=list)
    current: Block | None = None

    def _open(self, kind: BlockKind, call: ToolCall | None = None) -> list[tuple[Any, ...]]:
        actions: list[tuple[Any, ...]] = self.finish()
        block = Block(index=len(self.blocks), kind=kind, call=call)
        self.blocks.append(block)
        self.current = block
        actions.append(("open", block))
        return actions

    def feed(self, event: Event) -> list[tuple[Any, ...]]:
        actions: list[tuple[Any, ...]] = []
        if isinstance(event, ReasoningToken | Token):
            if not event.text:
                return actions
            kind: BlockKind = "reasoning" if isinstance(event, ReasoningToken) else "text"
            if self.current is None or self.current.kind != kind:
                actions += self._open(kind)
            assert self.current is not None
            self.current.text += event.text
            actions.append(("delta", self.current, event.text))
        elif isinstance(event, ToolCall):
            actions += self._open("tool", event)
            assert self.current is not None
            actions.append(("delta", self.current, event.arguments))
            actions += self.finish()
        return actions

    def finish(self) -> list[tuple[Any, ...]]:
        if self.current is None:
            return []
        block, self.current = self.current, None
        return [("close", block)]
