"""``spark-launcher chat MODEL --mcp mcp.json`` and ``spark-launcher mcp ...`` end to end: the
real Gemma 3 270M forced to call the test MCP server's tools (stdio and streamable HTTP), the
y/N/a question on stdin, Ctrl-C during a tool, and the saved servers' commands."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.cli import main
from tests.support.mcp_fixtures import ROOT, serve_http, stdio_config

FAST = ["--threads", "2", "--ctx", "1024", "--temperature", "0", "--max-tokens", "48"]
SECRET = "tok-9f8e7d6c5b4a"


@pytest.fixture(scope="module")
def http_server_url() -> Iterator[str]:
    yield from serve_http()


pytestmark = pytest.mark.usefixtures("http_server_url")


@pytest.fixture
def mcp_file(tmp_path: Path, http_server_url: str) -> Path:
    """An mcp.json with the test server over stdio ("calc") and over HTTP ("web")."""
    calc = stdio_config("calc").to_mcp_json()
    file = tmp_path / "mcp.json"
    file.write_text(json.dumps({"mcpServers": {"calc": calc}}))
    (tmp_path / "web.json").write_text(
        json.dumps({"mcpServers": {"web": {"type": "http", "url": http_server_url}}})
    )
    return file


def _chat(gemma_path: Path, *flags: str) -> list[str]:
    return ["chat", str(gemma_path), *FAST, *flags]


def test_a_forced_call_is_shown_asked_run_and_answered(
    gemma_path: Path,
    app_home: Path,
    mcp_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("What is 2 plus 3?\ny\n"))
    args = _chat(gemma_path, "--mcp", str(mcp_file), "--tool-choice", "add",
                 "--max-tool-rounds", "1")  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert "Tools: calc: add, lookup, slow, fail." in err
    assert "Run add? [y]es, [N]o, [a]lways, [s]top tools:" in err
    call = next(line for line in out.splitlines() if line.startswith("→ add "))
    arguments = json.loads(call.removeprefix("→ add "))
    assert f"← add: {arguments['a'] + arguments['b']}" in out
    answer = out.split(f"← add: {arguments['a'] + arguments['b']}", 1)[1]
    assert answer.strip()  # the final answer follows the result
    assert "[2 rounds · 1 tool call ·" in err and "stop: round_limit]" in err


def test_allowed_tools_over_http_run_without_asking_and_json_has_the_results(
    gemma_path: Path,
    app_home: Path,
    mcp_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("Look up the word spark.\n"))
    web = mcp_file.parent / "web.json"
    args = _chat(gemma_path, "--mcp", str(web), "--allow-tools", "--tool-choice", "lookup",
                 "--max-tool-rounds", "1", "--json")  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "Run lookup?" not in captured.err
    (turn,) = [json.loads(line) for line in captured.out.splitlines() if line]
    (result,) = turn["tool_results"]
    assert result["name"] == "lookup" and result["status"] == "ok" and result["content"]
    assert turn["stop"] == "round_limit" and turn["text"].strip()
    assert turn["metrics"]["rounds"] == 2 and turn["metrics"]["tool_calls"] == 1


def test_a_denied_call_does_not_run(
    gemma_path: Path,
    app_home: Path,
    mcp_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("What is 2 plus 3?\nn\n"))
    args = _chat(gemma_path, "--mcp", str(mcp_file), "--tool-choice", "required",
                 "--max-tool-rounds", "1")  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "(denied): The user denied this call" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tool-choice", "add"], "--tool-choice needs --mcp"),
        (["--allow-tools", "--max-tool-rounds", "2"], "--allow-tools, --max-tool-rounds needs"),
    ],
)
def test_tool_flags_without_mcp_are_refused(
    app_home: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["chat", "any.gguf", *flags]) == 1
    assert message in capsys.readouterr().err


def test_tools_with_a_remote_model_go_to_that_server(
    app_home: Path, mcp_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Remote models take tools (the remote client sends them): the chat goes on to the
    # server, and an unknown one is the error, not the tools.
    assert main(["chat", "remote:box/model", "--mcp", str(mcp_file)]) == 1
    err = capsys.readouterr().err
    assert "box" in err and "local models only" not in err


def test_an_unknown_tool_choice_names_the_tools(
    gemma_path: Path, app_home: Path, mcp_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_chat(gemma_path, "--mcp", str(mcp_file), "--tool-choice", "nope")) == 1
    assert "no such tool (tools: add, lookup, slow, fail)" in capsys.readouterr().err


def test_ctrl_c_during_a_tool_stops_the_turn_and_the_chat_goes_on(
    gemma_path: Path, app_home: Path, mcp_file: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher", *_chat(gemma_path, "--mcp", str(mcp_file),
         "--allow-tools", "--tool-choice", "slow")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, text=True,
    )  # fmt: skip
    assert proc.stdin and proc.stdout and proc.stderr
    lines: queue.Queue[str] = queue.Queue()

    def pump(stream: io.TextIOBase) -> None:
        for line in stream:
            lines.put(line)

    readers = [threading.Thread(target=pump, args=(s,), daemon=True)
               for s in (proc.stdout, proc.stderr)]  # fmt: skip
    for t in readers:
        t.start()

    def wait_for(text: str) -> str:
        while True:
            line = lines.get(timeout=120)
            if text in line:
                return line

    try:
        wait_for("Tools: calc:")
        proc.stdin.write("Sleep a while.\n")
        proc.stdin.flush()
        wait_for("→ slow")
        proc.send_signal(signal.SIGINT)  # first Ctrl-C: stop the turn, the tool included
        assert "cancelled" in wait_for("← slow")
        assert "stop: cancelled" in wait_for("stop:")
        assert proc.poll() is None  # still running: the chat goes on
        proc.send_signal(signal.SIGINT)  # Ctrl-C at the prompt: quit
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for t in readers:
            t.join(timeout=10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def test_the_mcp_command_saves_lists_tests_exports_and_removes_servers(
    app_home: Path, tmp_path: Path, http_server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    calc = stdio_config("calc")
    add = ["mcp", "add", "calc", "--env", f"API_TOKEN={SECRET}", "--", calc.command, *calc.args]
    assert main([*add[:3], "--env", f"PYTHONPATH={ROOT}", *add[3:]]) == 0
    assert main(["mcp", "add", "web", "--url", http_server_url,
                 "--header", f"Authorization=Bearer {SECRET}"]) == 0  # fmt: skip
    saved = app_home / "config" / "mcp_servers.json"
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600
    assert main(["mcp", "list"]) == 0
    assert main(["mcp", "export"]) == 0
    assert main(["mcp", "test", "calc"]) == 0
    printed = capsys.readouterr().out
    assert SECRET not in printed and "calc" in printed and "web" in printed
    assert "add(a, b)  Add two integers." in printed
    # Export to a file has the secrets (0600) and imports back the same.
    exported = tmp_path / "out.json"
    assert main(["mcp", "export", str(exported)]) == 0
    assert stat.S_IMODE(os.stat(exported).st_mode) == 0o600
    data = json.loads(exported.read_text())
    assert data["mcpServers"]["calc"]["env"]["API_TOKEN"] == SECRET
    assert main(["mcp", "remove", "calc"]) == 0
    assert main(["mcp", "import", str(exported), "--replace"]) == 0
    assert json.loads(saved.read_text())["mcpServers"] == data["mcpServers"]
    # A server that fails says why, without its secrets.
    assert main(["mcp", "add", "broken", "--env", f"API_TOKEN={SECRET}", "--",
                 sys.executable, "-c", "import sys; sys.exit('no such thing')"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["mcp", "test", "broken", "--timeout", "10"]) == 1
    err = capsys.readouterr().err
    assert "broken: failed." in err and "could not start" in err and SECRET not in err
    assert main(["mcp", "test", "nothing"]) == 1
    assert "no MCP server named 'nothing'" in capsys.readouterr().err


def test_mcp_saved_takes_the_enabled_saved_servers(app_home: Path) -> None:
    from launcher.errors import McpConfigError
    from launcher.tools.config import McpStore
    from launcher.tools.terminal import servers_from_arg

    with pytest.raises(McpConfigError, match="no MCP servers are saved"):
        servers_from_arg("saved")
    on, off = stdio_config("on"), stdio_config("off")
    McpStore().import_servers([on, type(off)(**{**off.__dict__, "enabled": False})])
    assert [s.name for s in servers_from_arg("saved")] == ["on"]
