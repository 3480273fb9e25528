"""``SamplerWorker``: takes memory snapshots on its own thread and hands them to the GUI.

The worker owns a ``launcher.hardware.MemorySampler`` and a ``QTimer`` that lives on the
worker's ``QThread``; every tick it samples (file reads and NVML calls, never on the GUI
thread) and emits ``snapshot_taken(MemorySnapshot)``, which a queued connection delivers to
the gauge. ``stop()`` follows the project's shutdown order: stop the timer on its own thread,
``quit()``, ``wait()``; nothing is left running.

Usage (in the composition root)::

    worker = SamplerWorker(MemorySampler(profile))
    worker.snapshot_taken.connect(gauge.on_snapshot_taken)
    worker.start()
    ...
    worker.stop()
"""

from __future__ import annotations

from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, QTimer, Signal, Slot

from launcher.hardware import MemorySampler


class SamplerWorker(QObject):
    """Samples memory at a fixed interval (default 1 Hz) on a dedicated thread."""

    snapshot_taken = Signal(object)  # launcher.hardware.MemorySnapshot
    failed = Signal(str)

    def __init__(self, sampler: MemorySampler, interval_ms: int = 1000) -> None:
        super().__init__()
        self._sampler = sampler
        self._interval_ms = interval_ms
        self._timer: QTimer | None = None
        self._thread = QThread()
        self._thread.setObjectName("memory-sampler")
        self.moveToThread(self._thread)
        self._thread.started.connect(self._on_thread_started)

    @property
    def sampler(self) -> MemorySampler:
        return self._sampler

    def start(self) -> None:
        """Start sampling; the first snapshot comes right away."""
        if not self._thread.isRunning():
            self._thread.start()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    @Slot()
    def _on_thread_started(self) -> None:
        # Created here so the timer belongs to (and fires on) the worker thread.
        self._timer = QTimer()
        self._timer.setInterval(self._interval_ms)
        self._timer.timeout.connect(self.on_tick)
        self._timer.start()
        self.on_tick()

    @Slot()
    def on_tick(self) -> None:
        try:
            snapshot = self._sampler.sample()
        except Exception as exc:  # a sampler bug must not kill the thread silently
            self.failed.emit(f"Memory sampling failed: {type(exc).__name__}: {exc}")
            return
        self.snapshot_taken.emit(snapshot)

    @Slot()
    def _on_stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer.deleteLater()
            self._timer = None
        self._sampler.close()
        self._thread.quit()

    def stop(self) -> None:
        """Stop the timer (on its own thread), quit the thread and wait for it to end."""
        if not self._thread.isRunning():
            return
        QMetaObject.invokeMethod(self, "_on_stop", Qt.ConnectionType.BlockingQueuedConnection)
        self._thread.wait()
