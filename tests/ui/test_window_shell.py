"""The app shell opens a window titled Spark Launcher."""

from __future__ import annotations

from ui.main_window import MainWindow


def test_main_window_title(qtbot) -> None:
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    assert window.windowTitle() == "Spark Launcher"
