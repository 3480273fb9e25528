"""Conversations and their storage: one JSON file per conversation, written atomically.

A conversation is plain data (messages with their metrics) that both the app and the CLI can
use. Each save replaces the file atomically (``launcher.fsutil``), so a crash of the model host
or of the app at any moment leaves the last saved state: the app saves when the user sends a
message, periodically while a reply streams, and when the reply ends (finished, stopped or
crashed). A file that cannot be read is set aside (``*.corrupt-<time>.json``) and reported,
never silently dropped, and never a crash of the listing.

A reply that used tools is several messages, stored as the model saw them (OpenAI's shape):
an assistant message with ``tool_calls``, one ``tool`` message per call (its result, or why
there is none), then the answer; :meth:`Conversation.prompt_messages` sends them again on the
next turn. Which MCP servers and tools a conversation may use is its :class:`ChatTools`.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from launcher.errors import LauncherError
from launcher.fsutil import atomic_write_json, read_json

Role = Literal["system", "user", "assistant", "tool", "error"]
_ROLES = ("system", "user", "assistant", "tool", "error")
FORMAT_VERSION = 1
_ID_RE = re.compile(r"^[0-9a-f]{32}$")


class ChatStoreError(LauncherError):
    """A conversation file could not be read or written."""


# Sampling presets shown in the chat pane. Values follow llama.cpp's sampler names; the
# engine receives the dict as its sampling parameters.
SAMPLING_PRESETS: dict[str, dict[str, float | int]] = {
    "precise": {"temperature": 0.2, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "max_tokens": 1024},
    "balanced": {"temperature": 0.7, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "max_tokens": 1024},
    "creative": {
        "temperature": 1.0,
        "top_p": 0.98,
        "top_k": 100,
        "min_p": 0.02,
        "max_tokens": 1024,
    },
}


@dataclass
class ChatMessage:
    """One turn. ``error`` messages are shown to the user but never sent to the model."""

    role: Role
    content: str
    created: float = field(default_factory=time.time)
    model: str | None = None  # the model that wrote an assistant reply
    metrics: dict[str, Any] | None = None  # ttft_s, decode_tokens_per_s, generated_tokens, ...
    incomplete: bool = False  # the reply was stopped, or the model host crashed mid-reply
    reasoning: str = ""  # the model's reasoning before the reply (shown folded, never resent)
    # An assistant message's tool calls (OpenAI: {"id", "type": "function", "function":
    # {"name", "arguments"}}); a tool message answers one of them by ``tool_call_id``.
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None  # a tool message's tool
    # How a tool call went ("ok", "error", "denied", "timeout", "cancelled", "server_error",
    # ...: launcher.tools.loop.ResultStatus) and its MCP server, shown with the result.
    tool_status: str | None = None
    server: str | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content, "created": self.created}
        if self.reasoning:
            d["reasoning"] = self.reasoning
        for key in ("tool_calls", "tool_call_id", "name", "tool_status", "server"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        if self.model is not None:
            d["model"] = self.model
        if self.metrics is not None:
            d["metrics"] = self.metrics
        if self.incomplete:
            d["incomplete"] = True
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ChatMessage:
        role = d.get("role")
        if role not in _ROLES:
            raise ValueError(f"unknown role {role!r}")
        metrics = d.get("metrics")
        calls = d.get("tool_calls")
        if calls is not None and not (
            isinstance(calls, list) and all(_valid_call(c) for c in calls)
        ):
            raise ValueError("malformed tool_calls")

        def text(key: str) -> str | None:
            value = d.get(key)
            return value if isinstance(value, str) else None

        return cls(
            role=role,
            content=str(d.get("content", "")),
            created=float(d.get("created", 0.0)),
            model=d.get("model") if isinstance(d.get("model"), str) else None,
            metrics=metrics if isinstance(metrics, dict) else None,
            incomplete=bool(d.get("incomplete", False)),
            reasoning=str(d.get("reasoning") or ""),
            tool_calls=calls,
            tool_call_id=text("tool_call_id"),
            name=text("name"),
            tool_status=text("tool_status"),
            server=text("server"),
        )


def _valid_call(call: Any) -> bool:
    if not isinstance(call, dict) or not isinstance(call.get("id"), str):
        return False
    function = call.get("function")
    return (
        isinstance(function, dict)
        and isinstance(function.get("name"), str)
        and isinstance(function.get("arguments", ""), str)
    )


MAX_TOOL_ROUNDS = 5
TOOL_TIMEOUT_S = 60.0


@dataclass
class ChatTools:
    """The MCP tools one conversation may use: its servers (saved names) switched on, the
    tools switched off among theirs (``"SERVER/TOOL"``), replies with calls per turn before
    the model must answer, the first reply's ``tool_choice`` (``auto``: it may call a tool;
    ``required``: it must) and a call's time limit. No server on: the chat has no tools."""

    servers: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    max_rounds: int = MAX_TOOL_ROUNDS
    tool_choice: str = "auto"
    timeout_s: float = TOOL_TIMEOUT_S

    @property
    def active(self) -> bool:
        return bool(self.servers)

    def tool_enabled(self, server: str, tool: str) -> bool:
        return server in self.servers and f"{server}/{tool}" not in self.disabled

    def to_json(self) -> dict[str, Any]:
        return {
            "servers": list(self.servers),
            "disabled": list(self.disabled),
            "max_rounds": self.max_rounds,
            "tool_choice": self.tool_choice,
            "timeout_s": self.timeout_s,
        }

    @classmethod
    def from_json(cls, d: Any) -> ChatTools:
        if not isinstance(d, dict):
            return cls()

        def names(key: str) -> list[str]:
            value = d.get(key)
            return [str(v) for v in value] if isinstance(value, list) else []

        rounds = d.get("max_rounds", MAX_TOOL_ROUNDS)
        timeout = d.get("timeout_s", TOOL_TIMEOUT_S)
        choice = d.get("tool_choice")
        return cls(
            servers=names("servers"),
            disabled=names("disabled"),
            max_rounds=max(0, int(rounds)) if isinstance(rounds, int | float) else MAX_TOOL_ROUNDS,
            tool_choice=choice if choice in ("auto", "required") else "auto",
            timeout_s=float(timeout)
            if isinstance(timeout, int | float) and timeout > 0
            else TOOL_TIMEOUT_S,
        )


@dataclass
class Conversation:
    """A titled list of messages with the system prompt and sampling preset it uses."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    title: str = "New chat"
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    system_prompt: str = "You are a helpful assistant."
    preset: str = "balanced"
    model_path: str | None = None
    messages: list[ChatMessage] = field(default_factory=list)
    tools: ChatTools = field(default_factory=ChatTools)

    def add(self, role: Role, content: str, **kw: Any) -> ChatMessage:
        """Append a message (the first user message also names the conversation)."""
        msg = ChatMessage(role=role, content=content, **kw)
        self.messages.append(msg)
        self.updated = msg.created
        if role == "user" and self.title == "New chat":
            self.title = title_from(content)
        return msg

    def prompt_messages(self) -> list[dict[str, Any]]:
        """What the model sees: the system prompt, then user and assistant turns, with each
        reply's tool calls and their results (OpenAI's shape).

        Error notes are left out; an incomplete reply is kept (the user saw it). A call whose
        result was never stored (the app closed mid-turn) gets one saying so, so the history
        stays valid for every chat template.
        """
        out: list[dict[str, Any]] = []
        if self.system_prompt.strip():
            out.append({"role": "system", "content": self.system_prompt})
        answered = {m.tool_call_id for m in self.messages if m.role == "tool"}
        open_calls: list[dict[str, Any]] = []  # the calls of the last assistant message

        def close_calls() -> None:
            for call in open_calls:
                if call["id"] not in answered:
                    out.append(
                        {
                            "role": "tool",
                            "tool_call_id": call["id"],
                            "name": call["function"]["name"],
                            "content": "No result: the turn was stopped before this call ran.",
                        }
                    )
            open_calls.clear()

        for m in self.messages:
            if m.role == "tool":
                if m.tool_call_id and any(c["id"] == m.tool_call_id for c in open_calls):
                    out.append(
                        {
                            "role": "tool",
                            "tool_call_id": m.tool_call_id,
                            "name": m.name or "",
                            "content": m.content,
                        }
                    )
                continue
            if m.role not in ("user", "assistant"):
                continue
            close_calls()
            if m.role == "assistant" and m.tool_calls:
                out.append(
                    {"role": "assistant", "content": m.content or None, "tool_calls": m.tool_calls}
                )
                open_calls.extend(m.tool_calls)
            elif m.role == "user" or m.content:
                out.append({"role": m.role, "content": m.content})
        close_calls()
        return out

    def tool_result(self, call_id: str) -> ChatMessage | None:
        """The tool message that answers call ``call_id``, if there is one yet."""
        for m in reversed(self.messages):
            if m.role == "tool" and m.tool_call_id == call_id:
                return m
        return None

    def drop_last_reply(self) -> str | None:
        """Remove everything after the last user message (for regenerate); return its text."""
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i].role == "user":
                del self.messages[i + 1 :]
                return self.messages[i].content
        return None

    def sampling(self) -> dict[str, float | int]:
        return dict(SAMPLING_PRESETS.get(self.preset, SAMPLING_PRESETS["balanced"]))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "id": self.id,
            "title": self.title,
            "created": self.created,
            "updated": self.updated,
            "system_prompt": self.system_prompt,
            "preset": self.preset,
            "model_path": self.model_path,
            "messages": [m.to_json() for m in self.messages],
            "tools": self.tools.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Conversation:
        if not isinstance(d, dict) or not isinstance(d.get("messages"), list):
            raise ValueError("not a conversation")
        return cls(
            id=str(d["id"]),
            title=str(d.get("title", "New chat")),
            created=float(d.get("created", 0.0)),
            updated=float(d.get("updated", 0.0)),
            system_prompt=str(d.get("system_prompt", "")),
            preset=str(d.get("preset", "balanced")),
            model_path=d.get("model_path") if isinstance(d.get("model_path"), str) else None,
            messages=[ChatMessage.from_json(m) for m in d["messages"]],
            tools=ChatTools.from_json(d.get("tools")),
        )


@dataclass(frozen=True)
class ConversationSummary:
    """What the conversation list shows, without loading every message."""

    id: str
    title: str
    updated: float
    message_count: int


def title_from(text: str, limit: int = 48) -> str:
    """A short one-line title from the first user message."""
    line = " ".join(text.split())
    if not line:
        return "New chat"
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


class ChatStore:
    """Conversations stored as ``<id>.json`` files in one folder (``AppPaths.chats_dir``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _file(self, conversation_id: str) -> Path:
        # Ids come from us (uuid4 hex); checking them keeps a hostile id from leaving the folder.
        if not _ID_RE.match(conversation_id):
            raise ChatStoreError(f"invalid conversation id {conversation_id!r}")
        return self.directory / f"{conversation_id}.json"

    def save(self, conversation: Conversation) -> None:
        """Write the conversation atomically (old or new file, never a torn one)."""
        try:
            atomic_write_json(self._file(conversation.id), conversation.to_json())
        except OSError as exc:
            raise ChatStoreError(
                f"could not save the conversation to {self.directory}: {exc.strerror or exc}. "
                "Check that the folder is writable and the disk is not full."
            ) from exc

    def load(self, conversation_id: str) -> Conversation:
        """Read one conversation; an unreadable file is set aside and reported."""
        path = self._file(conversation_id)
        if not path.exists():
            raise ChatStoreError(f"conversation {conversation_id} no longer exists")
        data = read_json(path)
        try:
            return Conversation.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            aside = self._set_aside(path)
            raise ChatStoreError(
                f"conversation file {path.name} is damaged and was moved to {aside.name}; "
                "the other conversations are fine."
            ) from exc

    def _set_aside(self, path: Path) -> Path:
        aside = path.with_name(f"{path.stem}.corrupt-{int(time.time())}.json")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        return aside

    def _iter_files(self) -> Iterator[Path]:
        if not self.directory.is_dir():
            return
        for p in self.directory.glob("*.json"):
            if _ID_RE.match(p.stem):
                yield p

    def list(self) -> list[ConversationSummary]:
        """Every readable conversation, most recently updated first."""
        out: list[ConversationSummary] = []
        for p in self._iter_files():
            data = read_json(p)
            try:
                conv = Conversation.from_json(data)
            except (KeyError, TypeError, ValueError):
                self._set_aside(p)
                continue
            out.append(ConversationSummary(conv.id, conv.title, conv.updated, len(conv.messages)))
        out.sort(key=lambda s: s.updated, reverse=True)
        return out

    def delete(self, conversation_id: str) -> None:
        """Remove a conversation (missing is fine)."""
        with contextlib.suppress(FileNotFoundError):
            self._file(conversation_id).unlink()
