"""``CheckModel``: the doctor checks (status, what was found, how to fix it) as a table."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from ui.models.rows import CheckRow

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
    ROW = Qt.ItemDataRole.UserRole + 1
    STATUS = Qt.ItemDataRole.UserRole + 2


class CheckModel(QAbstractTableModel):
    """One row per doctor check."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[CheckRow] = []

    def set_rows(self, rows: list[CheckRow]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if (
            orientation == Qt.Orientation.Horizontal
            and role == Qt.ItemDataRole.DisplayRole
            and 0 <= section < len(HEADERS)
        ):
            return HEADERS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        col = index.column()
        if role == CheckRole.ROW:
            return row
        if role == CheckRole.STATUS:
            return row.status
        if role == Qt.ItemDataRole.ToolTipRole and col == 0:
            return {"skip": "Not applicable here"}.get(row.status, row.status)
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return (_SYMBOLS.get(row.status, "?"), row.name, row.detail, row.fix or "—")[col]
        if role == Qt.ItemDataRole.ForegroundRole and col == 0:
            return QColor(_COLOURS.get(row.status, "#808080"))
        return None
