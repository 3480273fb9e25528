"""OpenAI Responses (``POST /v1/responses``, what Codex CLI and the OpenAI Agents SDK speak),
stateless: every request carries its whole history, nothing is stored.

Pure mapping, like ``openai_api.py``. In: ``input`` as a string or items (messages with
``input_text``/``output_text`` parts, ``function_call`` and ``function_call_output``, earlier
``reasoning``), ``instructions`` (the system message), function ``tools``, ``tool_choice``,
``parallel_tool_calls``, ``max_output_tokens``, ``temperature``/``top_p``, ``top_logprobs``,
``text.format`` (json_object / json_schema) and ``reasoning.effort`` (the template's
``reasoning_effort``). Out: a ``response`` object whose ``output`` holds ``reasoning``,
``message`` and ``function_call`` items; streamed as ``response.created``,
``response.in_progress``, ``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta``/``.done``, ``response.reasoning_text.delta``/``.done``,
``response.function_call_arguments.delta``/``.done``, ``response.content_part.done``,
``response.output_item.done`` and ``response.completed`` (or ``response.incomplete`` when
``max_output_tokens`` cut it short). ``previous_response_id`` is refused: nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from launcher.engine.events import (
    Event,
    ReplyFinished,
    ReplyMetrics,
    Sampling,
    Token,
    TokenLogprob,
)
from launcher.server import schemas as s
from launcher.server.errors import ApiError
from launcher.server.openai_api import check_format, content_text, function_tool, tool_choice
from launcher.server.reply import Block, Blocks, GenRequest, new_id, now, sse

_MESSAGE_ROLES = ("user", "system", "developer", "assistant")


def _input_messages(items: str | list[dict[str, Any]], instructions: str | None) -> list[Any]:
    """The engine's OpenAI-shaped messages for Responses input items."""
    out: list[dict[str, Any]] = []
    if instructions:
        out.append({"role": "system", "content": instructions})
    if isinstance(items, str):
        out.append({"role": "user", "content": items})
        return out
    reasoning: list[str] = []  # an earlier reply's reasoning, for the assistant turn after it

    def assistant() -> dict[str, Any]:
        """The assistant message that calls and text join (the open one, or a new one)."""
        last = out[-1] if out else None
        if last is None or last["role"] != "assistant":
            last = {"role": "assistant", "content": None}
            out.append(last)
        if reasoning:
            last["reasoning_content"] = "".join(reasoning)
            reasoning.clear()
        return last

    for i, item in enumerate(items):
        where = f"input[{i}]"
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in _MESSAGE_ROLES:
                raise ApiError(
                    400, f"{where}.role must be one of {', '.join(_MESSAGE_ROLES)}.", where
                )
            content = item.get("content")
            if not isinstance(content, str | list):
                raise ApiError(400, f"{where}.content must be text or a list of parts.", where)
            text = content_text(content, f"{where}.content") or ""
            if role == "assistant":
                msg = assistant()
                msg["content"] = (msg["content"] or "") + text
            else:
                out.append({"role": "system" if role == "developer" else role, "content": text})
        elif kind == "function_call":
            name, args = item.get("name"), item.get("arguments", "")
            call_id = item.get("call_id") or item.get("id")
            if not isinstance(name, str) or not isinstance(args, str) or not call_id:
                raise ApiError(
                    400, f"{where} needs 'call_id', 'name' and 'arguments' (a string).", where
                )
            msg = assistant()
            msg.setdefault("tool_calls", []).append(
                {
                    "id": str(call_id),
                    "type": "function",
                    "function": {"name": name, "arguments": args},
                }
            )
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(output, str | list) or not item.get("call_id"):
                raise ApiError(400, f"{where} needs 'call_id' and 'output'.", where)
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": str(item["call_id"]),
                    "content": content_text(output, f"{where}.output") or "",
                }
            )
        elif kind == "reasoning":
            for part in (item.get("content") or []) + (item.get("summary") or []):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    reasoning.append(part["text"])
        else:
            raise ApiError(
                400,
                f"{where} is a '{kind}' item: this server takes messages, function_call, "
                "function_call_output and reasoning items.",
                param=f"{where}.type",
            )
    return out


@dataclass(frozen=True)
class ResponsesOptions:
    """What the response object echoes back, and what shapes it."""

    echo: dict[str, Any] = field(default_factory=dict)
    logprobs: bool = False


def parse_responses(body: Any) -> tuple[GenRequest, ResponsesOptions]:
    """Validate a ``/v1/responses`` body."""
    if isinstance(body, dict) and body.get("previous_response_id"):
        raise ApiError(
            400,
            "'previous_response_id' needs stored responses, and this server stores none: send "
            "the whole conversation in 'input' (with store false).",
            param="previous_response_id",
        )
    if isinstance(body, dict) and body.get("previous_response_id", 0) is None:
        body = {k: v for k, v in body.items() if k != "previous_response_id"}
    req = s.validate(s.ResponsesRequest, body)
    kw: dict[str, Any] = {"max_tokens": req.max_output_tokens or 2048}
    for key in ("temperature", "top_p"):
        value = getattr(req, key)
        if value is not None:
            kw[key] = value
    if req.top_logprobs is not None:
        kw["logprobs"] = req.top_logprobs
    fmt = req.text.format if req.text else None
    if fmt is not None and fmt.type == "json_object":
        check_format(kw, {}, "text.format")
    elif fmt is not None and fmt.type == "json_schema":
        check_format(kw, fmt.schema_ or {}, "text.format")
    tools = tuple(function_tool(t.name, t.description, t.parameters) for t in req.tools or ())
    choice = req.tool_choice
    kw["tools"] = tools
    kw["tool_choice"] = tool_choice(
        choice if isinstance(choice, str) else None,
        choice.name if isinstance(choice, s.ResponsesNamedChoice) else None,
        tools,
    )
    if req.parallel_tool_calls is not None:
        kw["parallel_tool_calls"] = req.parallel_tool_calls
    if req.reasoning is not None and req.reasoning.effort is not None:
        kw["template_kwargs"] = {"reasoning_effort": req.reasoning.effort}
    gen = GenRequest(
        kind="chat",
        model=req.model,
        sampling=Sampling(**kw),
        stream=req.stream,
        messages=tuple(_input_messages(req.input, req.instructions)),
    )
    echo = {
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "metadata": req.metadata or {},
        "parallel_tool_calls": kw.get("parallel_tool_calls", True),
        "temperature": req.temperature if req.temperature is not None else 1.0,
        "top_p": req.top_p if req.top_p is not None else 1.0,
        "tool_choice": choice.model_dump()
        if isinstance(choice, s.ResponsesNamedChoice)
        else (choice or "auto"),
        "tools": [
            {**t.model_dump(exclude_none=True), "strict": bool(t.strict)} for t in req.tools or ()
        ],
        "text": {"format": fmt.model_dump(by_alias=True, exclude_none=True)}
        if fmt
        else {"format": {"type": "text"}},
        "reasoning": {"effort": req.reasoning.effort if req.reasoning else None, "summary": None},
        "top_logprobs": req.top_logprobs,
    }
    return gen, ResponsesOptions(echo, req.top_logprobs is not None)


# ---------------------------------------------------------------------- replies
def responses_usage(metrics: ReplyMetrics) -> dict[str, Any]:
    prompt = metrics.prompt_tokens + metrics.cached_tokens
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": metrics.cached_tokens},
        "output_tokens": metrics.generated_tokens,
        "output_tokens_details": {"reasoning_tokens": metrics.reasoning_tokens},
        "total_tokens": prompt + metrics.generated_tokens,
    }


def _logprobs(items: tuple[TokenLogprob, ...]) -> list[dict[str, Any]]:
    return [
        {
            "token": t.token,
            "logprob": t.logprob,
            "bytes": list(t.token.encode()),
            "top_logprobs": [
                {"token": a, "logprob": b, "bytes": list(a.encode())} for a, b in t.top
            ],
        }
        for t in items
    ]


class ResponsesRenderer:
    """The ``response`` object, or its event stream."""

    def __init__(self, options: ResponsesOptions, model: str) -> None:
        self.options = options
        self.model = model
        self.id = new_id("resp_")
        self.created = now()
        self.blocks = Blocks()
        self.seq = 0
        self.item_ids: dict[int, str] = {}
        self._delta_logprobs: tuple[TokenLogprob, ...] = ()  # of the Token being rendered

    # ------------------------------------------------------------------ objects
    def _response(
        self, status: str, output: list[dict[str, Any]], done: ReplyFinished | None
    ) -> dict[str, Any]:
        incomplete = None
        if done is not None and status == "incomplete":
            incomplete = {"reason": "max_output_tokens"}
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": None,
            "incomplete_details": incomplete,
            "model": self.model,
            "output": output,
            "previous_response_id": None,
            "store": False,
            "truncation": "disabled",
            "user": None,
            "usage": responses_usage(done.metrics) if done is not None else None,
            **self.options.echo,
        }

    @staticmethod
    def _status(done: ReplyFinished) -> str:
        truncated = done.metrics.stop_reason in ("length", "context_full")
        return "incomplete" if truncated and not done.tool_calls else "completed"

    def _item(self, block: Block, status: str, logprobs: tuple[TokenLogprob, ...] = ()) -> Any:
        item_id = self.item_ids.setdefault(
            block.index, new_id({"reasoning": "rs_", "text": "msg_", "tool": "fc_"}[block.kind])
        )
        if block.kind == "reasoning":
            content = [{"type": "reasoning_text", "text": block.text}] if block.text else []
            return {
                "type": "reasoning",
                "id": item_id,
                "summary": [],
                "content": content,
                "encrypted_content": None,
                "status": status,
            }
        if block.kind == "text":
            parts = []
            if status == "completed":
                parts = [self._text_part(block.text, logprobs)]
            return {
                "type": "message",
                "id": item_id,
                "status": status,
                "role": "assistant",
                "content": parts,
            }
        assert block.call is not None
        return {
            "type": "function_call",
            "id": item_id,
            "call_id": block.call.id,
            "name": block.call.name,
            "arguments": block.call.arguments if status == "completed" else "",
            "status": status,
        }

    def _text_part(self, text: str, logprobs: tuple[TokenLogprob, ...] = ()) -> dict[str, Any]:
        lp = _logprobs(logprobs) if self.options.logprobs else []
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": lp}

    def _blocks_of(self, done: ReplyFinished) -> list[Block]:
        blocks: list[Block] = []
        if done.reasoning:
            blocks.append(Block(len(blocks), "reasoning", done.reasoning))
        if done.text or not done.tool_calls:
            blocks.append(Block(len(blocks), "text", done.text))
        for call in done.tool_calls:
            blocks.append(Block(len(blocks), "tool", call=call))
        return blocks

    def whole(self, done: ReplyFinished) -> dict[str, Any]:
        output = [self._item(b, "completed", done.logprobs) for b in self._blocks_of(done)]
        return self._response(self._status(done), output, done)

    # ------------------------------------------------------------------ stream
    def _event(self, kind: str, **fields: Any) -> bytes:
        obj = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return sse(obj, kind)

    def stream_start(self) -> bytes:
        return self._event(
            "response.created", response=self._response("in_progress", [], None)
        ) + self._event("response.in_progress", response=self._response("in_progress", [], None))

    def _render(self, actions: list[tuple[Any, ...]]) -> bytes:
        out = b""
        for action in actions:
            block: Block = action[1]
            index = block.index
            if action[0] == "open":
                item = self._item(block, "in_progress")
                out += self._event("response.output_item.added", output_index=index, item=item)
                if block.kind == "text":
                    out += self._event(
                        "response.content_part.added",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        part=self._text_part(""),
                    )
                continue
            item_id = self.item_ids[index]
            if action[0] == "delta":
                if block.kind == "tool":
                    out += self._event(
                        "response.function_call_arguments.delta",
                        item_id=item_id,
                        output_index=index,
                        delta=action[2],
                    )
                else:
                    kind = "output_text" if block.kind == "text" else "reasoning_text"
                    extra: dict[str, Any] = {}
                    if block.kind == "text":
                        wanted = self.options.logprobs
                        extra["logprobs"] = _logprobs(self._delta_logprobs) if wanted else []
                    out += self._event(
                        f"response.{kind}.delta",
                        item_id=item_id,
                        output_index=index,
                        content_index=0,
                        delta=action[2],
                        **extra,
                    )
                continue
            if block.kind == "tool":
                assert block.call is not None
                out += self._event(
                    "response.function_call_arguments.done",
                    item_id=item_id,
                    output_index=index,
                    name=block.call.name,
                    arguments=block.call.arguments,
                )
            elif block.kind == "text":
                out += self._event(
                    "response.output_text.done",
                    item_id=item_id,
                    output_index=index,
                    content_index=0,
                    text=block.text,
                    logprobs=[],
                )
                out += self._event(
                    "response.content_part.done",
                    item_id=item_id,
                    output_index=index,
                    content_index=0,
                    part=self._text_part(block.text),
                )
            else:
                out += self._event(
                    "response.reasoning_text.done",
                    item_id=item_id,
                    output_index=index,
                    content_index=0,
                    text=block.text,
                )
            out += self._event(
                "response.output_item.done",
                output_index=index,
                item=self._item(block, "completed"),
            )
        return out

    def stream_event(self, event: Event) -> bytes:
        self._delta_logprobs = event.logprobs if isinstance(event, Token) else ()
        return self._render(self.blocks.feed(event))

    def stream_end(self, done: ReplyFinished) -> bytes:
        out = self._render(self.blocks.finish())
        if not self.blocks.blocks:  # an empty reply is still one (empty) message
            out += self._render(self.blocks._open("text") + self.blocks.finish())
        output = [
            self._item(b, "completed", done.logprobs if b.kind == "text" else ())
            for b in self.blocks.blocks
        ]
        status = self._status(done)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._event(kind, response=self._response(status, output, done))

    def stream_error(self, err: ApiError) -> bytes:
        return self._event("error", code=err.code, message=err.message, param=err.param)

    def error_body(self, err: ApiError) -> dict[str, Any]:
        return err.body()
