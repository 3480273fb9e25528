"""``CheckModel``: the doctor checks (status, what was found, how to fix it) as a table."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from ui.models.rows import CheckRow
from ui.models.table import ROW_ROLE, RowTableModel

Index = QModelIndex | QPersistentModelIndex
HEADERS = ("", "Check", "Found", "Fix")
_SYMBOLS = {"ok": "✔", "warn": "⚠", "fail": "✖", "info": "○", "skip": "–"}
_COLOURS = {
    "ok": "#2da44e",
    "warn": "#bf8700",
    "fail": "#cf222e",
    "info": "#0969da",
    "skip": "#808080",
}


class CheckRole(IntEnum):
    ROW = ROW_ROLE
    STATUS = Qt.ItemDataRole.UserRole + 2


class CheckModel(RowTableModel[CheckRow]):
    """One row per doctor check."""

    HEADERS = HEADERS

    def cell(self, row: CheckRow, col: int, role: int) -> Any:
        if role == CheckRole.STATUS:
            return row.status
        if role == Qt.ItemDataRole.ToolTipRole and col == 0:
            return {"skip": "Not applicable here"}.get(row.status, row.status)
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return (_SYMBOLS.get(row.status, "?"), row.name, row.detail, row.fix or "—")[col]
        if role == Qt.ItemDataRole.ForegroundRole and col == 0:
            return QColor(_COLOURS.get(row.status, "#808080"))
        return None
