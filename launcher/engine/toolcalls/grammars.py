"""GBNF for response formats, forced calls and the generic JSON envelope (llama.cpp's own
JSON-schema converter)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from launcher.engine.toolcalls.families import Family


def _schema_gbnf(schema: Mapping[str, Any]) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(json.dumps(schema))


def schema_grammar(schema: Mapping[str, Any] | None) -> str:
    """GBNF for JSON valid against ``schema`` (``{}``: any JSON object), by llama.cpp's own
    JSON-schema converter as llama-cpp-python ships it."""
    return _schema_gbnf(schema or {"type": "object"})


def _call_schema(tools: Sequence[Mapping[str, Any]], choice: str, args_key: str) -> dict[str, Any]:
    chosen = [t for t in tools if choice in ("auto", "required") or t["name"] == choice]
    if not chosen:
        raise ValueError(f"tool_choice names {choice!r}, which is not among the tools")
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t["name"]},
                args_key: t.get("parameters") or {"type": "object"},
            },
            "required": ["name", args_key],
            "additionalProperties": False,
        }
        for t in chosen
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def call_grammar(
    family: Family, tools: Sequence[Mapping[str, Any]], choice: str, parallel: bool
) -> str:
    """GBNF that forces the family's call syntax around schema-valid calls."""
    if family.wrap is None:
        raise ValueError(f"no call grammar for the {family.name} format")
    body = _schema_gbnf(_call_schema(tools, choice, family.args_key))
    body = re.sub(r"^root ::=", "call ::=", body, count=1, flags=re.M)
    prefix, sep, suffix = family.wrap
    more = f" ({sep} call)*" if parallel else ""
    return f"root ::= {prefix or ''} call{more} {suffix or ''}\n{body}"


def generic_grammar(
    tools: Sequence[Mapping[str, Any]],
    choice: str,
    parallel: bool,
    response_schema: Mapping[str, Any] | None = None,
) -> str:
    """GBNF for the JSON envelope: calls (forced for ``required``/a name) or a response (text,
    or JSON valid for ``response_schema``)."""
    item = _call_schema(tools, choice, "arguments")
    calls: dict[str, Any] = {"type": "array", "items": item, "minItems": 1}
    if not parallel:
        calls["maxItems"] = 1
    envelope_calls = {
        "type": "object",
        "properties": {"tool_calls": calls},
        "required": ["tool_calls"],
        "additionalProperties": False,
    }
    if choice != "auto":
        return _schema_gbnf(envelope_calls)
    response = {
        "type": "object",
        "properties": {"response": dict(response_schema or {"type": "string"})},
        "required": ["response"],
        "additionalProperties": False,
    }
    return _schema_gbnf({"anyOf": [envelope_calls, response]})
