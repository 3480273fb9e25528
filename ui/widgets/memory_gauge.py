"""The memory gauge: one bar per memory pool, split by what holds the memory.

``MemoryGaugeWidget`` renders a ``launcher.hardware.MemorySnapshot`` (fed by
``ui.sampler_worker.SamplerWorker``): one bar on a unified-memory machine, VRAM and RAM bars
on a discrete GPU. Each bar shows a coloured, named segment per loaded model, then
everything else in use ("other"), the OS page cache it can reclaim, and free memory. A small
sparkline to the right of each bar shows the share in use over the last minutes. Hovering
shows the exact numbers. ``set_ghost()`` overlays a planned model's footprint as a hatched,
translucent segment placed after what is in use; it turns red when it would not fit in what
is available.

The widget only renders: the numbers come from the core, and it keeps no other state than
the last snapshot, the ghost and the short history for the sparklines.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QPoint, QRectF, QSize, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFontMetrics,
    QHelpEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPalette,
    QPen,
)
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from launcher.hardware import MemorySnapshot, PoolSnapshot

GIB = 1 << 30

# Distinct, colour-blind-friendly hues for models (Okabe-Ito, minus black/grey).
MODEL_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
OTHER_COLOUR = "#8c8c8c"
GHOST_OK_COLOUR = "#2f81f7"
GHOST_BAD_COLOUR = "#d1242f"

PAD = 8
TITLE_GAP = 4
BAR_HEIGHT = 22
ROW_GAP = 10
SPARK_WIDTH = 96
LEGEND_HEIGHT = 18


def fmt_gib(n: int | None) -> str:
    """Bytes as GiB with one decimal ("unknown" for None)."""
    if n is None:
        return "unknown"
    return f"{n / GIB:.1f} GiB"


@dataclass(frozen=True)
class Segment:
    """One drawn piece of a bar (kind: "model", "other", "reclaimable", "free", "ghost")."""

    pool: str
    kind: str
    label: str
    bytes: int
    rect: QRectF
    colour: QColor


class MemoryGaugeWidget(QWidget):
    """Bars per memory pool with per-model segments, a ghost for a planned model, sparklines."""

    def __init__(self, parent: QWidget | None = None, history_seconds: int = 300) -> None:
        super().__init__(parent)
        self.setObjectName("memoryGauge")
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._snapshot: MemorySnapshot | None = None
        self._ghost_label: str | None = None
        self._ghost: dict[str, int] = {}
        self._history_seconds = history_seconds
        self._history: dict[str, deque[tuple[float, float]]] = {}
        self._colours: dict[str, QColor] = {}
        self._segments: list[Segment] = []
        self.setAccessibleName("Memory gauge")

    # ------------------------------------------------------------------ inputs

    def on_snapshot_taken(self, snapshot: object) -> None:
        """Show a new ``MemorySnapshot`` (slot for ``SamplerWorker.snapshot_taken``)."""
        if not isinstance(snapshot, MemorySnapshot):
            return
        self._snapshot = snapshot
        cutoff = snapshot.taken_at - self._history_seconds
        for pool in snapshot.pools:
            hist = self._history.setdefault(pool.name, deque())
            if pool.total > 0:
                hist.append((snapshot.taken_at, pool.used / pool.total))
            while hist and hist[0][0] < cutoff:
                hist.popleft()
        self._relayout()

    set_snapshot = on_snapshot_taken

    def set_ghost(self, label: str | None, bytes_per_pool: dict[str, int] | None) -> None:
        """Show (or with ``None``, clear) a planned model's footprint, bytes per pool name."""
        if not bytes_per_pool or not label:
            self._ghost_label, self._ghost = None, {}
        else:
            self._ghost_label, self._ghost = label, {k: int(v) for k, v in bytes_per_pool.items()}
        self._relayout()

    # ------------------------------------------------------------------ queries (tests, a11y)

    @property
    def snapshot(self) -> MemorySnapshot | None:
        return self._snapshot

    def segments(self, pool: str | None = None) -> list[Segment]:
        """The segments as last laid out (all pools, or one pool by name)."""
        return [s for s in self._segments if pool is None or s.pool == pool]

    def model_labels(self, pool: str) -> list[str]:
        return [s.label for s in self.segments(pool) if s.kind == "model"]

    def ghost_fits(self, pool: str) -> bool | None:
        """Whether the ghost fits in the pool's available memory (None: no ghost there)."""
        snap = self._pool(pool)
        need = self._ghost.get(pool)
        if snap is None or need is None:
            return None
        return need <= snap.available

    def model_colour(self, label: str) -> QColor:
        """The stable colour of a model's segment (same label, same colour)."""
        colour = self._colours.get(label)
        if colour is None:
            colour = QColor(MODEL_COLOURS[len(self._colours) % len(MODEL_COLOURS)])
            self._colours[label] = colour
        return colour

    def pool_tooltip(self, pool: str) -> str:
        """Exact figures for one pool, as the hover tooltip shows them."""
        p = self._pool(pool)
        if p is None:
            return ""
        lines = [f"<b>{p.name}</b>: {fmt_gib(p.used)} of {fmt_gib(p.total)} in use"]
        for label, n in p.models.items():
            lines.append(f"{label}: {fmt_gib(n)} ({n:,} bytes)")
        lines.append(f"Other programs and the system: {fmt_gib(p.other)}")
        if p.reclaimable:
            lines.append(f"Cache the system can free: {fmt_gib(p.reclaimable)}")
        lines.append(f"Free: {fmt_gib(p.free)}")
        lines.append(f"Available to a new model: {fmt_gib(p.available)}")
        if p.gpu_held is not None:
            lines.append(f"GPU memory held by all processes: {fmt_gib(p.gpu_held)}")
        need = self._ghost.get(p.name)
        if need is not None:
            verdict = "fits" if need <= p.available else "does NOT fit"
            lines.append(f"Planned {self._ghost_label}: {fmt_gib(need)}, {verdict}")
        return "<br>".join(lines)

    def tooltip_at(self, pos: QPoint) -> str:
        """The tooltip for a point in the widget (the segment under it, then its pool)."""
        for seg in reversed(self._segments):  # the ghost is drawn last, on top
            if seg.rect.adjusted(0, -1, 0, 1).contains(pos.toPointF()):
                head = f"{seg.label}: {fmt_gib(seg.bytes)}"
                return f"{head}<hr>{self.pool_tooltip(seg.pool)}"
        for name, rect in self._rows():
            if self._spark_rect(rect).contains(pos.toPointF()):
                return self.history_tooltip(name)
            if rect.contains(pos.toPointF()):
                return self.pool_tooltip(name)
        return ""

    def history_tooltip(self, pool: str) -> str:
        """What the sparkline shows, in words."""
        hist = self._history.get(pool)
        minutes = self._history_seconds / 60
        if not hist:
            return f"{pool}: share in use over the last {minutes:.0f} minutes (no data yet)"
        shares = [f for _, f in hist]
        return (
            f"{pool}: share in use over the last {minutes:.0f} minutes<br>"
            f"now {shares[-1]:.0%}, lowest {min(shares):.0%}, highest {max(shares):.0%}"
        )

    # ------------------------------------------------------------------ layout

    def _pool(self, name: str) -> PoolSnapshot | None:
        return self._snapshot.pool(name) if self._snapshot else None

    def _pools(self) -> tuple[PoolSnapshot, ...]:
        return self._snapshot.pools if self._snapshot else ()

    def _title_height(self) -> int:
        return QFontMetrics(self.font()).height()

    def _row_height(self) -> int:
        return self._title_height() + TITLE_GAP + BAR_HEIGHT + ROW_GAP

    def _rows(self) -> list[tuple[str, QRectF]]:
        """(pool name, whole row rect) for each pool."""
        out = []
        y = float(PAD)
        for p in self._pools():
            out.append((p.name, QRectF(PAD, y, self.width() - 2 * PAD, self._row_height())))
            y += self._row_height()
        return out

    def _bar_rect(self, row: QRectF) -> QRectF:
        top = row.top() + self._title_height() + TITLE_GAP
        width = max(40.0, row.width() - SPARK_WIDTH - PAD)
        return QRectF(row.left(), top, width, BAR_HEIGHT)

    def _spark_rect(self, row: QRectF) -> QRectF:
        bar = self._bar_rect(row)
        return QRectF(bar.right() + PAD, bar.top(), row.right() - bar.right() - PAD, BAR_HEIGHT)

    def sizeHint(self) -> QSize:
        rows = max(1, len(self._pools()))
        return QSize(520, 2 * PAD + rows * self._row_height() + LEGEND_HEIGHT)

    def minimumSizeHint(self) -> QSize:
        return QSize(240, self.sizeHint().height())

    def resizeEvent(self, event: object) -> None:
        self._layout_segments()
        super().resizeEvent(event)  # type: ignore[arg-type]

    def _relayout(self) -> None:
        self.updateGeometry()
        self._layout_segments()
        self.update()

    def _layout_segments(self) -> None:
        pal = self.palette()
        segs: list[Segment] = []
        for name, row in self._rows():
            p = self._pool(name)
            if p is None or p.total <= 0:
                continue
            bar = self._bar_rect(row)
            parts: list[tuple[str, str, int, QColor]] = [
                ("model", label, n, self.model_colour(label)) for label, n in p.models.items()
            ]
            parts.append(("other", "Other programs and the system", p.other, QColor(OTHER_COLOUR)))
            cache = QColor(OTHER_COLOUR)
            cache.setAlpha(90)
            parts.append(("reclaimable", "Cache the system can free", p.reclaimable, cache))
            parts.append(("free", "Free", p.free, pal.color(QPalette.ColorRole.Base)))
            # The OS figures are read at slightly different instants; scale so they fill the
            # bar exactly rather than overflow it.
            scale = bar.width() / max(p.total, sum(max(0, n) for _, _, n, _ in parts))
            x = bar.left()
            used_end = bar.left()
            for kind, label, n, colour in parts:
                w = max(0, n) * scale
                segs.append(
                    Segment(name, kind, label, n, QRectF(x, bar.top(), w, BAR_HEIGHT), colour)
                )
                x += w
                if kind in ("model", "other"):
                    used_end = x
            need = self._ghost.get(name)
            if need and self._ghost_label:
                fits = need <= p.available
                w = min(need * scale, bar.right() - used_end)
                colour = QColor(GHOST_OK_COLOUR if fits else GHOST_BAD_COLOUR)
                segs.append(
                    Segment(
                        name,
                        "ghost",
                        f"{self._ghost_label} (planned)",
                        need,
                        QRectF(used_end, bar.top(), max(2.0, w), BAR_HEIGHT),
                        colour,
                    )
                )
        self._segments = segs

    # ------------------------------------------------------------------ painting

    def event(self, e: QEvent) -> bool:
        if e.type() == QEvent.Type.ToolTip and isinstance(e, QHelpEvent):
            text = self.tooltip_at(e.pos())
            if text:
                QToolTip.showText(e.globalPos(), text, self)
            else:
                QToolTip.hideText()
                e.ignore()
            return True
        return super().event(e)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        text = pal.color(QPalette.ColorRole.WindowText)
        muted = QColor(text)
        muted.setAlpha(150)
        fm = QFontMetrics(self.font())
        if not self._pools():
            painter.setPen(muted)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Reading memory…")
            painter.end()
            return
        for name, row in self._rows():
            p = self._pool(name)
            if p is None:
                continue
            title = f"{p.name}"
            figures = (
                f"{fmt_gib(p.used)} of {fmt_gib(p.total)} in use · {fmt_gib(p.available)} available"
            )
            painter.setPen(text)
            font = painter.font()
            font.setBold(True)
            painter.setFont(font)
            painter.drawText(int(row.left()), int(row.top() + fm.ascent()), title)
            title_w = QFontMetrics(font).horizontalAdvance(title + "  ")
            font.setBold(False)
            painter.setFont(font)
            painter.setPen(muted)
            right = int(self._bar_rect(row).right())
            painter.drawText(
                int(row.left() + title_w),
                int(row.top() + fm.ascent()),
                fm.elidedText(
                    figures, Qt.TextElideMode.ElideRight, max(0, right - int(row.left() + title_w))
                ),
            )
            self._paint_bar(painter, name, self._bar_rect(row))
            self._paint_sparkline(painter, name, self._spark_rect(row))
        self._paint_legend(painter)
        painter.end()

    def _paint_bar(self, painter: QPainter, pool: str, bar: QRectF) -> None:
        pal = self.palette()
        frame = QColor(pal.color(QPalette.ColorRole.WindowText))
        frame.setAlpha(80)
        clip = QPainterPath()
        clip.addRoundedRect(bar, 4, 4)
        painter.save()
        painter.setClipPath(clip)
        painter.fillRect(bar, pal.color(QPalette.ColorRole.Base))
        fm = QFontMetrics(self.font())
        for seg in self.segments(pool):
            if seg.kind == "ghost":
                self._paint_ghost(painter, seg)
                continue
            if seg.rect.width() <= 0:
                continue
            painter.fillRect(seg.rect, seg.colour)
            if seg.kind == "reclaimable":
                painter.fillRect(seg.rect, QBrush(QColor(OTHER_COLOUR), Qt.BrushStyle.BDiagPattern))
            if seg.kind == "model":
                label = fm.elidedText(
                    seg.label, Qt.TextElideMode.ElideRight, int(seg.rect.width() - 6)
                )
                if label and label != "…":
                    painter.setPen(QColor("white"))
                    painter.drawText(
                        seg.rect.adjusted(3, 0, -3, 0), Qt.AlignmentFlag.AlignVCenter, label
                    )
            # a thin divider between segments
            painter.setPen(QPen(pal.color(QPalette.ColorRole.Base), 1))
            painter.drawLine(seg.rect.topRight(), seg.rect.bottomRight())
        painter.restore()
        painter.setPen(QPen(frame, 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(bar, 4, 4)

    def _paint_ghost(self, painter: QPainter, seg: Segment) -> None:
        fill = QColor(seg.colour)
        fill.setAlpha(70)
        painter.fillRect(seg.rect, fill)
        hatch = QColor(seg.colour)
        hatch.setAlpha(200)
        painter.fillRect(seg.rect, QBrush(hatch, Qt.BrushStyle.FDiagPattern))
        painter.setPen(QPen(seg.colour, 1.5, Qt.PenStyle.DashLine))
        painter.drawRect(seg.rect.adjusted(0.75, 0.75, -0.75, -0.75))

    def _paint_sparkline(self, painter: QPainter, pool: str, rect: QRectF) -> None:
        hist = self._history.get(pool)
        pal = self.palette()
        frame = QColor(pal.color(QPalette.ColorRole.WindowText))
        frame.setAlpha(50)
        painter.setPen(QPen(frame, 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(rect)
        if not hist or rect.width() < 10:
            return
        now = hist[-1][0]
        span = float(self._history_seconds)
        path = QPainterPath()
        first_x = rect.right()
        for i, (t, frac) in enumerate(hist):
            x = max(rect.left(), rect.right() - (now - t) / span * rect.width())
            y = rect.bottom() - max(0.0, min(1.0, frac)) * rect.height()
            if i == 0:
                path.moveTo(x, y)
                first_x = x
            else:
                path.lineTo(x, y)
        if len(hist) == 1:
            path.lineTo(rect.right() - 2, path.currentPosition().y())
        line = pal.color(QPalette.ColorRole.Highlight)
        area = QPainterPath(path)
        area.lineTo(path.currentPosition().x(), rect.bottom())
        area.lineTo(first_x, rect.bottom())
        area.closeSubpath()
        fill = QColor(line)
        fill.setAlpha(50)
        painter.fillPath(area, fill)
        painter.setPen(QPen(line, 1.5))
        painter.drawPath(path)

    def _paint_legend(self, painter: QPainter) -> None:
        fm = QFontMetrics(self.font())
        y = PAD + len(self._pools()) * self._row_height()
        x = float(PAD)
        items: list[tuple[str, QColor, str]] = []
        seen: set[str] = set()
        for seg in self._segments:
            if seg.kind == "model" and seg.label not in seen:
                seen.add(seg.label)
                items.append((seg.label, seg.colour, "solid"))
        items.append(("other", QColor(OTHER_COLOUR), "solid"))
        items.append(("cache", QColor(OTHER_COLOUR), "cache"))
        items.append(("free", self.palette().color(QPalette.ColorRole.Base), "solid"))
        if self._ghost_label:
            bad = any(
                s.kind == "ghost" and s.colour == QColor(GHOST_BAD_COLOUR) for s in self._segments
            )
            items.append(
                (
                    f"{self._ghost_label} (planned{', does not fit' if bad else ''})",
                    QColor(GHOST_BAD_COLOUR if bad else GHOST_OK_COLOUR),
                    "ghost",
                )
            )
        text = self.palette().color(QPalette.ColorRole.WindowText)
        for label, colour, style in items:
            box = QRectF(x, y + (LEGEND_HEIGHT - 10) / 2, 10, 10)
            if style == "ghost":
                fill = QColor(colour)
                fill.setAlpha(70)
                painter.fillRect(box, fill)
                painter.fillRect(box, QBrush(colour, Qt.BrushStyle.FDiagPattern))
            else:
                c = QColor(colour)
                if style == "cache":
                    c.setAlpha(90)
                painter.fillRect(box, c)
                if style == "cache":
                    painter.fillRect(box, QBrush(QColor(OTHER_COLOUR), Qt.BrushStyle.BDiagPattern))
            border = QColor(text)
            border.setAlpha(80)
            painter.setPen(QPen(border, 1))
            painter.drawRect(box)
            painter.setPen(text)
            painter.drawText(
                int(x + 14), int(y + (LEGEND_HEIGHT + fm.ascent() - fm.descent()) / 2), label
            )
            x += 14 + fm.horizontalAdvance(label) + 14
            if x > self.width() - PAD:
                break


def _demo(path: str) -> None:
    """Render the gauge for the recorded DGX Spark and RTX 4090 machines into ``path``.

    ``QT_QPA_PLATFORM=offscreen python -m ui.widgets.memory_gauge docs/memory-gauge.png``
    """
    import dataclasses
    import json
    from pathlib import Path

    from PySide6.QtWidgets import QApplication, QLabel, QVBoxLayout

    from launcher.hardware import MemorySampler, probe
    from launcher.hardware.adapters import ReplayAdapters

    data = Path(__file__).resolve().parents[2] / "tests" / "core" / "data" / "hardware"
    app = QApplication.instance() or QApplication([])
    page = QWidget()
    layout = QVBoxLayout(page)
    for machine, title, pid, label, ghost_label, ghost in (
        (
            "dgx_spark_gb10",
            "DGX Spark (GB10)",
            4242,
            "Qwen3 32B Q8_0",
            "Llama 3.3 70B Q4",
            42 * GIB,
        ),
        (
            "rtx4090_desktop",
            "RTX 4090 + 64 GB",
            5151,
            "Llama 3.1 8B Q8_0",
            "Qwen3 32B Q4",
            19 * GIB,
        ),
    ):
        ad = ReplayAdapters(json.loads((data / f"{machine}.json").read_text()))
        sampler = MemorySampler(probe(ad), ad)
        sampler.track(pid, label)
        gauge = MemoryGaugeWidget()
        snap = sampler.sample()
        for i in range(150, 0, -1):  # a history so the sparkline has a shape: model loads
            share = 0.0 if i > 90 else min(1.0, (90 - i) / 20)
            pools = tuple(
                dataclasses.replace(
                    p, available=p.available + int((1 - share) * sum(p.models.values()))
                )
                for p in snap.pools
            )
            gauge.on_snapshot_taken(MemorySnapshot(taken_at=snap.taken_at - i * 2, pools=pools))
        gauge.on_snapshot_taken(snap)
        gauge.set_ghost(ghost_label, {snap.pools[0].name: ghost})
        layout.addWidget(QLabel(f"<b>{title}</b> (recorded readings, planned model as a ghost)"))
        layout.addWidget(gauge)
    page.resize(760, page.sizeHint().height())
    page.show()
    app.processEvents()
    page.grab().save(path)
    page.close()


if __name__ == "__main__":
    import sys

    _demo(sys.argv[1] if len(sys.argv) > 1 else "memory-gauge.png")
