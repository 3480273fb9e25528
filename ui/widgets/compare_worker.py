"""``CompareRunner``: runs a ``ComparisonJob`` (or a ``JudgeJob``) on its own ``QThread`` and
relays its events.

Why not ``ui.workers.ModelHost``: that worker drives one engine; a comparison drives several
in an order (resident or one after another, one at a time or at once) that is core logic,
owned by ``launcher.compare.ComparisonSession``. This worker only iterates the job's event
stream and relays it. It follows the same rules: tokens coalesced to ~30 emissions a second,
stop is a flag set directly on the core (``job.cancel()``), and shutdown is stop flag,
``quit()``, ``wait()`` (the session ends its model hosts itself when its stream ends).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from typing import Any, Protocol

from PySide6.QtCore import QObject, QThread, Signal, Slot

from launcher.compare import RunToken
from ui.workers import TOKEN_BATCH_INTERVAL_S, user_message


class Job(Protocol):
    """A comparison or a judge job: events from ``run()``, ``cancel()`` a flag."""

    def run(self) -> Iterator[Any]: ...

    def cancel(self) -> None: ...


class _CompareWorker(QObject):
    event_received = Signal(object)  # every event but tokens (Planned, RunDone, SessionDone, ...)
    tokens_received = Signal(str, str, str)  # label, prompt id, text (coalesced)
    failed = Signal(str)
    finished = Signal()

    @Slot(object)
    def on_run(self, job: Job) -> None:
        pending: dict[tuple[str, str], list[str]] = {}
        last = 0.0

        def flush() -> None:
            for (label, prompt), parts in pending.items():
                if parts:
                    self.tokens_received.emit(label, prompt, "".join(parts))
            pending.clear()

        try:
            for ev in job.run():
                if isinstance(ev, RunToken):
                    pending.setdefault((ev.label, ev.prompt_id), []).append(ev.text)
                    now = time.monotonic()
                    if now - last >= TOKEN_BATCH_INTERVAL_S:
                        flush()
                        last = now
                    continue
                flush()
                self.event_received.emit(ev)
        except Exception as exc:
            flush()
            if not hasattr(exc, "__module__") or not type(exc).__module__.startswith("launcher"):
                traceback.print_exception(exc)
            self.failed.emit(user_message(exc))
        finally:
            self.finished.emit()


class CompareRunner(QObject):
    """GUI-side owner of the comparison worker and its thread. One job at a time."""

    event_received = Signal(object)
    tokens_received = Signal(str, str, str)
    failed = Signal(str)
    finished = Signal()
    _run_requested = Signal(object)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("compare worker")
        self._worker = _CompareWorker()
        self._worker.moveToThread(self._thread)
        self._run_requested.connect(self._worker.on_run)
        self._worker.event_received.connect(self.event_received)
        self._worker.tokens_received.connect(self.tokens_received)
        self._worker.failed.connect(self.failed)
        self._worker.finished.connect(self._on_finished)
        self.job: Job | None = None
        self._shut_down = False
        self._thread.start()

    @property
    def running(self) -> bool:
        return self.job is not None

    def start(self, job: Job) -> None:
        if self.job is not None:
            raise RuntimeError("a comparison is already running")
        self.job = job
        self._run_requested.emit(job)

    def stop(self) -> None:
        """Stop now: a flag on the core, read between tokens (never a queued signal)."""
        if self.job is not None:
            self.job.cancel()

    @Slot()
    def _on_finished(self) -> None:
        self.job = None
        self.finished.emit()

    def shutdown(self) -> None:
        """Stop flag, quit, wait. Safe to call twice."""
        if self._shut_down:
            return
        self._shut_down = True
        self.stop()
        self._thread.quit()
        self._thread.wait()
