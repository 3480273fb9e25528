"""``ReplyParser``: a streamed reply split into reasoning, content and calls, never leaking
call markup into the content."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from launcher.engine.toolcalls.families import Family
from launcher.engine.toolcalls.parsers import (
    ParsedCall,
    ToolCallParseError,
    new_call_id,
    parse_generic,
)


def partial_suffix(text: str, needles: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that could begin one of ``needles``."""
    best = 0
    for n in needles:
        for k in range(min(len(n) - 1, len(text)), 0, -1):
            if text.endswith(n[:k]):
                best = max(best, k)
                break
    return best


@dataclass
class ReplyParser:
    """Splits a reply into reasoning, content and a held-back tool-call section as it streams.

    ``feed`` returns ``(kind, text)`` pieces safe to show now (``"reasoning"`` or
    ``"content"``); ``finish`` returns what was held back and the parsed calls (or the parse
    error, in which case the call text is returned as content: nothing is lost).
    """

    family: Family
    tools: Sequence[Mapping[str, Any]] = ()
    in_reasoning: bool = False
    generic: bool = False  # the whole reply is a JSON envelope
    _pending: str = ""
    _calls_text: str = ""
    _state: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self._state = "calls" if self.generic else ("reasoning" if self.in_reasoning else "content")
        self._seen_content = False
        self._after_reasoning = False  # new lines right after the reasoning are layout

    @property
    def state(self) -> str:
        """``reasoning``, ``content`` or ``calls``: what the next text will be read as."""
        return self._state

    @property
    def _openers(self) -> tuple[str, ...]:
        return self.family.openers if self.tools else ()

    def feed(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        self._pending += text
        while self._pending:
            if self._state == "calls":
                self._calls_text += self._pending
                self._pending = ""
                break
            if self._state == "reasoning":
                end = self.family.think[1] if self.family.think else ""
                i = self._pending.find(end) if end else -1
                if i >= 0:
                    if i:
                        out.append(("reasoning", self._pending[:i]))
                    self._pending = self._pending[i + len(end) :]
                    self._state = "content"
                    self._after_reasoning = True
                    continue
                hold = partial_suffix(self._pending, [end]) if end else 0
                safe = self._pending[: len(self._pending) - hold]
                if safe:
                    out.append(("reasoning", safe))
                self._pending = self._pending[len(safe) :]
                break
            # content
            if self._after_reasoning:
                self._pending = self._pending.lstrip("\n")
                if not self._pending:
                    break
                self._after_reasoning = False
            think_open = self.family.think[0] if self.family.think else None
            if think_open and not self._seen_content:
                stripped = self._pending.lstrip()
                if stripped.startswith(think_open):
                    self._pending = stripped[len(think_open) :].lstrip("\n")
                    self._state = "reasoning"
                    continue
                if think_open.startswith(stripped):
                    break  # could still become the opening tag
            for mark in self.family.strip:
                self._pending = self._pending.replace(mark, "")
            if think_open and self._pending.lstrip().startswith(think_open):
                self._seen_content = False  # harmony: analysis again after a channel header
                continue
            hits = [(self._pending.find(o), o) for o in self._openers]
            hits = [(i, o) for i, o in hits if i >= 0]
            if hits:
                i, _ = min(hits)
                if i:
                    out.append(("content", self._pending[:i]))
                self._calls_text = self._pending[i:]
                self._pending = ""
                self._state = "calls"
                break
            hold = partial_suffix(self._pending, (*self._openers, *self.family.strip))
            if think_open and not self._seen_content:
                hold = max(hold, partial_suffix(self._pending, [think_open]))
            safe = self._pending[: len(self._pending) - hold]
            if safe:
                if safe.strip():
                    self._seen_content = True
                out.append(("content", safe))
            self._pending = self._pending[len(safe) :]
            break
        return out

    def finish(self) -> tuple[list[tuple[str, str]], list[ParsedCall], str | None]:
        """What was held back, the calls, and a parse error (``None`` when it parsed)."""
        out: list[tuple[str, str]] = []
        if self._pending:
            out.append(("reasoning" if self._state == "reasoning" else "content", self._pending))
            self._pending = ""
        if not self._calls_text:
            return out, [], None
        schemas = {t["name"]: t.get("parameters") or {} for t in self.tools}
        try:
            if self.generic:
                content, calls = parse_generic(self._calls_text)
                if content:
                    out.append(("content", content))
            else:
                assert self.family.parse is not None
                calls = self.family.parse(self._calls_text, schemas)
        except ToolCallParseError as exc:
            if not self.generic:  # the model's own syntax: kept as text, nothing is lost
                out.append(("content", self._calls_text))
            return out, [], str(exc)
        known = {t["name"] for t in self.tools}
        unknown = [c.name for c in calls if known and c.name not in known]
        if unknown:
            out.append(("content", self._calls_text))
            return out, [], f"the model called {unknown[0]!r}, which is not among the tools"
        return out, [ParsedCall(c.name, c.arguments, c.id or new_call_id()) for c in calls], None
