"""Anthropic Messages (``POST /v1/messages``, what Claude Code speaks): validated bodies in, the
engine's chat request out, and Anthropic's message object or event stream back.

Pure mapping, like ``openai_api.py``. In: ``system`` (a string or text blocks), text blocks,
``tool_use`` (an assistant's call: the engine's OpenAI-shaped ``tool_calls``) and
``tool_result`` blocks (``role: tool`` messages), ``thinking`` blocks (the assistant's
``reasoning_content``), ``tools`` / ``tool_choice`` (auto, any = required, tool = named, none;
``disable_parallel_tool_use``), ``stop_sequences``, ``temperature``/``top_p``/``top_k`` and
``thinking`` (enabled/disabled -> the template's ``enable_thinking``), ``output_config``
(``effort`` -> the template's ``reasoning_effort``, ``format`` -> a JSON schema). Out: ``thinking``,
``text`` and ``tool_use`` content blocks, ``stop_reason`` (end_turn, max_tokens,
stop_sequence, tool_use), usage; streamed as ``message_start``, ``content_block_start`` /
``_delta`` (text_delta, thinking_delta, input_json_delta) / ``_stop``, ``message_delta`` with
the usage, ``message_stop``. Errors use Anthropic's ``{"type": "error", ...}`` shape.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from launcher.engine.events import Event, ReplyFinished, ReplyMetrics, Sampling
from launcher.server import schemas as s
from launcher.server.errors import ApiError
from launcher.server.openai_api import function_tool, tool_choice
from launcher.server.reply import Block, Blocks, GenRequest, arguments_object, new_id, sse

if TYPE_CHECKING:
    from starlette.requests import Request

    from launcher.server.hosting import ApiHost

STOP_REASONS = {
    "eos": "end_turn",
    "stop": "stop_sequence",
    "cancelled": "end_turn",
    "length": "max_tokens",
    "context_full": "max_tokens",
    "tool_calls": "tool_use",
}


def _text_blocks(blocks: str | list[dict[str, Any]] | None, where: str) -> str:
    """Text of a string or of text blocks (``cache_control`` is fine: the KV cache is reused
    automatically); any other block is refused."""
    if blocks is None or isinstance(blocks, str):
        return blocks or ""
    parts = []
    for i, block in enumerate(blocks):
        if block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise ApiError(
                400,
                f"{where}[{i}] is a '{block.get('type')}' block: only text is supported here "
                "(no images or documents).",
                param=f"{where}[{i}]",
            )
        parts.append(block["text"])
    return "\n".join(parts)


def _messages(req: s.MessagesRequest | s.CountTokensRequest) -> list[dict[str, Any]]:
    """The engine's OpenAI-shaped messages for an Anthropic conversation."""
    out: list[dict[str, Any]] = []
    system = _text_blocks(req.system, "system")
    if system:
        out.append({"role": "system", "content": system})
    for i, m in enumerate(req.messages):
        where = f"messages[{i}].content"
        if isinstance(m.content, str):
            out.append({"role": m.role, "content": m.content})
            continue
        if m.role == "user":
            text: list[str] = []
            for j, block in enumerate(m.content):
                kind = block.get("type")
                if kind == "text" and isinstance(block.get("text"), str):
                    text.append(block["text"])
                elif kind == "tool_result":
                    if text:
                        out.append({"role": "user", "content": "\n".join(text)})
                        text = []
                    result = _text_blocks(block.get("content"), f"{where}[{j}].content")
                    if block.get("is_error"):
                        result = f"Error: {result}"
                    out.append(
                        {
                            "role": "tool",
                            "tool_call_id": str(block.get("tool_use_id", "")),
                            "content": result,
                        }
                    )
                else:
                    raise ApiError(
                        400,
                        f"{where}[{j}] is a '{kind}' block: user messages take text and "
                        "tool_result blocks (no images or documents).",
                        param=f"{where}[{j}]",
                    )
            if text:
                out.append({"role": "user", "content": "\n".join(text)})
            continue
        content: list[str] = []
        reasoning: list[str] = []
        calls: list[dict[str, Any]] = []
        for j, block in enumerate(m.content):
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                content.append(block["text"])
            elif kind == "thinking" and isinstance(block.get("thinking"), str):
                reasoning.append(block["thinking"])
            elif kind == "redacted_thinking":
                continue  # opaque to any model but Anthropic's; this server never sends it
            elif kind == "tool_use" and isinstance(block.get("name"), str):
                calls.append(
                    {
                        "id": str(block.get("id", "")),
                        "type": "function",
                        "function": {
                            "name": block["name"],
                            "arguments": json.dumps(block.get("input", {})),
                        },
                    }
                )
            else:
                raise ApiError(
                    400,
                    f"{where}[{j}] is a '{kind}' block: assistant messages take text, "
                    "thinking and tool_use blocks.",
                    param=f"{where}[{j}]",
                )
        msg: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
        if calls:
            msg["tool_calls"] = calls
        if reasoning:
            msg["reasoning_content"] = "".join(reasoning)
        if msg["content"] is None and not calls:
            msg["content"] = ""
        out.append(msg)
    return out


def _tools(req: s.MessagesRequest | s.CountTokensRequest) -> dict[str, Any]:
    tools = tuple(function_tool(t.name, t.description, t.input_schema) for t in req.tools or ())
    kw: dict[str, Any] = {"tools": tools}
    choice = req.tool_choice
    if choice is None:
        kw["tool_choice"] = tool_choice(None, None, tools)
    else:
        if choice.type == "tool" and not choice.name:
            raise ApiError(400, "'tool_choice.name' is required for type 'tool'.", "tool_choice")
        named = choice.name if choice.type == "tool" else None
        mapped = {"auto": "auto", "any": "required", "none": "none"}.get(choice.type)
        kw["tool_choice"] = tool_choice(mapped, named, tools)
        if choice.disable_parallel_tool_use is not None:
            kw["parallel_tool_calls"] = not choice.disable_parallel_tool_use
    template_kwargs: dict[str, Any] = {}
    thinking = req.thinking
    if thinking is not None and thinking.type != "adaptive":
        template_kwargs["enable_thinking"] = thinking.type == "enabled"
    config = getattr(req, "output_config", None)
    if config is not None and config.effort is not None:
        template_kwargs["reasoning_effort"] = config.effort
    if config is not None and config.format is not None:
        kw["json_schema"] = config.format.schema_
    kw["template_kwargs"] = template_kwargs
    return kw


@dataclass(frozen=True)
class MessagesOptions:
    stop_sequences: tuple[str, ...] = ()


def parse_messages(body: Any) -> tuple[GenRequest, MessagesOptions]:
    """Validate a ``/v1/messages`` body."""
    req = s.validate(s.MessagesRequest, body)
    kw = _tools(req)
    kw["max_tokens"] = req.max_tokens
    for key in ("temperature", "top_p", "top_k"):
        value = getattr(req, key)
        if value is not None:
            kw[key] = value
    stops = tuple(x for x in req.stop_sequences or () if x)
    kw["stop"] = stops
    gen = GenRequest(
        kind="chat",
        model=req.model,
        sampling=Sampling(**kw),
        stream=req.stream,
        messages=tuple(_messages(req)),
    )
    return gen, MessagesOptions(stops)


def parse_count_tokens(body: Any) -> GenRequest:
    """A ``/v1/messages/count_tokens`` body as a one-token greedy request for the same prompt
    (the engine counts the rendered prompt exactly; tools are rendered, not enforced)."""
    req = s.validate(s.CountTokensRequest, body)
    kw = _tools(req)
    kw["tool_choice"] = "auto"
    return GenRequest(
        kind="chat",
        model=req.model,
        sampling=Sampling(max_tokens=1, temperature=0.0, **kw),
        stream=False,
        messages=tuple(_messages(req)),
    )


async def count_tokens(
    api: ApiHost,
    request: Request,
    read_body: Callable[[Request], Awaitable[bytes]],
    client: str,
) -> dict[str, Any]:
    """``{"input_tokens": N}``: the prompt as the model's template renders it, counted by
    llama.cpp's tokenizer (prefilled once, which also warms the KV cache for the request that
    usually follows)."""
    import anyio.to_thread

    from launcher.errors import EngineError, ModelBusyError, ModelUnavailableError
    from launcher.server.errors import context_error
    from launcher.server.schemas import parse_json

    gen = parse_count_tokens(parse_json(await read_body(request)))
    model = api.resolve_model(gen.model)

    def run() -> ReplyFinished | None:
        stream = model.chat(gen.messages, gen.sampling, source="api:" + client)
        try:
            done = None
            for event in stream:
                if isinstance(event, ReplyFinished):
                    done = event
            return done
        finally:
            stream.close()

    try:
        done = await anyio.to_thread.run_sync(run)
    except ModelBusyError as exc:
        raise ApiError(
            503, str(exc), type="server_error", headers={"Retry-After": str(exc.retry_after_s)}
        ) from exc
    except ModelUnavailableError as exc:
        raise ApiError(503, str(exc), type="server_error", code="model_not_loaded") from exc
    except EngineError as exc:
        raise context_error(str(exc)) from exc
    if done is None or done.metrics.stop_reason == "cancelled":
        raise ApiError(503, "The model went away while counting.", type="server_error")
    return {"input_tokens": done.metrics.prompt_tokens + done.metrics.cached_tokens}


# ---------------------------------------------------------------------- replies
def stop_reason(done: ReplyFinished, stop_sequences: tuple[str, ...] = ()) -> str:
    """Anthropic's stop reason. The engine's ``stop`` is also the end of a plain-completion
    turn (its own ``User:`` stop), so it is ``stop_sequence`` only when the client gave some."""
    if done.tool_calls:
        return "tool_use"
    if done.metrics.stop_reason == "stop" and done.metrics.stop_sequence not in stop_sequences:
        return "end_turn"  # the model's own end-of-turn stop, not one the client gave
    return STOP_REASONS.get(done.metrics.stop_reason, "end_turn")


def anthropic_usage(metrics: ReplyMetrics) -> dict[str, Any]:
    """Anthropic's usage: ``input_tokens`` excludes what was read from the cache."""
    return {
        "input_tokens": metrics.prompt_tokens,
        "output_tokens": metrics.generated_tokens,
        "cache_read_input_tokens": metrics.cached_tokens,
        "cache_creation_input_tokens": 0,
    }


class AnthropicRenderer:
    """Anthropic's message object, or its event stream."""

    def __init__(self, options: MessagesOptions, model: str) -> None:
        self.options = options
        self.model = model
        self.id = new_id("msg_")
        self.blocks = Blocks()

    def _stop_sequence(self, done: ReplyFinished) -> str | None:
        """The client's stop sequence that ended the reply (the engine names it)."""
        seq = done.metrics.stop_sequence
        if done.metrics.stop_reason == "stop" and seq in self.options.stop_sequences:
            return seq
        return None

    def _message(self, content: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }

    def whole(self, done: ReplyFinished) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if done.reasoning:
            content.append({"type": "thinking", "thinking": done.reasoning, "signature": ""})
        if done.text or not done.tool_calls:
            content.append({"type": "text", "text": done.text})
        for call in done.tool_calls:
            content.append(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": arguments_object(call.arguments),
                }
            )
        msg = self._message(content, anthropic_usage(done.metrics))
        msg["stop_reason"] = stop_reason(done, self.options.stop_sequences)
        msg["stop_sequence"] = self._stop_sequence(done)
        return msg

    def stream_start(self) -> bytes:
        usage = {"input_tokens": 0, "output_tokens": 0}  # the counts come with message_delta
        return sse(
            {"type": "message_start", "message": self._message([], usage)}, "message_start"
        ) + sse({"type": "ping"}, "ping")

    def _render(self, actions: list[tuple[Any, ...]]) -> bytes:
        out = b""
        for action in actions:
            block: Block = action[1]
            if action[0] == "open":
                if block.kind == "reasoning":
                    start: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
                elif block.kind == "text":
                    start = {"type": "text", "text": ""}
                else:
                    assert block.call is not None
                    start = {
                        "type": "tool_use",
                        "id": block.call.id,
                        "name": block.call.name,
                        "input": {},
                    }
                out += sse(
                    {"type": "content_block_start", "index": block.index, "content_block": start},
                    "content_block_start",
                )
            elif action[0] == "delta":
                text = action[2]
                if block.kind == "reasoning":
                    delta = {"type": "thinking_delta", "thinking": text}
                elif block.kind == "text":
                    delta = {"type": "text_delta", "text": text}
                else:
                    delta = {"type": "input_json_delta", "partial_json": text}
                out += sse(
                    {"type": "content_block_delta", "index": block.index, "delta": delta},
                    "content_block_delta",
                )
            else:
                if block.kind == "reasoning":
                    out += sse(
                        {
                            "type": "content_block_delta",
                            "index": block.index,
                            "delta": {"type": "signature_delta", "signature": ""},
                        },
                        "content_block_delta",
                    )
                out += sse(
                    {"type": "content_block_stop", "index": block.index}, "content_block_stop"
                )
        return out

    def stream_event(self, event: Event) -> bytes:
        return self._render(self.blocks.feed(event))

    def stream_end(self, done: ReplyFinished) -> bytes:
        out = self._render(self.blocks.finish())
        delta = {
            "stop_reason": stop_reason(done, self.options.stop_sequences),
            "stop_sequence": self._stop_sequence(done),
        }
        out += sse(
            {"type": "message_delta", "delta": delta, "usage": anthropic_usage(done.metrics)},
            "message_delta",
        )
        return out + sse({"type": "message_stop"}, "message_stop")

    def stream_error(self, err: ApiError) -> bytes:
        return sse(err.anthropic_body(), "error")

    def error_body(self, err: ApiError) -> dict[str, Any]:
        return err.anthropic_body()
