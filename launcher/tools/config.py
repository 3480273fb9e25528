"""MCP server settings: what to run (stdio) or where to connect (streamable HTTP), kept safely.

A server is a command with arguments and environment variables (stdio), or a URL with HTTP
headers (streamable HTTP). The ``mcp.json`` format that Cursor, Claude Desktop and LM Studio
use (``{"mcpServers": {NAME: {"command", "args", "env"} | {"url", "headers"}}}``) is read and
written as is, so a user's existing file imports in one step.

The saved servers live in ``<config>/mcp_servers.json``, written atomically and readable by the
user only, like the remote API keys (``launcher/remotes.py``): env values and headers often
carry API tokens. Those values are never part of a ``repr``; :func:`redact` takes them out of
any text (errors, a server's stderr) before it is shown or logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from launcher.errors import McpConfigError
from launcher.fsutil import atomic_write_json, read_json
from launcher.paths import AppPaths

Transport = Literal["stdio", "http"]
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")


@dataclass(frozen=True)
class McpServerConfig:
    """One MCP server. ``transport`` is ``stdio`` (``command``, ``args``, ``env``) or ``http``
    (``url``, ``headers``). ``enabled=False`` keeps it saved but offers none of its tools."""

    name: str
    transport: Transport
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    enabled: bool = True

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values that must never be shown: env values and header values (all of them
        in files and ``public_json``; in free text, those that could be a token: not very
        short values such as ``1``, nor paths that exist such as a ``PYTHONPATH``)."""
        return tuple(v for v in (*self.env.values(), *self.headers.values()) if _maybe_token(v))

    def describe(self) -> str:
        """What it runs or where it connects, without secrets (env and header names only)."""
        if self.transport == "http":
            text = self.url
            if self.headers:
                text += f" (headers: {', '.join(sorted(self.headers))})"
        else:
            text = " ".join([self.command, *self.args])
            if self.env:
                text += f" (env: {', '.join(sorted(self.env))})"
        return redact(text, self)

    def to_mcp_json(self) -> dict[str, Any]:
        """This server as an ``mcpServers`` entry (secrets included: for the 0600 files)."""
        if self.transport == "http":
            out: dict[str, Any] = {"type": "http", "url": self.url}
            if self.headers:
                out["headers"] = dict(self.headers)
        else:
            out = {"command": self.command, "args": list(self.args)}
            if self.env:
                out["env"] = dict(self.env)
        if not self.enabled:
            out["disabled"] = True
        return out

    def public_json(self) -> dict[str, Any]:
        """What may be printed: secrets replaced by ``***``."""
        data = self.to_mcp_json()
        for key in ("env", "headers"):
            if key in data:
                data[key] = dict.fromkeys(data[key], "***")
        return {"name": self.name, "transport": self.transport, **data}


def _maybe_token(value: str) -> bool:
    if len(value) < 4:
        return False
    parts = [p for p in value.split(os.pathsep) if p]
    return not (parts and all(os.sep in p and os.path.exists(p) for p in parts))


def redact(text: str, *configs: McpServerConfig) -> str:
    """``text`` with every secret of ``configs`` (and any bearer token) replaced by ``***``."""
    for config in configs:
        for secret in sorted(config.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
    return re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise McpConfigError(
            f"{name!r} cannot name an MCP server: use letters, digits, '.', '_' or '-' "
            "(no '/' or spaces), up to 64 characters"
        )
    return name


def _str_map(value: Any, what: str, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise McpConfigError(f"MCP server {name!r}: {what} must be an object of strings")
    return {k: str(v) for k, v in value.items()}


def server_from_json(name: str, entry: Any) -> McpServerConfig:
    """One ``mcpServers`` entry -> a checked config. Secrets never appear in the errors."""
    check_name(name)
    if not isinstance(entry, Mapping):
        raise McpConfigError(f"MCP server {name!r}: its entry must be an object")
    kind = str(entry.get("type") or entry.get("transport") or "")
    enabled = not bool(entry.get("disabled", False))
    if entry.get("url") is not None or kind in ("http", "streamable-http", "streamableHttp"):
        if kind == "sse":
            raise McpConfigError(
                f"MCP server {name!r} uses the old SSE transport; give its streamable HTTP URL"
            )
        url = entry.get("url")
        if not isinstance(url, str) or not url.strip():
            raise McpConfigError(f'MCP server {name!r}: give its URL ("url")')
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise McpConfigError(f"MCP server {name!r}: its URL must start with http(s)://")
        if parts.username or parts.password:
            raise McpConfigError(
                f'MCP server {name!r}: put credentials in "headers", not in the URL'
            )
        headers = _str_map(entry.get("headers"), "headers", name)
        return McpServerConfig(name, "http", url=url.strip(), headers=headers, enabled=enabled)
    command = entry.get("command")
    if not isinstance(command, str) or not command.strip():
        raise McpConfigError(f'MCP server {name!r} has neither "command" (stdio) nor "url" (HTTP)')
    args = entry.get("args") or []
    if not isinstance(args, list):
        raise McpConfigError(f'MCP server {name!r}: "args" must be a list of strings')
    env = _str_map(entry.get("env"), "env", name)
    return McpServerConfig(
        name, "stdio", command=command, args=tuple(str(a) for a in args), env=env, enabled=enabled
    )


def parse_mcp_json(data: Any) -> list[McpServerConfig]:
    """The servers of an ``mcp.json`` document (``{"mcpServers": {...}}``; VS Code's
    ``{"servers": {...}}`` is accepted too)."""
    if not isinstance(data, Mapping):
        raise McpConfigError('an mcp.json file holds one object with "mcpServers"')
    servers = data.get("mcpServers", data.get("servers"))
    if not isinstance(servers, Mapping):
        raise McpConfigError('this file has no "mcpServers" object (the mcp.json format)')
    return [server_from_json(name, entry) for name, entry in servers.items()]


def load_mcp_json(path: str | os.PathLike[str]) -> list[McpServerConfig]:
    """Read an ``mcp.json`` file."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise McpConfigError(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # Only the position: the text around it may be a secret.
        raise McpConfigError(
            f"{file} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    return parse_mcp_json(data)


def to_mcp_json(servers: Iterable[McpServerConfig]) -> dict[str, Any]:
    """An ``mcp.json`` document of ``servers`` (secrets included)."""
    return {"mcpServers": {s.name: s.to_mcp_json() for s in servers}}


def write_private_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically, readable by the user only (it may hold tokens)."""
    atomic_write_json(path, data)  # mkstemp creates the file 0600; the rename keeps it
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)


class McpStore:
    """The saved MCP servers, ``<config>/mcp_servers.json`` (mcp.json format, mode 0600)."""

    def __init__(self, paths: AppPaths | None = None) -> None:
        self.paths = paths or AppPaths.default()

    @property
    def file(self) -> Path:
        return self.paths.config_dir / "mcp_servers.json"

    def all(self) -> list[McpServerConfig]:
        data = read_json(self.file)
        if not isinstance(data, dict):
            return []
        out = []
        for name, entry in (data.get("mcpServers") or {}).items():
            with contextlib.suppress(McpConfigError):  # a hand-edited bad entry: skip it
                out.append(server_from_json(name, entry))
        return out

    def get(self, name: str) -> McpServerConfig:
        for server in self.all():
            if server.name == name:
                return server
        known = ", ".join(s.name for s in self.all()) or "none yet"
        raise McpConfigError(
            f"There is no MCP server named {name!r} (saved: {known}). Add one with "
            f"`spark-launcher mcp add {name} -- COMMAND ARGS` or `mcp import mcp.json`."
        )

    def save(self, server: McpServerConfig) -> McpServerConfig:
        """Save (or replace) one server."""
        check_name(server.name)
        self._save([s for s in self.all() if s.name != server.name] + [server])
        return server

    def import_servers(
        self, servers: Iterable[McpServerConfig], replace: bool = False
    ) -> list[McpServerConfig]:
        """Add ``servers``; same-named ones are replaced. ``replace``: drop all others first."""
        new = list(servers)
        names = {s.name for s in new}
        kept = [] if replace else [s for s in self.all() if s.name not in names]
        self._save(kept + new)
        return new

    def update_secrets(self, name: str, changes: Mapping[str, str | None]) -> McpServerConfig:
        """Set (a value) or remove (``None``) a saved server's environment variables (stdio)
        or HTTP headers; the others stay. The values go to the 0600 file only: the error
        messages name the variable, never its value."""
        server = self.get(name)
        what = "header" if server.transport == "http" else "environment variable"
        values = dict(server.headers if server.transport == "http" else server.env)
        for key, value in changes.items():
            if not isinstance(key, str) or not _SECRET_NAME_RE.match(key):
                raise McpConfigError(
                    f"{key!r} cannot name an {what} of {name}: use letters, digits, '_' or '-'"
                )
            if value is None:
                values.pop(key, None)
            elif "\n" in value or "\r" in value:
                raise McpConfigError(f"the {what} {key} of {name} cannot span lines")
            else:
                values[key] = value
        if server.transport == "http":
            server = dataclasses.replace(server, headers=values)
        else:
            server = dataclasses.replace(server, env=values)
        return self.save(server)

    def remove(self, name: str) -> None:
        servers = self.all()
        if not any(s.name == name for s in servers):
            self.get(name)  # raises with the saved names
        self._save([s for s in servers if s.name != name])

    def _save(self, servers: list[McpServerConfig]) -> None:
        write_private_json(self.file, {"version": 1, **to_mcp_json(servers)})
