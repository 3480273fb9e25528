"""The memory gauge and its sampler worker, as a user sees them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QPoint
from PySide6.QtGui import QColor, QHelpEvent
from PySide6.QtWidgets import QApplication, QToolTip

from launcher.hardware import MemorySampler, MemorySnapshot, PoolSnapshot, probe
from launcher.hardware.adapters import ReplayAdapters
from ui.sampler_worker import SamplerWorker
from ui.widgets.memory_gauge import GHOST_BAD_COLOUR, MemoryGaugeWidget

GIB = 1 << 30
DATA = Path(__file__).resolve().parent.parent / "core" / "data" / "hardware"


def unified(models: dict[str, int], taken_at: float = 1000.0) -> MemorySnapshot:
    held = sum(models.values())
    total, available, free = 128 * GIB, 100 * GIB - held, 60 * GIB - held
    pool = PoolSnapshot(
        name="Unified memory",
        kind="unified",
        total=total,
        available=available,
        free=free,
        reclaimable=available - free,
        other=total - available - held,
        models=models,
        gpu_held=held,
    )
    return MemorySnapshot(taken_at=taken_at, pools=(pool,))


@pytest.fixture
def gauge(qtbot) -> MemoryGaugeWidget:  # type: ignore[no-untyped-def]
    w = MemoryGaugeWidget()
    qtbot.addWidget(w)
    w.resize(640, w.sizeHint().height())
    w.show()
    qtbot.waitExposed(w)
    return w


def pixel_at_centre(w: MemoryGaugeWidget, kind: str, label: str | None = None) -> QColor:
    seg = next(s for s in w.segments() if s.kind == kind and (label is None or s.label == label))
    image = w.grab().toImage()
    ratio = image.devicePixelRatio()
    c = seg.rect.center()
    return image.pixelColor(int(c.x() * ratio), int(c.y() * ratio))


def test_a_loaded_model_gets_its_own_coloured_segment_and_loses_it_when_unloaded(
    gauge: MemoryGaugeWidget,
) -> None:
    gauge.on_snapshot_taken(unified({"Qwen3 32B": 20 * GIB}))
    assert gauge.model_labels("Unified memory") == ["Qwen3 32B"]
    colour = gauge.model_colour("Qwen3 32B")
    drawn = pixel_at_centre(gauge, "model", "Qwen3 32B")
    assert abs(drawn.red() - colour.red()) < 40 and abs(drawn.blue() - colour.blue()) < 40

    gauge.on_snapshot_taken(unified({}, taken_at=1001.0))
    assert gauge.model_labels("Unified memory") == []
    assert [s.kind for s in gauge.segments()] == ["other", "reclaimable", "free"]


def test_discrete_machine_shows_a_vram_bar_and_a_ram_bar(gauge: MemoryGaugeWidget) -> None:
    ad = ReplayAdapters(json.loads((DATA / "rtx4090_desktop.json").read_text()))
    sampler = MemorySampler(probe(ad), ad)
    sampler.track(5151, "Llama 3.1 8B")
    gauge.on_snapshot_taken(sampler.sample())
    assert gauge.model_labels("VRAM: NVIDIA GeForce RTX 4090") == ["Llama 3.1 8B"]
    assert gauge.model_labels("System RAM") == ["Llama 3.1 8B"]
    vram = gauge.segments("VRAM: NVIDIA GeForce RTX 4090")
    ram = gauge.segments("System RAM")
    assert vram[0].rect.top() < ram[0].rect.top()  # two bars, stacked
    assert gauge.sizeHint().height() > 2 * vram[0].rect.height()


def test_ghost_shows_a_planned_model_and_turns_red_when_it_does_not_fit(
    gauge: MemoryGaugeWidget,
) -> None:
    gauge.on_snapshot_taken(unified({"Qwen3 32B": 20 * GIB}))  # 80 GiB available
    gauge.set_ghost("Llama 70B", {"Unified memory": 40 * GIB})
    ghost = [s for s in gauge.segments() if s.kind == "ghost"]
    assert len(ghost) == 1 and gauge.ghost_fits("Unified memory") is True
    model = gauge.segments("Unified memory")[0]
    assert ghost[0].rect.left() > model.rect.right()  # after what is already in use
    assert "Llama 70B: 40.0 GiB, fits" in gauge.pool_tooltip("Unified memory")

    gauge.set_ghost("Llama 405B", {"Unified memory": 230 * GIB})
    assert gauge.ghost_fits("Unified memory") is False
    (ghost_seg,) = [s for s in gauge.segments() if s.kind == "ghost"]
    assert ghost_seg.colour == QColor(GHOST_BAD_COLOUR)
    drawn = pixel_at_centre(gauge, "ghost")
    assert drawn.red() > drawn.blue()  # red-tinted on screen
    assert "does NOT fit" in gauge.pool_tooltip("Unified memory")

    gauge.set_ghost(None, None)
    assert not [s for s in gauge.segments() if s.kind == "ghost"]


# The offscreen platform cannot raise() the tooltip window; the tooltip still shows.
@pytest.mark.qt_log_ignore("This plugin does not support raise")
def test_hovering_a_segment_shows_its_exact_numbers(gauge: MemoryGaugeWidget, qtbot) -> None:  # type: ignore[no-untyped-def]
    gauge.on_snapshot_taken(unified({"Gemma 3 270M": 300 * (1 << 20)}))
    seg = next(s for s in gauge.segments() if s.kind == "other")
    pos = seg.rect.center().toPoint()
    text = gauge.tooltip_at(pos)
    assert text.startswith("Other programs and the system:")
    assert "Gemma 3 270M: 0.3 GiB (314,572,800 bytes)" in text
    assert "Available to a new model: 99.7 GiB" in text

    event = QHelpEvent(QEvent.Type.ToolTip, pos, gauge.mapToGlobal(pos))
    QApplication.sendEvent(gauge, event)
    qtbot.waitUntil(QToolTip.isVisible)
    assert "Other programs and the system" in QToolTip.text()
    QToolTip.hideText()
    assert gauge.tooltip_at(QPoint(-5, -5)) == ""


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12")
def test_repainting_for_minutes_does_not_wear_down_python(gauge: MemoryGaugeWidget) -> None:
    # PySide6 6.12.0 dropped a reference to None on every void call under Python 3.11, so
    # the app aborted after a few minutes of gauge updates (hence the pin in constraints.txt).
    gauge.on_snapshot_taken(unified({"A": GIB}))
    gauge.repaint()
    before = sys.getrefcount(None)
    for i in range(100):
        gauge.on_snapshot_taken(unified({"A": GIB}, taken_at=1001.0 + i))
        gauge.set_ghost("B", {"Unified memory": 2 * GIB})
        gauge.repaint()
    assert sys.getrefcount(None) > before - 500


def test_sparkline_keeps_only_the_last_minutes(gauge: MemoryGaugeWidget) -> None:
    for t in range(0, 400, 10):
        gauge.on_snapshot_taken(unified({}, taken_at=1000.0 + t))
    hist = gauge._history["Unified memory"]
    assert hist[-1][0] - hist[0][0] <= 300
    spark = gauge._spark_rect(gauge._rows()[0][1])
    text = gauge.tooltip_at(spark.center().toPoint())
    assert "over the last 5 minutes" in text and "now 22%" in text


def test_sampler_worker_feeds_the_gauge_from_its_own_thread_and_stops_cleanly(
    gauge: MemoryGaugeWidget, qtbot
) -> None:  # type: ignore[no-untyped-def]
    worker = SamplerWorker(MemorySampler(probe()), interval_ms=50)
    worker.snapshot_taken.connect(gauge.on_snapshot_taken)  # queued: the gauge's thread
    try:
        worker.start()
        qtbot.waitUntil(lambda: gauge.snapshot is not None, timeout=10_000)
        first = gauge.snapshot
        assert first is not None and first.pools[0].name == "System RAM"
        assert gauge.model_labels("System RAM") == []
        # it keeps ticking
        qtbot.waitUntil(lambda: gauge.snapshot is not first, timeout=10_000)
        assert worker.is_running()
    finally:
        worker.stop()
    assert not worker.is_running()
    worker.stop()  # a second stop is harmless
