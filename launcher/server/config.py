"""What the app remembers about its local API between runs: address, port, key, the web origins
allowed to call it (CORS), and whether to serve again at launch (it was on when the app closed).

Stored in its own file, ``<config>/local_api.json``, written atomically and readable by this
user only (it holds the API key), like the remote servers' ``remotes.json``. A missing or
corrupt file gives the defaults: off, 127.0.0.1:8080, no key. Kept apart from the HTTP server
module so reading it costs the app's start-up nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from launcher.fsutil import atomic_write_json, read_json
from launcher.paths import AppPaths

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class ApiConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_key: str | None = None
    serve_on_launch: bool = False
    #: Web origins whose pages may call the API from a browser (CORS); none by default.
    cors_origins: tuple[str, ...] = ()


def config_file(paths: AppPaths) -> Path:
    return paths.config_dir / "local_api.json"


def load_api_config(paths: AppPaths) -> ApiConfig:
    """The saved config; a field that is missing or of the wrong type takes its default."""
    data = read_json(config_file(paths))
    if not isinstance(data, dict):
        return ApiConfig()
    host, port, key = data.get("host"), data.get("port"), data.get("api_key")
    on = data.get("serve_on_launch")
    origins = data.get("cors_origins")
    return ApiConfig(
        host=host.strip() if isinstance(host, str) and host.strip() else DEFAULT_HOST,
        port=port
        if isinstance(port, int) and not isinstance(port, bool) and 0 <= port <= 65535
        else DEFAULT_PORT,
        api_key=key if isinstance(key, str) and key else None,
        serve_on_launch=on if isinstance(on, bool) else False,
        cors_origins=tuple(o for o in origins if isinstance(o, str) and o)
        if isinstance(origins, list)
        else (),
    )


def save_api_config(paths: AppPaths, config: ApiConfig) -> None:
    """Write the config atomically; like every atomic write here (``tempfile.mkstemp``), the
    file is created readable by this user only, which the API key needs."""
    atomic_write_json(
        config_file(paths),
        {
            "version": 1,
            "host": config.host,
            "port": config.port,
            "api_key": config.api_key,
            "serve_on_launch": config.serve_on_launch,
            "cors_origins": list(config.cors_origins),
        },
    )
