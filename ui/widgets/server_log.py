"""``RequestLogModel``: the local API's request log (``launcher.server.requestlog``) as a table.

A thin adapter over plain ``RequestRecord`` rows: newest first, one row per request with the
time, client, model, what was asked, what came back, tokens, speed and outcome. The owner
calls ``set_records`` at most a few times a second (the view polls the log's ``version``).
"""

from __future__ import annotations

import time
from enum import IntEnum
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from ui.models.table import ROW_ROLE, RowTableModel

Index = QModelIndex | QPersistentModelIndex
HEADERS = ("Time", "Client", "Model", "Request", "Reply", "Tokens", "Outcome")


class LogRole(IntEnum):
    RECORD = ROW_ROLE


def outcome(rec: Any) -> str:
    """What happened, in a few words: running, the stop reason and speed, or the error."""
    if getattr(rec, "running", False):
        return "running…" if rec.status else "waiting…"
    if rec.status and rec.status >= 400 and rec.status != 499:
        return f"{rec.status} {rec.error}"
    parts = [str(rec.status)]
    if rec.finish_reason:
        parts.append(rec.finish_reason)
    if rec.decode_tokens_per_s:
        parts.append(f"{rec.decode_tokens_per_s:.1f} tok/s")
    if rec.duration_s is not None:
        parts.append(f"{rec.duration_s:.2f} s")
    if rec.status == 499:
        parts.append("client left")
    return " · ".join(parts)


class RequestLogModel(RowTableModel[Any]):
    """One row per API request, newest first."""

    HEADERS = HEADERS

    def set_records(self, records: list[Any]) -> None:
        self.set_rows(reversed(records))

    def record(self, row: int) -> Any:
        return self.row_at(row)

    def cell(self, rec: Any, col: int, role: int) -> Any:
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return time.strftime("%H:%M:%S", time.localtime(rec.started))
            if col == 1:
                return rec.client
            if col == 2:
                return rec.model or rec.path
            if col == 3:
                return rec.prompt or f"{rec.method} {rec.path}"
            if col == 4:
                return rec.reply
            if col == 5:
                if not rec.prompt_tokens and not rec.completion_tokens:
                    return ""
                return f"{rec.prompt_tokens} → {rec.completion_tokens}"
            if col == 6:
                return outcome(rec)
        if role == Qt.ItemDataRole.ToolTipRole:
            return {3: rec.prompt, 4: rec.reply, 6: rec.error or outcome(rec)}.get(col)
        failed = bool(rec.status and rec.status >= 400 and rec.status != 499)
        if role == Qt.ItemDataRole.ForegroundRole and col == 6 and failed and not rec.running:
            return QColor("#cf222e")
        return None
