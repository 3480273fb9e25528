"""MCP client manager: starts servers on demand, lists their tools, calls them with a timeout.

The official ``mcp`` SDK is async (anyio). The manager owns one private event loop on one
thread (``asyncio.run`` on a thread it starts and joins), so callers stay synchronous: the CLI,
the tool loop and later an app worker thread call :meth:`McpManager.tools` and
:meth:`McpManager.call`, which block until the loop answers, a time limit passes or a cancel
flag is set. Each server's connection is held open by one task on that loop (anyio context
managers must be entered and left by the same task); :meth:`close` stops them all, which ends
stdio servers' processes (the SDK closes stdin, then terminates the process group), ends the
loop and joins the thread. A server that cannot start, does not answer in time or dies becomes
a typed error (``McpServerError``, ``ToolTimeoutError``), never a hang; the next use of a dead
server starts it again. Secrets (env values, headers) are redacted from every message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

from launcher.errors import (
    McpConfigError,
    McpServerError,
    ToolCancelledError,
    ToolError,
    ToolTimeoutError,
)
from launcher.tools.config import McpServerConfig, redact

T = TypeVar("T")

CONNECT_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 60.0
_LIST_PAGES = 100  # a server that paginates forever cannot hang a listing
_STOP_TIMEOUT_S = 10.0  # the SDK bounds a stdio server's shutdown at ~6 s (stdin, TERM, KILL)
_NAME_SAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class McpTool:
    """One tool of one server. ``name`` is the server's name for it; ``public_name`` the
    (unique, OpenAI-safe) name the model sees: the same unless two servers offer the name."""

    server: str
    name: str
    description: str
    input_schema: dict[str, Any]
    public_name: str = ""

    def to_function(self) -> dict[str, Any]:
        """An OpenAI function definition for ``Sampling.tools``."""
        schema = self.input_schema or {"type": "object", "properties": {}}
        return {
            "name": self.public_name or self.name,
            "description": self.description,
            "parameters": schema,
        }


@dataclass(frozen=True)
class ToolOutput:
    """What a tool returned: its text content (other content summarised), whether the server
    flagged it as an error, and how long the call took."""

    text: str
    is_error: bool
    elapsed_s: float


def unique_names(tools: Iterable[McpTool]) -> list[McpTool]:
    """``tools`` with ``public_name`` set: the tool's own name (made OpenAI-safe) where only
    one server offers it, ``SERVER__NAME`` where several do. Map back with the returned
    objects (they keep ``server`` and ``name``)."""
    items = list(tools)

    def safe(text: str) -> str:
        return _NAME_SAFE.sub("_", text)[:64] or "tool"

    counts: dict[str, int] = {}
    for tool in items:
        counts[safe(tool.name)] = counts.get(safe(tool.name), 0) + 1
    out: list[McpTool] = []
    taken: set[str] = set()
    for tool in items:
        base = safe(tool.name)
        public = base if counts[base] == 1 else safe(f"{tool.server}__{tool.name}")
        candidate, n = public, 2
        while candidate in taken:  # the same name twice on one server, or a clash after "safe"
            candidate = f"{public[:60]}_{n}"
            n += 1
        taken.add(candidate)
        out.append(McpTool(tool.server, tool.name, tool.description, tool.input_schema, candidate))
    return out


def result_text(result: Any) -> str:
    """An MCP ``CallToolResult``'s content as text for the model."""
    parts: list[str] = []
    for block in getattr(result, "content", None) or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(str(getattr(block, "text", "")))
        elif kind in ("image", "audio"):
            parts.append(f"[{kind}: {getattr(block, 'mime_type', '') or 'binary'}]")
        elif kind == "resource_link":
            parts.append(f"[resource: {getattr(block, 'uri', '')}]")
        elif kind == "resource":
            resource = getattr(block, "resource", None)
            text = getattr(resource, "text", None)
            parts.append(str(text) if text is not None else f"[resource: {resource}]")
        else:
            parts.append(f"[{kind or 'content'}]")
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False))
    return "\n".join(parts)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _describe(exc: BaseException) -> str:
    """A short readable cause from an SDK exception (groups flattened)."""
    texts = []
    for leaf in _leaves(exc):
        if isinstance(leaf, FileNotFoundError):
            texts.append(f"command not found ({leaf.filename or leaf})")
        elif isinstance(leaf, PermissionError):
            texts.append(f"permission denied ({leaf.filename or leaf})")
        else:
            message = getattr(leaf, "message", None) or str(leaf) or type(leaf).__name__
            texts.append(str(message))
    return "; ".join(dict.fromkeys(texts)) or type(exc).__name__


class _Connection:
    """One open server: the task holding the SDK client, and how to stop it."""

    def __init__(self, config: McpServerConfig, errlog: Path) -> None:
        self.config = config
        self.errlog = errlog
        self.client: Any = None
        self.ready: asyncio.Future[None] | None = None
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done() and self.client is not None

    def stderr_tail(self, lines: int = 5) -> str:
        try:
            text = self.errlog.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        tail = [line for line in text.splitlines() if line.strip()][-lines:]
        return redact("\n".join(tail), self.config)


@dataclass
class McpManager:
    """The MCP servers of one app or CLI session. Use as a context manager, or call
    :meth:`close`; every method may be called from any thread (not from the loop's own)."""

    servers: Iterable[McpServerConfig]
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    _configs: dict[str, McpServerConfig] = field(init=False)
    _thread: threading.Thread | None = field(init=False, default=None)
    _loop: asyncio.AbstractEventLoop | None = field(init=False, default=None)
    _shutdown: asyncio.Event | None = field(init=False, default=None)
    _conns: dict[str, _Connection] = field(init=False, default_factory=dict)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _tmp: Path | None = field(init=False, default=None)
    _closed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._configs = {}
        for config in self.servers:
            if config.name in self._configs:
                raise McpConfigError(f"two MCP servers are named {config.name!r}")
            self._configs[config.name] = config
        self.servers = tuple(self._configs.values())

    def __enter__(self) -> McpManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ public API
    @property
    def names(self) -> list[str]:
        return list(self._configs)

    def config(self, name: str) -> McpServerConfig:
        try:
            return self._configs[name]
        except KeyError:
            known = ", ".join(self._configs) or "none"
            raise McpConfigError(f"no MCP server named {name!r} here (known: {known})") from None

    def set_servers(self, servers: Iterable[McpServerConfig]) -> None:
        """Use these servers from now on (the app's saved servers changed): a server that is
        gone or whose settings changed is stopped, and starts again with its new settings on
        next use. Blocks while those servers stop (seconds at most): call it off the GUI."""
        configs: dict[str, McpServerConfig] = {}
        for config in servers:
            if config.name in configs:
                raise McpConfigError(f"two MCP servers are named {config.name!r}")
            configs[config.name] = config
        with self._lock:
            old, self._configs = self._configs, configs
            self.servers = tuple(configs.values())
            loop = self._loop
        stale = [name for name, config in old.items() if configs.get(name) != config]
        if loop is None:
            return
        for name in stale:
            with contextlib.suppress(ToolError):
                self._run(self._stop(name), _STOP_TIMEOUT_S + 5, old[name], "stop")

    def list_tools(
        self,
        server: str,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> list[McpTool]:
        """The tools of ``server`` (starting it if needed), with their input schemas."""
        config = self.config(server)
        limit = timeout_s or self.connect_timeout_s
        backstop = self.connect_timeout_s + limit + _STOP_TIMEOUT_S + 5
        return self._run(
            self._list_tools(config, limit), backstop, config, "list its tools", cancel
        )

    def tools(
        self, servers: Iterable[str] | None = None, cancel: threading.Event | None = None
    ) -> tuple[list[McpTool], dict[str, ToolError]]:
        """The tools of the enabled ``servers`` (default: all enabled) with unique public
        names, and the servers that failed, each with its error (the others still work).
        A server that is not (or no longer) configured is one that failed. ``cancel`` set:
        ``ToolCancelledError``."""
        names = list(servers) if servers is not None else self.names
        found: list[McpTool] = []
        failed: dict[str, ToolError] = {}
        for name in names:
            try:
                if not self.config(name).enabled:
                    continue
                found.extend(self.list_tools(name, cancel=cancel))
            except ToolCancelledError:
                raise
            except ToolError as exc:
                failed[name] = exc
        return unique_names(found), failed

    def call(
        self,
        tool: McpTool,
        arguments: dict[str, Any],
        timeout_s: float = CALL_TIMEOUT_S,
        cancel: threading.Event | None = None,
    ) -> ToolOutput:
        """Run one tool. Raises ``ToolTimeoutError`` after ``timeout_s`` (the call is
        cancelled on the server), ``ToolCancelledError`` once ``cancel`` is set,
        ``McpServerError`` when the server cannot start or dies; a tool that fails on its own
        comes back as ``ToolOutput(is_error=True)``."""
        config = self.config(tool.server)
        started = time.monotonic()
        coro = self._call(config, tool.name, arguments, timeout_s)
        text, is_error = self._run(
            coro,
            timeout_s + self.connect_timeout_s + _STOP_TIMEOUT_S + 5,
            config,
            f"run {tool.name}",
            cancel,
        )
        return ToolOutput(text, is_error, time.monotonic() - started)

    def stop(self, server: str) -> None:
        """Stop one server (its process ends); the next use starts it again."""
        config = self.config(server)
        if self._loop is not None:
            self._run(self._stop(server), _STOP_TIMEOUT_S + 5, config, "stop")

    def close(self) -> None:
        """Stop every server, end the event loop and join its thread. Safe to call twice."""
        with self._lock:
            self._closed = True
            loop, thread, shutdown = self._loop, self._thread, self._shutdown
        if loop is not None and thread is not None and shutdown is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(shutdown.set)
            thread.join(timeout=_STOP_TIMEOUT_S * 2)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # ------------------------------------------------------------------ the loop thread
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise McpServerError("the MCP servers were stopped (the session is closing)")
            if self._loop is not None:
                return self._loop
            started = threading.Event()

            async def main() -> None:
                self._loop = asyncio.get_running_loop()
                self._shutdown = asyncio.Event()
                started.set()
                await self._shutdown.wait()
                await asyncio.gather(
                    *(self._stop(name) for name in list(self._conns)), return_exceptions=True
                )
                # Calls whose callers gave up (cancel, backstop): let them end, read their errors.
                others = asyncio.all_tasks() - {asyncio.current_task()}
                for task in others:
                    task.cancel()
                await asyncio.wait_for(
                    asyncio.gather(*others, return_exceptions=True), _STOP_TIMEOUT_S
                )

            self._tmp = Path(tempfile.mkdtemp(prefix="spark-mcp-"))
            self._thread = threading.Thread(
                target=asyncio.run, args=(main(),), name="mcp-client-loop"
            )
            self._thread.start()
            started.wait()
            assert self._loop is not None
            return self._loop

    def _run(
        self,
        coro: Coroutine[Any, Any, T],
        limit_s: float,
        config: McpServerConfig,
        what: str,
        cancel: threading.Event | None = None,
    ) -> T:
        """Run ``coro`` on the loop and wait for it, at most ``limit_s`` (a backstop: the
        coroutines carry their own time limits) or until ``cancel`` is set."""
        try:
            loop = self._ensure_loop()
        except BaseException:
            coro.close()
            raise
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        deadline = time.monotonic() + limit_s
        while True:
            try:
                return future.result(timeout=0.05)
            except concurrent.futures.TimeoutError:
                if cancel is not None and cancel.is_set():
                    future.cancel()
                    raise ToolCancelledError(f"stopped before {config.name} could {what}") from None
                if time.monotonic() > deadline:
                    future.cancel()
                    raise ToolTimeoutError(
                        f"MCP server {config.name!r} did not {what} within {limit_s:.0f} s"
                    ) from None
            except concurrent.futures.CancelledError:
                raise ToolCancelledError(f"stopped before {config.name} could {what}") from None

    async def _connection(self, config: McpServerConfig) -> _Connection:
        """The open connection to ``config``'s server, started now if needed."""
        conn = self._conns.get(config.name)
        if conn is not None and not conn.alive and conn.ready is not None and conn.ready.done():
            await self._stop(config.name)  # it died: start it again
            conn = None
        if conn is None:
            assert self._tmp is not None
            errlog = self._tmp / f"{_NAME_SAFE.sub('_', config.name)}.stderr"
            conn = _Connection(config, errlog)
            conn.ready = asyncio.get_running_loop().create_future()
            # Read by whoever waits; when nobody does (a cancelled caller), mark it retrieved.
            conn.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._conns[config.name] = conn
            conn.task = asyncio.create_task(self._hold(conn), name=f"mcp:{config.name}")
        assert conn.ready is not None
        try:
            await asyncio.wait_for(asyncio.shield(conn.ready), self.connect_timeout_s)
        except TimeoutError:
            tail = conn.stderr_tail()
            await self._stop(config.name)
            raise ToolTimeoutError(
                f"MCP server {config.name!r} did not answer within "
                f"{self.connect_timeout_s:.0f} s of starting ({config.describe()})"
                + (f"; it wrote:\n{tail}" if tail else "")
            ) from None
        except McpServerError:
            await self._stop(config.name)
            raise
        return conn

    async def _hold(self, conn: _Connection) -> None:
        """Open the SDK client, report ready, keep it open until asked to stop."""
        from mcp import Client

        config = conn.config
        assert conn.ready is not None
        try:
            async with contextlib.AsyncExitStack() as stack:
                if config.transport == "http":
                    from mcp.client.streamable_http import streamable_http_client
                    from mcp.shared._httpx_utils import create_mcp_http_client

                    http = await stack.enter_async_context(
                        create_mcp_http_client(headers=dict(config.headers) or None)
                    )
                    target: Any = streamable_http_client(config.url, http_client=http)
                else:
                    from mcp.client.stdio import StdioServerParameters, stdio_client

                    errlog: TextIO = stack.enter_context(
                        open(  # noqa: SIM115 - closed by the exit stack
                            os.open(conn.errlog, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                            "w",
                            encoding="utf-8",
                        )
                    )
                    params = StdioServerParameters(
                        command=config.command, args=list(config.args), env=dict(config.env)
                    )
                    target = stdio_client(params, errlog=errlog)
                client = await stack.enter_async_context(Client(target, cache=None))
                conn.client = client
                conn.ready.set_result(None)
                await conn.stop.wait()
        except BaseException as exc:  # reported through ready / conn.error
            conn.error = exc
            if not conn.ready.done():
                tail = conn.stderr_tail()
                conn.ready.set_exception(
                    McpServerError(
                        redact(
                            f"MCP server {config.name!r} could not start ({config.describe()}): "
                            f"{_describe(exc)}",
                            config,
                        )
                        + (f"\nIt wrote:\n{tail}" if tail else "")
                    )
                )
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            conn.client = None

    async def _stop(self, name: str) -> None:
        conn = self._conns.pop(name, None)
        if conn is None or conn.task is None:
            return
        conn.stop.set()
        if conn.client is None:  # still starting (or already gone): nothing to wind down
            conn.task.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(conn.task), _STOP_TIMEOUT_S)
        except TimeoutError:
            conn.task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(conn.task, _STOP_TIMEOUT_S)
        except BaseException:  # its failure was reported already
            pass

    async def _list_tools(self, config: McpServerConfig, limit_s: float) -> list[McpTool]:
        conn = await self._connection(config)
        tools: list[McpTool] = []
        cursor: str | None = None
        try:
            async with asyncio.timeout(limit_s):
                for _ in range(_LIST_PAGES):
                    page = await conn.client.list_tools(cursor=cursor)
                    for tool in page.tools:
                        tools.append(
                            McpTool(
                                config.name,
                                tool.name,
                                tool.description or "",
                                dict(tool.input_schema or {}),
                            )
                        )
                    cursor = page.next_cursor
                    if not cursor:
                        break
        except TimeoutError:
            raise ToolTimeoutError(
                f"MCP server {config.name!r} did not list its tools within {limit_s:.0f} s"
            ) from None
        except Exception as exc:
            raise await self._failure(conn, exc, "list its tools") from None
        return tools

    async def _call(
        self, config: McpServerConfig, name: str, arguments: dict[str, Any], timeout_s: float
    ) -> tuple[str, bool]:
        conn = await self._connection(config)
        try:
            async with asyncio.timeout(timeout_s):
                result = await conn.client.call_tool(name, arguments)
        except TimeoutError:
            raise ToolTimeoutError(
                f"{name} on MCP server {config.name!r} did not finish within {timeout_s:g} s"
            ) from None
        except Exception as exc:
            from mcp.shared.exceptions import MCPError
            from mcp_types import CONNECTION_CLOSED

            if isinstance(exc, MCPError) and exc.code != CONNECTION_CLOSED and conn.alive:
                # The server answered with a protocol error (unknown tool, bad arguments).
                return redact(f"error: {exc.message}", config), True
            raise await self._failure(conn, exc, f"run {name}") from None
        return redact(result_text(result), config), bool(result.is_error)

    async def _failure(self, conn: _Connection, exc: BaseException, what: str) -> McpServerError:
        """The error for a server that broke during a request; its connection is closed, so
        the next use starts it again."""
        config = conn.config
        tail = conn.stderr_tail()
        await self._stop(config.name)
        how = "stopped (it crashed or closed the connection)"
        return McpServerError(
            redact(
                f"MCP server {config.name!r} {how} while asked to {what}: {_describe(exc)}", config
            )
            + (f"\nIt wrote:\n{tail}" if tail else "")
        )
