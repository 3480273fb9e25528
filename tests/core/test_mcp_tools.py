"""MCP servers and the tool loop with real parts: a server written with the ``mcp`` SDK (over
stdio and over streamable HTTP on 127.0.0.1) and the real Gemma 3 270M, made to call a tool
with ``tool_choice`` (a grammar-forced call, then an answer without tools)."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launcher.engine import EngineClient, EngineParams, ReplyFinished, Sampling, ToolCall
from launcher.errors import McpConfigError, McpServerError, ToolTimeoutError
from launcher.tools.config import (
    McpServerConfig,
    McpStore,
    load_mcp_json,
    parse_mcp_json,
    redact,
    to_mcp_json,
)
from launcher.tools.loop import (
    Approval,
    RoundStarted,
    ToolLoop,
    ToolResult,
    ToolStarted,
    TurnFinished,
)
from launcher.tools.manager import McpManager, McpTool, unique_names
from tests.support.mcp_fixtures import (
    kill_stdio_servers,
    serve_http,
    start_http_server,
    stdio_config,
    stop_process,
)


@pytest.fixture(scope="module")
def http_server_url() -> Iterator[str]:
    yield from serve_http()


# Started before any test's leftover check, so the guard does not count it against one test.
pytestmark = pytest.mark.usefixtures("http_server_url")

ASK = "What is 2 plus 3?"
SECRET = "sk-live-0123456789abcdef"


# ---------------------------------------------------------------- configs and mcp.json
def test_mcp_json_import_export_round_trip_and_the_saved_file_is_private(
    app_home: Path, tmp_path: Path
) -> None:
    source = {
        "mcpServers": {
            "files": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"],
                "env": {"API_KEY": SECRET},
            },
            "web": {
                "type": "http",
                "url": "https://mcp.example.com/mcp",
                "headers": {"Authorization": f"Bearer {SECRET}"},
            },
            "off": {"command": "uvx", "args": ["mcp-server-time"], "disabled": True},
        }
    }
    file = tmp_path / "mcp.json"
    file.write_text(json.dumps(source))
    servers = load_mcp_json(file)
    assert [s.transport for s in servers] == ["stdio", "http", "stdio"]
    assert not servers[2].enabled
    store = McpStore()
    store.import_servers(servers)
    assert to_mcp_json(store.all()) == source  # exported exactly as imported
    assert stat.S_IMODE(os.stat(store.file).st_mode) == 0o600
    # Nothing printable carries the secrets.
    for server in store.all():
        assert SECRET not in repr(server)
        assert SECRET not in server.describe()
        assert SECRET not in json.dumps(server.public_json())
    store.remove("off")
    assert [s.name for s in store.all()] == ["files", "web"]
    with pytest.raises(McpConfigError, match="no MCP server named 'off'"):
        store.get("off")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"servers_typo": {}}, 'no "mcpServers"'),
        ({"mcpServers": {"bad name": {"command": "x"}}}, "cannot name an MCP server"),
        ({"mcpServers": {"x": {"args": []}}}, 'neither "command"'),
        ({"mcpServers": {"x": {"url": "ftp://host"}}}, "http"),
        ({"mcpServers": {"x": {"url": f"https://u:{SECRET}@host/mcp"}}}, "headers"),
        ({"mcpServers": {"x": {"command": "y", "env": {"K": SECRET}, "args": "no"}}}, "args"),
    ],
)
def test_bad_mcp_json_is_refused_without_showing_secrets(data: Any, message: str) -> None:
    with pytest.raises(McpConfigError, match=message) as info:
        parse_mcp_json(data)
    assert SECRET not in str(info.value)


def test_redact_removes_env_values_headers_and_bearer_tokens() -> None:
    config = McpServerConfig("x", "http", url="http://h/mcp", headers={"X-Key": SECRET})
    assert redact(f"failed with {SECRET} and Bearer abc", config) == (
        "failed with *** and Bearer ***"
    )


def test_colliding_tool_names_are_prefixed_with_their_server() -> None:
    tools = [
        McpTool("a", "add", "", {}),
        McpTool("b", "add", "", {}),
        McpTool("b", "get.item", "", {}),
    ]
    named = unique_names(tools)
    assert [t.public_name for t in named] == ["a__add", "b__add", "get_item"]
    assert [(t.server, t.name) for t in named] == [("a", "add"), ("b", "add"), ("b", "get.item")]


# ---------------------------------------------------------------- the manager, both transports
@pytest.fixture(params=["stdio", "http"])
def server_config(request: pytest.FixtureRequest) -> McpServerConfig:
    if request.param == "stdio":
        return stdio_config()
    url = request.getfixturevalue("http_server_url")
    return McpServerConfig("calc", "http", url=url)


def _by_name(tools: list[McpTool]) -> dict[str, McpTool]:
    return {t.name: t for t in tools}


def test_tools_are_listed_with_schemas_and_called_with_a_timeout(
    server_config: McpServerConfig,
) -> None:
    with McpManager([server_config], connect_timeout_s=30) as manager:
        tools, failed = manager.tools()
        assert failed == {}
        named = _by_name(tools)
        assert set(named) == {"add", "lookup", "slow", "fail"}
        assert named["add"].input_schema["required"] == ["a", "b"]
        assert named["add"].to_function()["parameters"]["properties"]["a"]["type"] == "integer"
        out = manager.call(named["add"], {"a": 2, "b": 3})
        assert (out.text, out.is_error) == ("5", False)
        assert manager.call(named["lookup"], {"key": "spark"}).text == "a small fiery particle"
        failing = manager.call(named["fail"], {})
        assert failing.is_error and "fail" in failing.text
        started = time.monotonic()
        with pytest.raises(ToolTimeoutError, match="did not finish within 1 s"):
            manager.call(named["slow"], {}, timeout_s=1)
        assert time.monotonic() - started < 5
        assert manager.call(named["add"], {"a": 1, "b": 1}).text == "2"  # still usable


def test_a_crashed_server_is_an_error_and_the_next_use_starts_it_again() -> None:
    with McpManager([stdio_config()]) as manager:
        add = _by_name(manager.list_tools("calc"))["add"]
        assert kill_stdio_servers()
        with pytest.raises(McpServerError, match="stopped"):
            manager.call(add, {"a": 1, "b": 2}, timeout_s=10)
        assert manager.call(add, {"a": 1, "b": 2}).text == "3"


def test_a_server_that_never_answers_times_out_instead_of_hanging() -> None:
    silent = McpServerConfig(
        "silent", "stdio", command=sys.executable, args=("-c", "import time; time.sleep(60)")
    )
    started = time.monotonic()
    with McpManager([silent], connect_timeout_s=2) as manager:
        tools, failed = manager.tools()
        assert tools == [] and isinstance(failed["silent"], ToolTimeoutError)
        assert "did not answer within 2 s" in str(failed["silent"])
    assert time.monotonic() - started < 15


def test_a_server_that_cannot_start_says_why_without_its_secrets() -> None:
    leaky = McpServerConfig(
        "leaky",
        "stdio",
        command=sys.executable,
        args=(
            "-c",
            "import os, sys; sys.stderr.write('key=' + os.environ['API_KEY']); sys.exit(3)",
        ),
        env={"API_KEY": SECRET},
    )
    missing = McpServerConfig("missing", "stdio", command="/no/such/mcp-server", env={"K": SECRET})
    with McpManager([leaky, missing], connect_timeout_s=10) as manager:
        _, failed = manager.tools()
    assert set(failed) == {"leaky", "missing"}
    assert "could not start" in str(failed["leaky"]) and "key=***" in str(failed["leaky"])
    assert "command not found" in str(failed["missing"])
    assert all(SECRET not in str(e) for e in failed.values())


def test_http_headers_are_sent_and_a_refused_token_is_not_shown() -> None:
    proc, url = start_http_server(token=SECRET)
    try:
        good = McpServerConfig(
            "good", "http", url=url, headers={"Authorization": f"Bearer {SECRET}"}
        )
        bad = McpServerConfig(
            "bad", "http", url=url, headers={"Authorization": "Bearer wrong-token"}
        )
        with McpManager([good, bad], connect_timeout_s=15) as manager:
            tools, failed = manager.tools()
        assert {t.server for t in tools} == {"good"}
        assert {t.public_name for t in tools} == {"add", "lookup", "slow", "fail"}
        assert "bad" in failed and "wrong-token" not in str(failed["bad"])
        assert SECRET not in str(failed["bad"])
    finally:
        stop_process(proc)


def test_two_servers_offering_the_same_tools_get_prefixed_names(http_server_url: str) -> None:
    servers = [stdio_config("local"), McpServerConfig("web", "http", url=http_server_url)]
    with McpManager(servers) as manager:
        tools, _ = manager.tools()
        names = {t.public_name: t for t in tools}
        assert {"local__add", "web__add"} <= set(names)
        assert manager.call(names["web__add"], {"a": 40, "b": 2}).text == "42"


# ---------------------------------------------------------------- the loop on Gemma
@pytest.fixture(scope="module")
def gemma(gemma_path: Path) -> Iterator[EngineClient]:
    client = EngineClient()
    client.load(gemma_path, EngineParams(n_ctx=2048, n_threads=2))
    yield client
    client.unload()


class Recording:
    """The engine client, remembering the messages each round was sent."""

    def __init__(self, client: EngineClient) -> None:
        self.client = client
        self.sent: list[list[dict[str, Any]]] = []

    def chat(self, messages: list[dict[str, Any]], sampling: Sampling) -> Any:
        self.sent.append(json.loads(json.dumps(messages)))
        return self.client.chat(messages, sampling)

    def cancel(self) -> None:
        self.client.cancel()


FORCED = Sampling(max_tokens=48, temperature=0, tool_choice="add", parallel_tool_calls=False)
SLOW = Sampling(max_tokens=48, temperature=0, tool_choice="slow", parallel_tool_calls=False)


def _run(loop: ToolLoop, sampling: Sampling = FORCED, **kw: Any) -> tuple[list[Any], list[dict]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": ASK}]
    events = list(loop.run(messages, sampling, **kw))
    return events, messages


def _results(events: list[Any]) -> list[ToolResult]:
    return [e for e in events if isinstance(e, ToolResult)]


def test_a_forced_call_runs_and_its_result_reaches_the_model(
    gemma: EngineClient, server_config: McpServerConfig
) -> None:
    asked: list[str] = []
    with McpManager([server_config]) as manager:
        tools, _ = manager.tools()
        recording = Recording(gemma)

        def approve(call: ToolCall, tool: McpTool | None) -> Approval:
            asked.append(call.name)
            return Approval.ONCE

        loop = ToolLoop(recording, manager, tools, approve, max_rounds=1)
        events, messages = _run(loop)
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [c.name for c in calls] == ["add"] and asked == ["add"]
    args = json.loads(calls[0].arguments)
    (result,) = _results(events)
    assert result.status == "ok" and result.content == str(args["a"] + args["b"])
    assert result.server == "calc"
    # The second round was sent the call and its result, and answered in text.
    assert [e.tool_choice for e in events if isinstance(e, RoundStarted)] == ["add", "none"]
    second = recording.sent[1]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "add"
    assert second[-1] == {"role": "tool", "tool_call_id": calls[0].id, "name": "add",
                          "content": result.content}  # fmt: skip
    done = events[-1]
    assert isinstance(done, TurnFinished) and done.stop == "round_limit" and done.text.strip()
    assert messages[-1] == {"role": "assistant", "content": done.text}
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    # Metrics count both rounds.
    replies = [e for e in events if isinstance(e, ReplyFinished)]
    m = done.metrics
    assert (m.rounds, m.tool_calls, len(m.replies)) == (2, 1, 2)
    assert m.generated_tokens == sum(r.metrics.generated_tokens for r in replies)
    assert m.prompt_tokens == sum(r.metrics.prompt_tokens for r in replies)
    assert m.model_s > 0 and 0 < m.tools_s < m.model_s + 5


def test_a_denied_call_does_not_run_and_the_model_is_told(gemma: EngineClient) -> None:
    with McpManager([stdio_config()]) as manager:
        tools, _ = manager.tools()
        loop = ToolLoop(gemma, manager, tools, lambda c, t: Approval.DENY, max_rounds=1)
        events, messages = _run(loop)
    (result,) = _results(events)
    assert result.status == "denied" and "denied" in result.content
    assert not any(isinstance(e, ToolStarted) for e in events)
    assert messages[2]["content"] == result.content
    assert isinstance(events[-1], TurnFinished) and events[-1].text.strip()


def test_deny_and_answer_now_makes_the_next_round_answer(gemma: EngineClient) -> None:
    with McpManager([stdio_config()]) as manager:
        tools, _ = manager.tools()
        loop = ToolLoop(gemma, manager, tools, lambda c, t: Approval.DENY_AND_ANSWER)
        events, _ = _run(loop)  # max_rounds 5, but the user asked for an answer
    assert [e.tool_choice for e in events if isinstance(e, RoundStarted)] == ["add", "none"]
    assert isinstance(events[-1], TurnFinished) and events[-1].stop == "round_limit"


def test_always_allow_asks_once_per_tool(gemma: EngineClient) -> None:
    asked: list[str] = []

    def approve(call: ToolCall, tool: McpTool | None) -> Approval:
        asked.append(call.name)
        return Approval.ALWAYS

    with McpManager([stdio_config()]) as manager:
        tools, _ = manager.tools()
        loop = ToolLoop(gemma, manager, tools, approve, max_rounds=1)
        first, _ = _run(loop)
        second, _ = _run(loop)
    assert asked == ["add"]
    assert [r.status for r in _results(first) + _results(second)] == ["ok", "ok"]


def test_a_tool_past_its_time_limit_is_an_error_result(gemma: EngineClient) -> None:
    with McpManager([stdio_config()]) as manager:
        tools, _ = manager.tools()
        loop = ToolLoop(gemma, manager, tools, lambda c, t: Approval.ONCE, max_rounds=1,
                        tool_timeout_s=1)  # fmt: skip
        events, messages = _run(loop, SLOW)
    (result,) = _results(events)
    assert result.status == "timeout" and "did not finish within 1 s" in result.content
    assert result.elapsed_s < 5
    assert isinstance(events[-1], TurnFinished) and events[-1].text.strip()
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]


def test_a_server_that_crashes_during_the_turn_is_an_error_result(gemma: EngineClient) -> None:
    def kill_then_allow(call: ToolCall, tool: McpTool | None) -> Approval:
        assert kill_stdio_servers()
        return Approval.ONCE

    with McpManager([stdio_config()]) as manager:
        tools, _ = manager.tools()
        loop = ToolLoop(gemma, manager, tools, kill_then_allow, max_rounds=1)
        events, messages = _run(loop)
    (result,) = _results(events)
    assert result.status == "server_error" and "stopped" in result.content
    assert isinstance(events[-1], TurnFinished) and events[-1].text.strip()
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]


def test_stop_during_a_running_tool_ends_the_turn_and_keeps_the_conversation(
    gemma: EngineClient,
) -> None:
    cancel = threading.Event()
    with McpManager([stdio_config()]) as manager:
        tools, _ = manager.tools()
        loop = ToolLoop(gemma, manager, tools, lambda c, t: Approval.ONCE, tool_timeout_s=60)
        messages: list[dict[str, Any]] = [{"role": "user", "content": ASK}]
        events = []
        started = 0.0
        for event in loop.run(messages, SLOW, cancel):
            events.append(event)
            if isinstance(event, ToolStarted):
                started = time.monotonic()
                threading.Timer(0.3, cancel.set).start()
    (result,) = _results(events)
    assert result.status == "cancelled" and time.monotonic() - started < 10
    done = events[-1]
    assert isinstance(done, TurnFinished) and done.stop == "cancelled"
    assert done.metrics.rounds == 1  # no model round after the stop
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]


def test_stop_while_the_model_replies_cancels_the_reply(gemma: EngineClient) -> None:
    with McpManager([stdio_config()]) as manager:
        tools, _ = manager.tools()
        loop = ToolLoop(gemma, manager, tools, lambda c, t: Approval.ONCE)
        messages: list[dict[str, Any]] = [{"role": "user", "content": "Tell a long story."}]
        events = []
        for event in loop.run(messages, Sampling(max_tokens=400, temperature=0,
                                                 tool_choice="none")):  # fmt: skip
            events.append(event)
            if len(events) == 3:
                loop.stop()
    done = events[-1]
    assert isinstance(done, TurnFinished) and done.stop == "cancelled"
    finished = [e for e in events if isinstance(e, ReplyFinished)]
    assert finished[-1].metrics.stop_reason == "cancelled"
    assert finished[-1].metrics.generated_tokens < 400
