"""``ConversationListModel``: the saved conversations, newest first, for the chat sidebar."""

from __future__ import annotations

import time
from enum import IntEnum
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt

from launcher.chats import ConversationSummary

Index = QModelIndex | QPersistentModelIndex


class ConversationRole(IntEnum):
    ID = Qt.ItemDataRole.UserRole + 1
    UPDATED = Qt.ItemDataRole.UserRole + 2
    MESSAGE_COUNT = Qt.ItemDataRole.UserRole + 3


def _when(ts: float) -> str:
    if time.time() - ts < 86400:
        return time.strftime("%H:%M", time.localtime(ts))
    return time.strftime("%d %b", time.localtime(ts))


class ConversationListModel(QAbstractListModel):
    """Summaries from ``ChatStore.list()``; ``upsert`` moves an updated one to the top."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._items: list[ConversationSummary] = []

    def set_items(self, items: list[ConversationSummary]) -> None:
        self.beginResetModel()
        self._items = sorted(items, key=lambda s: s.updated, reverse=True)
        self.endResetModel()

    def upsert(self, item: ConversationSummary) -> None:
        """Insert or update one conversation and keep newest-first order."""
        old = self.row_of(item.id)
        if old is not None:
            if old == 0:
                self._items[0] = item
                self.dataChanged.emit(self.index(0), self.index(0))
                return
            self.beginRemoveRows(QModelIndex(), old, old)
            del self._items[old]
            self.endRemoveRows()
        pos = 0
        while pos < len(self._items) and self._items[pos].updated > item.updated:
            pos += 1
        self.beginInsertRows(QModelIndex(), pos, pos)
        self._items.insert(pos, item)
        self.endInsertRows()

    def remove(self, conversation_id: str) -> None:
        row = self.row_of(conversation_id)
        if row is None:
            return
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._items[row]
        self.endRemoveRows()

    def row_of(self, conversation_id: str) -> int | None:
        for i, s in enumerate(self._items):
            if s.id == conversation_id:
                return i
        return None

    def id_at(self, row: int) -> str:
        return self._items[row].id

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        item = self._items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return item.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{item.title}\n{item.message_count} messages · {_when(item.updated)}"
        if role == ConversationRole.ID:
            return item.id
        if role == ConversationRole.UPDATED:
            return item.updated
        if role == ConversationRole.MESSAGE_COUNT:
            return item.message_count
        return None
