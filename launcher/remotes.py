"""Saved remote engines: OpenAI-compatible servers (llama-server, vLLM, Ollama, LM Studio, another
Spark Launcher) the user added by name, URL and optional API key.

They live in their own file, ``<config>/remotes.json``, written atomically and readable only by
the user (it holds API keys), rather than in ``settings.json``, which is shown and shared more
freely. A key is never part of a ``repr``, a log line or an error message: :func:`redact_key`
removes it from any text that might carry it. A model on a remote is named
``remote:NAME/MODEL`` everywhere a local model path is accepted (chat, compare, the pickers).
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from launcher.errors import RemoteConfigError
from launcher.fsutil import atomic_write_json, read_json
from launcher.paths import AppPaths

REMOTE_PREFIX = "remote:"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Remote:
    """One saved server. ``base_url`` ends in ``/v1`` (the OpenAI API root)."""

    name: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)

    @property
    def has_key(self) -> bool:
        return bool(self.api_key)

    def headers(self) -> dict[str, str]:
        """HTTP headers for a request: the bearer key when there is one."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def public_json(self) -> dict[str, Any]:
        """What may be shown or printed: everything but the key itself."""
        return {"name": self.name, "url": self.base_url, "api_key": self.has_key}


def is_remote_spec(spec: object) -> bool:
    """True for ``remote:NAME/MODEL`` (the way a remote model is named)."""
    return isinstance(spec, str | os.PathLike) and os.fspath(spec).startswith(REMOTE_PREFIX)


def parse_spec(spec: str | os.PathLike[str]) -> tuple[str, str]:
    """``remote:NAME/MODEL`` -> (NAME, MODEL). MODEL may itself contain slashes."""
    text = os.fspath(spec)
    if not text.startswith(REMOTE_PREFIX):
        raise RemoteConfigError(f"{text!r} is not a remote model; write remote:NAME/MODEL")
    name, sep, model = text[len(REMOTE_PREFIX) :].partition("/")
    if not name or not sep or not model:
        raise RemoteConfigError(
            f"{text!r} names no model; write remote:NAME/MODEL "
            "(`spark-launcher remote models NAME` lists them)"
        )
    return name, model


def make_spec(name: str, model: str) -> str:
    return f"{REMOTE_PREFIX}{name}/{model}"


def normalize_url(url: str) -> str:
    """``host:8080``, ``http://host:8080`` or ``http://host:8080/v1/`` -> ``http://host:8080/v1``.

    OpenAI-compatible servers serve the API under ``/v1``; users paste either the server's
    address or the API root, so both are accepted. Other paths (``/api/v1``, a proxy prefix)
    are kept as given.
    """
    text = url.strip()
    if not text:
        raise RemoteConfigError("give the server's URL, e.g. http://192.168.1.20:8080")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteConfigError(
            f"{url!r} is not an http(s) URL; give one like http://192.168.1.20:8080"
        )
    if parts.username or parts.password:
        raise RemoteConfigError("put the API key in --api-key, not in the URL")
    path = parts.path.rstrip("/")
    if path == "":
        path = "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def redact_key(text: str, *keys: str | None) -> str:
    """``text`` with every given key (and any bearer token) replaced by ``***``."""
    for key in keys:
        if key:
            text = text.replace(key, "***")
    return re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text)


class RemoteStore:
    """The saved remotes (``AppPaths.remotes_file``-style ``<config>/remotes.json``)."""

    def __init__(self, paths: AppPaths | None = None) -> None:
        self.paths = paths or AppPaths.default()

    @property
    def file(self) -> Path:
        return self.paths.config_dir / "remotes.json"

    def all(self) -> list[Remote]:
        data = read_json(self.file)
        if not isinstance(data, dict) or not isinstance(data.get("remotes"), list):
            return []
        out = []
        for item in data["remotes"]:
            if not isinstance(item, dict):
                continue
            name, url, key = item.get("name"), item.get("url"), item.get("api_key")
            if isinstance(name, str) and isinstance(url, str):
                out.append(Remote(name, url, key if isinstance(key, str) and key else None))
        return out

    def get(self, name: str) -> Remote:
        for remote in self.all():
            if remote.name == name:
                return remote
        known = ", ".join(r.name for r in self.all()) or "none yet"
        raise RemoteConfigError(
            f"There is no remote named {name!r} (saved: {known}). Add it with "
            f"`spark-launcher remote add {name} URL [--api-key KEY]`."
        )

    @staticmethod
    def make(name: str, url: str, api_key: str | None = None) -> Remote:
        """A checked ``Remote`` (valid name, normalized URL), not saved yet."""
        if not _NAME_RE.match(name):
            raise RemoteConfigError(
                f"{name!r} cannot name a remote: use letters, digits, '.', '_' or '-' "
                "(no '/' or spaces), up to 64 characters"
            )
        return Remote(name, normalize_url(url), api_key or None)

    def add(self, name: str, url: str, api_key: str | None = None) -> Remote:
        """Save (or replace) a remote; returns it with the URL normalized."""
        return self.save(self.make(name, url, api_key))

    def save(self, remote: Remote) -> Remote:
        """Save ``remote`` (made by :meth:`make`), replacing one of the same name."""
        name = remote.name
        remotes = [r for r in self.all() if r.name != name] + [remote]
        self._save(remotes)
        return remote

    def remove(self, name: str) -> None:
        remotes = self.all()
        if not any(r.name == name for r in remotes):
            self.get(name)  # raises with the list of known names
        self._save([r for r in remotes if r.name != name])

    def _save(self, remotes: list[Remote]) -> None:
        data = {
            "version": 1,
            "remotes": [{"name": r.name, "url": r.base_url, "api_key": r.api_key} for r in remotes],
        }
        atomic_write_json(self.file, data)
        # API keys: readable by this user only (no-op where chmod means little, e.g. Windows).
        with contextlib.suppress(OSError):
            os.chmod(self.file, 0o600)
