"""OpenAI chat completions and completions: validated bodies in, the engine's request out, and
replies (JSON or SSE chunks) shaped exactly like OpenAI's.

Pure functions, no I/O. ``parse_chat`` / ``parse_completion`` validate a body with the typed
models of ``schemas.py`` (an unknown field is a 400 naming it) and map every field they accept
into the engine's messages and ``Sampling``: sampling and penalties, ``logit_bias``,
``logprobs``/``top_logprobs``, ``response_format`` (``json_object`` -> any JSON object,
``json_schema`` -> its schema), llama-server's ``grammar``/``json_schema``/``top_k``/``min_p``/
``repeat_penalty``/``cache_prompt``, ``tools``/``tool_choice``/``parallel_tool_calls``,
``chat_template_kwargs`` and ``reasoning_effort``. The renderers give ``tool_calls`` (finish
reason ``tool_calls``), ``reasoning_content``, ``logprobs`` and ``usage`` with reasoning tokens.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from launcher.engine.events import (
    Event,
    ReasoningToken,
    ReplyFinished,
    ReplyMetrics,
    Sampling,
    Token,
    TokenLogprob,
    ToolCall,
)
from launcher.server import schemas as s
from launcher.server.errors import ApiError
from launcher.server.reply import SSE_DONE, GenRequest, new_id, now, sse

__all__ = ["SSE_DONE", "ApiError", "parse_chat", "parse_completion", "sse"]

# Generous default reply length when the client gives none (OpenAI: until the context ends).
DEFAULT_MAX_TOKENS = 2048


# ---------------------------------------------------------------------- requests
def sampling_kwargs(req: s.SamplingFields, max_tokens: int | None) -> dict[str, Any]:
    """``Sampling`` keyword arguments from the fields every OpenAI-style request shares."""
    kw: dict[str, Any] = {"max_tokens": max_tokens or req.max_tokens or DEFAULT_MAX_TOKENS}
    for key in (
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "repeat_penalty",
        "frequency_penalty",
        "presence_penalty",
        "cache_prompt",
        "grammar",
        "json_schema",
    ):
        value = getattr(req, key)
        if value is not None:
            kw[key] = value
    if req.seed is not None:
        kw["seed"] = req.seed & 0xFFFFFFFF
    if req.stop is not None:
        stop = [req.stop] if isinstance(req.stop, str) else req.stop
        if len(stop) > 4:
            raise ApiError(400, "'stop' takes at most 4 sequences.", param="stop")
        kw["stop"] = tuple(x for x in stop if x)
    if req.n is not None and req.n != 1:
        raise ApiError(400, "Only n=1 is supported: one reply per request.", param="n")
    if req.logit_bias:
        kw["logit_bias"] = logit_bias(req.logit_bias)
    return kw


def logit_bias(bias: dict[str, float]) -> tuple[tuple[int, float], ...]:
    """OpenAI's ``{"token id": bias}`` (bias -100..100) as the engine's pairs."""
    out = []
    for key, value in bias.items():
        if not key.isdigit():
            raise ApiError(
                400,
                f"'logit_bias' keys are token ids (digits as strings); got {key!r}.",
                param="logit_bias",
            )
        if not -100 <= value <= 100:
            raise ApiError(400, "'logit_bias' values must be between -100 and 100.", "logit_bias")
        out.append((int(key), float(value)))
    return tuple(out)


def check_format(kw: dict[str, Any], schema: dict[str, Any] | None, where: str) -> None:
    """Put a response format's schema into ``kw``, refusing a second constraint."""
    if kw.get("grammar") is not None or kw.get("json_schema") is not None:
        raise ApiError(
            400,
            f"'{where}' cannot be combined with 'grammar' or 'json_schema': one constraint "
            "per reply.",
            param=where,
        )
    kw["json_schema"] = schema


def content_text(content: str | list[dict[str, Any]] | None, where: str) -> str | None:
    """A message's text: a string, or the text parts of a content list (images refused)."""
    if content is None or isinstance(content, str):
        return content
    parts = []
    for i, part in enumerate(content):
        kind = part.get("type")
        if kind not in ("text", "input_text", "output_text"):
            raise ApiError(
                400,
                f"{where} has a '{kind}' part: only text is supported (no images, audio or files).",
                param=f"{where}[{i}].type",
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise ApiError(400, f"{where}[{i}] is a text part without text.", f"{where}[{i}]")
        parts.append(text)
    return "".join(parts)


def function_tool(name: str, description: str | None, parameters: Any) -> dict[str, Any]:
    """The engine's tool definition (OpenAI's function object)."""
    return {
        "name": name,
        "description": description or "",
        "parameters": parameters if parameters is not None else {"type": "object"},
    }


def tool_choice(choice: str | None, named: str | None, tools: tuple[dict[str, Any], ...]) -> str:
    """The engine's ``tool_choice`` (auto/none/required/a tool's name), checked against tools."""
    if named is not None:
        if named not in {t["name"] for t in tools}:
            raise ApiError(
                400, f"'tool_choice' names '{named}', which is not in 'tools'.", "tool_choice"
            )
        return named
    value = choice or "auto"
    if value == "required" and not tools:
        raise ApiError(400, "'tool_choice' is 'required' but no 'tools' were given.", "tools")
    return value


def _chat_message(i: int, m: s.ChatMessage) -> dict[str, Any]:
    where = f"messages[{i}].content"
    text = content_text(m.content, where)
    if m.refusal and text is None:
        text = m.refusal
    out: dict[str, Any] = {
        "role": "system" if m.role == "developer" else m.role,  # templates know only "system"
        "content": text,
    }
    if m.tool_calls:
        if m.role != "assistant":
            raise ApiError(400, f"messages[{i}]: only assistant messages carry tool_calls.")
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in m.tool_calls
        ]
    elif text is None and m.role != "assistant":
        out["content"] = ""
    if m.role == "tool":
        if not m.tool_call_id:
            raise ApiError(
                400, f"messages[{i}] (role tool) needs 'tool_call_id'.", f"messages[{i}]"
            )
        out["tool_call_id"] = m.tool_call_id
    if m.name is not None:
        out["name"] = m.name
    if m.reasoning_content:
        out["reasoning_content"] = m.reasoning_content
    return out


@dataclass(frozen=True)
class ChatOptions:
    """What shapes the reply beyond the engine's request."""

    kind: str  # "chat" | "completion"
    include_usage: bool = False
    logprobs: bool = False


def parse_chat(body: Any) -> tuple[GenRequest, ChatOptions]:
    """Validate a ``/v1/chat/completions`` body."""
    req = s.validate(s.ChatRequest, body)
    kw = sampling_kwargs(req, req.max_completion_tokens)
    if req.top_logprobs is not None and not req.logprobs:
        raise ApiError(400, "'top_logprobs' needs 'logprobs': true.", param="top_logprobs")
    if req.logprobs:
        kw["logprobs"] = req.top_logprobs or 0
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_object":
        check_format(kw, {}, "response_format")
    elif fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None:
            raise ApiError(
                400, "'response_format.json_schema' is required.", "response_format.json_schema"
            )
        check_format(kw, fmt.json_schema.schema_ or {}, "response_format")
    tools = tuple(
        function_tool(t.function.name, t.function.description, t.function.parameters)
        for t in req.tools or ()
    )
    choice = req.tool_choice
    kw["tools"] = tools
    kw["tool_choice"] = tool_choice(
        choice if isinstance(choice, str) else None,
        choice.function.name if isinstance(choice, s.NamedToolChoice) else None,
        tools,
    )
    if req.parallel_tool_calls is not None:
        kw["parallel_tool_calls"] = req.parallel_tool_calls
    template_kwargs = dict(req.chat_template_kwargs or {})
    if req.reasoning_effort is not None:
        template_kwargs["reasoning_effort"] = req.reasoning_effort
    kw["template_kwargs"] = template_kwargs
    messages = tuple(_chat_message(i, m) for i, m in enumerate(req.messages))
    gen = GenRequest(
        kind="chat", model=req.model, sampling=Sampling(**kw), stream=req.stream, messages=messages
    )
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return gen, ChatOptions("chat", include_usage, bool(req.logprobs))


def parse_completion(body: Any) -> tuple[GenRequest, ChatOptions]:
    """Validate a ``/v1/completions`` body (one prompt string)."""
    req = s.validate(s.CompletionRequest, body)
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise ApiError(400, "'prompt' must be one string (one prompt per request).", "prompt")
        prompt = prompt[0]
    if req.echo:
        raise ApiError(400, "'echo' is not supported.", param="echo")
    if req.suffix:
        raise ApiError(400, "'suffix' (fill in the middle) is not supported.", param="suffix")
    kw = sampling_kwargs(req, None)
    if req.logprobs is not None:
        kw["logprobs"] = req.logprobs
    gen = GenRequest(
        kind="completion",
        model=req.model,
        sampling=Sampling(**kw),
        stream=req.stream,
        prompt=prompt,
    )
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return gen, ChatOptions("completion", include_usage, req.logprobs is not None)


# ---------------------------------------------------------------------- replies
FINISH_REASONS = {
    "eos": "stop",
    "stop": "stop",
    "cancelled": "stop",
    "length": "length",
    "context_full": "length",
    "tool_calls": "tool_calls",
}


def finish_reason(done: ReplyFinished) -> str:
    if done.tool_calls:
        return "tool_calls"
    return FINISH_REASONS.get(done.metrics.stop_reason, "stop")


def usage(metrics: ReplyMetrics) -> dict[str, Any]:
    """OpenAI ``usage``: the whole prompt (evaluated + reused from the KV cache) and the reply."""
    prompt = metrics.prompt_tokens + metrics.cached_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": metrics.generated_tokens,
        "total_tokens": prompt + metrics.generated_tokens,
        "prompt_tokens_details": {"cached_tokens": metrics.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": metrics.reasoning_tokens},
    }


def _token_entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def chat_logprobs(items: tuple[TokenLogprob, ...]) -> dict[str, Any]:
    """Chat's ``logprobs``: ``{"content": [{token, logprob, bytes, top_logprobs}], ...}``."""
    return {
        "content": [
            {**_token_entry(t.token, t.logprob), "top_logprobs": [_token_entry(*a) for a in t.top]}
            for t in items
        ],
        "refusal": None,
    }


def completion_logprobs(items: tuple[TokenLogprob, ...], offset: int = 0) -> dict[str, Any]:
    """Legacy completions' ``logprobs``: parallel lists, offsets into the generated text."""
    offsets = []
    for t in items:
        offsets.append(offset)
        offset += len(t.token)
    return {
        "tokens": [t.token for t in items],
        "token_logprobs": [t.logprob for t in items],
        "top_logprobs": [dict(t.top) for t in items],
        "text_offset": offsets,
    }


def tool_call_deltas(call: ToolCall) -> list[dict[str, Any]]:
    """A whole call as OpenAI's streamed deltas: id, type and name, then the arguments."""
    return [
        {
            "index": call.index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        },
        {"index": call.index, "function": {"arguments": call.arguments}},
    ]


class OpenAIRenderer:
    """Chat completion or text completion replies, whole or streamed."""

    def __init__(self, options: ChatOptions, model: str) -> None:
        self.options = options
        self.chat = options.kind == "chat"
        self.model = model
        self.id = new_id("chatcmpl-" if self.chat else "cmpl-")
        self.created = now()
        self.object = "chat.completion.chunk" if self.chat else "text_completion"
        self._offset = 0  # legacy logprobs' text offsets run across chunks

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }

    def whole(self, done: ReplyFinished) -> dict[str, Any]:
        reason = finish_reason(done)
        lp = done.logprobs if self.options.logprobs else None
        if self.chat:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": done.text if done.text or not done.tool_calls else None,
            }
            if done.tool_calls:
                message["tool_calls"] = [c.to_openai() for c in done.tool_calls]
            if done.reasoning:
                message["reasoning_content"] = done.reasoning
            choice: dict[str, Any] = {
                "index": 0,
                "message": message,
                "logprobs": chat_logprobs(lp) if lp is not None else None,
                "finish_reason": reason,
            }
            obj = self._envelope("chat.completion", [choice])
        else:
            choice = {
                "index": 0,
                "text": done.text,
                "logprobs": completion_logprobs(lp) if lp is not None else None,
                "finish_reason": reason,
            }
            obj = self._envelope("text_completion", [choice])
        obj["usage"] = usage(done.metrics)
        return obj

    def _chunk(
        self,
        delta: dict[str, Any] | None = None,
        *,
        text: str = "",
        finish: str | None = None,
        logprobs: tuple[TokenLogprob, ...] | None = None,
    ) -> bytes:
        choice: dict[str, Any]
        if self.chat:
            lp = chat_logprobs(logprobs) if logprobs is not None else None
            choice = {"index": 0, "delta": delta or {}, "logprobs": lp, "finish_reason": finish}
        else:
            lp = None
            if logprobs is not None:
                lp = completion_logprobs(logprobs, self._offset)
                self._offset += len(text)
            choice = {"index": 0, "text": text, "logprobs": lp, "finish_reason": finish}
        return sse(self._envelope(self.object, [choice]))

    def stream_start(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""}) if self.chat else b""

    def stream_event(self, event: Event) -> bytes:
        wanted = self.options.logprobs
        if isinstance(event, Token):
            lp = event.logprobs if wanted else None
            if self.chat:
                return self._chunk({"content": event.text}, logprobs=lp)
            return self._chunk(text=event.text, logprobs=lp)
        if isinstance(event, ReasoningToken) and self.chat:
            return self._chunk({"reasoning_content": event.text})
        if isinstance(event, ToolCall) and self.chat:
            return b"".join(self._chunk({"tool_calls": [d]}) for d in tool_call_deltas(event))
        return b""

    def stream_end(self, done: ReplyFinished) -> bytes:
        out = self._chunk({}, finish=finish_reason(done))
        if self.options.include_usage:
            obj = self._envelope(self.object, [])
            obj["usage"] = usage(done.metrics)
            out += sse(obj)
        return out + SSE_DONE

    def stream_error(self, err: ApiError) -> bytes:
        return sse(err.body()) + SSE_DONE

    def error_body(self, err: ApiError) -> dict[str, Any]:
        return err.body()


# ---------------------------------------------------------------------- models
_THINKING = re.compile(r"<think>|reasoning|thinking", re.IGNORECASE)


def capabilities(loaded: Any) -> dict[str, bool]:
    """What a loaded model does, read from its chat template: tools when the template takes
    them, reasoning when it knows ``<think>`` or a reasoning/thinking switch. Every model
    embeds (its own pooling, else mean pooling); images are not served, so no vision."""
    template = str(getattr(loaded, "chat_template", None) or "")
    return {
        "tools": "tools" in template,
        "reasoning": bool(_THINKING.search(template)),
        "vision": False,
        "embeddings": True,
    }


def model_entry(name: str, created: int, loaded: Any = None) -> dict[str, Any]:
    """One ``/v1/models`` entry; ``meta`` (as llama-server has it) from the engine's ``Loaded``,
    its context size and what it can do."""
    entry: dict[str, Any] = {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "spark-launcher",
    }
    if loaded is not None:
        n_ctx = getattr(loaded, "n_ctx", None)
        entry["context_length"] = n_ctx
        entry["capabilities"] = capabilities(loaded)
        entry["meta"] = {
            "n_ctx": n_ctx,
            "n_ctx_train": getattr(loaded, "n_ctx_train", None),
            "n_params": getattr(loaded, "n_params", None),
            "size": getattr(loaded, "model_size_bytes", None),
            "chat_template": getattr(loaded, "chat_template", None) is not None,
        }
    return entry


def model_list(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """``GET /v1/models``: the entries of :func:`model_entry`."""
    return {"object": "list", "data": entries}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# ---------------------------------------------------------------------- embeddings
def parse_embeddings(body: Any) -> tuple[str | None, list[str], str]:
    """Validate a ``/v1/embeddings`` body: (model, texts, encoding format)."""
    req = s.validate(s.EmbeddingsRequest, body)
    if req.dimensions is not None:
        raise ApiError(
            400,
            "'dimensions' is not supported: vectors have the model's own size.",
            param="dimensions",
        )
    texts = [req.input] if isinstance(req.input, str) else list(req.input)
    if not all(texts):
        raise ApiError(400, "'input' must not contain empty strings.", param="input")
    return req.model, texts, req.encoding_format or "float"


def embeddings_response(model: str, vectors: Any, prompt_tokens: int, fmt: str) -> dict[str, Any]:
    """OpenAI's embeddings list; ``base64`` is little-endian float32, as OpenAI sends it."""
    import base64
    import struct

    def encode(vector: tuple[float, ...]) -> Any:
        if fmt == "base64":
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        return list(vector)

    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(v)}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
