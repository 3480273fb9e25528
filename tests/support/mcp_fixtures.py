"""Fixtures for the MCP tests: the test server (``mcp_test_server.py``) over stdio and over
streamable HTTP on 127.0.0.1 (a free port, started and stopped by the fixture)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from launcher.tools.config import McpServerConfig

ROOT = Path(__file__).resolve().parents[2]
SERVER_MODULE = "tests.support.mcp_test_server"


def stdio_config(name: str = "calc", **env: str) -> McpServerConfig:
    """The test server as a stdio MCP server."""
    return McpServerConfig(
        name,
        "stdio",
        command=sys.executable,
        args=("-m", SERVER_MODULE),
        env={"PYTHONPATH": str(ROOT), **env},
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_http_server(token: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start the test server over HTTP; returns the process and its MCP URL once it listens."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if token:
        env["MCP_TEST_TOKEN"] = token
    proc = subprocess.Popen(
        [sys.executable, "-m", SERVER_MODULE, "--http", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the HTTP MCP test server exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        proc.wait()
        raise RuntimeError("the HTTP MCP test server did not listen within 30 s")
    return proc, f"http://127.0.0.1:{port}/mcp"


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def serve_http() -> Iterator[str]:
    """The test server over streamable HTTP, for a module-scoped fixture: yields its URL."""
    proc, url = start_http_server()
    try:
        yield url
    finally:
        stop_process(proc)


def kill_stdio_servers() -> list[int]:
    """Kill the stdio test servers this process started (a crash, as far as a client sees)."""
    killed = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if SERVER_MODULE in cmdline and "--http" not in cmdline:
            child.kill()
            killed.append(child.pid)
    return killed
