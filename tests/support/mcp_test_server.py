"""A real MCP server for the tests, written with the official SDK (``MCPServer``, FastMCP's
name in mcp 2): ``add``, ``lookup``, ``slow`` (sleeps past any test's time limit) and
``fail`` (raises).

Run over stdio: ``python -m tests.support.mcp_test_server``; over streamable HTTP:
``python -m tests.support.mcp_test_server --http PORT`` (on 127.0.0.1, path ``/mcp``).
``MCP_TEST_TOKEN`` set: HTTP requests must carry ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from mcp.server.mcpserver import MCPServer

WORDS = {"spark": "a small fiery particle", "gemma": "a precious stone"}

app = MCPServer("spark-test-tools")


@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool()
def lookup(key: str) -> str:
    """Look a word up in a tiny dictionary."""
    return WORDS.get(key.lower(), f"no entry for {key!r}")


@app.tool()
async def slow(seconds: float = 120.0) -> str:
    """Sleep, then answer (for time limits)."""
    await asyncio.sleep(seconds)
    return "woke up"


@app.tool()
def fail() -> str:
    """Always raises."""
    raise RuntimeError("the fail tool always fails")


def _http(port: int) -> None:
    import uvicorn

    asgi = app.streamable_http_app(host="127.0.0.1")
    token = os.environ.get("MCP_TEST_TOKEN")
    if token:
        inner = asgi

        async def checked(scope, receive, send):  # type: ignore[no-untyped-def]
            if scope["type"] == "http":
                headers = dict(scope.get("headers") or [])
                if headers.get(b"authorization") != f"Bearer {token}".encode():
                    await send({"type": "http.response.start", "status": 401, "headers": []})
                    await send({"type": "http.response.body", "body": b"unauthorized"})
                    return
            await inner(scope, receive, send)

        asgi = checked  # type: ignore[assignment]
    uvicorn.run(asgi, host="127.0.0.1", port=port, log_level="warning")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, metavar="PORT")
    args = parser.parse_args()
    if args.http:
        _http(args.http)
    else:
        app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
