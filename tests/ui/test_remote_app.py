"""Remote servers in the app: add one in Doctor & settings (URL + key), see its models in the
chat and compare pickers, load one and chat with it like a local model; a wrong key is a
message, never a saved server. Against a scripted OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt

from launcher.remotes import RemoteStore
from tests.support.remote_fake_server import FakeOpenAIServer, Script, fake_openai_server
from tests.ui.ui_fakes import started_app
from ui.app import AppContext

KEY = "sk-ui-secret-42"
SPEC = "remote:box/tiny-model"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    yield from fake_openai_server(api_key=KEY)


@pytest.fixture
def ctx(qtbot, app_home) -> Iterator[AppContext]:
    yield from started_app(qtbot)


def _add(qtbot, ctx: AppContext, url: str, key: str) -> None:
    box = ctx.doctor.remotes
    ctx.window.show_view("doctor")
    box.name_field.setText("box")
    box.url_field.setText(url)
    box.key_field.setText(key)
    qtbot.mouseClick(box.add_button, Qt.MouseButton.LeftButton)
    assert box.key_field.text() == ""  # the key does not stay in the widget


def test_add_a_remote_then_chat_with_its_model(qtbot, ctx: AppContext, server) -> None:
    _add(qtbot, ctx, server.url, KEY)
    box = ctx.doctor.remotes
    qtbot.waitUntil(lambda: box.status_label.text().startswith("Saved box"), timeout=20000)
    qtbot.waitUntil(lambda: box.table.rowCount() == 1, timeout=20000)
    assert box.table.item(0, 2).text() == "saved" and box.table.item(0, 3).text() == "1 model"
    assert KEY not in box.status_label.text()

    # Its model joins the pickers, next to the models on disk.
    qtbot.waitUntil(lambda: ctx.chat.select_model(SPEC), timeout=20000)
    assert "(1 on remote servers)" in ctx.library_view.summary.text()
    from ui.compare_view import CompareView

    compare = CompareView(local_models=ctx.local_models)
    qtbot.addWidget(compare)
    picker = compare.model_pickers[0]
    assert picker.findData(SPEC) >= 0 and "@box" in picker.itemText(picker.findData(SPEC))
    compare.shutdown()

    # Load it and chat: streamed text, metrics measured here and labelled remote.
    ctx.window.show_view("chat")
    with qtbot.waitSignal(ctx.session.model_loaded, timeout=20000):
        qtbot.mouseClick(ctx.chat.load_button, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(ctx.chat.input, "Hello there")
    with qtbot.waitSignal(ctx.session.reply_ended, timeout=20000) as finished:
        qtbot.keyClick(ctx.chat.input, Qt.Key.Key_Return)
    reply = finished.args[0]
    assert reply.content.startswith("w0 w1")
    assert reply.metrics["remote"].startswith("box (") and "memory_bytes" not in reply.metrics
    assert "measured here" in ctx.chat.transcript.toPlainText()
    assert server.requests[-1]["messages"][-1] == {"role": "user", "content": "Hello there"}

    # The server dies mid-reply: the partial reply is kept, the chat says why, nothing hangs.
    server.script = Script(words=50, drop_after=2)
    qtbot.keyClicks(ctx.chat.input, "Once more")
    with qtbot.waitSignal(ctx.session.reply_ended, timeout=20000) as broken:
        qtbot.keyClick(ctx.chat.input, Qt.Key.Key_Return)
    assert broken.args[0].incomplete and broken.args[0].content.startswith("w0 w1")
    qtbot.waitUntil(lambda: "connection to box" in ctx.chat.transcript.toPlainText())
    assert ctx.session.state == "ready"  # the next message can go to the server again
    with qtbot.waitSignal(ctx.session.model_unloaded, timeout=20000):
        qtbot.mouseClick(ctx.chat.load_button, Qt.MouseButton.LeftButton)


def test_a_wrong_key_is_shown_and_nothing_is_saved(qtbot, ctx: AppContext, server) -> None:
    _add(qtbot, ctx, server.url, "sk-wrong-one")
    box = ctx.doctor.remotes
    qtbot.waitUntil(lambda: "refused the API key" in box.status_label.text(), timeout=20000)
    assert "sk-wrong-one" not in box.status_label.text()
    assert box.add_button.isEnabled()
    assert RemoteStore().all() == []
