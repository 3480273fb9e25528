"""``QualitySpeedChart``: one dot per model, quality (accuracy or votes) against decode tok/s.

Drawn with ``QPainter`` (a handful of points does not need a charting library). The answer to
"is the faster model good enough?" is then where the dots sit: right is faster, up is better.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from ui.theme import is_dark, muted_colour

PALETTE_LIGHT = ("#0969da", "#cf222e", "#1a7f37", "#8250df")
PALETTE_DARK = ("#58a6ff", "#f85149", "#3fb950", "#bc8cff")


@dataclass(frozen=True)
class ChartPoint:
    """One model: its name, decode speed, and quality as a share (0..1) with what it measures."""

    label: str
    tokens_per_s: float
    quality: float
    basis: str  # "accuracy" or "votes"
    low: float | None = None  # the 95% interval of quality, drawn as a whisker
    high: float | None = None


class QualitySpeedChart(QWidget):
    """Scatter of quality (y, 0-100 %) against decode tokens/s (x)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.points: list[ChartPoint] = []
        self.placeholder = "Run a prompt suite to chart quality against speed."
        self.setMinimumSize(260, 170)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(360, 220)

    def set_points(self, points: list[ChartPoint]) -> None:
        self.points = list(points)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().color(self.foregroundRole())
        muted = muted_colour(self.palette())
        rect = QRectF(self.rect()).adjusted(46, 22, -16, -34)
        small = QFont(self.font())
        small.setPointSizeF(max(7.0, small.pointSizeF() * 0.85))
        p.setFont(small)
        # axes and grid
        p.setPen(QPen(muted, 1))
        p.drawRect(rect)
        top = self._x_max()
        for i in range(5):
            y = rect.bottom() - rect.height() * i / 4
            p.setPen(QPen(muted, 1, Qt.PenStyle.DotLine))
            p.drawLine(QPointF(rect.left(), y), QPointF(rect.right(), y))
            p.setPen(text)
            p.drawText(
                QRectF(0, y - 8, rect.left() - 6, 16),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                f"{i * 25}%",
            )
            x = rect.left() + rect.width() * i / 4
            p.drawText(
                QRectF(x - 30, rect.bottom() + 2, 60, 16),
                Qt.AlignmentFlag.AlignCenter,
                f"{top * i / 4:.0f}",
            )
        p.drawText(
            QRectF(rect.left(), rect.bottom() + 16, rect.width(), 16),
            Qt.AlignmentFlag.AlignCenter,
            "decode tokens/s →",
        )
        basis = {pt.basis for pt in self.points}
        title = "Quality: " + (" / ".join(sorted(basis)) if basis else "accuracy or votes")
        p.drawText(QRectF(rect.left(), 2, rect.width(), 18), Qt.AlignmentFlag.AlignLeft, title)
        if not self.points:
            p.setPen(muted)
            p.drawText(
                rect, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder
            )
            p.end()
            return
        colours = PALETTE_DARK if is_dark(self.palette()) else PALETTE_LIGHT
        bold = QFont(small)
        bold.setBold(True)
        p.setFont(bold)

        def ypos(q: float) -> float:
            return rect.bottom() - rect.height() * max(0.0, min(q, 1.0))

        centres = [
            (rect.left() + rect.width() * min(pt.tokens_per_s / top, 1.0), ypos(pt.quality))
            for pt in self.points
        ]
        # Dots are obstacles for every label, so no label covers another model's dot.
        placed: list[QRectF] = [QRectF(cx - 8, cy - 8, 16, 16) for cx, cy in centres]
        for (cx, _cy), pt in zip(centres, self.points, strict=True):
            if pt.low is not None and pt.high is not None:  # whiskers too
                placed.append(QRectF(cx - 6, ypos(pt.high), 12, ypos(pt.low) - ypos(pt.high)))
        for i, pt in enumerate(self.points):
            colour = QColor(colours[i % len(colours)])
            x, y = centres[i]
            if pt.low is not None and pt.high is not None:
                # the 95% interval: how far the pass rate could be from what was measured
                p.setPen(QPen(colour, 2))
                y_low, y_high = ypos(pt.low), ypos(pt.high)
                p.drawLine(QPointF(x, y_low), QPointF(x, y_high))
                for yy in (y_low, y_high):
                    p.drawLine(QPointF(x - 5, yy), QPointF(x + 5, yy))
            p.setPen(QPen(colour.darker(130), 1.5))
            p.setBrush(colour)
            p.drawEllipse(QPointF(x, y), 6, 6)
            label = self._label(pt, p.fontMetrics(), rect.width() - 20)
            box = self._label_box(p.fontMetrics().horizontalAdvance(label) + 4, x, y, rect, placed)
            placed.append(box)
            p.setPen(colour.darker(115) if not is_dark(self.palette()) else colour)
            p.drawText(box, Qt.AlignmentFlag.AlignVCenter, label)
        p.end()

    @staticmethod
    def _label(pt: ChartPoint, metrics: QFontMetrics, width: float) -> str:
        """ "name (100%, 46.2 tok/s)", the name elided so the label fits inside the plot."""
        figures = f" ({pt.quality * 100:.0f}%, {pt.tokens_per_s:.1f} tok/s)"
        room = max(0, int(width) - metrics.horizontalAdvance(figures))
        return metrics.elidedText(pt.label, Qt.TextElideMode.ElideMiddle, room) + figures

    @staticmethod
    def _label_box(width: float, x: float, y: float, area: QRectF, placed: list[QRectF]) -> QRectF:
        """A spot for a dot's label inside the plot that overlaps no dot and no label placed
        before: beside the dot (right, then left), else above or below it."""
        lefts = []
        if x + 10 + width < area.right():
            lefts.append(x + 10)
        if x - 10 - width > area.left():
            lefts.append(x - 10 - width)
        for left in lefts:
            for dy in (-8, -26, 10, -44, 28, -62, 46):
                top = min(max(y + dy, area.top() + 1), area.bottom() - 17)
                box = QRectF(left, top, width, 16)
                if not any(box.intersects(other) for other in placed):
                    return box
        # No room beside the dot: anywhere free in the plot (the colour tells whose it is).
        for left in (area.left() + 2, area.right() - width - 2):
            top = area.top() + 1
            while top + 16 < area.bottom():
                box = QRectF(left, top, width, 16)
                if not any(box.intersects(other) for other in placed):
                    return box
                top += 9
        lefts.append(min(max(area.left() + 2, x - width / 2), area.right() - width - 2))
        return QRectF(lefts[0], min(max(y - 8, area.top()), area.bottom() - 16), width, 16)

    def _x_max(self) -> float:
        """A round axis maximum above the fastest model."""
        fastest = max((pt.tokens_per_s for pt in self.points), default=0.0)
        if fastest <= 0:
            return 100.0
        for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000):
            if fastest * 1.15 <= step * 4:
                return float(step * 4)
        return float(int(fastest * 1.2))
