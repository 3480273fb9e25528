"""``ElidedLabel``: one line of text that shortens with "…" instead of widening the window.

A plain ``QLabel`` asks for its whole text as its minimum width, so one long status line (a
file path, a model name, an error) sets how narrow the whole window can be. This label asks
for a few characters only, draws as much of the text as fits and shows the whole text as its
tooltip.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

MIN_CHARS = 12  # the narrowest it gets: about this many average characters


class ElidedLabel(QLabel):
    """A single-line label whose minimum width does not depend on its text."""

    def __init__(
        self,
        text: str = "",
        parent: QWidget | None = None,
        mode: Qt.TextElideMode = Qt.TextElideMode.ElideMiddle,
    ) -> None:
        super().__init__(text, parent)
        self._mode = mode
        # Preferred, not Ignored: a layout may shrink an Ignored widget to nothing.
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setToolTip(text)

    def setText(self, text: str) -> None:
        super().setText(text)
        self.setToolTip(text)

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        return QSize(self.fontMetrics().averageCharWidth() * MIN_CHARS, hint.height())

    def elided_text(self) -> str:
        """The text as drawn at the current width."""
        rect = self.contentsRect()
        return self.fontMetrics().elidedText(self.text(), self._mode, rect.width())

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(
            self.contentsRect(),
            int(self.alignment() | Qt.AlignmentFlag.AlignVCenter),
            self.elided_text(),
        )
