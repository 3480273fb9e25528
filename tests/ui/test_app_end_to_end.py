"""The whole app with real parts: loopback Hub, real downloads, real llama.cpp, live gauge.

Start with an empty models folder, find the test model on the (loopback) Hub, click
Download, watch it complete and verify, click Chat, send a message, receive streamed text
with metrics, stop a reply, unload; the gauge shows the model's segment only while loaded.
Closing the window leaves no thread or process behind.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from launcher.hardware import probe
from launcher.paths import AppPaths
from tests.support.hub_fixtures import GEMMA_FILE, GEMMA_REPO
from ui.app import AppContext
from ui.models.library import DownloadRole

pytestmark = pytest.mark.slow


def _gauge_labels(ctx: AppContext) -> set[str]:
    snap = ctx.gauge.snapshot
    if snap is None:
        return set()
    return {label for pool in snap.pools for label in ctx.gauge.model_labels(pool.name)}


def test_download_chat_stop_unload_with_real_parts(qtbot, app_home, gemma_repo) -> None:
    ctx = AppContext(AppPaths.default(), profile=probe())
    window = ctx.window
    qtbot.addWidget(window)
    window.show()
    ctx.start()
    try:
        d = ctx.discover
        qtbot.waitUntil(lambda: d.model.rowCount() > 0, timeout=20000)  # offline catalog
        assert ctx.local_models.rowCount() == 0

        # Selecting a candidate shows its planned footprint as a ghost on the gauge.
        pool = ctx.profile.ram_pool.name
        qtbot.waitUntil(lambda: ctx.gauge.snapshot is not None, timeout=10000)
        d.table.setCurrentIndex(d.proxy.index(0, 0))
        assert ctx.gauge.ghost_fits(pool) is not None
        window.show_view("library")
        assert ctx.gauge.ghost_fits(pool) is None
        window.show_view("discover")

        # Find the test model on the Hub and download it.
        qtbot.keyClicks(d.search_field, "gemma-3-270m")
        qtbot.mouseClick(d.search_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: d.model.rowCount() == 1, timeout=20000)
        assert d.model.row_at(0).repo == GEMMA_REPO
        # Selecting the repository lists its GGUF files, planned from their headers.
        d.table.setCurrentIndex(d.proxy.index(0, 0))
        qtbot.waitUntil(lambda: d.model.row_at(0).filename == GEMMA_FILE, timeout=20000)
        assert d.selected().filename == GEMMA_FILE
        assert d.proxy.index(0, 3).data() in ("Full GPU", "CPU only")
        assert "weights" in d.proxy.index(0, 4).data()
        assert d.action_button.text() == "Download"
        qtbot.mouseClick(d.action_button, Qt.MouseButton.LeftButton)
        assert window.current_view() == "library"
        qtbot.waitUntil(lambda: ctx.downloads.rowCount() == 1, timeout=5000)
        states: list[str] = []
        ctx.downloads.dataChanged.connect(
            lambda *_: states.append(ctx.downloads.index(0).data(DownloadRole.STATE))
        )
        qtbot.waitUntil(
            lambda: ctx.downloads.index(0).data(DownloadRole.STATE) == "done", timeout=120000
        )
        assert "downloading" in states
        assert "Verified" in ctx.downloads.index(0).data()
        qtbot.waitUntil(lambda: ctx.local_models.rowCount() == 1, timeout=20000)
        assert ctx.local_models.rows()[0].path.endswith(GEMMA_FILE)

        # The Discover button now says Chat; it opens the chat and loads the model.
        window.show_view("discover")
        qtbot.waitUntil(lambda: d.action_button.text() == "Chat", timeout=5000)
        with qtbot.waitSignal(ctx.session.model_loaded, timeout=120000):
            qtbot.mouseClick(d.action_button, Qt.MouseButton.LeftButton)
        assert window.current_view() == "chat"
        chat = ctx.chat
        assert chat.model_status.text().endswith("ready")
        # The gauge attributes the host process's memory to the model.
        qtbot.waitUntil(lambda: GEMMA_FILE in _gauge_labels(ctx), timeout=10000)

        # Send a message; the reply streams and gets its metrics line.
        chat.preset_picker.setCurrentText("precise")
        qtbot.keyClicks(chat.input, "What is the capital of France?")
        with qtbot.waitSignal(ctx.session.reply_ended, timeout=120000) as finished:
            qtbot.keyClick(chat.input, Qt.Key.Key_Return)
        reply = finished.args[0]
        assert reply.content.strip()
        assert reply.metrics["generated_tokens"] > 0
        assert reply.metrics["memory_bytes"] > 0
        assert "tok/s" in chat.transcript.toPlainText()
        assert "TTFT" in chat.transcript.toPlainText()
        assert reply.metrics["estimate_bytes"] > 0  # the plan the load was checked against
        assert "(estimate " in chat.transcript.toPlainText()

        # Stop a long reply with Esc; the model stays loaded.
        qtbot.keyClicks(chat.input, "Write a very long story about a dragon, in ten chapters.")
        with qtbot.waitSignal(ctx.session.reply_text_received, timeout=120000):
            qtbot.keyClick(chat.input, Qt.Key.Key_Return)
        with qtbot.waitSignal(ctx.session.reply_ended, timeout=60000) as stopped:
            qtbot.keyClick(chat.input, Qt.Key.Key_Escape)
        assert stopped.args[0].incomplete
        assert stopped.args[0].metrics["stop_reason"] == "cancelled"
        assert ctx.session.state == "ready"

        # Unload: the host ends and the gauge drops the model's segment.
        with qtbot.waitSignal(ctx.session.model_unloaded, timeout=30000):
            qtbot.mouseClick(chat.load_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: GEMMA_FILE not in _gauge_labels(ctx), timeout=10000)
        saved = ctx.store.load(ctx.session.conversation.id)
        assert [m.role for m in saved.messages] == ["user", "assistant", "user", "assistant"]
    finally:
        window.close()
    assert ctx.session.host is None


def test_a_killed_model_host_becomes_an_error_in_the_chat(qtbot, app_home, gemma_path) -> None:
    """SIGKILL the real model host mid-reply: the chat shows why, nothing is lost."""
    import os
    import signal

    ctx = AppContext(AppPaths.default(), profile=probe(), live_gauge=False)
    qtbot.addWidget(ctx.window)
    ctx.window.show()
    try:
        with qtbot.waitSignal(ctx.session.model_loaded, timeout=120000) as loaded:
            ctx.open_chat(str(gemma_path))
        pid = loaded.args[1].pid
        chat = ctx.chat
        qtbot.keyClicks(chat.input, "Write a very long story about a lighthouse keeper.")
        with qtbot.waitSignal(ctx.session.reply_text_received, timeout=120000):
            qtbot.keyClick(chat.input, Qt.Key.Key_Return)
        with qtbot.waitSignal(ctx.session.model_unloaded, timeout=60000):
            os.kill(pid, signal.SIGKILL)
        text = chat.transcript.toPlainText()
        assert "The model stopped unexpectedly" in text
        assert "Your conversation is kept" in text
        assert chat.load_button.text() == "Load"
        saved = ctx.store.load(ctx.session.conversation.id)
        assert [m.role for m in saved.messages] == ["user", "assistant", "error"]
        assert saved.messages[0].content.startswith("Write a very long story")
        assert saved.messages[1].incomplete
    finally:
        ctx.window.close()
