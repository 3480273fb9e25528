"""The local OpenAI-compatible API server and the model pool it shares with the app.

- ``pool.py``: ``ModelRegistry`` (models loaded now, by API id) and ``SharedModel`` (an
  ``EngineClient`` handing out fair turns to the app's chat and API requests).
- ``openai_api.py``: request validation and response/SSE shapes (pure functions).
- ``httpd.py``: ``LocalApiServer``, the HTTP server (stdlib, one thread per connection).
- ``requestlog.py``: ``RequestLog``, what the app's log view shows.

See ARCHITECTURE.md, "Local API server".
"""

from launcher.server.httpd import DEFAULT_HOST, DEFAULT_PORT, LocalApiServer, check_bind
from launcher.server.pool import APP_SOURCE, FairQueue, ModelRegistry, SharedModel, model_id
from launcher.server.requestlog import RequestLog, RequestRecord

__all__ = [
    "APP_SOURCE",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "FairQueue",
    "LocalApiServer",
    "ModelRegistry",
    "RequestLog",
    "RequestRecord",
    "SharedModel",
    "check_bind",
    "model_id",
]
