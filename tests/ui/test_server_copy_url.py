"""The Local API view's Copy URL button puts the served base URL on the clipboard."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from launcher.server.pool import ModelRegistry
from ui.views.server_view import ServerView


@pytest.fixture
def view(qtbot) -> Iterator[ServerView]:
    v = ServerView(ModelRegistry())
    qtbot.addWidget(v)
    v.port_field.setValue(0)  # any free port
    v.show()
    yield v
    v.shutdown()


def test_copy_url_copies_the_served_address(qtbot, view: ServerView) -> None:
    clipboard = QGuiApplication.clipboard()
    clipboard.setText("something else")
    assert not view.copy_button.isEnabled()  # nothing is served yet
    qtbot.mouseClick(view.switch, Qt.MouseButton.LeftButton)
    assert view.controller.running and view.copy_button.isEnabled()

    qtbot.mouseClick(view.copy_button, Qt.MouseButton.LeftButton)

    url = f"http://127.0.0.1:{view.controller.server.port}/v1"
    assert clipboard.text() == url
    assert view.copy_button.text() == "Copied"
    qtbot.waitUntil(lambda: view.copy_button.text() == "Copy URL", timeout=5000)
    qtbot.mouseClick(view.switch, Qt.MouseButton.LeftButton)
    assert not view.copy_button.isEnabled()
