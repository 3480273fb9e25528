"""The tool loop in a terminal: ``spark-launcher chat MODEL --mcp mcp.json``.

Each call the model makes is printed (tool name and arguments) and, unless ``--allow-tools``,
put to the user: ``y`` runs it once, ``a`` always runs this tool, ``s`` denies it and makes the
model answer now, anything else (Enter) denies it. Results are printed cut to a few lines, then
the answer and one metrics line for the whole turn (every round). With ``--json``, stdout has
one JSON object per turn and the calls and results go to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from launcher.engine.events import HostCrashed, ReplyFinished, Sampling, Token, ToolCall
from launcher.errors import McpConfigError
from launcher.tools.config import McpServerConfig, McpStore, load_mcp_json
from launcher.tools.loop import (
    Approval,
    ToolLoop,
    ToolResult,
    TurnFinished,
    TurnMetrics,
    truncate,
)
from launcher.tools.manager import McpManager, McpTool

SHOWN_RESULT_CHARS = 400
TOOL_FLAGS = (
    "allow_tools",
    "tool_choice",
    "max_tool_rounds",
    "tool_timeout",
    "parallel_tool_calls",
)


def add_tool_args(p: argparse.ArgumentParser) -> None:
    """The ``chat`` options for MCP tools."""
    p.add_argument(
        "--mcp",
        metavar="FILE",
        help="give the model the tools of these MCP servers: an mcp.json file, or 'saved' for "
        "the servers saved with `spark-launcher mcp`",
    )
    p.add_argument(
        "--allow-tools", action="store_true", default=None, help="run tool calls without asking"
    )
    p.add_argument(
        "--tool-choice",
        metavar="auto|required|none|NAME",
        help="the first reply of a turn: may call a tool (auto, the default), must call one "
        "(required) or this one (NAME), or must not (none)",
    )
    p.add_argument(
        "--max-tool-rounds",
        type=int,
        metavar="N",
        help="replies with tool calls per turn before the model must answer (default 5)",
    )
    p.add_argument(
        "--parallel-tool-calls",
        action="store_true",
        default=None,
        help="let one reply call several tools (default: one call per reply, which keeps small "
        "models from repeating a call until the token limit)",
    )
    p.add_argument(
        "--tool-timeout",
        type=float,
        metavar="S",
        help="seconds a tool may run before it is stopped (default 60)",
    )


def check_tool_args(args: argparse.Namespace) -> None:
    """Tool options without ``--mcp`` are refused, not ignored."""
    if getattr(args, "mcp", None):
        return
    given = [f"--{f.replace('_', '-')}" for f in TOOL_FLAGS if getattr(args, f, None) is not None]
    if given:
        raise McpConfigError(f"{', '.join(given)} needs --mcp mcp.json (the tools' servers)")


def servers_from_arg(value: str) -> list[McpServerConfig]:
    if value == "saved" and not Path(value).exists():
        servers = [s for s in McpStore().all() if s.enabled]
        if not servers:
            raise McpConfigError(
                "no MCP servers are saved; add one with `spark-launcher mcp add` or "
                "`spark-launcher mcp import mcp.json`"
            )
        return servers
    return [s for s in load_mcp_json(value) if s.enabled]


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _arguments(call: ToolCall) -> str:
    try:
        return json.dumps(json.loads(call.arguments or "{}"), ensure_ascii=False)
    except json.JSONDecodeError:
        return call.arguments


class TerminalToolChat:
    """The tool loop for one terminal chat: owns the MCP servers' manager."""

    def __init__(self, client: Any, args: argparse.Namespace) -> None:
        self.args = args
        self.manager = McpManager(servers_from_arg(args.mcp))
        self.on_approval_prompt: Callable[[bool], None] = lambda asking: None
        try:
            tools, failed = self.manager.tools()
            for name, exc in failed.items():
                _err(f"MCP server {name}: {exc}")
            choice = args.tool_choice or "auto"
            names = [t.public_name for t in tools]
            if choice not in ("auto", "none", "required") and choice not in names:
                raise McpConfigError(
                    f"--tool-choice {choice}: no such tool (tools: {', '.join(names) or 'none'})"
                )
            if choice == "required" and not tools:
                raise McpConfigError("--tool-choice required, but no server offers a tool")
            rounds = 5 if args.max_tool_rounds is None else args.max_tool_rounds
            if rounds < 0:
                raise McpConfigError("--max-tool-rounds must be 0 or more")
            self.loop = ToolLoop(
                client,
                self.manager,
                tools,
                self.approve,
                max_rounds=rounds,
                tool_timeout_s=args.tool_timeout or 60.0,
            )
            if args.allow_tools:
                self.loop.always_allowed.update(names)
            self.choice = choice
        except BaseException:
            self.manager.close()
            raise
        _err(self.tools_line(tools))

    @staticmethod
    def tools_line(tools: list[McpTool]) -> str:
        if not tools:
            return "Tools: none (no MCP server offered a tool)."
        by_server: dict[str, list[str]] = {}
        for tool in tools:
            by_server.setdefault(tool.server, []).append(tool.public_name)
        return "Tools: " + "; ".join(f"{s}: {', '.join(n)}" for s, n in by_server.items()) + "."

    def close(self) -> None:
        self.manager.close()

    def stop(self) -> None:
        self.loop.stop()

    def approve(self, call: ToolCall, tool: McpTool | None) -> Approval:
        self.on_approval_prompt(True)
        try:
            print(f"Run {call.name}? [y]es, [N]o, [a]lways, [s]top tools: ", end="",
                  file=sys.stderr, flush=True)  # fmt: skip
            answer = input("").strip().lower()
        except (EOFError, KeyboardInterrupt):
            _err("")
            self.loop.stop()
            return Approval.DENY
        finally:
            self.on_approval_prompt(False)
        return {
            "y": Approval.ONCE,
            "yes": Approval.ONCE,
            "a": Approval.ALWAYS,
            "always": Approval.ALWAYS,
            "s": Approval.DENY_AND_ANSWER,
            "stop": Approval.DENY_AND_ANSWER,
        }.get(answer, Approval.DENY)

    def turn(self, history: list[dict[str, Any]], sampling: Sampling, as_json: bool) -> None:
        """Run one turn, printing as it goes."""
        sampling = dataclasses.replace(
            sampling,
            tool_choice=self.choice,
            parallel_tool_calls=bool(self.args.parallel_tool_calls),
        )
        out = sys.stderr if as_json else sys.stdout
        results: list[ToolResult] = []
        for ev in self.loop.run(history, sampling):
            if isinstance(ev, Token):
                if not as_json:
                    print(ev.text, end="", flush=True)
            elif isinstance(ev, ReplyFinished):
                if ev.text and not as_json and ev.tool_calls:
                    print(file=out, flush=True)
                if ev.metrics.stop_reason == "tool_calls":
                    for call in ev.tool_calls:
                        print(f"→ {call.name} {_arguments(call)}", file=out, flush=True)
            elif isinstance(ev, ToolResult):
                results.append(ev)
                label = ev.call.name + ("" if ev.status == "ok" else f" ({ev.status})")
                shown = truncate(ev.content, SHOWN_RESULT_CHARS)
                print(f"← {label}: {shown}", file=out, flush=True)
            elif isinstance(ev, HostCrashed):
                _err(
                    f"\nThe model stopped unexpectedly: {ev.likely_cause}\n"
                    + "\n".join(f"  {line}" for line in ev.last_log_lines[-5:])
                )
            elif isinstance(ev, TurnFinished):
                if as_json:
                    print(json.dumps({
                        "text": ev.text,
                        "stop": ev.stop,
                        "tool_results": [
                            {"name": r.call.name, "arguments": r.call.arguments,
                             "status": r.status, "content": r.content} for r in results
                        ],
                        "metrics": dataclasses.asdict(ev.metrics),
                    }), flush=True)  # fmt: skip
                else:
                    _err("\n" + turn_line(ev.metrics, ev.stop))


def turn_line(m: TurnMetrics, stop: str) -> str:
    """One line for a whole turn: every round's tokens and time, and time in tools."""
    rounds = f"{m.rounds} round{'s' if m.rounds != 1 else ''}"
    calls = f"{m.tool_calls} tool call{'s' if m.tool_calls != 1 else ''}"
    return (
        f"[{rounds} · {calls} · {m.generated_tokens} tokens generated, {m.prompt_tokens} "
        f"prompt · model {m.model_s:.2f} s · tools {m.tools_s:.2f} s · stop: {stop}]"
    )
