"""Chat UI responsiveness: event-loop stalls while a fast model streams into a long chat.

A fake engine streams 1,000 tokens/s (on the model host worker thread, as the real engine
does) into a chat pane whose conversation already holds 50,000 tokens. A 1 ms timer on the
GUI thread measures how late the event loop gets to it (a stall); the same timer with no
streaming, measured in the same run, is the reference. Target: p99 stall under 16 ms.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import percentile, table

TITLE = "Chat UI responsiveness while streaming 1,000 tokens/s into a 50,000-token chat"
HISTORY_TOKENS = 50_000
TOKENS_PER_S = 1000
STREAM_S = 4.0


@dataclass
class Token:
    text: str


@dataclass
class ReplyFinished:
    metrics: dict[str, Any] = field(default_factory=dict)


class _Loaded:
    pid = 0
    rss_bytes = 300 * 2**20


class FastEngine:
    """Streams Markdown-ish words at ``TOKENS_PER_S`` until ``STREAM_S`` has passed."""

    def __init__(self) -> None:
        self._cancel = threading.Event()

    def load(self, path: str, plan: Any = None, on_progress: Any = None) -> _Loaded:
        return _Loaded()

    def chat(self, messages: Any, sampling: Any = None) -> Iterator[object]:
        words = ["The ", "**quick** ", "brown ", "fox ", "jumps ", "over ", "`lazy` ", "dogs. "]
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < STREAM_S and not self._cancel.is_set():
            target = start + n / TOKENS_PER_S
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            yield Token(words[n % len(words)] + ("\n\n" if n % 120 == 119 else ""))
            n += 1
        yield ReplyFinished({"generated_tokens": n, "decode_tokens_per_s": n / STREAM_S})

    def cancel(self) -> None:
        self._cancel.set()

    def unload(self) -> None:
        pass


def _measure(app: Any, seconds: float, while_cond: Any = None) -> list[float]:
    """Lateness (ms) of a 1 ms repeating timer on the GUI thread."""
    from PySide6.QtCore import QEventLoop, QTimer

    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(max(0.0, (now - last[0]) * 1000 - 1.0))
        last[0] = now

    timer = QTimer()
    timer.setInterval(1)
    timer.timeout.connect(tick)
    loop = QEventLoop()
    stop = QTimer()
    stop.setSingleShot(True)
    stop.timeout.connect(loop.quit)
    timer.start()
    stop.start(int(seconds * 1000))
    loop.exec()
    timer.stop()
    return gaps[1:]


def run() -> str:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from launcher.chats import ChatStore, Conversation
    from ui.models.chat_session import ChatSession
    from ui.models.library import LocalModelModel
    from ui.models.rows import LocalModelRow
    from ui.views.chat import ChatView
    from ui.workers import ModelHost

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        store = ChatStore(Path(tmp))
        conv = Conversation()
        words_per_msg = 500
        sentence = "Some **history** with `code` and words that fill the context. "
        for i in range(HISTORY_TOKENS // words_per_msg):
            role = "user" if i % 2 == 0 else "assistant"
            conv.add(role, (sentence * (words_per_msg // 10)).strip())
        store.save(conv)
        engine = FastEngine()
        session = ChatSession(store, lambda: ModelHost(engine))
        models = LocalModelModel()
        models.set_rows([LocalModelRow("/fake.gguf", "fake.gguf", 1, "Spark Launcher", True)])
        view = ChatView(session, models)
        view.resize(1280, 800)
        view.show()
        t0 = time.perf_counter()
        session.open_conversation(conv.id)
        app.processEvents()
        open_ms = (time.perf_counter() - t0) * 1000
        session.load_model("/fake.gguf")
        while session.state != "ready":
            app.processEvents()
        idle = _measure(app, 2.0)
        session.send("Go")
        streaming = _measure(app, STREAM_S)
        while session.busy:
            app.processEvents()
        flushes = view.transcript.flush_count
        reply_tokens = (session.conversation.messages[-1].metrics or {}).get("generated_tokens", 0)
        session.shutdown()
        view.close()
        view.deleteLater()
        app.processEvents()

    rows = [
        ("idle event loop (reference)", percentile(idle, 50), percentile(idle, 99), max(idle)),
        (
            "streaming 1,000 tok/s",
            percentile(streaming, 50),
            percentile(streaming, 99),
            max(streaming),
        ),
    ]
    ratio = percentile(streaming, 99) / max(percentile(idle, 99), 0.01)
    body = table(["Event loop", "p50 stall (ms)", "p99 stall (ms)", "max stall (ms)"], rows)
    verdict = "meets" if percentile(streaming, 99) < 16 else "misses"
    return (
        f"{body}\n\n"
        f"History: {HISTORY_TOKENS:,} tokens ({len(conv.messages)} messages), opened in "
        f"{open_ms:.0f} ms. Streamed {reply_tokens:,} tokens in {STREAM_S:.0f} s with "
        f"{flushes} transcript updates ({flushes / STREAM_S:.0f}/s, cap 30/s). "
        f"p99 stall while streaming is {ratio:.1f}x the idle reference and {verdict} the "
        "16 ms target."
    )
