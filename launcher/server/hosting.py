"""What the request handlers need from the server that hosts them.

``LocalApiServer`` (``httpd.py``) builds the Starlette app (``app.py``) around itself; the
handlers see it only through :class:`ApiHost`, so the handlers do not import the server
module that imports them (no import circle).
"""

from __future__ import annotations

from typing import Protocol

from launcher.server.pool import ModelRegistry, SharedModel
from launcher.server.recording import TrafficRecorder
from launcher.server.requestlog import RequestLog


class ApiHost(Protocol):
    """The server as its handlers use it: the models, the request log, the key check."""

    registry: ModelRegistry
    log: RequestLog
    recorder: TrafficRecorder
    cors_origins: tuple[str, ...]
    stopping: bool

    def authorized(self, authorization: str | None, x_api_key: str | None = None) -> bool: ...

    def resolve_model(self, name: str | None) -> SharedModel: ...
