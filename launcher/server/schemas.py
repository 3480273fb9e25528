"""Typed request bodies of the local API: OpenAI chat and completions, OpenAI Responses and
Anthropic Messages, as pydantic models.

Every model forbids fields it does not declare (``extra="forbid"``), so a field the server does
not implement is refused with a 400 naming it instead of being silently ignored (design
principle 8), and validation is strict: ``"12"`` is not a number, ``true`` is not an integer.
:func:`validate` turns pydantic's errors into one ``ApiError`` whose message and ``param``
name the offending field (``messages[0].role``). What a field *means* is mapped in
``openai_api.py``, ``responses_api.py`` and ``anthropic_api.py``; only shapes live here.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from launcher.server.errors import ApiError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Unknown fields are errors; no type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Open(BaseModel):
    """Parts of a body that clients fill with descriptive extras (schemas, metadata)."""

    model_config = ConfigDict(extra="allow", strict=True)


# ---------------------------------------------------------------------- OpenAI chat
class TextPart(Strict):
    type: Literal["text"]
    text: str


class FunctionCall(Strict):
    name: str
    arguments: str


class ToolCallIn(Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall
    index: int | None = None  # kept by clients that rebuild calls from streamed deltas


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    refusal: str | None = None
    annotations: list[Any] | None = None  # an earlier reply's, sent back with it


class FunctionDef(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatTool(Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(Strict):
    name: str


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(Strict):
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None


class SamplingFields(Strict):
    """What every OpenAI-style generation request may carry (llama-server's extras too)."""

    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=1 << 20)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=1 << 20)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, ge=0.0, le=10.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = Field(default=None, ge=-(1 << 63), le=(1 << 64) - 1)
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    logit_bias: dict[str, float] | None = None
    cache_prompt: bool | None = None
    grammar: str | None = None
    json_schema: dict[str, Any] | None = None  # llama-server's extra (the schema itself)
    user: str | None = None  # an end-user id: nothing here depends on it
    store: bool | None = None  # nothing is stored: the server keeps no history
    metadata: dict[str, str] | None = None


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1 << 20)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[ChatTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None


class CompletionRequest(SamplingFields):
    prompt: str | list[str]
    echo: bool | None = None
    logprobs: int | None = Field(default=None, ge=0, le=20)
    best_of: int | None = Field(default=None, ge=1, le=1)
    suffix: None = None


class EmbeddingsRequest(Strict):
    model: str | None = None
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = None
    user: str | None = None


# ---------------------------------------------------------------------- Anthropic
class AnthropicTool(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None
    cache_control: dict[str, Any] | None = None


class AnthropicToolChoice(Strict):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class AnthropicThinking(Strict):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(default=None, ge=0)
    display: Literal["summarized"] | None = None  # this server always shows the thinking


class AnthropicJsonFormat(Strict):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class AnthropicOutputConfig(Strict):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: AnthropicJsonFormat | None = None


class AnthropicMessage(Strict):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesRequest(Strict):
    model: str
    max_tokens: int = Field(ge=1, le=1 << 20)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None
    thinking: AnthropicThinking | None = None
    output_config: AnthropicOutputConfig | None = None
    metadata: dict[str, Any] | None = None


class CountTokensRequest(Strict):
    model: str
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None
    thinking: AnthropicThinking | None = None


# ---------------------------------------------------------------------- OpenAI Responses
class ResponsesFunctionTool(Strict):
    type: Literal["function"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ResponsesNamedChoice(Strict):
    type: Literal["function"]
    name: str


class ResponsesTextFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponsesText(Strict):
    format: ResponsesTextFormat | None = None
    verbosity: Literal["medium"] | None = None  # the only one a local model cannot ignore


class ResponsesReasoning(Strict):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesStreamOptions(Strict):
    include_obfuscation: bool | None = None  # padding against length side channels: none here


class ResponsesRequest(Strict):
    model: str | None = None
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[ResponsesFunctionTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | ResponsesNamedChoice | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=1 << 20)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    stream: bool = False
    text: ResponsesText | None = None
    reasoning: ResponsesReasoning | None = None
    store: bool | None = None  # nothing is stored: every request carries its history
    metadata: dict[str, str] | None = None
    user: str | None = None
    include: list[Literal["reasoning.encrypted_content", "message.output_text.logprobs"]] | None = (
        None
    )
    truncation: Literal["disabled"] | None = None
    stream_options: ResponsesStreamOptions | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None


# ---------------------------------------------------------------------- validation
def parse_json(raw: bytes) -> Any:
    """The body as JSON, or a 400 saying what is wrong with it."""
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"The request body is not UTF-8 text: {exc}.") from exc
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"The request body is not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}). Send a JSON object.",
        ) from exc


_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "none", "tuple"}


def _field_path(loc: tuple[Any, ...]) -> str:
    """``('messages', 0, 'role')`` -> ``messages[0].role``; union member tags are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = str(part)
        if "[" in text or text in _TYPE_TAGS or text[:1].isupper():
            continue  # pydantic names the union member it tried (``str``, ``ChatTool``...)
        out += f".{text}" if out else text
    return out


def validate(model: type[M], body: Any) -> M:
    """``body`` as ``model``, or an ``ApiError`` (400) naming the first bad or unknown field."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors()
        unknown = [e for e in errors if e["type"] == "extra_forbidden"]
        if unknown:
            path = _field_path(unknown[0]["loc"])
            raise ApiError(
                400,
                f"'{path}' is not supported by this server (README, Local API, lists what is).",
                param=path,
                code="unsupported_parameter",
            ) from None
        # A wrong "type" explains the rest (a server tool has no input_schema): name it first.
        typed = [e for e in errors if e["loc"] and e["loc"][-1] == "type"]
        first = (typed or errors)[0]
        path = _field_path(first["loc"])
        if first["type"] == "missing":
            raise ApiError(400, f"'{path}' is required.", param=path) from None
        raise ApiError(400, f"'{path}': {first['msg']}.", param=path) from None
