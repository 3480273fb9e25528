"""``RemoteServersBox``: the "Remote servers" part of Doctor & settings.

Lists the saved OpenAI-compatible servers (name, URL, whether a key is saved, how many models
each serves or why it cannot be reached) and adds one by name, URL and API key. The key field
never shows a saved key back. The view only renders and emits requests; ``ui/app.py`` asks
the server and saves it (``launcher.remotes``) on a worker thread, then calls
:meth:`set_remotes`. Remote models then appear in the chat and compare model pickers.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ui.widgets.settings_table import settings_table

HEADERS = ("Name", "URL", "API key", "Models")


@dataclass(frozen=True)
class RemoteRow:
    """One saved server as shown: ``status`` is "3 models" or why it cannot be reached."""

    name: str
    url: str
    has_key: bool
    status: str


class RemoteServersBox(QGroupBox):
    """Saved remote servers, and a row of fields to add one."""

    add_requested = Signal(str, str, str)  # name, URL, API key ("" for none)
    remove_requested = Signal(str)  # name

    def __init__(self, parent: QWidget | None = None) -> None:
        # A short title: a group box's title sets its minimum width (Doctor fits 1280x720).
        super().__init__("Remote servers (OpenAI-compatible)", parent)
        self.setToolTip("OpenAI-compatible servers: llama-server, vLLM, Ollama…")
        self.table = settings_table(HEADERS, stretch=(1, 3))
        self.name_field = QLineEdit()
        self.name_field.setPlaceholderText("name, e.g. spark")
        self.url_field = QLineEdit()
        self.url_field.setPlaceholderText("http://192.168.1.20:8080")
        self.key_field = QLineEdit()
        self.key_field.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_field.setPlaceholderText("API key (if the server needs one)")
        self.add_button = QPushButton("Add server")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setEnabled(False)
        self.status_label = QLabel("")
        self.status_label.setProperty("role", "hint")
        self.status_label.setWordWrap(True)

        fields = QHBoxLayout()
        fields.addWidget(self.name_field, 1)
        fields.addWidget(self.url_field, 2)
        fields.addWidget(self.key_field, 2)
        fields.addWidget(self.add_button)
        fields.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(fields)
        layout.addWidget(self.status_label)

        self.add_button.clicked.connect(self._on_add)
        self.remove_button.clicked.connect(self._on_remove)
        self.table.itemSelectionChanged.connect(
            lambda: self.remove_button.setEnabled(bool(self.table.selectedItems()))
        )

    def set_remotes(self, rows: list[RemoteRow]) -> None:
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            values = (row.name, row.url, "saved" if row.has_key else "none", row.status)
            for j, value in enumerate(values):
                self.table.setItem(i, j, QTableWidgetItem(value))
        self.remove_button.setEnabled(bool(self.table.selectedItems()))

    def show_message(self, text: str) -> None:
        self.status_label.setText(text)
        self.add_button.setEnabled(True)

    def _on_add(self) -> None:
        name, url = self.name_field.text().strip(), self.url_field.text().strip()
        if not name or not url:
            self.show_message("Give the server a name and its URL.")
            return
        self.add_button.setEnabled(False)
        self.status_label.setText(f"Asking {url} for its models…")
        key = self.key_field.text().strip()
        self.key_field.clear()  # a key is never kept in a widget longer than needed
        self.add_requested.emit(name, url, key)

    def _on_remove(self) -> None:
        items = self.table.selectedItems()
        if items:
            name_item = self.table.item(items[0].row(), 0)
            if name_item is not None:
                self.remove_requested.emit(name_item.text())
