"""Library item models: ``LocalModelModel`` (GGUFs on disk), ``SetAsideModel`` (downloads kept
aside after failing sha256 verification) and ``DownloadModel`` (transfers).

``DownloadModel.update`` takes the latest ``DownloadRow`` for one download; the view calls it
from throttled progress events, so a fast transfer repaints at most a few times a second.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
)

from ui.models.rows import DownloadRow, LocalModelRow, SetAsideRow
from ui.models.table import ROW_ROLE, RowTableModel
from ui.theme import fmt_bytes, fmt_duration, fmt_rate

Index = QModelIndex | QPersistentModelIndex
LOCAL_HEADERS = ("Model", "Quant", "Size", "Where", "Path")


class LocalModelRole(IntEnum):
    ROW = ROW_ROLE
    PATH = Qt.ItemDataRole.UserRole + 2
    OURS = Qt.ItemDataRole.UserRole + 3


class LocalModelModel(RowTableModel[LocalModelRow]):
    """Every GGUF the library found; models from other tools are marked by their source."""

    HEADERS = LOCAL_HEADERS

    def arrange(self, rows: list[LocalModelRow]) -> list[LocalModelRow]:
        return sorted(rows, key=lambda r: (not r.ours, r.name.lower()))

    def cell(self, row: LocalModelRow, col: int, role: int) -> Any:
        if role == LocalModelRole.PATH:
            return row.path
        if role == LocalModelRole.OURS:
            return row.ours
        if role == Qt.ItemDataRole.DisplayRole:
            where = row.source if row.ours else f"{row.source} (used in place)"
            return (row.name, row.quant or "—", fmt_bytes(row.size_bytes), where, row.path)[col]
        if role == Qt.ItemDataRole.ToolTipRole:
            extra = f"\n{row.architecture} {row.parameters}".rstrip() if row.architecture else ""
            return f"{row.path}{extra}"
        return None


class SetAsideRole(IntEnum):
    ROW = ROW_ROLE
    PATH = Qt.ItemDataRole.UserRole + 2


def set_aside_label(row: SetAsideRow) -> str:
    """'gemma-3-4b-it-Q4_K_M.gguf — failed verification, 241 MiB'."""
    return f"{row.name} — failed verification, {fmt_bytes(row.size_bytes)}"


class SetAsideModel(QAbstractListModel):
    """Downloads whose sha256 did not match: kept (never deleted silently), never loaded."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[SetAsideRow] = []

    def set_rows(self, rows: list[SetAsideRow]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def rows(self) -> list[SetAsideRow]:
        return list(self._rows)

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return set_aside_label(row)
        if role == Qt.ItemDataRole.ToolTipRole:
            return (
                f"{row.path}\nIts sha256 did not match the Hub's, so it was set aside instead "
                "of being used. Delete it to free the space; download the model again for a "
                "good copy."
            )
        if role == SetAsideRole.ROW:
            return row
        if role == SetAsideRole.PATH:
            return row.path
        return None


class DownloadRole(IntEnum):
    ROW = ROW_ROLE
    ID = Qt.ItemDataRole.UserRole + 2
    STATE = Qt.ItemDataRole.UserRole + 3
    FRACTION = Qt.ItemDataRole.UserRole + 4


_STATE_LABELS = {
    "queued": "Queued",
    "downloading": "Downloading",
    "paused": "Paused",
    "verifying": "Verifying sha256",
    "done": "Verified ✔",
    "failed": "Failed",
    "cancelled": "Cancelled",
}


def download_status(row: DownloadRow) -> str:
    """'1.2 GiB of 4.6 GiB · 85.0 MiB/s · 41 s left', or the state / error."""
    if row.state == "failed":
        return f"Failed: {row.error}" if row.error else "Failed"
    if row.state == "downloading":
        total = fmt_bytes(row.total_bytes) if row.total_bytes else "?"
        return (
            f"{fmt_bytes(row.done_bytes)} of {total} · {fmt_rate(row.speed)} · "
            f"{fmt_duration(row.eta_s)} left"
        )
    if row.state == "paused":
        return f"Paused at {fmt_bytes(row.done_bytes)} of {fmt_bytes(row.total_bytes)}"
    return _STATE_LABELS.get(row.state, row.state)


class DownloadModel(QAbstractListModel):
    """Active and finished downloads, in the order they were started."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[DownloadRow] = []

    def update(self, row: DownloadRow) -> None:
        """Insert a new download or replace the state of a known one."""
        for i, existing in enumerate(self._rows):
            if existing.id == row.id:
                self._rows[i] = row
                idx = self.index(i)
                self.dataChanged.emit(idx, idx)
                return
        self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows))
        self._rows.append(row)
        self.endInsertRows()

    def remove(self, download_id: str) -> None:
        for i, existing in enumerate(self._rows):
            if existing.id == download_id:
                self.beginRemoveRows(QModelIndex(), i, i)
                del self._rows[i]
                self.endRemoveRows()
                return

    def get(self, download_id: str) -> DownloadRow | None:
        return next((r for r in self._rows if r.id == download_id), None)

    def rows(self) -> list[DownloadRow]:
        return list(self._rows)

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{row.name} — {download_status(row)}"
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.error or f"{row.repo}/{row.filename}"
        if role == DownloadRole.ROW:
            return row
        if role == DownloadRole.ID:
            return row.id
        if role == DownloadRole.STATE:
            return row.state
        if role == DownloadRole.FRACTION:
            return row.fraction
        return None
