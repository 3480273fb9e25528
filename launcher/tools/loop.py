"""The tool loop: the model calls tools, the user approves, the results go back, until it answers.

One user turn is several model replies ("rounds"). Each round streams the model's reply
(``Token``, ``ReasoningToken``, ``ToolCall`` pass through unchanged, so a transcript can show
them); when it ends in tool calls, each call is put to ``approve`` (allow once, always for this
tool, deny, or deny and answer now), approved calls run on their MCP server with a time limit,
and every call gets a tool message back (a denial, a time-out, a crashed server are results
saying so, so the model can go on and the transcript stays valid). The loop ends when the
model answers in text; after ``max_rounds`` rounds of calls, or when the user asks for an
answer, the next round has ``tool_choice="none"``, which makes the model answer. A cancel flag
(``threading.Event``, or :meth:`ToolLoop.stop` from any thread) stops it at any point: the
reply being generated is cancelled, a running call is abandoned, and what was said so far
stays in ``messages``. :class:`TurnMetrics` adds up every round.

The loop is plain core code: the terminal chat drives it, and the app's chat worker can too.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from launcher.engine.events import (
    HostCrashed,
    ReasoningToken,
    ReplyFinished,
    ReplyMetrics,
    Sampling,
    Token,
    ToolCall,
)
from launcher.errors import ToolCancelledError, ToolError, ToolTimeoutError
from launcher.tools.manager import CALL_TIMEOUT_S, McpTool, ToolOutput

MAX_ROUNDS = 5
MAX_RESULT_CHARS = 8000


class Approval(enum.Enum):
    """The user's answer to one call."""

    ONCE = "once"  # run this call
    ALWAYS = "always"  # run it, and every later call of this tool, without asking
    DENY = "deny"  # do not run it; the model is told so
    DENY_AND_ANSWER = "answer"  # do not run it, and make the model answer without tools now


ApproveFn = Callable[[ToolCall, McpTool | None], Approval]
ResultStatus = Literal[
    "ok", "error", "denied", "timeout", "cancelled", "server_error", "unknown_tool", "bad_arguments"
]
TurnStop = Literal["answer", "round_limit", "cancelled", "crashed"]


class ToolRunner(Protocol):
    """What the loop needs of the MCP manager (``McpManager`` is one)."""

    def call(
        self,
        tool: McpTool,
        arguments: dict[str, Any],
        timeout_s: float = ...,
        cancel: threading.Event | None = ...,
    ) -> ToolOutput: ...


@dataclass(frozen=True)
class RoundStarted:
    """A model reply of this turn begins (``round`` counts from 1)."""

    round: int
    tool_choice: str


@dataclass(frozen=True)
class ToolStarted:
    """An approved call starts running on its server."""

    call: ToolCall
    tool: McpTool


@dataclass(frozen=True)
class ToolResult:
    """What went back to the model for one call: the tool's text, or why there is none."""

    call: ToolCall
    status: ResultStatus
    content: str
    elapsed_s: float = 0.0
    server: str = ""


@dataclass(frozen=True)
class TurnMetrics:
    """Every round of one turn together: tokens, time in the model, time in tools."""

    rounds: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    model_s: float = 0.0
    tools_s: float = 0.0
    replies: tuple[ReplyMetrics, ...] = ()


@dataclass(frozen=True)
class TurnFinished:
    """The turn ended: ``text`` is the final answer (maybe empty), ``stop`` why it ended."""

    text: str
    stop: TurnStop
    metrics: TurnMetrics


LoopEvent = (
    RoundStarted
    | Token
    | ReasoningToken
    | ToolCall
    | ReplyFinished
    | HostCrashed
    | ToolStarted
    | ToolResult
    | TurnFinished
)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters cut]"


class ToolLoop:
    """Runs turns with tools for one chat. ``tools`` are the enabled tools (public names as
    ``McpManager.tools`` made them); ``always_allowed`` (public names) persists across turns."""

    def __init__(
        self,
        client: Any,  # EngineClient, RemoteEngineClient: anything with chat() and cancel()
        runner: ToolRunner,
        tools: Sequence[McpTool],
        approve: ApproveFn,
        *,
        max_rounds: int = MAX_ROUNDS,
        tool_timeout_s: float = CALL_TIMEOUT_S,
        max_result_chars: int = MAX_RESULT_CHARS,
    ) -> None:
        if max_rounds < 0:
            raise ValueError("max_rounds must be 0 or more")
        self.client = client
        self.runner = runner
        self.tools = {t.public_name or t.name: t for t in tools}
        self.approve = approve
        self.max_rounds = max_rounds
        self.tool_timeout_s = tool_timeout_s
        self.max_result_chars = max_result_chars
        self.always_allowed: set[str] = set()
        self._cancel = threading.Event()
        self._answer_now = False

    def stop(self) -> None:
        """Stop the running turn at once, from any thread (Esc, Ctrl-C)."""
        self._cancel.set()
        self.client.cancel()

    def answer_now(self) -> None:
        """Make the next round of this turn answer without tools (``tool_choice="none"``)."""
        self._answer_now = True

    def run(
        self,
        messages: list[dict[str, Any]],
        sampling: Sampling,
        cancel: threading.Event | None = None,
    ) -> Generator[LoopEvent, None, None]:
        """One user turn. ``messages`` ends with the user's message and is extended in place
        with the assistant's calls, the tool results and the answer. ``sampling.tool_choice``
        applies to the first round (``required`` or a name forces a call); later rounds use
        ``auto`` until the round limit. Ends with one ``TurnFinished``."""
        self._cancel = cancel if cancel is not None else threading.Event()
        self._answer_now = False
        functions = tuple(t.to_function() for t in self.tools.values())
        choice = sampling.tool_choice if functions else "none"
        tool_rounds = 0
        metrics = TurnMetrics()
        while True:
            if self._cancel.is_set():
                yield TurnFinished("", "cancelled", metrics)
                return
            limited = tool_rounds >= self.max_rounds or self._answer_now
            if limited:
                choice = "none"
            round_sampling = dataclasses.replace(
                sampling,
                tools=functions,  # kept with "none": the prompt (and its KV cache) stays the same
                tool_choice=choice,
            )
            yield RoundStarted(metrics.rounds + 1, choice)
            finished: ReplyFinished | None = None
            started = time.monotonic()
            cancel_sent = False
            for event in self.client.chat(messages, round_sampling):
                if self._cancel.is_set() and not cancel_sent:
                    self.client.cancel()
                    cancel_sent = True
                yield event
                if isinstance(event, ReplyFinished):
                    finished = event
                elif isinstance(event, HostCrashed):
                    yield TurnFinished("", "crashed", metrics)
                    return
            metrics = _add_reply(metrics, finished, time.monotonic() - started)
            if finished is None:  # the stream ended without a finish: treat as stopped
                yield TurnFinished("", "cancelled", metrics)
                return
            calls = finished.tool_calls
            if calls and finished.metrics.stop_reason == "tool_calls":
                messages.append(
                    {
                        "role": "assistant",
                        "content": finished.text or None,
                        "tool_calls": [c.to_openai() for c in calls],
                    }
                )
                for call in calls:
                    result = yield from self._one_call(call)
                    metrics = dataclasses.replace(
                        metrics,
                        tool_calls=metrics.tool_calls + 1,
                        tools_s=metrics.tools_s + result.elapsed_s,
                    )
                    messages.append(
                        {
                            "role": "tool",
                            "tool_call_id": call.id,
                            "name": call.name,
                            "content": result.content,
                        }
                    )
                    yield result
                tool_rounds += 1
                choice = "auto" if sampling.tool_choice != "none" else "none"
                continue
            text = finished.text
            if text:
                messages.append({"role": "assistant", "content": text})
            if finished.metrics.stop_reason == "cancelled" or self._cancel.is_set():
                stop: TurnStop = "cancelled"
            else:
                stop = "round_limit" if limited and tool_rounds else "answer"
            yield TurnFinished(text, stop, metrics)
            return

    def _one_call(self, call: ToolCall) -> Generator[LoopEvent, None, ToolResult]:
        """Approve and run one call; returns (as the generator's value) its ``ToolResult``."""
        tool = self.tools.get(call.name)
        if self._cancel.is_set():
            return ToolResult(call, "cancelled", "The user stopped this turn before it ran.")
        if tool is None:
            return ToolResult(call, "unknown_tool", f"Error: there is no tool named {call.name!r}.")
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            return ToolResult(
                call,
                "bad_arguments",
                f"Error: the arguments of {call.name} are not a JSON object.",
                server=tool.server,
            )
        if call.name not in self.always_allowed:
            answer = self.approve(call, tool)
            if self._cancel.is_set():  # stopped while the user was asked
                return ToolResult(
                    call, "cancelled", "The user stopped this turn before it ran.",
                    server=tool.server,
                )  # fmt: skip
            if answer is Approval.ALWAYS:
                self.always_allowed.add(call.name)
            elif answer in (Approval.DENY, Approval.DENY_AND_ANSWER):
                if answer is Approval.DENY_AND_ANSWER:
                    self._answer_now = True
                return ToolResult(
                    call,
                    "denied",
                    f"The user denied this call of {call.name}; it did not run.",
                    server=tool.server,
                )
        if self._cancel.is_set():
            return ToolResult(
                call, "cancelled", "The user stopped this turn before it ran.", server=tool.server
            )
        yield ToolStarted(call, tool)
        started = time.monotonic()
        try:
            output = self.runner.call(tool, arguments, self.tool_timeout_s, self._cancel)
        except ToolCancelledError:
            elapsed = time.monotonic() - started
            return ToolResult(
                call, "cancelled", "The user stopped this call.", elapsed, tool.server
            )
        except ToolTimeoutError as exc:
            elapsed = time.monotonic() - started
            return ToolResult(call, "timeout", f"Error: {exc}", elapsed, tool.server)
        except ToolError as exc:
            elapsed = time.monotonic() - started
            return ToolResult(call, "server_error", f"Error: {exc}", elapsed, tool.server)
        content = truncate(output.text, self.max_result_chars)
        if output.is_error:
            return ToolResult(call, "error", f"Error: {content}", output.elapsed_s, tool.server)
        return ToolResult(call, "ok", content, output.elapsed_s, tool.server)


def turn_summary(metrics: TurnMetrics) -> dict[str, Any]:
    """The numbers shown under a reply that used tools, counting every round: TTFT of the
    first round (what the user waited for), tokens and decode speed over all rounds, and how
    long the model and the tools took."""
    replies = metrics.replies
    out: dict[str, Any] = {
        "rounds": metrics.rounds,
        "tool_calls": metrics.tool_calls,
        "prompt_tokens": metrics.prompt_tokens,
        "generated_tokens": metrics.generated_tokens,
        "model_s": round(metrics.model_s, 3),
        "tools_s": round(metrics.tools_s, 3),
    }
    if replies:
        out["ttft_s"] = replies[0].ttft_s
        out["stop_reason"] = replies[-1].stop_reason
        decode_s = sum(r.decode_s for r in replies)
        decoded = sum(max(r.generated_tokens - 1, 0) for r in replies)
        if decode_s > 0:
            out["decode_tokens_per_s"] = decoded / decode_s
        prefill_s = sum(r.prefill_s for r in replies)
        if prefill_s > 0:
            out["prefill_tokens_per_s"] = metrics.prompt_tokens / prefill_s
        remote = replies[-1].remote
        if remote:
            out["remote"] = remote
        reasoning = sum(r.reasoning_tokens for r in replies)
        if reasoning:
            out["reasoning_tokens"] = reasoning
    return out


def _add_reply(metrics: TurnMetrics, done: ReplyFinished | None, wall_s: float) -> TurnMetrics:
    if done is None:
        return dataclasses.replace(
            metrics, rounds=metrics.rounds + 1, model_s=metrics.model_s + wall_s
        )
    m = done.metrics
    return dataclasses.replace(
        metrics,
        rounds=metrics.rounds + 1,
        prompt_tokens=metrics.prompt_tokens + m.prompt_tokens,
        generated_tokens=metrics.generated_tokens + m.generated_tokens,
        model_s=metrics.model_s + wall_s,
        replies=(*metrics.replies, m),
    )
