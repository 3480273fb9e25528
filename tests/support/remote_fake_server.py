"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for the remote-engine tests.

Real HTTP and real server-sent events (stdlib ``http.server``, one thread per connection),
with behaviour a test picks per request: a normal stream of numbered words, a connection that
drops after N chunks (a server that dies mid-reply), a stream that stalls until the client
goes away (cancel), a busy 503 with ``Retry-After``, an API key it checks. It records what
clients sent and whether a client hung up, so tests see what a server would see. The real
model paths are covered against ``llama-server`` and our own ``serve``; this one makes the
failure cases quick and exact.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Script:
    """What the server does with the next chat/completions requests."""

    words: int = 8
    drop_after: int | None = None  # close the socket abruptly after this many chunks
    stall_after: int | None = None  # stop sending after this many chunks until the client leaves
    busy: bool = False  # answer 503 with Retry-After
    usage: bool = True  # send a usage chunk when asked for one
    held_back: int = 0  # tokens generated but never sent (a partly matched stop string)
    held_back_s: float = 0.0  # how long generating them takes before the finish chunk
    reject_stream_options: bool = False  # answer 400 to a request with stream_options


@dataclass
class FakeOpenAIServer:
    models: tuple[str, ...] = ("tiny-model",)
    api_key: str | None = None
    script: Script = field(default_factory=Script)
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)
    client_left: threading.Event = field(default_factory=threading.Event)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeOpenAIServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _authorized(self) -> bool:
                header = self.headers.get("Authorization")
                server.auth_headers.append(header)
                if server.api_key is None or header == f"Bearer {server.api_key}":
                    return True
                self._json(401, {"error": {"message": "Invalid API Key", "type": "auth"}})
                return False

            def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                if self.path == "/v1/models":
                    data = [{"id": m, "object": "model", "owned_by": "test"} for m in server.models]
                    self._json(200, {"object": "list", "data": data})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self._authorized():
                    return
                server.requests.append(body)
                script = server.script
                if script.busy:
                    self._json(503, {"error": {"message": "queue full"}}, {"Retry-After": "3"})
                    return
                if script.reject_stream_options and "stream_options" in body:
                    message = "Unrecognized request argument supplied: stream_options"
                    self._json(400, {"error": {"message": message}})
                    return
                if body.get("model") not in server.models:
                    self._json(404, {"error": {"message": "model not found"}})
                    return
                chat = self.path == "/v1/chat/completions"
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self._stream(body, script, chat)
                except (BrokenPipeError, ConnectionResetError):
                    server.client_left.set()
                self.close_connection = True

            def _send(self, obj: Any) -> None:
                self.wfile.write(f"data: {json.dumps(obj)}\n\n".encode())
                self.wfile.flush()

            def _stream(self, body: dict[str, Any], script: Script, chat: bool) -> None:
                limit = min(script.words, int(body.get("max_tokens") or script.words))
                for i in range(limit):
                    if script.drop_after is not None and i >= script.drop_after:
                        # Die like a killed process: reset, no final chunk, no [DONE].
                        self.connection.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                        )
                        self.connection.close()
                        return
                    if script.stall_after is not None and i >= script.stall_after:
                        self._wait_for_client_to_leave()
                        return
                    text = f"w{i} "
                    choice = {"index": 0, "finish_reason": None}
                    choice |= {"delta": {"content": text}} if chat else {"text": text}
                    self._send({"id": "x", "object": "chunk", "choices": [choice]})
                if script.held_back_s:
                    time.sleep(script.held_back_s)
                end: dict[str, Any] = {"index": 0, "finish_reason": "length"}
                end |= {"delta": {}} if chat else {"text": ""}
                self._send({"id": "x", "choices": [end]})
                if script.usage and (body.get("stream_options") or {}).get("include_usage"):
                    generated = limit + script.held_back
                    usage = {"prompt_tokens": 5, "completion_tokens": generated, "total_tokens": 0}
                    self._send({"id": "x", "choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _wait_for_client_to_leave(self) -> None:
                self.connection.settimeout(0.1)
                for _ in range(300):  # at most 30 s, so a broken test cannot hang the suite
                    try:
                        if self.connection.recv(1) == b"":
                            server.client_left.set()
                            return
                    except TimeoutError:
                        continue
                    except OSError:
                        server.client_left.set()
                        return

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(0.05,), name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()


def fake_openai_server(**kwargs: Any) -> Iterator[FakeOpenAIServer]:
    """Generator body for a fixture: a started server, stopped afterwards."""
    server = FakeOpenAIServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()
