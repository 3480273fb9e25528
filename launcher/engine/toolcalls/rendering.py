"""Tools and tool history as templates expect them, and the generic mode's messages."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def openai_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tools in OpenAI's request shape, as chat templates expect them."""
    return [
        {
            "type": "function",
            "function": {
                "name": t["name"],
                "description": t.get("description", ""),
                "parameters": t.get("parameters") or {"type": "object", "properties": {}},
            },
        }
        for t in tools
    ]


def template_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages for a template: tool-call arguments as objects (templates iterate them)."""
    out = []
    for m in messages:
        msg = dict(m)
        if msg.get("content") is None:
            msg["content"] = ""
        if msg.get("tool_calls"):
            calls = []
            for c in msg["tool_calls"]:
                fn = dict(c.get("function") or {})
                try:
                    fn["arguments"] = json.loads(fn.get("arguments") or "{}")
                except (TypeError, json.JSONDecodeError):
                    pass
                calls.append({**c, "function": fn})
            msg["tool_calls"] = calls
        out.append(msg)
    return out


def _loads_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value or {}
    try:
        return json.loads(value or "{}")
    except json.JSONDecodeError:
        return value


def generic_messages(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]], choice: str
) -> list[dict[str, Any]]:
    """Messages for generic mode: the tools described in the system message, calls and
    results as plain text (a template without tool support cannot show them otherwise)."""
    lines = [
        "You can call these tools. Each is given as JSON: name, description and the JSON "
        "schema of its arguments.",
        *(json.dumps(t, ensure_ascii=False) for t in openai_tools(tools)),
        'Reply with JSON only: {"tool_calls": [{"name": TOOL, "arguments": {...}}]} to call '
        'tools, or {"response": TEXT} to answer.',
    ]
    if choice == "required":
        lines.append("You must call a tool now.")
    elif choice not in ("auto", "none"):
        lines.append(f"You must call the tool {choice} now.")
    note = "\n".join(lines) if tools else ""
    out: list[dict[str, Any]] = []
    rest = list(messages)
    if note and rest and rest[0].get("role") == "system":
        out.append({"role": "system", "content": f"{rest[0].get('content') or ''}\n\n{note}"})
        rest = rest[1:]
    elif note:
        out.append({"role": "system", "content": note})
    for m in rest:
        if m.get("role") == "tool":
            out.append(
                {
                    "role": "user",
                    "content": f"Tool result ({m.get('name') or m.get('tool_call_id') or 'tool'}): "
                    f"{m.get('content') or ''}",
                }
            )
        elif m.get("role") == "assistant" and m.get("tool_calls"):
            calls = [
                {
                    "name": c["function"]["name"],
                    "arguments": json.loads(c["function"].get("arguments") or "{}"),
                }
                for c in m["tool_calls"]
            ]
            out.append({"role": "assistant", "content": json.dumps({"tool_calls": calls})})
        else:
            out.append({"role": str(m.get("role")), "content": m.get("content") or ""})
    return out
