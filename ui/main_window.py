"""The main window (placeholder shell; the views arrive with the desktop-app issue)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QMainWindow


class MainWindow(QMainWindow):
    """Top-level window titled "Spark Launcher"."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Spark Launcher")
        self.setCentralWidget(QLabel("Spark Launcher"))
