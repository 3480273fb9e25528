"""The chat pane against a fake engine: streaming, keyboard, stop, regenerate, crash, storage."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from launcher.chats import ChatStore
from tests.ui.ui_fakes import FakeEngine
from ui.models.chat_session import ChatSession
from ui.models.library import LocalModelModel
from ui.models.rows import LocalModelRow
from ui.views.chat import ChatView
from ui.workers import ModelHost


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def chat(qtbot, tmp_path: Path, engine: FakeEngine):
    store = ChatStore(tmp_path / "chats")
    session = ChatSession(store, lambda: ModelHost(engine))
    models = LocalModelModel()
    models.set_rows(
        [LocalModelRow(str(tmp_path / "tiny.gguf"), "tiny.gguf", 1000, "Spark Launcher", True)]
    )
    view = ChatView(session, models)
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    yield view
    session.shutdown()


def _load(qtbot, view: ChatView) -> None:
    with qtbot.waitSignal(view.session.model_loaded, timeout=5000):
        qtbot.mouseClick(view.load_button, Qt.MouseButton.LeftButton)
    assert view.model_status.text() == "tiny.gguf ready"
    assert view.load_button.text() == "Unload"


def test_enter_sends_and_the_reply_streams_as_markdown_with_metrics(qtbot, chat, engine) -> None:
    _load(qtbot, chat)
    qtbot.keyClicks(chat.input, "first line")
    qtbot.keyClick(chat.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(chat.input, "second line")
    assert chat.input.toPlainText() == "first line\nsecond line"
    with qtbot.waitSignal(chat.session.reply_ended, timeout=5000) as blocker:
        qtbot.keyClick(chat.input, Qt.Key.Key_Return)
    assert chat.input.toPlainText() == ""
    reply = blocker.args[0]
    assert reply.content == "Hello **world**, nice to meet you."
    text = chat.transcript.toPlainText()
    assert "first line\nsecond line" in text
    assert "Hello world, nice to meet you." in text  # bold rendered, not shown as **
    assert "TTFT 0.05 s · 42.0 tok/s · 6 tokens · memory 300 MiB" in text
    assert engine.prompts[0][-1] == {"role": "user", "content": "first line\nsecond line"}
    assert engine.sampling[0].temperature == 0.7
    # The conversation is saved and listed.
    assert chat.conversations.rowCount() == 1
    saved = chat.session.store.load(chat.session.conversation.id)
    assert [m.role for m in saved.messages] == ["user", "assistant"]
    assert saved.messages[1].metrics["generated_tokens"] == 6


def test_escape_stops_a_reply_and_the_model_stays_loaded(qtbot, chat, engine) -> None:
    engine.hold = True
    _load(qtbot, chat)
    qtbot.keyClicks(chat.input, "tell me a long story")
    with qtbot.waitSignal(chat.session.reply_started, timeout=5000):
        qtbot.keyClick(chat.input, Qt.Key.Key_Return)
    qtbot.waitUntil(engine.started.is_set, timeout=5000)
    assert chat.stop_button.isEnabled()
    with qtbot.waitSignal(chat.session.reply_ended, timeout=5000) as blocker:
        qtbot.keyClick(chat.input, Qt.Key.Key_Escape)
    assert blocker.args[0].incomplete
    assert "stopped" in chat.transcript.toPlainText()
    assert chat.session.state == "ready"
    assert chat.send_button.isEnabled()


def test_regenerate_asks_again_without_the_old_reply(qtbot, chat, engine) -> None:
    _load(qtbot, chat)
    with qtbot.waitSignal(chat.session.reply_ended, timeout=5000):
        chat.session.send("hi")
    engine.reply = "Another answer."
    with qtbot.waitSignal(chat.session.reply_ended, timeout=5000):
        qtbot.mouseClick(chat.regenerate_button, Qt.MouseButton.LeftButton)
    messages = chat.session.conversation.messages
    assert [m.content for m in messages] == ["hi", "Another answer."]
    assert [m["role"] for m in engine.prompts[1]] == ["system", "user"]
    assert "Hello" not in chat.transcript.toPlainText()


def test_a_crashed_model_host_shows_an_error_and_keeps_the_conversation(
    qtbot, chat, engine
) -> None:
    engine.crash_after = 2
    _load(qtbot, chat)
    with qtbot.waitSignal(chat.session.model_unloaded, timeout=5000):
        chat.session.send("hello?")
    text = chat.transcript.toPlainText()
    assert "The model stopped unexpectedly" in text
    assert "Your conversation is kept" in text
    assert chat.load_button.text() == "Load"
    saved = chat.session.store.load(chat.session.conversation.id)
    assert [m.role for m in saved.messages] == ["user", "assistant", "error"]
    assert saved.messages[0].content == "hello?"
    assert saved.messages[1].content == "Hello **world**, "
    assert saved.messages[1].incomplete
    # A new load works and the conversation continues.
    engine.crash_after = None
    _load(qtbot, chat)
    with qtbot.waitSignal(chat.session.reply_ended, timeout=5000):
        chat.session.send("again")
    assert [m["role"] for m in engine.prompts[-1]] == ["system", "user", "assistant", "user"]


def test_a_failed_load_says_why_and_leaves_nothing_running(qtbot, chat, engine) -> None:
    engine.fail_load = "This file is not a GGUF model. Download it again."
    with qtbot.waitSignal(chat.session.error_reported, timeout=5000):
        qtbot.mouseClick(chat.load_button, Qt.MouseButton.LeftButton)
    assert chat.model_status.text() == engine.fail_load
    assert chat.session.host is None
    assert chat.load_button.text() == "Load"


def test_conversations_can_be_switched_and_deleted(qtbot, chat, engine) -> None:
    _load(qtbot, chat)
    with qtbot.waitSignal(chat.session.reply_ended, timeout=5000):
        chat.session.send("first conversation")
    first = chat.session.conversation.id
    qtbot.mouseClick(chat.new_button, Qt.MouseButton.LeftButton)
    assert "No messages yet" in chat.transcript.toPlainText()
    with qtbot.waitSignal(chat.session.reply_ended, timeout=5000):
        chat.session.send("second conversation")
    assert chat.conversations.rowCount() == 2
    row = chat.conversations.row_of(first)
    chat.conversation_list.clicked.emit(chat.conversations.index(row))
    assert "first conversation" in chat.transcript.toPlainText()
    chat.conversation_list.setCurrentIndex(chat.conversations.index(row))
    qtbot.mouseClick(chat.delete_button, Qt.MouseButton.LeftButton)
    assert chat.conversations.rowCount() == 1
    assert [s.title for s in chat.session.store.list()] == ["second conversation"]


def test_system_prompt_and_preset_reach_the_model(qtbot, chat, engine) -> None:
    _load(qtbot, chat)
    qtbot.mouseClick(chat.system_toggle, Qt.MouseButton.LeftButton)
    assert chat.system_prompt.isVisible()
    chat.system_prompt.setPlainText("Answer like a pirate.")
    chat.preset_picker.setCurrentText("precise")
    qtbot.keyClicks(chat.input, "hi")
    with qtbot.waitSignal(chat.session.reply_ended, timeout=5000):
        qtbot.keyClick(chat.input, Qt.Key.Key_Return)
    assert engine.prompts[0][0] == {"role": "system", "content": "Answer like a pirate."}
    assert engine.sampling[0].temperature == 0.2


def test_unload_during_a_slow_load_ends_the_host_at_once(qtbot, chat, engine) -> None:
    engine.slow_load = True
    qtbot.mouseClick(chat.load_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(engine.load_started.is_set, timeout=5000)
    assert chat.load_button.text() == "Unload"
    qtbot.mouseClick(chat.load_button, Qt.MouseButton.LeftButton)  # unload while loading
    assert chat.session.host is None
    assert chat.session.state == "unloaded"
    assert engine.unloaded >= 1
    assert engine.loaded_paths == []  # the load was abandoned, not finished
    qtbot.wait(50)  # let the abandoned load's queued "failed" arrive: it must be ignored
    assert chat.model_status.text() == "No model loaded"
