"""A comparison's prompts: :class:`SuitePrompt` (one prompt or conversation with its system
prompt, tools, response format and checks) and :class:`PromptSuite` (a named list of them),
and how both read from JSON. Loading suites by name or file is ``launcher.compare_suites``'s;
the HumanEval suite (``launcher.compare_humaneval``) builds these directly."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.compare_checks import (
    AnyCheck,
    Reply,
    SuiteError,
    normalize_tool,
    parse_check,
)

#: The bundled suites (JSON) and the long texts they refer to (``text_file``).
SUITES_DIR = Path(__file__).resolve().parent.parent / "resources" / "prompt_suites"


@dataclass(frozen=True)
class SuitePrompt:
    """One prompt of a suite (or a single ad-hoc prompt), with what it is asked with (system
    prompt, tools, response format) and the checks that grade its replies."""

    id: str
    text: str
    check: AnyCheck | None = None
    system: str | None = None
    max_tokens: int | None = None
    checks: tuple[AnyCheck, ...] = ()  # more checks; every one must pass
    tools: tuple[dict[str, Any], ...] = ()  # ``Sampling.tools`` shape
    response_format: dict[str, Any] | None = None  # OpenAI's shape
    #: Earlier turns of the conversation (``{"role": "user"|"assistant", "content"}``), sent
    #: between the system prompt and ``text``.
    history: tuple[dict[str, str], ...] = ()
    #: The exact messages to send, when the prompt replays recorded API traffic (tool calls
    #: and tool results included); ``system``/``history``/``text`` are then for display only.
    conversation: tuple[dict[str, Any], ...] = ()
    tool_choice: str = "auto"  # auto, none, required or a tool's name (``Sampling.tool_choice``)

    def messages(self) -> list[dict[str, Any]]:
        """What the models are sent: the system prompt, earlier turns, then this turn."""
        if self.conversation:
            return [dict(m) for m in self.conversation]
        out: list[dict[str, Any]] = []
        if self.system:
            out.append({"role": "system", "content": self.system})
        out.extend(dict(m) for m in self.history)
        out.append({"role": "user", "content": self.text})
        return out

    @property
    def all_checks(self) -> tuple[AnyCheck, ...]:
        """``check`` and ``checks`` together, in that order."""
        return ((self.check,) if self.check else ()) + self.checks

    def json_schema(self) -> dict[str, Any] | None:
        """The ``Sampling.json_schema`` its ``response_format`` asks for (``{}``: any object)."""
        return _response_schema(self.response_format)

    def grade(self, text: str, tool_calls: Sequence[Any] = ()) -> tuple[bool | None, list[Any]]:
        """Grade a reply: (all checks passed, or None without checks; each check's outcome)."""
        reply = Reply.of(text, tool_calls)
        outcomes = [c.grade(reply) for c in self.all_checks]
        return (all(o.passed for o in outcomes) if outcomes else None), outcomes

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.check:
            out["check"] = self.check.to_json()
        if self.checks:
            out["checks"] = [c.to_json() for c in self.checks]
        if self.system:
            out["system"] = self.system
        if self.max_tokens:
            out["max_tokens"] = self.max_tokens
        if self.tools:
            out["tools"] = list(self.tools)
        if self.response_format:
            out["response_format"] = self.response_format
        if self.history:
            out["history"] = [dict(m) for m in self.history]
        if self.conversation:
            out["conversation"] = [dict(m) for m in self.conversation]
        if self.tool_choice != "auto":
            out["tool_choice"] = self.tool_choice
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SuitePrompt:
        data = _from_messages(data) if "messages" in data else data
        text = data.get("text", data.get("prompt"))
        if "text_file" in data and not text:
            text = (SUITES_DIR / str(data["text_file"])).read_text(encoding="utf-8")
        if not isinstance(text, str) or not text.strip():
            raise SuiteError(f"prompt {data.get('id')!r} has no text")
        known = {
            "id", "text", "prompt", "text_file", "check", "checks", "system", "max_tokens",
            "tools", "response_format", "history", "conversation", "tool_choice",
        }  # fmt: skip
        unknown = sorted(set(data) - known)
        if unknown:
            raise SuiteError(
                f"unknown field {', '.join(map(repr, unknown))}: a prompt has id, prompt "
                "(or messages), system, tools, response_format, checks, max_tokens"
            )
        raw_tools = data.get("tools") or []
        if not isinstance(raw_tools, list):
            raise SuiteError("'tools' must be a list of tools (OpenAI's function format)")
        tools = tuple(normalize_tool(t) for t in raw_tools)
        system = data.get("system")
        if system is not None and not isinstance(system, str):
            raise SuiteError("'system' must be a string")
        raw_checks = data.get("checks") or []
        if not isinstance(raw_checks, list):
            raise SuiteError("'checks' must be a list of checks")
        response_format = data.get("response_format")
        _response_schema(response_format)  # validates it
        max_tokens = data.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise SuiteError("'max_tokens' must be a positive whole number")
        return cls(
            id=str(data.get("id") or "prompt"),
            text=text,
            check=parse_check(data["check"], tools) if data.get("check") else None,
            system=system,
            max_tokens=max_tokens or None,
            checks=tuple(parse_check(c, tools) for c in raw_checks),
            tools=tools,
            response_format=dict(response_format) if response_format else None,
            history=_history(data.get("history") or []),
            conversation=_conversation(data.get("conversation") or []),
            tool_choice=_tool_choice(data.get("tool_choice"), tools),
        )


def _history(turns: Any) -> tuple[dict[str, str], ...]:
    """Earlier turns, checked: a list of user/assistant messages with text content."""
    if not isinstance(turns, list):
        raise SuiteError("'history' must be a list of messages")
    out = []
    for i, m in enumerate(turns, start=1):
        if not isinstance(m, Mapping) or m.get("role") not in ("user", "assistant"):
            role = m.get("role") if isinstance(m, Mapping) else None
            raise SuiteError(
                f"earlier turn {i}: role {role!r} is not supported in a suite yet (user and "
                "assistant turns with text are; a system message goes first)"
            )
        if not isinstance(m.get("content"), str):
            raise SuiteError(f"earlier turn {i}: 'content' must be text")
        out.append({"role": str(m["role"]), "content": m["content"]})
    return tuple(out)


def _tool_choice(choice: Any, tools: Sequence[Mapping[str, Any]]) -> str:
    """``auto`` (default), ``none``, ``required`` or one of the tools' names; OpenAI's
    ``{"type": "function", "function": {"name": ...}}`` form is accepted too."""
    if choice is None:
        return "auto"
    if isinstance(choice, Mapping):
        fn = choice.get("function")
        choice = fn.get("name") if isinstance(fn, Mapping) else choice.get("name")
    names = [str(t["name"]) for t in tools]
    if choice in ("auto", "none", "required") or choice in names:
        return str(choice)
    raise SuiteError(f"'tool_choice' must be auto, none, required or one of the tools: {names}")


CONVERSATION_ROLES = ("system", "developer", "user", "assistant", "tool")


def _conversation(messages: Any) -> tuple[dict[str, Any], ...]:
    """Recorded messages, checked only for shape (the engine takes OpenAI's message form)."""
    if not isinstance(messages, list):
        raise SuiteError("'conversation' must be a list of messages")
    for i, m in enumerate(messages, start=1):
        if not isinstance(m, Mapping) or m.get("role") not in CONVERSATION_ROLES:
            raise SuiteError(f"message {i} of the conversation has no known role")
    return tuple(dict(m) for m in messages)


def _from_messages(data: Mapping[str, Any]) -> dict[str, Any]:
    """A line given as OpenAI ``messages``: a system message first (optional), earlier turns,
    and the user message to answer last."""
    messages = data.get("messages")
    if "prompt" in data or "text" in data or "history" in data:
        raise SuiteError("give either 'messages' or 'prompt', not both")
    if not isinstance(messages, list) or not messages:
        raise SuiteError("'messages' must be a non-empty list of messages")
    out = {k: v for k, v in data.items() if k != "messages"}
    rest = list(messages)
    first = rest[0]
    if isinstance(first, Mapping) and first.get("role") in ("system", "developer"):
        if "system" in data:
            raise SuiteError("give the system prompt once: 'system' or a system message")
        if not isinstance(first.get("content"), str):
            raise SuiteError("message 1: 'content' must be text")
        out["system"] = first["content"]
        rest = rest[1:]
    last = rest[-1] if rest else None
    if not isinstance(last, Mapping) or last.get("role") != "user":
        raise SuiteError("the last message must be the user's (the turn the models answer)")
    out["text"] = last.get("content")
    out["history"] = rest[:-1]
    return out


def _response_schema(fmt: Any) -> dict[str, Any] | None:
    """``Sampling.json_schema`` for an OpenAI ``response_format`` (None: free text)."""
    if fmt is None:
        return None
    if not isinstance(fmt, Mapping):
        raise SuiteError('\'response_format\' must be an object such as {"type": "json_object"}')
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise SuiteError("response_format json_schema needs 'json_schema': {'schema': {...}}")
        parse_check({"type": "json", "schema": schema})  # validates the schema
        return dict(schema)
    raise SuiteError(
        f"response_format type {kind!r} is not supported: use text, json_object or json_schema"
    )


@dataclass(frozen=True)
class PromptSuite:
    """A named set of prompts run over every model of a comparison."""

    name: str
    title: str
    description: str
    prompts: tuple[SuitePrompt, ...] = field(default_factory=tuple)

    def head(self, limit: int | None) -> PromptSuite:
        """The first ``limit`` prompts (all when None)."""
        if limit is None:
            return self
        if limit < 1:
            raise SuiteError("the prompt limit must be at least 1")
        return dataclasses.replace(self, prompts=self.prompts[:limit])

    @property
    def checked(self) -> int:
        """How many prompts carry an automatic check."""
        return sum(1 for p in self.prompts if p.all_checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "prompts": [p.to_json() for p in self.prompts],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], name: str | None = None) -> PromptSuite:
        prompts = data.get("prompts")
        if not isinstance(prompts, list) or not prompts:
            raise SuiteError(f"suite {name or data.get('name')!r} has no prompts")
        return cls(
            name=str(name or data.get("name")),
            title=str(data.get("title") or name or data.get("name")),
            description=str(data.get("description", "")),
            prompts=tuple(SuitePrompt.from_json(p) for p in prompts),
        )
