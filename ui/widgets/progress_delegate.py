"""``DownloadDelegate``: a download row painted as name, status line and progress bar.

A selected row is painted in the highlight colour; the bar's groove is filled with the base
colour first, so the bar's fill (drawn in the highlight colour by most styles) still shows
against the selected row, and the text switches to the highlighted-text colour.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
)

from ui.models.library import DownloadRole, download_status

Index = QModelIndex | QPersistentModelIndex
BAR_HEIGHT = 10


def bar_rect(rect: QRect, line_height: int) -> QRect:
    """Where the progress bar of a row in ``rect`` goes (below the name and status lines)."""
    top = rect.top() + 8 + 2 * line_height
    return QRect(rect.left() + 8, top, rect.width() - 16, BAR_HEIGHT)


class DownloadDelegate(QStyledItemDelegate):
    """Two lines per download: name + status text, then a progress bar."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        row = index.data(DownloadRole.ROW)
        if row is None:
            return
        rect: QRect = option.rect
        widget = option.widget
        palette: QPalette = option.palette
        style = widget.style() if widget is not None else QApplication.style()
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.save()
        if selected:
            painter.fillRect(rect, palette.highlight())
            painter.setPen(palette.color(QPalette.ColorRole.HighlightedText))
        else:
            painter.setPen(palette.color(QPalette.ColorRole.Text))
        line_h = option.fontMetrics.height()
        text_rect = QRect(rect.left() + 8, rect.top() + 4, rect.width() - 16, line_h)
        font = painter.font()
        font.setBold(True)
        painter.setFont(font)
        painter.drawText(text_rect, int(Qt.AlignmentFlag.AlignLeft), row.name)
        font.setBold(False)
        painter.setFont(font)
        status = download_status(row)
        status_rect = QRect(text_rect.left(), text_rect.bottom() + 2, text_rect.width(), line_h)
        painter.drawText(
            status_rect,
            int(Qt.AlignmentFlag.AlignLeft),
            option.fontMetrics.elidedText(status, Qt.TextElideMode.ElideRight, status_rect.width()),
        )
        painter.restore()
        bar = QStyleOptionProgressBar()
        bar.rect = bar_rect(rect, line_h)
        bar.palette = QPalette(palette)
        bar.minimum = 0
        bar.maximum = 1000
        bar.progress = int(row.fraction * 1000)
        bar.textVisible = False
        # Qt 6 reads the orientation from the state: without State_Horizontal the bar is
        # drawn as a vertical one squeezed into a 10-pixel strip, and hardly any fill shows.
        bar.state = QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_Horizontal
        if selected:  # the groove must not be the highlight colour the fill is drawn in
            outline = bar.rect.adjusted(-1, -1, 1, 1)
            painter.fillRect(outline, palette.color(QPalette.ColorRole.HighlightedText))
            painter.fillRect(bar.rect, palette.base())
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, widget)

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        line_h = option.fontMetrics.height()
        return QSize(300, 2 * line_h + 26)
