"""Parsers of each family's call syntax into ``ParsedCall``s (formats documented in
llama.cpp's ``common/chat.cpp`` and ``tests/test-chat.cpp``; the code is ours)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
