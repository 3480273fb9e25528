"""``McpServersBox``: the "MCP servers" part of Doctor & settings.

Lists the saved MCP servers (name, stdio or HTTP, what runs or where, and the last test's
result: its tools or why it failed), adds one from a command line or a URL, imports an
``mcp.json`` (Cursor, Claude Desktop, LM Studio), tests and removes one. Env values and HTTP
headers (often tokens) come in through an imported ``mcp.json`` or ``spark-launcher mcp add``
and are never shown. The view only renders and emits requests; ``ui/app.py`` does the work
(``launcher.tools``) on a worker thread and calls :meth:`set_servers` / :meth:`show_message`.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
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

HEADERS = ("Name", "Kind", "Runs / URL", "Tools")


@dataclass(frozen=True)
class McpServerRow:
    """One saved server as shown (secrets already left out by the core's ``describe``)."""

    name: str
    kind: str  # "stdio" or "http"
    target: str
    status: str  # "not tested", "4 tools: add, lookup, …" or why it failed


class McpServersBox(QGroupBox):
    """Saved MCP servers, a row of fields to add one, import, test and remove."""

    add_requested = Signal(str, str)  # name, command line or URL
    import_requested = Signal(str)  # path of an mcp.json
    test_requested = Signal(str)  # name
    remove_requested = Signal(str)  # name

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("MCP servers (tools)", parent)
        self.setToolTip("Tools a model may call, with your approval: stdio commands or URLs")
        self.table = settings_table(HEADERS, stretch=(2, 3))
        self.table.setWordWrap(False)  # one line a server; the whole text is in the tooltip
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.name_field = QLineEdit()
        self.name_field.setPlaceholderText("name, e.g. files")
        self.target_field = QLineEdit()
        self.target_field.setPlaceholderText("npx -y @modelcontextprotocol/server-… or https://…")
        self.add_button = QPushButton("Add")
        self.import_button = QPushButton("Import mcp.json…")
        self.test_button = QPushButton("Test")
        self.remove_button = QPushButton("Remove")
        for button in (self.test_button, self.remove_button):
            button.setEnabled(False)
        self.status_label = QLabel("")
        self.status_label.setProperty("role", "hint")
        self.status_label.setWordWrap(True)

        fields = QHBoxLayout()
        fields.addWidget(self.name_field, 1)
        fields.addWidget(self.target_field, 3)
        fields.addWidget(self.add_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.import_button)
        buttons.addStretch(1)
        buttons.addWidget(self.test_button)
        buttons.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(fields)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)

        self.add_button.clicked.connect(self._on_add)
        self.import_button.clicked.connect(self._on_import)
        self.test_button.clicked.connect(self._on_test)
        self.remove_button.clicked.connect(self._on_remove)
        self.table.itemSelectionChanged.connect(self._on_selection)

    def set_servers(self, rows: list[McpServerRow]) -> None:
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, value in enumerate((row.name, row.kind, row.target, row.status)):
                item = QTableWidgetItem(value)
                item.setToolTip(value)
                self.table.setItem(i, j, item)
        self._on_selection()

    def show_message(self, text: str) -> None:
        self.status_label.setText(text)
        self.add_button.setEnabled(True)
        self._on_selection()

    def selected_name(self) -> str | None:
        items = self.table.selectedItems()
        if not items:
            return None
        item = self.table.item(items[0].row(), 0)
        return item.text() if item is not None else None

    def _on_selection(self) -> None:
        chosen = self.selected_name() is not None
        self.test_button.setEnabled(chosen)
        self.remove_button.setEnabled(chosen)

    def _on_add(self) -> None:
        name, target = self.name_field.text().strip(), self.target_field.text().strip()
        if not name or not target:
            self.show_message("Give the server a name and its command line or URL.")
            return
        self.add_button.setEnabled(False)
        self.status_label.setText(f"Starting {name} to list its tools…")
        self.add_requested.emit(name, target)

    def _on_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import mcp.json", "", "JSON (*.json)")
        if path:
            self.import_requested.emit(path)

    def _on_test(self) -> None:
        name = self.selected_name()
        if name is not None:
            self.test_button.setEnabled(False)
            self.status_label.setText(f"Starting {name} to list its tools…")
            self.test_requested.emit(name)

    def _on_remove(self) -> None:
        name = self.selected_name()
        if name is not None:
            self.remove_requested.emit(name)
