"""Conversations and their storage: one JSON file per conversation, written atomically.

A conversation is plain data (messages with their metrics) that both the app and the CLI can
use. Each save replaces the file atomically (``launcher.fsutil``), so a crash of the model host
or of the app at any moment leaves the last saved state: the app saves when the user sends a
message, periodically while a reply streams, and when the reply ends (finished, stopped or
crashed). A file that cannot be read is set aside (``*.corrupt-<time>.json``) and reported,
never silently dropped, and never a crash of the listing.
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

Role = Literal["system", "user", "assistant", "error"]
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

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content, "created": self.created}
        if self.reasoning:
            d["reasoning"] = self.reasoning
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
        if role not in ("system", "user", "assistant", "error"):
            raise ValueError(f"unknown role {role!r}")
        metrics = d.get("metrics")
        return cls(
            role=role,
            content=str(d.get("content", "")),
            created=float(d.get("created", 0.0)),
            model=d.get("model") if isinstance(d.get("model"), str) else None,
            metrics=metrics if isinstance(metrics, dict) else None,
            incomplete=bool(d.get("incomplete", False)),
            reasoning=str(d.get("reasoning") or ""),
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

    def add(self, role: Role, content: str, **kw: Any) -> ChatMessage:
        """Append a message (the first user message also names the conversation)."""
        msg = ChatMessage(role=role, content=content, **kw)
        self.messages.append(msg)
        self.updated = msg.created
        if role == "user" and self.title == "New chat":
            self.title = title_from(content)
        return msg

    def prompt_messages(self) -> list[dict[str, str]]:
        """What the model sees: the system prompt, then user and assistant turns.

        Error notes are left out; an incomplete reply is kept (the user saw it).
        """
        out: list[dict[str, str]] = []
        if self.system_prompt.strip():
            out.append({"role": "system", "content": self.system_prompt})
        out += [
            {"role": m.role, "content": m.content}
            for m in self.messages
            if m.role in ("user", "assistant") and (m.role == "user" or m.content)
        ]
        return out

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
