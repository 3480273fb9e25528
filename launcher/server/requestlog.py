"""The local API's request log: what was asked, of which model, and how it ended.

A bounded, thread-safe list of ``RequestRecord``s (plain frozen dataclasses). The server adds
a record when a request arrives and replaces it when the reply ends; readers (the app's log
view, tests) poll ``version`` and read ``records()``, so no callback ever runs on a server
thread on their behalf.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RequestRecord:
    """One API request: filled in as it progresses (``status`` None while it runs)."""

    id: int
    started: float  # time.time()
    client: str  # remote address
    method: str
    path: str
    model: str = ""
    stream: bool = False
    prompt: str = ""  # preview of the last user message / prompt
    status: int | None = None  # HTTP status, once sent
    reply: str = ""  # preview of the reply
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""  # the engine's stop reason: eos, stop, length, cancelled, ...
    ttft_s: float | None = None
    decode_tokens_per_s: float | None = None
    duration_s: float | None = None
    error: str = ""
    finished: bool = False  # the reply ended (or the request was refused)

    @property
    def running(self) -> bool:
        return not self.finished


class RequestLog:
    """The last ``maxlen`` requests, newest last."""

    def __init__(self, maxlen: int = 500) -> None:
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque(maxlen=maxlen)
        self._ids = itertools.count(1)
        self.version = 0

    def start(self, client: str, method: str, path: str) -> int:
        with self._lock:
            rid = next(self._ids)
            self._records.append(
                RequestRecord(id=rid, started=time.time(), client=client, method=method, path=path)
            )
            self.version += 1
            return rid

    def update(self, rid: int, **changes: Any) -> None:
        """Replace fields of record ``rid`` (ignored when it has left the log)."""
        with self._lock:
            for i, rec in enumerate(self._records):
                if rec.id == rid:
                    if changes.get("finished") and rec.duration_s is None:
                        changes.setdefault("duration_s", time.time() - rec.started)
                    self._records[i] = dataclasses.replace(rec, **changes)
                    self.version += 1
                    return

    def get(self, rid: int) -> RequestRecord | None:
        with self._lock:
            return next((r for r in self._records if r.id == rid), None)

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self.version += 1
