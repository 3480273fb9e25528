"""Opt-in recording of the local API's chat requests, so an agent's real workload can be replayed.

When the user turns it on (``Settings.record_api_traffic``, off by default), every chat request
the API accepts (OpenAI chat completions, Anthropic Messages, OpenAI Responses: all three are
mapped to the same API-neutral ``GenRequest`` first) is appended as one JSON line to
``<data>/api-traffic.jsonl``: the messages in the engine's OpenAI shape (tool calls and tool
results included), the tools offered, ``tool_choice``, the response format and ``max_tokens``.
Replies are not recorded: a replay asks the compared models afresh. Plain completions
(``/v1/completions``) are not recorded (a raw prompt is not a conversation).

Each line is written with one ``write`` on a file opened ``O_APPEND`` under a lock, so lines
never interleave; a line torn by a crash is skipped by :func:`read_traffic` and the next append
starts on a new line. The file stops growing at ``max_bytes`` (50 MB by default): further
requests are counted in ``dropped`` rather than recorded, and the Compare view says so (clear
the recording to record more). A failed write costs the recording, never the request.

``launcher.compare_workloads.api_log_suite`` turns the file into a comparison workload
(``compare A B --suite api-log``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.paths import AppPaths

DEFAULT_MAX_BYTES = 50 * 10**6
FORMAT_VERSION = 1


def traffic_file(paths: AppPaths | None = None) -> Path:
    """Where recorded API traffic lives (``<data>/api-traffic.jsonl``)."""
    return (paths or AppPaths.default()).data_dir / "api-traffic.jsonl"


def request_entry(route: str, gen: Any, model: str) -> dict[str, Any] | None:
    """The JSON line for one accepted request (a ``GenRequest``), or None when it is not a chat."""
    if getattr(gen, "kind", None) != "chat":
        return None
    sampling = gen.sampling
    schema = sampling.json_schema
    response_format: dict[str, Any] | None = None
    if schema == {}:
        response_format = {"type": "json_object"}
    elif schema is not None:
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": "recorded", "schema": schema},
        }
    entry: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "api": route,
        "model": model,
        "messages": [dict(m) for m in gen.messages],
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
    }
    if sampling.tools:
        entry["tools"] = [dict(t) for t in sampling.tools]
        entry["tool_choice"] = sampling.tool_choice
    if response_format is not None:
        entry["response_format"] = response_format
    return entry


class TrafficRecorder:
    """Appends accepted chat requests to a JSONL file while ``enabled()`` says so.

    ``enabled`` is a callable so the setting can change while the server runs (the app's switch
    takes effect on the next request). Thread-safe; never raises from :meth:`record`.
    """

    def __init__(
        self,
        path: Path,
        enabled: Callable[[], bool] = lambda: True,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.max_bytes = max_bytes
        self.recorded = 0
        self.dropped = 0  # requests not recorded because the file reached max_bytes
        self.failed = 0  # writes that failed (disk full, unwritable folder)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, paths: AppPaths | None = None) -> TrafficRecorder:
        """A recorder following ``Settings.record_api_traffic`` (re-read when the file changes)."""
        paths = paths or AppPaths.default()
        return cls(traffic_file(paths), _SettingsSwitch(paths))

    def record(self, route: str, gen: Any, model: str) -> bool:
        """Record one request if recording is on; True when a line was written."""
        try:
            if not self.enabled():
                return False
            entry = request_entry(route, gen, model)
            if entry is None:
                return False
            data = (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode("utf-8")
            return self._append(data)
        except Exception:  # the recording is a side line: a request never fails for it
            self.failed += 1
            return False

    def _append(self, data: bytes) -> bool:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size + len(data) > self.max_bytes:
                    self.dropped += 1
                    return False
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # the last line was torn: start a fresh one
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            self.recorded += 1
            return True


class _SettingsSwitch:
    """``Settings.record_api_traffic``, re-read only when the settings file changes."""

    def __init__(self, paths: AppPaths) -> None:
        self._paths = paths
        self._stamp: tuple[int, int] | None = None
        self._on = False

    def __call__(self) -> bool:
        try:
            st = self._paths.settings_file.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            return False
        if stamp != self._stamp:
            from launcher.settings import load_settings

            self._on = bool(load_settings(self._paths).record_api_traffic)
            self._stamp = stamp
        return self._on


@dataclass(frozen=True)
class Traffic:
    """The recorded requests, and how many lines could not be read (torn or edited)."""

    entries: tuple[dict[str, Any], ...]
    skipped: int
    size_bytes: int


def read_traffic(path: Path | None = None) -> Traffic:
    """Every readable recorded request, oldest first (a missing file: none)."""
    path = path or traffic_file()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Traffic((), 0, 0)
    entries, skipped = [], 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            skipped += 1
            continue
        if isinstance(entry, dict) and isinstance(entry.get("messages"), list):
            entries.append(entry)
        else:
            skipped += 1
    return Traffic(tuple(entries), skipped, len(raw))


def clear_traffic(path: Path | None = None) -> None:
    """Delete the recording (missing is fine)."""
    with contextlib.suppress(FileNotFoundError):
        (path or traffic_file()).unlink()
