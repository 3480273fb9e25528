"""``DownloadDelegate``: a download row painted as name, progress bar and status line."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
)

from ui.models.library import DownloadRole, download_status

Index = QModelIndex | QPersistentModelIndex


class DownloadDelegate(QStyledItemDelegate):
    """Two lines per download: name + status text, then a progress bar."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        row = index.data(DownloadRole.ROW)
        if row is None:
            return
        rect: QRect = option.rect  # type: ignore[attr-defined]
        widget = option.widget  # type: ignore[attr-defined]
        style = widget.style() if widget is not None else QApplication.style()
        if option.state & QStyle.StateFlag.State_Selected:  # type: ignore[attr-defined]
            painter.fillRect(rect, option.palette.highlight())  # type: ignore[attr-defined]
        line_h = option.fontMetrics.height()  # type: ignore[attr-defined]
        text_rect = QRect(rect.left() + 8, rect.top() + 4, rect.width() - 16, line_h)
        painter.save()
        font = painter.font()
        font.setBold(True)
        painter.setFont(font)
        painter.drawText(text_rect, int(Qt.AlignmentFlag.AlignLeft), row.name)
        painter.restore()
        status = download_status(row)
        status_rect = QRect(text_rect.left(), text_rect.bottom() + 2, text_rect.width(), line_h)
        painter.drawText(
            status_rect,
            int(Qt.AlignmentFlag.AlignLeft),
            option.fontMetrics.elidedText(  # type: ignore[attr-defined]
                status, Qt.TextElideMode.ElideRight, status_rect.width()
            ),
        )
        bar = QStyleOptionProgressBar()
        bar.rect = QRect(text_rect.left(), status_rect.bottom() + 4, text_rect.width(), 10)  # type: ignore[attr-defined]
        bar.minimum = 0  # type: ignore[attr-defined]
        bar.maximum = 1000  # type: ignore[attr-defined]
        bar.progress = int(row.fraction * 1000)  # type: ignore[attr-defined]
        bar.state = QStyle.StateFlag.State_Enabled  # type: ignore[attr-defined]
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, widget)

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        line_h = option.fontMetrics.height()  # type: ignore[attr-defined]
        return QSize(300, 2 * line_h + 26)
