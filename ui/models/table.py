"""``RowTableModel``: the one base of the app's table models (a list of row records, fixed
column headers), so each model writes only what its cells show.

A subclass sets ``HEADERS`` and implements ``cell(row, column, role)``; ``ROW_ROLE`` (the
first user role) returns the row record itself. Rows are replaced whole with ``set_rows``
(a model reset), the way the app refreshes its lists.

An earlier attempt at such a base was reported to crash under PySide6 once a
``QSortFilterProxyModel`` sat on top; that attempt is not in the history. The two suspects
were reproduced and ruled out (``tests/ui/test_app_models.py``): a proxy whose source model has
no other Python owner (PySide6 keeps a reference through ``setSourceModel``: the source
survives garbage collection), and a ``Generic`` base under a proxy (qtmodeltester passes on
Discover's filter proxy over this base, sorting and filtering included). What remains a
known way to crash a proxy is resetting its source from a worker thread: models here are
only ever changed on the GUI thread (workers hand rows over through signals).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Generic, TypeVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

Index = QModelIndex | QPersistentModelIndex
R = TypeVar("R")

ROW_ROLE = Qt.ItemDataRole.UserRole + 1


class RowTableModel(QAbstractTableModel, Generic[R]):
    """A table of ``R`` records with the fixed column titles ``HEADERS``."""

    HEADERS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[R] = []

    def set_rows(self, rows: Iterable[R]) -> None:
        self.beginResetModel()
        self._rows = self.arrange(list(rows))
        self.endResetModel()

    def arrange(self, rows: list[R]) -> list[R]:
        """The order rows are shown in (override to sort); as given by default."""
        return rows

    def rows(self) -> list[R]:
        return list(self._rows)

    def row_at(self, row: int) -> R:
        return self._rows[row]

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if (
            orientation == Qt.Orientation.Horizontal
            and role == Qt.ItemDataRole.DisplayRole
            and 0 <= section < len(self.HEADERS)
        ):
            return self.HEADERS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == ROW_ROLE:
            return row
        return self.cell(row, index.column(), role)

    def cell(self, row: R, column: int, role: int) -> Any:
        """What ``role`` of ``column`` shows for ``row`` (None: nothing)."""
        raise NotImplementedError
