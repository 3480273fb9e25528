"""Composition root: builds the object graph once and runs the Qt event loop.

Everything the window needs (paths, settings, the core services, workers) is created here and
passed down through constructors; no singletons, no ``QApplication.instance()`` lookups.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def run_app(argv: Sequence[str] = ()) -> int:
    """Open the main window and run until it is closed; return the exit code."""
    from PySide6.QtWidgets import QApplication

    from ui.main_window import MainWindow

    app = QApplication([sys.argv[0], *argv])
    app.setApplicationName("Spark Launcher")
    app.setDesktopFileName("spark-launcher")
    window = MainWindow()
    window.resize(1280, 800)
    window.show()
    return app.exec()
