"""The desktop app as a person uses it (issue 19): it fits a 1280x720 screen in every view,
long text elides instead of widening the window, every chat flow works from the keyboard,
focus is visible, the starter says what it is, and a reply's metrics stay out of its list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QLineEdit,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from launcher.chats import ChatMessage, ChatStore
from launcher.engine.events import Loaded
from launcher.machines import load_reference
from launcher.paths import AppPaths
from tests.ui.ui_fakes import FakeEngine, fake_loaded
from ui.app import STARTER_PACKAGE, AppContext, starter_available
from ui.main_window import MainWindow
from ui.models.chat_session import ChatSession
from ui.models.library import LocalModelModel
from ui.models.rows import LocalModelRow
from ui.theme import STYLE_SHEET
from ui.views.chat import ChatView
from ui.widgets.transcript import TranscriptView
from ui.workers import ModelHost

# A 1280x720 screen less a title bar and a frame: the most the window may ask for.
SCREEN = QSize(1280, 720)
FRAME = QSize(16, 48)
LONG = "a-really-long-folder-name-that-goes-on-and-on/" * 8


class StarterEngine(FakeEngine):
    """The bundled starter as the engine reports it: a 270M base model with no template."""

    def load(
        self, path: Any, params: Any = None, on_progress: Any = None, *, plan: Any = None
    ) -> Loaded:
        base = super().load(path, params, on_progress)
        return fake_loaded(base.path, chat_template=None, n_params=268_098_176)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there


@pytest.fixture
def app(qtbot, app_home: Path, offline: None) -> Iterator[tuple[AppContext, StarterEngine]]:
    engine = StarterEngine(hold=True)
    ctx = AppContext(
        AppPaths.default(),
        profile=load_reference("laptop-16gb"),
        engine_factory=lambda: engine,
        live_gauge=False,
    )
    qtbot.addWidget(ctx.window)
    ctx.window.resize(SCREEN)
    ctx.window.show()
    qtbot.waitExposed(ctx.window)
    ctx.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is ctx.window, timeout=5000)
    ctx.start()
    qtbot.waitUntil(lambda: ctx.discover.model.rowCount() > 0, timeout=30000)
    try:
        yield ctx, engine
    finally:
        engine.cancel()
        ctx.window.close()


def _comparison(folder: Path) -> tuple[Any, Path]:
    """A finished comparison with a long prompt, saved in ``folder``."""
    from launcher.compare_results import ComparisonResult, ModelEntry, RunResult

    res = ComparisonResult(
        models=[ModelEntry("big", "big.gguf"), ModelEntry("small", "small.gguf")],
        prompts=[{"id": "p1", "text": "Explain " + "very " * 200 + "briefly."}],
        residency={"mode": "sequential", "reason": "one after another: because", "ctx": 8192},
        runs=[
            RunResult("big", "p1", "It is 4", 0.5, 100.0, 4.0, 2.0, 5, 3, 10**9, 5.0, None, True),
            RunResult("small", "p1", "5", 0.1, 900.0, 40.0, 0.3, 5, 3, 10**8, 40.0, None, False),
        ],
    )
    folder.mkdir(parents=True, exist_ok=True)
    return ComparisonResult.load(res.save(to=folder / f"{res.id}.json")), folder / f"{res.id}.json"


def _fits(size: QSize, screen: QSize = SCREEN) -> bool:
    return size.width() <= screen.width() - FRAME.width() and (
        size.height() <= screen.height() - FRAME.height()
    )


def _focus() -> QWidget:
    widget = QApplication.focusWidget()
    assert widget is not None, "nothing has the keyboard focus"
    return widget


def _key(qtbot, key: Qt.Key, modifier=Qt.KeyboardModifier.NoModifier) -> None:  # type: ignore[no-untyped-def]
    """Press a key where the focus is, as a person at the keyboard would."""
    qtbot.keyClick(_focus(), key, modifier)


# ------------------------------------------------------------------ fit
def test_every_view_fits_1280x720_and_showing_it_does_not_grow_the_window(
    qtbot, app, tmp_path: Path
) -> None:
    ctx, _engine = app
    window = ctx.window
    # Long text everywhere a person meets it: a model name, a chat title, a saved comparison.
    name = "Qwen3-Coder-30B-A3B-Instruct-UD-Q4_K_XL-with-an-even-longer-suffix.gguf"
    ctx.local_models.set_rows([LocalModelRow(f"/m/{name}", name, 10**10, "Spark Launcher", True)])
    ctx.discover.set_machine_text("This machine: " + "a very long CPU name " * 20)
    ctx.chat.show_error("Could not load: " + LONG)
    compare = window.view("compare").build()  # type: ignore[attr-defined]
    compare.show_result(*_comparison(tmp_path / LONG))
    for key in window.view_keys():
        window.show_view(key)
        qtbot.wait(50)
        view = window.view(key)
        assert window.size() == SCREEN, f"showing {key} resized the window to {window.size()}"
        assert _fits(window.minimumSizeHint()), (key, window.minimumSizeHint())
        assert _fits(window.minimumSize()), (key, window.minimumSize())
        # ... and the view itself needs no scrolling at 1280x720.
        need = view.minimumSizeHint()
        room = window.stack.size()
        assert need.width() <= room.width() and need.height() <= room.height(), (key, need, room)
        page = window.page(key)
        assert not page.verticalScrollBar().isVisible(), f"{key} scrolls at 1280x720"
        assert not page.horizontalScrollBar().isVisible(), f"{key} scrolls at 1280x720"


def test_a_long_saved_path_does_not_widen_compare(qtbot, app, tmp_path: Path) -> None:
    ctx, _engine = app
    ctx.window.show_view("compare")
    view = ctx.window.view("compare").build()  # type: ignore[attr-defined]
    qtbot.wait(50)
    before = view.minimumSizeHint().width()
    result, saved = _comparison(tmp_path / LONG / "comparisons")
    view.show_result(result, saved)
    qtbot.wait(50)
    assert view.saved_label.text() == f"Saved to {saved}"
    assert view.minimumSizeHint().width() == before
    assert ctx.window.size() == SCREEN
    # Compare, Stop and the chart stay on the screen.
    for widget in (view.run_button, view.stop_button, view.chart):
        right = widget.mapTo(ctx.window, widget.rect().topRight()).x()
        assert 0 < right <= SCREEN.width(), widget
    assert view.saved_label.toolTip() == f"Saved to {saved}"  # all of it, on hover


@pytest.fixture
def chat(qtbot, tmp_path: Path) -> Iterator[ChatView]:
    engine = FakeEngine(reply="word " * 30)
    session = ChatSession(ChatStore(tmp_path / "chats"), lambda: ModelHost(engine))
    models = LocalModelModel()
    models.set_rows([LocalModelRow(str(tmp_path / "m.gguf"), "m.gguf", 1000, "x", True)])
    view = ChatView(session, models)
    qtbot.addWidget(view)
    view.resize(1000, 600)
    view.show()
    qtbot.waitExposed(view)
    yield view
    session.shutdown()


def test_the_chat_list_keeps_its_width_across_replies(qtbot, chat: ChatView) -> None:
    with qtbot.waitSignal(chat.session.model_loaded, timeout=5000):
        qtbot.mouseClick(chat.load_button, Qt.MouseButton.LeftButton)
    widths = [chat.conversation_list.width()]
    for n in range(3):
        with qtbot.waitSignal(chat.session.reply_started, timeout=5000):
            chat.session.send(f"question {n} " + "with a long title " * 10)
        qtbot.wait(1)
        widths.append(chat.conversation_list.width())  # while the status says "replying…"
        qtbot.waitUntil(lambda: chat.session.state == "ready", timeout=5000)
        qtbot.wait(1)
        widths.append(chat.conversation_list.width())
    assert len(set(widths)) == 1, widths
    assert chat.width() == 1000


# ------------------------------------------------------------------ keyboard
def test_starter_chat_send_stop_regenerate_new_chat_without_the_mouse(qtbot, app) -> None:
    if not starter_available():
        pytest.skip(f"{STARTER_PACKAGE} is not installed")
    import importlib

    ctx, engine = app
    window = ctx.window
    # The starter's file is already in place (assembling the real one is another test's job).
    models_dir = ctx.settings.models_path(ctx.paths)
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / importlib.import_module(STARTER_PACKAGE).MODEL_NAME).write_bytes(b"GGUF")

    # Discover shows first: Tab along to "Try Gemma 3 270M", press Space.
    assert window.current_view() == "discover"
    for _ in range(12):
        if ctx.discover.starter_button.hasFocus():
            break
        _key(qtbot, Qt.Key.Key_Tab)
    assert ctx.discover.starter_button.hasFocus()
    with qtbot.waitSignal(ctx.session.model_loaded, timeout=20000):
        _key(qtbot, Qt.Key.Key_Space)
    assert window.current_view() == "chat"
    chat = ctx.chat
    qtbot.waitUntil(chat.input.hasFocus, timeout=5000)  # typing goes to the message box

    # Send, then Esc stops.
    qtbot.keyClicks(_focus(), "hello")
    with qtbot.waitSignal(ctx.session.reply_started, timeout=5000):
        _key(qtbot, Qt.Key.Key_Return)
    qtbot.waitUntil(engine.started.is_set, timeout=5000)
    with qtbot.waitSignal(ctx.session.reply_ended, timeout=5000) as stopped:
        _key(qtbot, Qt.Key.Key_Escape)
    assert stopped.args[0].incomplete

    # Ctrl+R asks again; Esc stops that too.
    engine.started.clear()
    with qtbot.waitSignal(ctx.session.reply_started, timeout=5000):
        _key(qtbot, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(engine.started.is_set, timeout=5000)
    with qtbot.waitSignal(ctx.session.reply_ended, timeout=5000):
        _key(qtbot, Qt.Key.Key_Escape)
    assert chat.input.hasFocus()

    # Regenerate clicked (the focus leaves the message box): Esc still stops the reply.
    engine.started.clear()
    with qtbot.waitSignal(ctx.session.reply_started, timeout=5000):
        qtbot.mouseClick(chat.regenerate_button, Qt.MouseButton.LeftButton)
    assert not chat.input.hasFocus()
    assert "Esc stops" in chat.model_status.text()
    qtbot.waitUntil(engine.started.is_set, timeout=5000)
    with qtbot.waitSignal(ctx.session.reply_ended, timeout=5000):
        _key(qtbot, Qt.Key.Key_Escape)
    qtbot.waitUntil(chat.input.hasFocus, timeout=5000)

    # Ctrl+N: a new, empty chat, ready to type in.
    old = ctx.session.conversation.id
    _key(qtbot, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert ctx.session.conversation.id != old
    assert not ctx.session.conversation.messages
    assert chat.input.hasFocus()

    # Ctrl+1..6 show the views in sidebar order; Ctrl+L comes back to the message box.
    for n, key in enumerate(window.view_keys(), start=1):
        _key(qtbot, Qt.Key(Qt.Key.Key_0 + n), Qt.KeyboardModifier.ControlModifier)
        assert window.current_view() == key
    _key(qtbot, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    assert window.current_view() == "chat" and chat.input.hasFocus()

    # Ctrl+Q closes the window (the app quits with it).
    _key(qtbot, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    assert not window.isVisible()


def test_keyboard_focus_is_visible(qtbot) -> None:
    window = MainWindow()
    qtbot.addWidget(window)
    page = QWidget()
    layout = QVBoxLayout(page)
    widgets: list[QWidget] = [QPushButton("Send"), QLineEdit("text"), QCheckBox("Blind")]
    for w in widgets:
        layout.addWidget(w)
    layout.addWidget(QPushButton("elsewhere"))
    window.add_view("one", "One", page)
    window.add_view("two", "Two", QWidget())
    widgets.append(window.sidebar)
    window.show()
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5000)
    for w in widgets:
        window.findChildren(QPushButton)[-1].setFocus()
        qtbot.waitUntil(lambda w=w: not w.hasFocus())
        plain = w.grab().toImage()
        w.setFocus(Qt.FocusReason.TabFocusReason)
        qtbot.waitUntil(w.hasFocus)
        focused = w.grab().toImage()
        assert plain != focused, f"{type(w).__name__} looks the same with the keyboard focus"
    # The sidebar is as narrow as it can be, but its titles are never elided.
    window.add_view("doctor", "Doctor & settings", QWidget())
    metrics = window.sidebar.fontMetrics()
    item = window.sidebar.item(2)
    window.sidebar.setCurrentItem(item)
    window.sidebar.setFocus()
    # The item's margin, padding and focus border (style sheet), and the text margin of views.
    text_margin = window.sidebar.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin) + 1
    room = window.sidebar.visualItemRect(item).width() - 2 * (6 + 14 + 2 + text_margin)
    assert metrics.horizontalAdvance(item.text()) <= room
    assert ":focus" in STYLE_SHEET


# ------------------------------------------------------------------ the starter says what it is
def test_a_model_without_chat_template_is_named_a_test_model_with_the_real_one_a_click_away(
    qtbot, app
) -> None:
    ctx, _engine = app
    chat, discover = ctx.chat, ctx.discover
    best = ctx.recommended_model()
    assert best is not None and best.verdict != "no_fit"
    label = f"{best.name} {best.quant}"
    # The starter banner says it plainly and offers the real model.
    assert "tiny test model" in discover.starter_text.text()
    assert discover.starter_recommend_button.isVisible()
    assert label in discover.starter_recommend_button.text()

    asked: list[Any] = []
    discover.download_requested.disconnect()  # no real download: record what was asked
    discover.download_requested.connect(asked.append)
    qtbot.mouseClick(discover.starter_recommend_button, Qt.MouseButton.LeftButton)
    assert asked == [best]

    path = ctx.settings.models_path(ctx.paths) / "gemma-3-270m-q4_k_m.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF")
    assert not chat.model_note_box.isVisible()
    with qtbot.waitSignal(ctx.session.model_loaded, timeout=20000):
        ctx.open_chat(str(path))
    assert chat.model_note_box.isVisible()
    note = chat.model_note.text()
    assert "tiny test model" in note and "no chat template" in note
    assert "recommended for this machine" in note
    assert chat.recommend_button.isVisible() and label in chat.recommend_button.text()
    # One click: the same path as Discover's Download button.
    qtbot.mouseClick(chat.recommend_button, Qt.MouseButton.LeftButton)
    assert asked == [best, best]
    ctx.session.unload_model()
    assert not chat.model_note_box.isVisible()


def test_a_chat_model_gets_no_note(qtbot, chat: ChatView) -> None:
    with qtbot.waitSignal(chat.session.model_loaded, timeout=5000):
        qtbot.mouseClick(chat.load_button, Qt.MouseButton.LeftButton)
    assert not chat.model_note_box.isVisible()  # the fake reports no template either way


# ------------------------------------------------------------------ metrics under a list
METRICS = {"ttft_s": 0.05, "decode_tokens_per_s": 42.0, "generated_tokens": 6}


def _metrics_block(view: TranscriptView) -> Any:
    block = view.document().begin()
    found = None
    while block.isValid():
        if block.text().startswith("TTFT 0.05 s"):
            found = block
        block = block.next()
    assert found is not None, view.toPlainText()
    return found


def test_the_metrics_line_is_its_own_paragraph_after_a_list(qtbot) -> None:
    reply = "Two things:\n\n1. a\n2. b"
    view = TranscriptView()
    qtbot.addWidget(view)
    view.show()
    view.set_messages([ChatMessage("user", "list two")])
    view.begin_reply("model")
    for part in ("Two things:\n\n", "1. a\n", "2. b"):
        view.append_text(part)
        view.flush()
    view.end_reply(ChatMessage("assistant", reply, metrics=METRICS))
    block = _metrics_block(view)
    assert block.textList() is None, "the metrics line was drawn as an item of the list"
    assert block.previous().textList() is not None  # "b" is still an item
    # The next message starts a paragraph of its own too.
    view.append_message(ChatMessage("user", "thanks"))
    last = view.document().lastBlock()
    assert last.text() == "thanks" and last.textList() is None
    # A saved conversation, rendered in one go, agrees.
    view.set_messages(
        [
            ChatMessage("user", "list two"),
            ChatMessage("assistant", reply, model="m", metrics=METRICS),
        ]
    )
    assert _metrics_block(view).textList() is None
