"""The local OpenAI-compatible HTTP server over the models in a ``ModelRegistry``.

``LocalApiServer(registry, host, port, api_key).start()`` serves ``GET /v1/models``,
``POST /v1/chat/completions`` and ``POST /v1/completions`` (streaming as server-sent events
ending with ``data: [DONE]``, or one JSON object), plus ``GET /health``. Every request takes
its turn on the model's ``FairQueue`` (``pool.py``) like the app's chat does; a full queue is
a 503 with ``Retry-After``. A client that goes away (checked between tokens and while its
request waits) has its generation cancelled through ``EngineClient.cancel()``; the host stays
loaded for the next request.

Why the standard library's ``ThreadingHTTPServer`` and no web framework: the API is four
routes of JSON and SSE, one thread per connection is the right shape for blocking engine
streams, and a framework (plus an ASGI server) would be a new heavy dependency in the
desktop bundle for no gain. Safety: it binds to 127.0.0.1 unless told otherwise, and any
other address needs an API key (``check_bind``).
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import select
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from launcher.engine.events import HostCrashed, ReplyFinished, Token
from launcher.errors import EngineError, ModelBusyError, ModelUnavailableError, ServerError
from launcher.server import openai_api as oa
from launcher.server.config import DEFAULT_HOST, DEFAULT_PORT
from launcher.server.pool import ModelRegistry, SharedModel, TurnStream
from launcher.server.requestlog import RequestLog

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 2**20
API_SOURCE_PREFIX = "api:"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or "" (all interfaces): reachable from elsewhere


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse an address other machines can reach unless an API key protects it."""
    if not is_loopback(host) and not api_key:
        where = host or "all network interfaces"
        raise ServerError(
            f"Serving on {where} makes the API reachable from other machines, so an API key "
            "is required: add --api-key KEY (clients send it as 'Authorization: Bearer KEY'), "
            "or serve only this machine with --host 127.0.0.1."
        )


def peer_closed(sock: socket.socket) -> bool:
    """Whether the client closed its end (readable with nothing to read), without blocking."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # connection threads never keep the process alive
    request_queue_size = 128  # bursts of clients (20+ at once) are accepted, then queued
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: LocalApiServer) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.api = api
        super().__init__(address, _Handler)


class LocalApiServer:
    """The OpenAI-compatible server. ``start()`` returns once it listens; ``stop()`` ends it.

    ``port=0`` picks a free port (``.port`` says which). ``max_body_bytes`` bounds a request.
    Raises ``ServerError`` for a non-loopback ``host`` without ``api_key`` or a taken port.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        api_key: str | None = None,
        request_log: RequestLog | None = None,
    ) -> None:
        check_bind(host, api_key)
        self.registry = registry
        self.host = host
        self.port = port
        self.api_key = api_key or None
        self.log = request_log if request_log is not None else RequestLog()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._active = 0
        self._active_cond = threading.Condition()
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def url(self) -> str:
        """The base URL clients use (``.../v1``)."""
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    def start(self) -> None:
        if self._httpd is not None:
            return
        try:
            httpd = _HTTPServer((self.host, self.port), self)
        except OSError as exc:
            raise ServerError(
                f"Cannot listen on {self.host}:{self.port} ({exc.strerror or exc}). "
                "Another program may use that port: choose another with --port."
            ) from exc
        self.port = int(httpd.server_address[1])
        self._stopping = False
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="local-api", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, cancel the API's replies in flight, close connections, wait."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping = True
        httpd.shutdown()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for model in self.registry.models():
            model.cancel_all(API_SOURCE_PREFIX)
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes threads reading an idle keep-alive
        with self._active_cond:
            self._active_cond.wait_for(lambda: self._active == 0, timeout)
        httpd.server_close()

    def __enter__(self) -> LocalApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ bookkeeping
    def _enter(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.add(conn)

    def _leave(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.discard(conn)

    @contextlib.contextmanager
    def _request(self) -> Iterator[None]:
        with self._active_cond:
            self._active += 1
        try:
            yield
        finally:
            with self._active_cond:
                self._active -= 1
                self._active_cond.notify_all()

    def authorized(self, header: str | None) -> bool:
        if self.api_key is None:
            return True
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[7:].strip().encode(), self.api_key.encode())

    def resolve_model(self, name: str | None) -> SharedModel:
        """The model a request names; when it names none and one is loaded, that one."""
        models = self.registry.models()
        if not models:
            raise oa.ApiError(
                503,
                "No model is loaded. Load one in Spark Launcher (or name it when running "
                "`spark-launcher serve MODEL`) and try again.",
                type="server_error",
                code="model_not_loaded",
            )
        if not name and len(models) == 1:
            return models[0]
        found = self.registry.get(name or "")
        if found is None:
            names = ", ".join(m.name for m in models)
            raise oa.ApiError(
                404,
                f"The model '{name}' is not loaded here. Loaded models: {names} "
                "(GET /v1/models lists them).",
                param="model",
                code="model_not_found",
            )
        return found


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as OpenAI clients expect
    server_version = "SparkLauncher"
    timeout = 120  # an idle keep-alive connection is closed after this many seconds
    server: _HTTPServer
    _responded = False  # a status line went out for the current request

    # ------------------------------------------------------------------ plumbing
    @property
    def api(self) -> LocalApiServer:
        return self.server.api

    def setup(self) -> None:
        super().setup()
        # Each SSE chunk is a small write: without NODELAY, Nagle's algorithm would hold
        # tokens back until the client's delayed ACK (tens of ms per token).
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.api._enter(self.connection)

    def finish(self) -> None:
        self.api._leave(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _client(self) -> str:
        return str(self.client_address[0])

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self._responded = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, rid: int, err: oa.ApiError) -> None:
        self.api.log.update(rid, status=err.status, error=err.message, finished=True)
        self._send_json(err.status, err.body(), err.headers)

    def _read_body(self) -> bytes:
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise oa.ApiError(411, "Send the body with a Content-Length (no chunked encoding).")
        try:
            length = int(length_header or "0")
        except ValueError as exc:
            self.close_connection = True
            raise oa.ApiError(400, "Content-Length is not a number.") from exc
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise oa.ApiError(413, f"The request body is larger than {MAX_BODY_BYTES} bytes.")
        return self.rfile.read(length) if length > 0 else b""

    def _check_auth(self) -> None:
        if not self.api.authorized(self.headers.get("Authorization")):
            raise oa.ApiError(
                401,
                "Incorrect or missing API key. Send 'Authorization: Bearer KEY' with the key "
                "set in Spark Launcher (serve --api-key).",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    # ------------------------------------------------------------------ routes
    def do_GET(self) -> None:
        with self.api._request():
            rid = self.api.log.start(self._client(), "GET", self.path)
            path = self.path.split("?", 1)[0].rstrip("/")
            try:
                if path == "/health":
                    self._send_json(200, {"status": "ok"})
                    self.api.log.update(rid, status=200, finished=True)
                    return
                self._check_auth()
                if path == "/v1/models":
                    models = self.api.registry.models()
                    self._send_json(
                        200,
                        oa.model_list(
                            [oa.model_entry(m.name, m.created, m.loaded) for m in models]
                        ),
                    )
                elif path.startswith("/v1/models/"):
                    model = self.api.registry.get(path[len("/v1/models/") :])
                    if model is None:
                        raise oa.ApiError(404, "No such model is loaded.", code="model_not_found")
                    self._send_json(200, oa.model_entry(model.name, model.created, model.loaded))
                elif path in ("/v1/chat/completions", "/v1/completions"):
                    raise oa.ApiError(405, f"Use POST for {path}.")
                else:
                    raise oa.ApiError(404, f"There is no {path} here; the API is under /v1.")
                self.api.log.update(rid, status=200, finished=True)
            except oa.ApiError as err:
                self._send_error(rid, err)

    def do_POST(self) -> None:
        self._responded = False
        with self.api._request():
            rid = self.api.log.start(self._client(), "POST", self.path)
            path = self.path.split("?", 1)[0].rstrip("/")
            try:
                body = self._read_body()
                self._check_auth()
                if path == "/v1/chat/completions":
                    req = oa.parse_chat(oa.parse_json(body))
                elif path == "/v1/completions":
                    req = oa.parse_completion(oa.parse_json(body))
                elif path == "/v1/models":
                    raise oa.ApiError(405, "Use GET for /v1/models.")
                else:
                    raise oa.ApiError(404, f"There is no {path} here; the API is under /v1.")
                model = self.api.resolve_model(req.model)
                self.api.log.update(rid, model=model.name, stream=req.stream, prompt=req.preview())
                self._generate(rid, req, model)
            except oa.ApiError as err:
                self._send_error(rid, err)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                self.api.log.update(
                    rid, status=499, error="The client disconnected.", finished=True
                )
            except Exception as exc:  # a bug must cost one request, never the server
                log.exception("local API request failed")
                self.close_connection = True
                internal = oa.ApiError(
                    500, f"Internal error: {type(exc).__name__}: {exc}", type="server_error"
                )
                if self._responded:
                    self.api.log.update(rid, status=500, error=internal.message, finished=True)
                else:
                    with contextlib.suppress(OSError):
                        self._send_error(rid, internal)

    # ------------------------------------------------------------------ generation
    def _generate(self, rid: int, req: oa.ApiRequest, model: SharedModel) -> None:
        source = API_SOURCE_PREFIX + self._client()
        try:
            if req.kind == "chat":
                stream = model.chat(req.messages, req.sampling, source=source)
            else:
                stream = model.complete(req.prompt, req.sampling, source=source)
        except ModelBusyError as exc:
            raise oa.ApiError(
                503,
                str(exc),
                type="server_error",
                code="model_busy",
                headers={"Retry-After": str(exc.retry_after_s)},
            ) from exc
        except ModelUnavailableError as exc:
            raise oa.ApiError(503, str(exc), type="server_error", code="model_not_loaded") from exc
        try:
            self._run(rid, req, model, stream)
        finally:
            stream.close()

    def _wait_turn(self, model: SharedModel, stream: TurnStream) -> None:
        """Wait in the queue, giving up the place if the client leaves or the server stops."""
        while not model.queue.wait(stream.ticket, timeout=0.25):
            if self.api._stopping or peer_closed(self.connection):
                stream.cancel()

    def _first_event(self, model: SharedModel, stream: TurnStream) -> Any:
        try:
            self._wait_turn(model, stream)
            first = next(stream)
        except StopIteration:
            raise _unloaded_error() from None
        except ModelUnavailableError as exc:
            raise oa.ApiError(503, str(exc), type="server_error", code="model_not_loaded") from exc
        except EngineError as exc:
            # Refused by the engine before any token: the prompt does not fit, and the like.
            raise oa.ApiError(400, str(exc), code="request_refused") from exc
        if isinstance(first, HostCrashed):
            message = str(first.as_error())
            raise oa.ApiError(500, message, type="server_error", code="model_crashed")
        return first

    def _run(self, rid: int, req: oa.ApiRequest, model: SharedModel, stream: TurnStream) -> None:
        first = self._first_event(model, stream)
        if stream.ticket.cancelled and not stream.started:
            self.close_connection = True
            self.api.log.update(
                rid, status=499, error="The client left while waiting.", finished=True
            )
            return
        rid_api = oa.new_id(req.kind)
        created = oa.now()
        if req.stream:
            self._stream_reply(rid, req, model, stream, first, rid_api, created)
        else:
            self._whole_reply(rid, req, model, stream, first, rid_api, created)

    def _events(self, first: Any, stream: TurnStream) -> Iterator[Any]:
        yield first
        yield from stream

    def _whole_reply(
        self,
        rid: int,
        req: oa.ApiRequest,
        model: SharedModel,
        stream: TurnStream,
        first: Any,
        rid_api: str,
        created: int,
    ) -> None:
        parts: list[str] = []
        gone = False
        for event in self._events(first, stream):
            if isinstance(event, Token):
                parts.append(event.text)
                if not gone and peer_closed(self.connection):
                    gone = True
                    stream.cancel()
            elif isinstance(event, ReplyFinished):
                if gone:
                    self._finished(rid, event, gone)
                    self.close_connection = True
                    return
                if event.metrics.stop_reason == "cancelled":  # unloaded, or the server stops
                    self._send_error(rid, self._interrupted_error())
                    return
                self._finished(rid, event, gone)
                self._send_json(
                    200, oa.response(req, rid_api, model.name, created, event.text, event.metrics)
                )
                return
            elif isinstance(event, HostCrashed):
                err = oa.ApiError(
                    500,
                    str(event.as_error()),
                    type="server_error",
                    code="model_crashed",
                )
                self._send_error(rid, err)
                return
        # The stream ended without a reply: the model was unloaded under it.
        self._send_error(rid, _unloaded_error())

    def _stream_reply(
        self,
        rid: int,
        req: oa.ApiRequest,
        model: SharedModel,
        stream: TurnStream,
        first: Any,
        rid_api: str,
        created: int,
    ) -> None:
        self._responded = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # the stream ends when the connection does
        self.end_headers()
        self.close_connection = True
        self.api.log.update(rid, status=200)
        write = self.wfile.write
        gone = False

        def send(data: bytes) -> None:
            nonlocal gone
            if gone:
                return
            try:
                write(data)
            except OSError:
                gone = True
                stream.cancel()  # the engine stops; the loop drains the cancelled reply

        if req.kind == "chat":
            send(oa.sse(oa.chunk(req, rid_api, model.name, created, role=True)))
        for event in self._events(first, stream):
            if isinstance(event, Token):
                send(oa.sse(oa.chunk(req, rid_api, model.name, created, text=event.text)))
                if not gone and peer_closed(self.connection):
                    gone = True
                    stream.cancel()
            elif isinstance(event, ReplyFinished):
                if event.metrics.stop_reason == "cancelled" and not gone:
                    err = self._interrupted_error()  # unloaded, or the server stops
                    self.api.log.update(rid, status=503, error=err.message, finished=True)
                    send(oa.sse(err.body()))
                    send(oa.SSE_DONE)
                    return
                self._finished(rid, event, gone)
                reason = oa.finish_reason(event.metrics)
                send(oa.sse(oa.chunk(req, rid_api, model.name, created, finish=reason)))
                if req.include_usage:
                    send(oa.sse(oa.usage_chunk(req, rid_api, model.name, created, event.metrics)))
                send(oa.SSE_DONE)
                return
            elif isinstance(event, HostCrashed):
                message = str(event.as_error())
                self.api.log.update(rid, status=500, error=message, finished=True)
                err = oa.ApiError(500, message, type="server_error", code="model_crashed")
                send(oa.sse(err.body()))
                send(oa.SSE_DONE)
                return
        err = _unloaded_error()
        self.api.log.update(rid, status=503, error=err.message, finished=True)
        send(oa.sse(err.body()))
        send(oa.SSE_DONE)

    def _interrupted_error(self) -> oa.ApiError:
        """A reply cancelled on this side: the server is stopping, or the model went away."""
        if self.api._stopping:
            return oa.ApiError(
                503,
                "The local API server is stopping; the reply was cut short. Try again when "
                "it is back on.",
                type="server_error",
                code="server_stopping",
            )
        return _unloaded_error()

    def _finished(self, rid: int, event: ReplyFinished, gone: bool) -> None:
        m = event.metrics
        reply = " ".join(event.text.split())
        self.api.log.update(
            rid,
            status=499 if gone else 200,
            reply=reply if len(reply) <= 200 else reply[:199] + "…",
            prompt_tokens=m.prompt_tokens + m.cached_tokens,
            completion_tokens=m.generated_tokens,
            finish_reason=m.stop_reason,
            ttft_s=m.ttft_s,
            decode_tokens_per_s=m.decode_tokens_per_s,
            error="The client disconnected; generation was stopped." if gone else "",
            finished=True,
        )


def _unloaded_error() -> oa.ApiError:
    return oa.ApiError(
        503,
        "The model was unloaded (or replaced) while answering. Load it again and retry.",
        type="server_error",
        code="model_not_loaded",
    )
