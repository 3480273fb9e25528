"""``ButtonDelegate``: paints a cell as a push button and reports clicks on it.

Item views cannot hold thousands of real ``QPushButton``s cheaply; a delegate paints the
button from the model's text and turns a click into ``clicked(index)``.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QMouseEvent, QPainter
from PySide6.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionButton,
    QStyleOptionViewItem,
    QWidget,
)

Index = QModelIndex | QPersistentModelIndex


class ButtonDelegate(QStyledItemDelegate):
    """Draws ``index.data()`` as a button; emits ``clicked`` when it is clicked."""

    clicked = Signal(QModelIndex)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)

    def _button_rect(self, rect: QRect) -> QRect:
        return rect.adjusted(4, 3, -4, -3)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        button = QStyleOptionButton()
        button.rect = self._button_rect(option.rect)
        button.text = str(index.data() or "")
        button.state = QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_Raised
        widget = option.widget
        style = widget.style() if widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_PushButton, button, painter, widget)

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        hint = super().sizeHint(option, index)
        return QSize(max(hint.width() + 24, 110), max(hint.height(), 28))

    def editorEvent(self, event: QEvent, model, option: QStyleOptionViewItem, index: Index) -> bool:
        if (
            event.type() == QEvent.Type.MouseButtonRelease
            and isinstance(event, QMouseEvent)
            and event.button() == Qt.MouseButton.LeftButton
            and self._button_rect(option.rect).contains(event.position().toPoint())
        ):
            if isinstance(index, QModelIndex):
                self.clicked.emit(index)
            else:  # a persistent index: the plain index it stands for now
                self.clicked.emit(index.model().index(index.row(), index.column(), index.parent()))
            return True
        return super().editorEvent(event, model, option, index)
