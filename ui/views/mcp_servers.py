"""``McpServersBox``: the "MCP servers" part of Doctor & settings.

Lists the saved MCP servers (name, stdio or HTTP, what runs or where, and the last test's
result: its tools or why it failed), adds one from a command line or a URL, imports an
``mcp.json`` (Cursor, Claude Desktop, LM Studio), tests and removes one. Env values and HTTP
headers (often tokens) come in through an imported ``mcp.json``, ``spark-launcher mcp add`` or
"Env / headers…" (``McpSecretsDialog``: names shown, values typed hidden and never shown
again; they go to the 0600 servers file). The view only renders and emits requests;
``ui/app.py`` does the work (``launcher.tools``) on a worker thread and calls
:meth:`set_servers` / :meth:`show_message`.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
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
    secret_names: tuple[str, ...] = ()  # its env variables (stdio) or headers (http): names


class McpSecretsDialog(QDialog):
    """A server's environment variables (stdio) or HTTP headers: the names it has, a hidden
    field to replace each value (empty: unchanged), new ones, and removal. Values already
    saved are never shown."""

    def __init__(self, row: McpServerRow, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.row = row
        what = "HTTP headers" if row.kind.startswith("http") else "Environment variables"
        self.setWindowTitle(f"{what} of {row.name}")
        self.table = settings_table(("Name", "New value"), stretch=(1,))
        self.table.setMaximumHeight(16777215)
        self.table.setEditTriggers(
            QTableWidget.EditTrigger.DoubleClicked | QTableWidget.EditTrigger.EditKeyPressed
        )
        self.hint = QLabel(
            "Saved values stay hidden: type one to replace it, leave it empty to keep it. "
            "Values are kept in a file only you can read."
        )
        self.hint.setWordWrap(True)
        self.hint.setProperty("role", "hint")
        self.add_button = QPushButton("Add")
        self.remove_button = QPushButton("Remove")
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.save_button = buttons.button(QDialogButtonBox.StandardButton.Save)
        row_buttons = QHBoxLayout()
        row_buttons.addWidget(self.add_button)
        row_buttons.addWidget(self.remove_button)
        row_buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(row_buttons)
        layout.addWidget(self.hint)
        layout.addWidget(buttons)
        self._removed: set[str] = set()
        for name in row.secret_names:
            self._add_row(name, saved=True)
        self.add_button.clicked.connect(lambda: self._add_row("", saved=False))
        self.remove_button.clicked.connect(self._remove_selected)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.resize(520, 300)

    def _add_row(self, name: str, saved: bool) -> None:
        i = self.table.rowCount()
        self.table.insertRow(i)
        item = QTableWidgetItem(name)
        if saved:
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            item.setData(Qt.ItemDataRole.UserRole, name)
        self.table.setItem(i, 0, item)
        value = QLineEdit()
        value.setEchoMode(QLineEdit.EchoMode.Password)
        value.setPlaceholderText("unchanged (hidden)" if saved else "value")
        self.table.setCellWidget(i, 1, value)
        if not saved:
            self.table.setCurrentCell(i, 0)
            self.table.editItem(item)

    def set_value(self, row: int, value: str) -> None:
        widget = self.table.cellWidget(row, 1)
        if isinstance(widget, QLineEdit):
            widget.setText(value)

    def _remove_selected(self) -> None:
        row = self.table.currentRow()
        if row < 0:
            return
        item = self.table.item(row, 0)
        saved = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if saved:
            self._removed.add(str(saved))
        self.table.removeRow(row)

    def changes(self) -> dict[str, str | None]:
        """Names to set (their new values) and to remove (``None``); the rest stay."""
        out: dict[str, str | None] = dict.fromkeys(self._removed)
        for i in range(self.table.rowCount()):
            item, widget = self.table.item(i, 0), self.table.cellWidget(i, 1)
            name = item.text().strip() if item is not None else ""
            value = widget.text() if isinstance(widget, QLineEdit) else ""
            if name and value:
                out[name] = value
        return out


class McpServersBox(QGroupBox):
    """Saved MCP servers, a row of fields to add one, import, test and remove."""

    add_requested = Signal(str, str)  # name, command line or URL
    import_requested = Signal(str)  # path of an mcp.json
    test_requested = Signal(str)  # name
    remove_requested = Signal(str)  # name
    secrets_edited = Signal(str, object)  # name, {env/header name: new value, or None: remove}

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
        self.secrets_button = QPushButton("Env / headers…")
        self.secrets_button.setToolTip(
            "Set the selected server's environment variables (a command) or HTTP headers "
            "(a URL), such as API tokens; saved values are never shown"
        )
        self.secrets_dialog: McpSecretsDialog | None = None
        self._rows: list[McpServerRow] = []
        for button in (self.test_button, self.remove_button, self.secrets_button):
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
        buttons.addWidget(self.secrets_button)
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
        self.secrets_button.clicked.connect(self._on_secrets)
        self.table.itemSelectionChanged.connect(self._on_selection)

    def set_servers(self, rows: list[McpServerRow]) -> None:
        self._rows = list(rows)
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
        self.secrets_button.setEnabled(chosen)

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

    def _on_secrets(self) -> None:
        name = self.selected_name()
        row = next((r for r in self._rows if r.name == name), None)
        if row is None:
            return
        dialog = McpSecretsDialog(row, self)
        self.secrets_dialog = dialog

        def done() -> None:
            changes = dialog.changes()
            if changes:
                self.status_label.setText(f"Saving {row.name}…")
                self.secrets_edited.emit(row.name, changes)

        dialog.accepted.connect(done)
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()
