"""Deleting from the Library, in the whole app: nothing goes without the user's confirmation
(the question names the model and its size), a loaded model is unloaded first so Chat never
says "ready" for a file that is gone, and downloads set aside after failing verification are
listed and can be deleted too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from launcher.library import set_aside_path
from launcher.machines import load_reference
from launcher.paths import AppPaths
from launcher.settings import Settings
from tests.support.hub_fixtures import make_gguf
from tests.ui.ui_fakes import FakeEngine
from ui.app import AppContext

MIB = 2**20


class Answer:
    """Stands in for ``QMessageBox.question``: records what was asked, answers ``reply``."""

    def __init__(self, reply: QMessageBox.StandardButton) -> None:
        self.reply = reply
        self.asked: list[tuple[str, str]] = []

    def __call__(self, parent: Any, title: str, text: str, *args: Any) -> Any:
        self.asked.append((title, text))
        return self.reply


@pytest.fixture
def ctx(qtbot, app_home: Path) -> Iterator[AppContext]:
    context = AppContext(
        AppPaths.default(),
        Settings(scan_other_tools=False),
        profile=load_reference("rtx-4090-64gb"),
        engine_factory=FakeEngine,
        live_gauge=False,
    )
    qtbot.addWidget(context.window)
    context.window.show()
    yield context
    context.window.close()


def _model(ctx: AppContext, name: str = "tiny-Q4_K_M.gguf") -> Path:
    folder = ctx.settings.models_path(ctx.paths) / "org" / "tiny-GGUF"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(make_gguf(name="tiny", pad_to=3 * MIB))
    return path


def _listed(ctx: AppContext, qtbot, path: Path) -> None:
    ctx.scan_library()
    qtbot.waitUntil(lambda: any(r.path == str(path) for r in ctx.local_models.rows()))


def _load(ctx: AppContext, qtbot, path: Path) -> None:
    ctx.open_chat(str(path))
    qtbot.waitUntil(lambda: ctx.session.state == "ready", timeout=10000)
    assert "ready" in ctx.chat.model_status.text()


def test_deleting_a_loaded_model_asks_then_unloads_it_first(
    qtbot, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _model(ctx)
    _listed(ctx, qtbot, path)
    _load(ctx, qtbot, path)
    ctx.window.show_view("library")
    lib = ctx.library_view
    lib.table.setCurrentIndex(ctx.local_models.index(0, 0))
    answer = Answer(QMessageBox.StandardButton.Yes)
    monkeypatch.setattr(QMessageBox, "question", answer)

    qtbot.mouseClick(lib.delete_button, Qt.MouseButton.LeftButton)

    [(title, text)] = answer.asked
    assert title == "Delete model"
    assert "tiny-Q4_K_M.gguf" in text and "3.0 MiB" in text
    assert "loaded now: it will be unloaded first" in text
    qtbot.waitUntil(lambda: not path.exists() and ctx.local_models.rowCount() == 0)
    assert ctx.session.state == "unloaded" and ctx.session.host is None
    assert "ready" not in ctx.chat.model_status.text()
    assert ctx.chat.model_status.text() == "No model loaded"
    assert ctx.chat.model_picker.count() == 0
    qtbot.waitUntil(lambda: "Deleted" in lib.message.text())


def test_answering_no_keeps_the_model_and_it_stays_loaded(
    qtbot, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _model(ctx)
    _listed(ctx, qtbot, path)
    _load(ctx, qtbot, path)
    lib = ctx.library_view
    lib.table.setCurrentIndex(ctx.local_models.index(0, 0))
    answer = Answer(QMessageBox.StandardButton.No)
    monkeypatch.setattr(QMessageBox, "question", answer)

    with qtbot.assertNotEmitted(lib.delete_requested):
        qtbot.mouseClick(lib.delete_button, Qt.MouseButton.LeftButton)

    assert len(answer.asked) == 1
    assert path.exists() and ctx.session.state == "ready"
    assert ctx.local_models.rowCount() == 1


def test_a_model_that_is_not_loaded_is_deleted_without_touching_chat(
    qtbot, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded, other = _model(ctx), _model(ctx, "other-Q8_0.gguf")
    _listed(ctx, qtbot, other)
    _load(ctx, qtbot, loaded)
    lib = ctx.library_view
    row = next(i for i, r in enumerate(ctx.local_models.rows()) if r.path == str(other))
    lib.table.setCurrentIndex(ctx.local_models.index(row, 0))
    answer = Answer(QMessageBox.StandardButton.Yes)
    monkeypatch.setattr(QMessageBox, "question", answer)

    qtbot.mouseClick(lib.delete_button, Qt.MouseButton.LeftButton)

    assert "unloaded" not in answer.asked[0][1]
    qtbot.waitUntil(lambda: not other.exists() and ctx.local_models.rowCount() == 1)
    assert loaded.exists() and ctx.session.state == "ready"


def test_a_download_set_aside_after_failing_verification_is_listed_and_deleted(
    qtbot, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model(ctx)
    bad = set_aside_path(model.with_name("big-Q4_K_M.gguf"), 1_700_000_000)
    bad.write_bytes(b"\0" * (241 * MIB // 100))  # the one in the issue was 241 MB
    ctx.window.show_view("library")
    ctx.scan_library()
    lib = ctx.library_view
    qtbot.waitUntil(lambda: lib.set_aside.rowCount() == 1)
    assert lib.set_aside_box.isVisible()
    label = lib.set_aside.index(0).data()
    assert label == "big-Q4_K_M.gguf — failed verification, 2.4 MiB"
    # Never offered as a model to load.
    assert [Path(r.path).name for r in ctx.local_models.rows()] == ["tiny-Q4_K_M.gguf"]

    no = Answer(QMessageBox.StandardButton.No)
    monkeypatch.setattr(QMessageBox, "question", no)
    qtbot.mouseClick(lib.delete_set_aside_button, Qt.MouseButton.LeftButton)
    assert "big-Q4_K_M.gguf" in no.asked[0][1] and "2.4 MiB" in no.asked[0][1]
    assert bad.exists()

    yes = Answer(QMessageBox.StandardButton.Yes)
    monkeypatch.setattr(QMessageBox, "question", yes)
    qtbot.mouseClick(lib.delete_set_aside_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not bad.exists() and lib.set_aside.rowCount() == 0)
    assert not lib.set_aside_box.isVisible()
    assert model.exists()
    qtbot.waitUntil(lambda: "failed verification" in lib.message.text())
