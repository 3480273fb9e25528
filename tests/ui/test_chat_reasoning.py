"""A reasoning model's thinking reaches the chat apart from its answer, is kept with the reply
and timed, and is never sent back to the model."""

from __future__ import annotations

from pathlib import Path

from launcher.chats import ChatStore
from tests.ui.ui_fakes import FakeEngine
from ui.models.chat_session import ChatSession
from ui.workers import ModelHost


def test_reasoning_is_kept_apart_timed_and_not_resent(qtbot, tmp_path: Path) -> None:
    engine = FakeEngine(reply="It is 5.", reasoning="Two plus three is five.")
    store = ChatStore(tmp_path / "chats")
    session = ChatSession(store, lambda: ModelHost(engine))
    try:
        with qtbot.waitSignal(session.model_loaded, timeout=5000):
            session.load_model(str(tmp_path / "m.gguf"))
        thinking: list[str] = []
        session.reply_reasoning_received.connect(thinking.append)
        with qtbot.waitSignal(session.reply_ended, timeout=5000) as ended:
            assert session.send("What is 2 plus 3?")
        reply = ended.args[0]
        assert reply.content == "It is 5."
        assert reply.reasoning.strip() == "Two plus three is five."
        assert "".join(thinking) == reply.reasoning
        assert reply.metrics["reasoning_s"] >= 0
        # Saved with the reply, and read back.
        again = store.load(session.conversation.id)
        assert again.messages[-1].reasoning == reply.reasoning
        # The next turn sends the answer, not the thinking.
        with qtbot.waitSignal(session.reply_ended, timeout=5000):
            session.send("Thanks")
        sent = engine.prompts[-1]
        assert not any("Two plus three" in m["content"] for m in sent)
        assert any(m["content"] == "It is 5." for m in sent)
    finally:
        session.shutdown()


def test_the_chat_shows_reasoning_folded_above_the_answer(qtbot, tmp_path: Path) -> None:
    from PySide6.QtCore import QUrl

    from ui.models.library import LocalModelModel
    from ui.models.rows import LocalModelRow
    from ui.views.chat import ChatView

    engine = FakeEngine(reply="It is 5.", reasoning="Two plus three is five, clearly.")
    session = ChatSession(ChatStore(tmp_path / "chats"), lambda: ModelHost(engine))
    models = LocalModelModel()
    models.set_rows([LocalModelRow(str(tmp_path / "m.gguf"), "m.gguf", 1, "Spark Launcher", True)])
    view = ChatView(session, models)
    qtbot.addWidget(view)
    view.show()
    try:
        with qtbot.waitSignal(session.model_loaded, timeout=5000):
            session.load_model(str(tmp_path / "m.gguf"))
        with qtbot.waitSignal(session.reply_ended, timeout=5000) as ended:
            session.send("What is 2 plus 3?")
        text = view.transcript.toPlainText()
        assert "▸ Reasoning" in text and "It is 5." in text
        assert text.index("▸ Reasoning") < text.index("It is 5.")  # above the answer
        assert "Two plus three" not in text  # folded
        created = int(ended.args[0].created * 1000)
        view.transcript.anchorClicked.emit(QUrl(f"reasoning:{created}"))
        assert "Two plus three is five, clearly." in view.transcript.toPlainText()
        assert "▾ Reasoning" in view.transcript.toPlainText()
        view.transcript.anchorClicked.emit(QUrl(f"reasoning:{created}"))
        assert "Two plus three" not in view.transcript.toPlainText()
        # A model without reasoning shows no fold.
        engine.reasoning = ""
        with qtbot.waitSignal(session.reply_ended, timeout=5000):
            session.send("Thanks")
        assert view.transcript.toPlainText().count("Reasoning") == 1
    finally:
        session.shutdown()
