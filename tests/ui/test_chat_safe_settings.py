"""A model that keeps crashing: the chat offers safe settings in one click (real engine).

The model host dies by a real SIGSEGV at its first decode while llama.cpp's extra buffer types
are on (the host's test hook; the way the Intel AMX kernels crash, llama.cpp issue 20824).
The first crash is an error line; the second offers "Load with safe settings", which loads
Gemma without extra buffers, and the next reply arrives.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from launcher.chats import ChatStore
from launcher.engine import EngineClient
from launcher.engine.crashes import CrashHistory
from launcher.engine.host import FAULT_ENV, SEGV_WITH_EXTRA_BUFFERS
from ui.app import PlannedEngine
from ui.models.chat_session import ChatSession
from ui.models.library import LocalModelModel
from ui.models.rows import LocalModelRow
from ui.views.chat import ChatView
from ui.workers import ModelHost


@pytest.fixture
def chat(qtbot, tmp_path: Path, gemma_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(FAULT_ENV, SEGV_WITH_EXTRA_BUFFERS)
    history = CrashHistory(tmp_path / "crashes.json")
    session = ChatSession(
        ChatStore(tmp_path / "chats"),
        # The app's own engine stack: an EngineClient behind the app's PlannedEngine.
        lambda: ModelHost(
            PlannedEngine(EngineClient(crash_history=history, log_dir=tmp_path), None)
        ),
    )
    models = LocalModelModel()
    models.set_rows([LocalModelRow(str(gemma_path), gemma_path.name, 1, "Spark Launcher", True)])
    view = ChatView(session, models)
    qtbot.addWidget(view)
    view.resize(1200, 700)
    view.show()
    yield view, history
    session.shutdown()


def _load_and_send(qtbot, view: ChatView, button) -> None:
    with qtbot.waitSignal(view.session.model_loaded, timeout=60000):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(view.input, "Hello")
    qtbot.keyClick(view.input, Qt.Key.Key_Return)


def test_second_crash_offers_safe_settings_and_they_chat(qtbot, chat, gemma_path) -> None:
    view, history = chat
    session = view.session
    for _ in range(2):
        _load_and_send(qtbot, view, view.load_button)
        qtbot.waitUntil(lambda: session.state == "unloaded", timeout=60000)
    errors = [m.content for m in session.conversation.messages if m.role == "error"]
    assert len(errors) == 2 and all("segmentation fault" in e for e in errors)
    # The first crash offered nothing; the second offers the safe settings, named.
    assert view.safe_button.isVisible()
    assert "crashed 2 times in a row while generating" in view.safe_button.toolTip()
    assert "no extra buffer types" in view.safe_button.toolTip()
    assert history.get(str(gemma_path)) is not None
    _load_and_send(qtbot, view, view.safe_button)
    assert session.loaded.extra_buffers is False
    assert not view.safe_button.isVisible()
    qtbot.waitUntil(lambda: session.state == "ready" and not session.busy, timeout=60000)
    reply = session.conversation.messages[-1]
    assert reply.role == "assistant" and reply.content and not reply.incomplete
    # Replying with them ended the streak: the doctor no longer reports the model.
    assert history.get(str(gemma_path)) is None
