"""The local OpenAI-compatible API server and the model pool it shares with the app.

- ``pool.py``: ``ModelRegistry`` (models loaded now, by API id) and ``SharedModel`` (an
  ``EngineClient`` handing out fair turns to the app's chat and API requests).
- ``openai_api.py``: request validation and response/SSE shapes (pure functions).
- ``httpd.py``: ``LocalApiServer``, the HTTP server (stdlib, one thread per connection).
- ``requestlog.py``: ``RequestLog``, what the app's log view shows.
- ``config.py``: ``ApiConfig``, the address, port, key and on/off the app remembers.

Nothing is imported here, so the app can import ``launcher.server.pool`` before its first
paint without loading the HTTP server. See ARCHITECTURE.md, "Local API server".
"""
