"""OpenAI request/response mapping: JSON bodies in, engine calls, JSON objects and SSE chunks out.

Pure functions, no I/O: ``parse_chat`` / ``parse_completion`` validate a request body and turn
it into the engine's ``Sampling`` and messages (or raise ``ApiError``, which the server sends
as ``{"error": {...}}`` with its status); the ``*_response`` / ``*_chunk`` builders shape
replies exactly like the OpenAI API (``usage`` from the engine's measured token counts). The
field names follow the OpenAI reference; extras that llama.cpp's own server accepts
(``top_k``, ``min_p``, ``repeat_penalty``, ``cache_prompt``) are accepted too.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from launcher.engine.events import ReplyMetrics, Sampling

# Generous default reply length when the client gives none (OpenAI: until the context ends).
DEFAULT_MAX_TOKENS = 2048


class ApiError(Exception):
    """A request the API refuses: HTTP ``status`` and an OpenAI-style error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(frozen=True)
class ApiRequest:
    """A validated chat or completion request."""

    kind: str  # "chat" | "completion"
    model: str | None
    messages: tuple[dict[str, str], ...]  # chat
    prompt: str  # completion
    sampling: Sampling
    stream: bool
    include_usage: bool

    def preview(self, limit: int = 200) -> str:
        """The last user text (or the prompt), shortened, for the request log."""
        text = self.prompt
        if self.kind == "chat":
            users = [m["content"] for m in self.messages if m["role"] == "user"]
            text = users[-1] if users else (self.messages[-1]["content"] if self.messages else "")
        text = " ".join(text.split())
        return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_json(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong with it."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"The request body is not UTF-8 text: {exc}.") from exc
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"The request body is not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}). Send a JSON object.",
        ) from exc
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def _number(body: Mapping[str, Any], key: str, lo: float, hi: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"'{key}' must be a number.", param=key)
    if not lo <= value <= hi:
        raise ApiError(400, f"'{key}' must be between {lo:g} and {hi:g}.", param=key)
    return float(value)


def _integer(body: Mapping[str, Any], key: str, lo: int, hi: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"'{key}' must be an integer.", param=key)
    if not lo <= value <= hi:
        raise ApiError(400, f"'{key}' must be between {lo} and {hi}.", param=key)
    return value


def _sampling(body: Mapping[str, Any]) -> Sampling:
    kwargs: dict[str, Any] = {}
    max_tokens = _integer(body, "max_completion_tokens", 1, 1 << 20)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, 1 << 20)
    kwargs["max_tokens"] = max_tokens or DEFAULT_MAX_TOKENS
    for key, lo, hi in (
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("min_p", 0.0, 1.0),
        ("repeat_penalty", 0.0, 10.0),
    ):
        value = _number(body, key, lo, hi)
        if value is not None:
            kwargs[key] = value
    top_k = _integer(body, "top_k", 0, 1 << 20)
    if top_k is not None:
        kwargs["top_k"] = top_k
    seed = _integer(body, "seed", -(1 << 63), (1 << 64) - 1)
    if seed is not None:
        kwargs["seed"] = seed & 0xFFFFFFFF
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise ApiError(400, "'stop' must be a string or a list of strings.", param="stop")
        if len(stop) > 4:
            raise ApiError(400, "'stop' takes at most 4 sequences.", param="stop")
        kwargs["stop"] = tuple(s for s in stop if s)
    cache_prompt = body.get("cache_prompt")  # llama-server's extra: reuse the prompt's KV
    if cache_prompt is not None:
        if not isinstance(cache_prompt, bool):
            raise ApiError(400, "'cache_prompt' must be true or false.", param="cache_prompt")
        kwargs["cache_prompt"] = cache_prompt
    n = _integer(body, "n", 1, 128)
    if n is not None and n != 1:
        raise ApiError(400, "Only n=1 is supported: one reply per request.", param="n")
    return Sampling(**kwargs)


def _common(body: Mapping[str, Any]) -> tuple[str | None, bool, bool]:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "'model' must be a string.", param="model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false.", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "'stream_options' must be an object.", param="stream_options")
    return model, stream, bool(options.get("include_usage", False))


def _content_text(content: Any, index: int) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ApiError(
                    400,
                    f"messages[{index}] has a '{kind}' part: only text is supported.",
                    param=f"messages[{index}].content",
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise ApiError(400, f"messages[{index}] has a text part without text.")
            parts.append(text)
        return "".join(parts)
    raise ApiError(
        400,
        f"messages[{index}].content must be a string or a list of text parts.",
        param=f"messages[{index}].content",
    )


ROLES = ("system", "developer", "user", "assistant", "tool")


def parse_chat(body: Mapping[str, Any]) -> ApiRequest:
    """Validate a ``/v1/chat/completions`` body."""
    model, stream, include_usage = _common(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list.", param="messages")
    out: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ApiError(400, f"messages[{i}] must be an object.", param=f"messages[{i}]")
        role = m.get("role")
        if role not in ROLES:
            raise ApiError(
                400,
                f"messages[{i}].role must be one of {', '.join(ROLES)}.",
                param=f"messages[{i}].role",
            )
        # "developer" is the newer name of "system"; chat templates know only the latter.
        out.append(
            {
                "role": "system" if role == "developer" else str(role),
                "content": _content_text(m.get("content"), i),
            }
        )
    return ApiRequest(
        kind="chat",
        model=model,
        messages=tuple(out),
        prompt="",
        sampling=_sampling(body),
        stream=stream,
        include_usage=include_usage,
    )


def parse_completion(body: Mapping[str, Any]) -> ApiRequest:
    """Validate a ``/v1/completions`` body (one prompt string)."""
    model, stream, include_usage = _common(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "'prompt' must be a string (one prompt per request).", param="prompt")
    if body.get("echo"):
        raise ApiError(400, "'echo' is not supported.", param="echo")
    return ApiRequest(
        kind="completion",
        model=model,
        messages=(),
        prompt=prompt,
        sampling=_sampling(body),
        stream=stream,
        include_usage=include_usage,
    )


# ---------------------------------------------------------------------- responses
FINISH_REASONS = {
    "eos": "stop",
    "stop": "stop",
    "cancelled": "stop",
    "length": "length",
    "context_full": "length",
}


def finish_reason(metrics: ReplyMetrics) -> str:
    return FINISH_REASONS.get(metrics.stop_reason, "stop")


def usage(metrics: ReplyMetrics) -> dict[str, Any]:
    """OpenAI ``usage``: the whole prompt (evaluated + reused from the KV cache) and the reply."""
    prompt = metrics.prompt_tokens + metrics.cached_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": metrics.generated_tokens,
        "total_tokens": prompt + metrics.generated_tokens,
        "prompt_tokens_details": {"cached_tokens": metrics.cached_tokens},
    }


def new_id(kind: str) -> str:
    prefix = "chatcmpl" if kind == "chat" else "cmpl"
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def response(
    req: ApiRequest, rid: str, model: str, created: int, text: str, metrics: ReplyMetrics
) -> dict[str, Any]:
    """The non-streaming reply object."""
    reason = finish_reason(metrics)
    choice: dict[str, Any]
    if req.kind == "chat":
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": reason,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        obj = "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [choice],
        "usage": usage(metrics),
    }


def chunk(
    req: ApiRequest,
    rid: str,
    model: str,
    created: int,
    *,
    text: str | None = None,
    role: bool = False,
    finish: str | None = None,
) -> dict[str, Any]:
    """One streamed chunk: the role (first), a piece of text, or the finish reason."""
    choice: dict[str, Any]
    if req.kind == "chat":
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
            delta["content"] = ""
        if text is not None:
            delta["content"] = text
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [choice],
    }


def usage_chunk(
    req: ApiRequest, rid: str, model: str, created: int, metrics: ReplyMetrics
) -> dict[str, Any]:
    """The last chunk with ``stream_options.include_usage``: no choices, the usage."""
    return {
        "id": rid,
        "object": "chat.completion.chunk" if req.kind == "chat" else "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [],
        "usage": usage(metrics),
    }


def model_entry(name: str, created: int, loaded: Any = None) -> dict[str, Any]:
    """One ``/v1/models`` entry; ``meta`` (as llama-server has it) from the engine's ``Loaded``."""
    entry: dict[str, Any] = {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "spark-launcher",
    }
    if loaded is not None:
        entry["meta"] = {
            "n_ctx": getattr(loaded, "n_ctx", None),
            "n_ctx_train": getattr(loaded, "n_ctx_train", None),
            "n_params": getattr(loaded, "n_params", None),
            "size": getattr(loaded, "model_size_bytes", None),
        }
    return entry


def model_list(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """``GET /v1/models``: the entries of :func:`model_entry`."""
    return {"object": "list", "data": entries}


def sse(obj: Any) -> bytes:
    """One server-sent event carrying ``obj`` as JSON (compact, one line)."""
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def now() -> int:
    return int(time.time())
