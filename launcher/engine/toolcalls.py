"""Tool calls and reasoning the way each model family writes them.

A model sees tools in its own format only if its chat template renders them, and it answers
in its own syntax: Hermes/Qwen ``<tool_call>{json}</tool_call>``, Qwen3-Coder and Nemotron
``<function=NAME><parameter=K>v</parameter>``, Llama 3.x bare ``{"name", "parameters"}`` JSON,
Mistral ``[TOOL_CALLS]``, gpt-oss harmony channels, DeepSeek's ``<｜tool▁call▁begin｜>``,
Granite ``<|tool_call|>``, GLM ``<arg_key>``, Gemma 4 ``<|tool_call>call:NAME{...}``. The formats
are facts documented in llama.cpp's ``common/chat.cpp``, ``tests/test-chat.cpp`` and
``models/templates/*.jinja``; the code here is ours.

- :func:`detect` names the family from the template *text* (never the file name).
- Each :class:`Family` knows its openers (text that starts a call, held back while streaming
  so no markup leaks into ``content``), the special tokens to render as text, its reasoning
  tags, a parser of the call section, and, where the call syntax is JSON-shaped, a grammar
  for forced calls (``tool_choice`` ``required`` or a name).
- A template with no tool support, no template at all (Gemma 3 270M), or a forced call in a
  family without a grammar gets the *generic* mode that llama.cpp uses: the tools described
  in a system message and the reply constrained by a grammar to a JSON envelope,
  ``{"tool_calls": [...]}`` or ``{"response": "..."}``.
- :class:`ReplyParser` splits a streamed reply into reasoning, content and calls.

Written by hand because no Python library parses these formats: llama.cpp's parsers are C++
(not exported by libllama), and ``openai-harmony`` needs a tokenizer vocabulary downloaded at
run time, which an offline machine cannot do.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class ToolCallParseError(ValueError):
    """The model wrote a tool call that does not parse; the message says where and why."""


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: str  # JSON text
    id: str = ""


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def _args_json(value: Any) -> str:
    if isinstance(value, str):
        try:
            json.loads(value)
            return value
        except json.JSONDecodeError:
            return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)


_DECODER = json.JSONDecoder()


def _json_at(text: str, pos: int) -> tuple[Any, int]:
    """The JSON value starting at ``pos`` (after whitespace), and where it ends."""
    while pos < len(text) and text[pos].isspace():
        pos += 1
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise ToolCallParseError(
            f"the tool call's JSON does not parse ({exc.msg} at {exc.pos})"
        ) from exc


def _call_from_obj(obj: Any, args_keys: Sequence[str] = ("arguments", "parameters")) -> ParsedCall:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise ToolCallParseError("a tool call must be a JSON object with a string 'name'")
    args: Any = {}
    for key in args_keys:
        if key in obj:
            args = obj[key]
            break
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError as exc:
            raise ToolCallParseError(f"the arguments of {obj['name']!r} are not JSON") from exc
    if not isinstance(args, dict):
        raise ToolCallParseError(f"the arguments of {obj['name']!r} must be a JSON object")
    return ParsedCall(obj["name"], json.dumps(args, ensure_ascii=False), str(obj.get("id") or ""))


# --------------------------------------------------------------------------- parsers
# Each takes the text from the first opener on and returns the calls in it.


def parse_hermes(text: str) -> list[ParsedCall]:
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (repeated)."""
    calls: list[ParsedCall] = []
    pos = 0
    while True:
        start = text.find("<tool_call>", pos)
        if start < 0:
            break
        obj, end = _json_at(text, start + len("<tool_call>"))
        calls.append(_call_from_obj(obj))
        close = text.find("</tool_call>", end)
        pos = end if close < 0 else close + len("</tool_call>")
    if not calls:
        raise ToolCallParseError("no <tool_call> block found")
    return calls


_XML_FUNCTION = re.compile(r"<function=([^>\n]+)>")
_XML_PARAM = re.compile(r"<parameter=([^>\n]+)>\n?")


def parse_xml_function(text: str, schemas: Mapping[str, dict[str, Any]]) -> list[ParsedCall]:
    """Qwen3-Coder / Qwen 3.5 / Nemotron: ``<function=NAME><parameter=K>\\nV\\n</parameter>``."""
    calls: list[ParsedCall] = []
    for m in _XML_FUNCTION.finditer(text):
        name = m.group(1).strip()
        end = text.find("</function>", m.end())
        body = text[m.end() : end if end >= 0 else len(text)]
        props = (schemas.get(name) or {}).get("properties", {})
        args: dict[str, Any] = {}
        pos = 0
        while (p := _XML_PARAM.search(body, pos)) is not None:
            key = p.group(1).strip()
            close = body.find("</parameter>", p.end())
            if close < 0:
                raise ToolCallParseError(f"parameter {key!r} of {name!r} is not closed")
            raw = body[p.end() : close]
            raw = raw[:-1] if raw.endswith("\n") else raw
            args[key] = _typed_value(raw, props.get(key, {}))
            pos = close + len("</parameter>")
        calls.append(ParsedCall(name, json.dumps(args, ensure_ascii=False)))
    if not calls:
        raise ToolCallParseError("no <function=...> block found")
    return calls


def _typed_value(raw: str, schema: Mapping[str, Any]) -> Any:
    """A parameter's text as its schema's type: strings stay text, the rest is JSON."""
    if schema.get("type") == "string":
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_llama3(text: str) -> list[ParsedCall]:
    """Llama 3.1-3.3: ``{"name": ..., "parameters": {...}}``, optionally after
    ``<|python_tag|>``, several separated by ``;`` or new lines."""
    body = text.replace("<|python_tag|>", "", 1)
    calls: list[ParsedCall] = []
    pos = 0
    while True:
        while pos < len(body) and (body[pos].isspace() or body[pos] == ";"):
            pos += 1
        if pos >= len(body):
            break
        if body[pos] != "{":
            if calls:
                break
            raise ToolCallParseError(
                "Llama 3 tool calls are JSON objects; built-in tool syntax is not supported"
            )
        obj, pos = _json_at(body, pos)
        calls.append(_call_from_obj(obj, ("parameters", "arguments")))
    if not calls:
        raise ToolCallParseError("no tool call JSON found")
    return calls


def parse_mistral(text: str) -> list[ParsedCall]:
    """``[TOOL_CALLS][{...}, ...]`` (Nemo, Small 3.1) or ``[TOOL_CALLS]NAME[ARGS]{...}``
    (Small 3.2, Devstral, Magistral; ``[CALL_ID]id`` may sit between). Read call by call, so
    a string argument may contain the markers."""
    calls: list[ParsedCall] = []
    pos = text.find("[TOOL_CALLS]")
    if pos < 0:
        raise ToolCallParseError("no [TOOL_CALLS] found")
    while pos >= 0:
        pos += len("[TOOL_CALLS]")
        rest = text[pos:].lstrip()
        if rest.startswith("["):
            arr, end = _json_at(text, pos)
            if not isinstance(arr, list):
                raise ToolCallParseError("[TOOL_CALLS] must be followed by a JSON array")
            calls += [_call_from_obj(o) for o in arr]
        else:
            marker = text.find("[ARGS]", pos)
            if marker < 0:
                raise ToolCallParseError("[TOOL_CALLS] without a JSON array or [ARGS]")
            name, _, call_id = text[pos:marker].partition("[CALL_ID]")
            args, end = _json_at(text, marker + len("[ARGS]"))
            calls.append(_call_from_obj({"name": name.strip(), "arguments": args, "id": call_id}))
        pos = text.find("[TOOL_CALLS]", end)
    return calls


_DS_CALL = re.compile(
    r"<｜tool▁call▁begin｜>(?:function<｜tool▁sep｜>)?([^<\n]+?)(?:\n```json\n|<｜tool▁sep｜>)"
)


def parse_deepseek(text: str) -> list[ParsedCall]:
    """DeepSeek R1 (``function<｜tool▁sep｜>NAME`` and a json fence), V3.1+
    (``NAME<｜tool▁sep｜>{...}``)."""
    calls: list[ParsedCall] = []
    for m in _DS_CALL.finditer(text):
        obj, _ = _json_at(text, m.end())
        calls.append(_call_from_obj({"name": m.group(1).strip(), "arguments": obj}))
    if not calls:
        raise ToolCallParseError("no <｜tool▁call▁begin｜> block found")
    return calls


def parse_granite(text: str) -> list[ParsedCall]:
    """Granite 3.x/4.x: ``<|tool_call|>[{"name": ..., "arguments": {...}}]``."""
    start = text.find("<|tool_call|>")
    if start < 0:
        raise ToolCallParseError("no <|tool_call|> found")
    arr, _ = _json_at(text, start + len("<|tool_call|>"))
    items = arr if isinstance(arr, list) else [arr]
    return [_call_from_obj(o) for o in items]


_GLM_CALL = re.compile(r"<tool_call>\s*([^<\n]+?)\s*(?=<arg_key>|</tool_call>|\n)")
_GLM_ARG = re.compile(r"\s*<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", re.S)


def parse_glm(text: str, schemas: Mapping[str, dict[str, Any]]) -> list[ParsedCall]:
    """GLM 4.5-4.7: ``<tool_call>NAME<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>``.

    Arguments are read one after another from the name on, so a value may contain any text
    but its own closing tag (``</tool_call>`` included)."""
    calls: list[ParsedCall] = []
    pos = 0
    while (m := _GLM_CALL.search(text, pos)) is not None:
        name = m.group(1).strip()
        props = (schemas.get(name) or {}).get("properties", {})
        args: dict[str, Any] = {}
        pos = m.end()
        while (a := _GLM_ARG.match(text, pos)) is not None:
            key = a.group(1).strip()
            args[key] = _typed_value(a.group(2), props.get(key, {}))
            pos = a.end()
        calls.append(ParsedCall(name, json.dumps(args, ensure_ascii=False)))
    if not calls:
        raise ToolCallParseError("no <tool_call>NAME block found")
    return calls


def parse_gemma4(text: str) -> list[ParsedCall]:
    """Gemma 4: ``<|tool_call>call:NAME{key:<|"|>text<|"|>,n:3}<tool_call|>``."""
    calls: list[ParsedCall] = []
    pos = 0
    while (start := text.find("<|tool_call>call:", pos)) >= 0:
        i = start + len("<|tool_call>call:")
        brace = text.find("{", i)
        if brace < 0:
            raise ToolCallParseError("a Gemma 4 tool call has no argument block")
        name = text[i:brace].strip()
        value, pos = _Gemma4Args(text, brace).parse()
        calls.append(ParsedCall(name, json.dumps(value, ensure_ascii=False)))
    if not calls:
        raise ToolCallParseError("no <|tool_call>call: block found")
    return calls


class _Gemma4Args:
    """The small value syntax inside a Gemma 4 call: bare keys, ``<|"|>`` quoted strings."""

    Q = '<|"|>'

    def __init__(self, text: str, pos: int) -> None:
        self.text, self.pos = text, pos

    def parse(self) -> tuple[Any, int]:
        return self.value(), self.pos

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def value(self) -> Any:
        self._skip()
        t = self.text
        if t.startswith(self.Q, self.pos):
            end = t.find(self.Q, self.pos + len(self.Q))
            if end < 0:
                raise ToolCallParseError("an unterminated string in a Gemma 4 tool call")
            s = t[self.pos + len(self.Q) : end]
            self.pos = end + len(self.Q)
            return s
        if t.startswith("{", self.pos):
            self.pos += 1
            out: dict[str, Any] = {}
            while True:
                self._skip()
                if t.startswith("}", self.pos):
                    self.pos += 1
                    return out
                if t.startswith(self.Q, self.pos):
                    key = self.value()
                else:
                    colon = t.find(":", self.pos)
                    if colon < 0:
                        raise ToolCallParseError("a key without a value in a Gemma 4 tool call")
                    key, self.pos = t[self.pos : colon].strip(), colon
                self._skip()
                if not t.startswith(":", self.pos):
                    raise ToolCallParseError("expected ':' in a Gemma 4 tool call")
                self.pos += 1
                out[str(key)] = self.value()
                self._skip()
                if t.startswith(",", self.pos):
                    self.pos += 1
        if t.startswith("[", self.pos):
            self.pos += 1
            items: list[Any] = []
            while True:
                self._skip()
                if t.startswith("]", self.pos):
                    self.pos += 1
                    return items
                items.append(self.value())
                self._skip()
                if t.startswith(",", self.pos):
                    self.pos += 1
        m = re.compile(r"[^,}\]\s]+").match(t, self.pos)
        if not m:
            raise ToolCallParseError("an empty value in a Gemma 4 tool call")
        self.pos = m.end()
        word = m.group(0)
        try:
            return json.loads(word)
        except json.JSONDecodeError:
            return word


_HARMONY_CALL = re.compile(r"to=functions\.([\w.-]+)[^<]*(?:<\|constrain\|>\w+)?<\|message\|>")


def parse_harmony(text: str) -> list[ParsedCall]:
    """gpt-oss: ``<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{...}``."""
    calls: list[ParsedCall] = []
    for m in _HARMONY_CALL.finditer(text):
        obj, _ = _json_at(text, m.end())
        calls.append(_call_from_obj({"name": m.group(1), "arguments": obj}))
    if not calls:
        raise ToolCallParseError("no harmony call to=functions.NAME found")
    return calls


def parse_generic(text: str) -> tuple[str, list[ParsedCall]]:
    """The JSON envelope: ``{"tool_calls": [{"name", "arguments"}]}`` or ``{"response": s}``.

    A reply cut short (``max_tokens``, a model repeating its call) keeps what is complete:
    the whole calls before the cut, or the answer's text so far. The envelope is markup, so
    it never becomes the answer itself."""
    try:
        obj, _ = _json_at(text, 0)
    except ToolCallParseError:
        return _salvage_generic(text)
    if isinstance(obj, dict) and isinstance(obj.get("tool_calls"), list):
        return "", [_call_from_obj(c) for c in obj["tool_calls"]]
    if isinstance(obj, dict) and isinstance(obj.get("response"), str):
        return obj["response"], []
    if isinstance(obj, dict) and "response" in obj:  # an answer shaped by a response format
        return json.dumps(obj["response"], ensure_ascii=False), []
    raise ToolCallParseError("the reply is neither {'tool_calls': [...]} nor {'response': ...}")


_GENERIC_CALLS = re.compile(r'^\s*\{\s*"tool_calls"\s*:\s*\[')
_GENERIC_TEXT = re.compile(r'^\s*\{\s*"response"\s*:\s*"')


def _salvage_generic(text: str) -> tuple[str, list[ParsedCall]]:
    if (m := _GENERIC_CALLS.match(text)) is not None:
        calls: list[ParsedCall] = []
        pos = m.end()
        while True:
            try:
                obj, pos = _json_at(text, pos)
            except ToolCallParseError:
                break
            calls.append(_call_from_obj(obj))
            while pos < len(text) and text[pos] in " \n\t,":
                pos += 1
        if calls:
            return "", calls
    elif (m := _GENERIC_TEXT.match(text)) is not None:
        raw = text[m.end() :]
        for cut in range(len(raw), max(len(raw) - 8, 0) - 1, -1):  # an escape cut in half
            try:
                return json.loads('"' + raw[:cut] + '"'), []
            except json.JSONDecodeError:
                continue
    raise ToolCallParseError("the reply was cut off before a whole tool call or answer")


# --------------------------------------------------------------------------- families


@dataclass(frozen=True)
class Family:
    """How one model family shows tools and writes calls and reasoning."""

    name: str
    openers: tuple[str, ...] = ()  # text that starts the call section
    preserved: tuple[str, ...] = ()  # special tokens to render as text (markup we parse)
    parse: Callable[[str, Mapping[str, dict[str, Any]]], list[ParsedCall]] | None = None
    think: tuple[str, str] | None = None  # reasoning tags
    #: GBNF around one call's JSON (``call``) for forced calls: (prefix, separator, suffix);
    #: ``args_key`` names the arguments field in that JSON.
    wrap: tuple[str, str, str] | None = None
    args_key: str = "arguments"
    native: bool = True  # the template renders the tools itself
    #: Markup removed from the answer wherever it appears (harmony's channel headers).
    strip: tuple[str, ...] = ()

    @property
    def grammar_ready(self) -> bool:
        return self.wrap is not None


def _ignore_schemas(fn: Callable[[str], list[ParsedCall]]) -> Callable[..., list[ParsedCall]]:
    return lambda text, _schemas: fn(text)


HERMES = Family(
    "hermes",
    openers=("<tool_call>",),
    preserved=("<tool_call>", "</tool_call>"),
    parse=_ignore_schemas(parse_hermes),
    wrap=('"<tool_call>\\n" ', ' "\\n</tool_call>\\n<tool_call>\\n" ', ' "\\n</tool_call>"'),
)
XML_FUNCTION = Family(
    "qwen3-coder-xml",
    openers=("<tool_call>", "<function="),
    preserved=("<tool_call>", "</tool_call>"),
    parse=parse_xml_function,
)
LLAMA3 = Family(
    "llama3",
    openers=("<|python_tag|>", '{"name"', '{ "name"'),
    preserved=("<|python_tag|>",),
    parse=_ignore_schemas(parse_llama3),
    wrap=("", ' "; " ', ""),
    args_key="parameters",
)
MISTRAL = Family(
    "mistral",
    openers=("[TOOL_CALLS]",),
    preserved=("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "[THINK]", "[/THINK]"),
    parse=_ignore_schemas(parse_mistral),
    wrap=('"[TOOL_CALLS][" ', ' ", " ', ' "]"'),
)
MISTRAL_ARGS = Family(
    "mistral-args",
    openers=("[TOOL_CALLS]",),
    preserved=("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "[THINK]", "[/THINK]"),
    parse=_ignore_schemas(parse_mistral),
    think=("[THINK]", "[/THINK]"),
)
DEEPSEEK = Family(
    "deepseek",
    openers=("<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>"),
    preserved=(
        "<｜tool▁calls▁begin｜>",
        "<｜tool▁call▁begin｜>",
        "<｜tool▁sep｜>",
        "<｜tool▁call▁end｜>",
        "<｜tool▁calls▁end｜>",
    ),
    parse=_ignore_schemas(parse_deepseek),
    think=("<think>", "</think>"),
)
GRANITE = Family(
    "granite",
    openers=("<|tool_call|>",),
    preserved=("<|tool_call|>",),
    parse=_ignore_schemas(parse_granite),
    wrap=('"<|tool_call|>[" ', ' ", " ', ' "]"'),
)
GLM = Family(
    "glm",
    openers=("<tool_call>",),
    preserved=(
        "<tool_call>",
        "</tool_call>",
        "<arg_key>",
        "</arg_key>",
        "<arg_value>",
        "</arg_value>",
    ),
    parse=parse_glm,
    think=("<think>", "</think>"),
)
GEMMA4 = Family(
    "gemma4",
    openers=("<|tool_call>",),
    preserved=("<|tool_call>", "<tool_call|>", '<|"|>', "<|channel>", "<channel|>"),
    parse=_ignore_schemas(parse_gemma4),
    think=("<|channel>thought", "<channel|>"),
)
HARMONY = Family(
    "harmony",
    openers=("<|channel|>commentary to=", "<|start|>assistant to=", " to=functions."),
    think=("<|channel|>analysis<|message|>", "<|end|>"),
    strip=("<|start|>assistant", "<|channel|>final<|message|>", "<|end|>", "<|return|>"),
    preserved=(
        "<|channel|>",
        "<|message|>",
        "<|start|>",
        "<|end|>",
        "<|constrain|>",
        "<|call|>",
    ),
    parse=_ignore_schemas(parse_harmony),
)
#: Templates that do not render tools (or no template): tools go in a system message and the
#: reply is a grammar-constrained JSON envelope.
GENERIC = Family("generic", native=False)

NATIVE_FAMILIES = (
    HERMES,
    XML_FUNCTION,
    LLAMA3,
    MISTRAL,
    MISTRAL_ARGS,
    DEEPSEEK,
    GRANITE,
    GLM,
    GEMMA4,
    HARMONY,
)


def detect(template: str | None) -> Family:
    """The family whose syntax the template teaches its model (from the template text)."""
    if not template:
        return GENERIC
    t = template
    if "<|channel|>" in t and "<|message|>" in t:
        return HARMONY
    if "<|tool_call>" in t and "call:" in t:
        return GEMMA4
    if "tool▁call▁begin" in t:
        return DEEPSEEK
    if "[TOOL_CALLS]" in t:
        return MISTRAL_ARGS if "[ARGS]" in t else MISTRAL
    if "<|tool_call|>" in t:
        return GRANITE
    if "<arg_key>" in t:
        return GLM
    if "<function=" in t and "<parameter=" in t:
        return XML_FUNCTION
    if "<tool_call>" in t:
        return HERMES
    if "<|python_tag|>" in t or ("<|start_header_id|>" in t and "parameters" in t and "tools" in t):
        return LLAMA3
    return GENERIC


def with_reasoning(family: Family, template: str | None) -> Family:
    """The family plus ``<think>`` tags when the template uses them (Qwen3, DeepSeek R1...)."""
    if family.think is None and template and "<think>" in template and "</think>" in template:
        from dataclasses import replace

        return replace(family, think=("<think>", "</think>"))
    return family


# --------------------------------------------------------------------------- rendering


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


# --------------------------------------------------------------------------- grammars


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


# --------------------------------------------------------------------------- streaming


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


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PromptPlan:
    """How one request is put to the model and how its reply is read back.

    ``text`` is the rendered prompt (``None``: the model has no template; the caller writes a
    plain transcript of ``messages``, which are then the generic-mode messages when tools
    are on). ``grammar`` constrains the whole reply (GBNF) or is ``None``.
    """

    text: str | None
    messages: list[dict[str, Any]]
    family: Family
    generic: bool
    grammar: str | None
    in_reasoning: bool
    tools: tuple[dict[str, Any], ...]
    #: When set, ``grammar`` is lazy: it applies from the first of these openers the model
    #: writes as one token (the family's call opener), and the text before is free.
    grammar_triggers: tuple[str, ...] = ()


def plan_prompt(
    template: str | None,
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Mapping[str, Any]] = (),
    tool_choice: str = "auto",
    parallel_tool_calls: bool = True,
    json_schema: Mapping[str, Any] | None = None,
    grammar: str | None = None,
    template_kwargs: Mapping[str, Any] | None = None,
    bos_token: str = "",
    eos_token: str = "",
) -> PromptPlan:
    """Render ``messages`` (and ``tools``) for this template and pick the reply's grammar.

    Raises ``ValueError`` for requests that contradict themselves (a named tool that is not
    given; a response format together with a forced tool call) and ``TemplateError`` when the
    template refuses the conversation.
    """
    from launcher.engine.templates import render_chat

    kwargs = dict(template_kwargs or {})
    active = tuple(dict(t) for t in tools) if tool_choice != "none" else ()
    if tool_choice not in ("auto", "none", "required") and not any(
        t["name"] == tool_choice for t in tools
    ):
        raise ValueError(f"tool_choice names {tool_choice!r}, which is not among the tools")
    forced = bool(active) and tool_choice != "auto"
    if (json_schema is not None or grammar is not None) and forced:
        raise ValueError("a response format cannot be combined with a forced tool call")
    if grammar is not None and active:
        raise ValueError("a GBNF grammar cannot be combined with tools; use a JSON schema")
    family = with_reasoning(detect(template), template)
    text: str | None = None
    triggers: tuple[str, ...] = ()
    msgs = template_messages(messages)
    # Tools with a response format: the JSON envelope, whose answer follows the schema.
    generic = bool(active) and (
        not family.native or (forced and not family.grammar_ready) or json_schema is not None
    )
    out_grammar: str | None = None
    if active and not generic:
        try:
            text = render_chat(
                template or "", msgs, tools=openai_tools(active), bos_token=bos_token,
                eos_token=eos_token, **kwargs,
            )  # fmt: skip
        except Exception:
            generic = True  # the template cannot show these tools: say them in words
        else:
            if not all(t["name"] in text for t in active):
                generic, text = True, None  # it rendered without them (DeepSeek R1 Distill)
            elif forced or family.grammar_ready:
                out_grammar = call_grammar(family, active, tool_choice, parallel_tool_calls)
                if not forced:  # "auto": free text until the model opens a call
                    prefix = family.wrap[0] if family.wrap else ""
                    triggers = tuple(o for o in family.openers if o in prefix)
    uses_tools = any(m.get("role") == "tool" or m.get("tool_calls") for m in messages)
    if generic or (uses_tools and not family.native):
        # A template without tool support shows earlier calls and results as plain text.
        msgs = generic_messages(messages, active, tool_choice)
    if generic:
        out_grammar = generic_grammar(active, tool_choice, parallel_tool_calls)
    if text is None and template:
        text = render_chat(template, msgs, bos_token=bos_token, eos_token=eos_token, **kwargs)
    if generic:
        triggers = ()
    if out_grammar is None:
        if json_schema is not None:
            out_grammar = schema_grammar(json_schema)
        elif grammar is not None:
            out_grammar = grammar
    in_reasoning = False
    if family.think and text:
        open_at, close_at = text.rfind(family.think[0]), text.rfind(family.think[1])
        in_reasoning = open_at >= 0 and open_at > close_at and not generic
    return PromptPlan(
        text=text,
        messages=msgs,
        family=GENERIC if generic else family,
        generic=generic,
        grammar=out_grammar,
        in_reasoning=in_reasoning,
        tools=active,
        grammar_triggers=triggers,
    )
