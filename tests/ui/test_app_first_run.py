"""First run, offline, nothing downloaded: recommendations still show, and the bundled
Gemma 3 270M starter goes from one click to a loaded chat."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from launcher.machines import load_reference
from launcher.paths import AppPaths
from tests.support.hub_fixtures import make_gguf
from tests.ui.ui_fakes import FakeEngine
from ui.app import AppContext


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Hub address where nothing listens: any network use would fail. (Not HF_HUB_OFFLINE:
    # huggingface_hub reads it once at import, so it would leak into later tests.)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


def test_offline_first_run_recommends_and_the_starter_chats(
    qtbot, app_home, offline, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = FakeEngine()
    ctx = AppContext(
        AppPaths.default(),
        profile=load_reference("laptop-16gb"),
        engine_factory=lambda: engine,
        live_gauge=False,
    )
    qtbot.addWidget(ctx.window)
    ctx.window.show()
    try:
        ctx.start()
        d = ctx.discover
        qtbot.waitUntil(lambda: d.model.rowCount() > 0, timeout=20000)
        assert "catalog models fit this machine" in d.status.text()
        assert d.starter_box.isVisible()
        with qtbot.waitSignal(ctx.session.model_loaded, timeout=120000) as loaded:
            qtbot.mouseClick(d.starter_button, Qt.MouseButton.LeftButton)
        path = Path(loaded.args[0])
        assert path.parent == AppPaths.default().models_dir
        assert path.stat().st_size > 200 * 2**20
        assert ctx.window.current_view() == "chat"
        assert ctx.chat.model_status.text() == f"{path.name} ready"
        qtbot.waitUntil(lambda: ctx.local_models.rowCount() == 1, timeout=20000)
        with qtbot.waitSignal(ctx.session.reply_ended, timeout=10000):
            ctx.session.send("hello")

        # Unload, then delete it from the Library: the space it frees is reported.
        ctx.session.unload_model()
        ctx.window.show_view("library")
        lib = ctx.library_view
        lib.table.setCurrentIndex(ctx.local_models.index(0, 0))
        assert lib.delete_button.isEnabled()
        asked: list[str] = []  # Delete asks first; the user says yes
        monkeypatch.setattr(
            QMessageBox,
            "question",
            lambda _parent, _title, text, *_a: asked.append(text) or QMessageBox.StandardButton.Yes,
        )
        qtbot.mouseClick(lib.delete_button, Qt.MouseButton.LeftButton)
        assert path.name in asked[0]
        qtbot.waitUntil(lambda: ctx.local_models.rowCount() == 0, timeout=20000)
        assert "GB freed" in lib.message.text()
        assert not path.exists()

        # A GGUF from anywhere is imported in place; a file that is not a GGUF is refused.
        outside = app_home.parent / "elsewhere" / "tiny.gguf"
        outside.parent.mkdir()
        outside.write_bytes(make_gguf(name="tiny"))
        lib.import_requested.emit(str(outside))
        qtbot.waitUntil(lambda: ctx.local_models.rowCount() == 1, timeout=20000)
        assert "used where it is" in lib.message.text()
        assert ctx.local_models.rows()[0].path == str(outside)
        bad = outside.with_name("notes.gguf")
        bad.write_text("not a model")
        lib.import_requested.emit(str(bad))
        qtbot.waitUntil(lambda: "Imported" not in lib.message.text(), timeout=20000)
        assert "GGUF" in lib.message.text()
        assert ctx.local_models.rowCount() == 1
    finally:
        ctx.window.close()
