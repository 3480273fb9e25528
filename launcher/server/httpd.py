"""``LocalApiServer``: the local API (``app.py``'s Starlette app) served by uvicorn on a
background thread it owns, over the models in a ``ModelRegistry``.

``LocalApiServer(registry, host, port, api_key, cors_origins).start()`` binds the socket here
(so a taken port is a ``ServerError`` at once and ``port=0`` reports the port it got), runs
uvicorn's event loop on the ``local-api`` thread and returns once it accepts connections;
``stop()`` cancels the API's replies in flight (each ends within a token), asks uvicorn to
exit, closes idle keep-alive connections and joins the thread. uvicorn is configured for a
library: no signal handlers (it is not the main thread), no logging set-up, no lifespan, no
WebSockets, h11 for HTTP/1.1.

Safety: it binds to 127.0.0.1 unless told otherwise, and any other address needs an API key
(``check_bind``), sent as ``Authorization: Bearer KEY`` or ``x-api-key: KEY`` (Anthropic's
header). CORS is off unless origins are allowed (``cors_origins``).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import threading
from collections.abc import Sequence

from launcher.errors import ServerError
from launcher.server.app import API_SOURCE_PREFIX, MAX_BODY_BYTES, build_app
from launcher.server.config import DEFAULT_HOST, DEFAULT_PORT
from launcher.server.errors import ApiError
from launcher.server.pool import ModelRegistry, SharedModel
from launcher.server.recording import TrafficRecorder
from launcher.server.requestlog import RequestLog

__all__ = ["MAX_BODY_BYTES", "LocalApiServer", "check_bind", "is_loopback"]

log = logging.getLogger(__name__)

KEEP_ALIVE_S = 120  # an idle keep-alive connection is closed after this many seconds


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


def check_origins(origins: Sequence[str]) -> tuple[str, ...]:
    """CORS origins as given (``scheme://host[:port]`` or ``*``), or a ``ServerError``."""
    out = []
    for origin in origins:
        origin = origin.strip().rstrip("/")
        if origin != "*" and "://" not in origin:
            raise ServerError(
                f"'{origin}' is not a web origin: give one like http://localhost:3000 "
                "(scheme, host and port), or * for any."
            )
        out.append(origin)
    return tuple(out)


class LocalApiServer:
    """The local API server. ``start()`` returns once it listens; ``stop()`` ends it.

    ``port=0`` picks a free port (``.port`` says which). ``cors_origins``: web origins whose
    pages may call the API from a browser (none by default). Raises ``ServerError`` for a
    non-loopback ``host`` without ``api_key``, a bad origin or a taken port.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        api_key: str | None = None,
        request_log: RequestLog | None = None,
        cors_origins: Sequence[str] = (),
        recorder: TrafficRecorder | None = None,
    ) -> None:
        check_bind(host, api_key)
        self.registry = registry
        self.host = host
        self.port = port
        self.api_key = api_key or None
        self.cors_origins = check_origins(cors_origins)
        self.log = request_log if request_log is not None else RequestLog()
        # Opt-in recording of chat requests: the user's setting unless told otherwise.
        self.recorder = recorder if recorder is not None else TrafficRecorder.from_settings()
        self.stopping = False
        self._server: object | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        """The base URL clients use (``.../v1``)."""
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are
        # TCP, and without it each SSE chunk after the headers waits for the client's delayed
        # ACK (40 ms on the first token).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host.strip("[]"), self.port))
            sock.listen(128)  # bursts of clients (20+ at once) are accepted, then queued
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ServerError(
                f"Cannot listen on {self.host}:{self.port} ({exc.strerror or exc}). "
                "Another program may use that port: choose another with --port."
            ) from exc
        return sock

    def start(self, timeout: float = 15.0) -> None:
        if self._server is not None:
            return
        import uvicorn
        from uvicorn.protocols.http.h11_impl import H11Protocol

        sock = self._bind()
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            build_app(self),
            http=H11Protocol,  # a class, not a name: nothing imported by string (the bundle)
            ws="none",
            lifespan="off",
            loop="none",  # asyncio's own loop
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=10,
            backlog=128,
        )
        server = uvicorn.Server(config)
        self.stopping = False
        failed: list[BaseException] = []

        def serve() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # SystemExit from a failed start-up, too
                failed.append(exc)
            finally:
                sock.close()

        thread = threading.Thread(target=serve, name="local-api", daemon=True)
        thread.start()
        ready = threading.Event()
        while not ready.wait(0.01):
            if server.started or not thread.is_alive():
                break
            timeout -= 0.01
            if timeout <= 0:
                break
        if not server.started:
            server.should_exit = True
            thread.join(5)
            raise ServerError(f"The local API did not start: {failed[0] if failed else 'timeout'}")
        self._server = server
        self._thread = thread

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel the API's replies in flight, stop listening, close connections, wait."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping = True
        for model in self.registry.models():
            model.cancel_all(API_SOURCE_PREFIX)
        server.should_exit = True  # type: ignore[attr-defined]
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                server.force_exit = True  # type: ignore[attr-defined]
                self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> LocalApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ requests
    def authorized(self, authorization: str | None, x_api_key: str | None = None) -> bool:
        """Whether the request carries the key: ``Bearer KEY`` or Anthropic's ``x-api-key``."""
        if self.api_key is None:
            return True
        expected = self.api_key.encode()
        if x_api_key and hmac.compare_digest(x_api_key.strip().encode(), expected):
            return True
        if not authorization or not authorization.startswith("Bearer "):
            return False
        return hmac.compare_digest(authorization[7:].strip().encode(), expected)

    def resolve_model(self, name: str | None) -> SharedModel:
        """The model a request names; when it names none and one is loaded, that one."""
        models = self.registry.models()
        if not models:
            raise ApiError(
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
            raise ApiError(
                404,
                f"The model '{name}' is not loaded here. Loaded models: {names} "
                "(GET /v1/models lists them).",
                param="model",
                code="model_not_found",
            )
        return found
