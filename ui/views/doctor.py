"""``DoctorView``: the doctor's checks with their fixes, and the settings.

Settings: the models folder, the Hugging Face token (stored where ``hf auth login`` keeps it,
by the core; the field never shows it back), the default context length, and the llama.cpp
backend in use (read-only, from the probe). The view edits a copy of ``Settings`` and emits
``settings_saved``; ``ui/app.py`` writes it atomically.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from launcher.settings import Settings
from ui.models.checks import CheckModel
from ui.models.rows import CheckRow
from ui.views.mcp_servers import McpServersBox
from ui.views.remotes import RemoteServersBox
from ui.widgets.elided_label import ElidedLabel

CONTEXT_CHOICES = (2048, 4096, 8192, 16384, 32768, 65536, 131072)


class DoctorView(QWidget):
    """Checks on top, settings below."""

    rerun_requested = Signal()
    settings_saved = Signal(object)  # Settings
    token_entered = Signal(str)

    def __init__(
        self, settings: Settings, default_models_dir: str, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.settings = dataclasses.replace(settings)
        self.default_models_dir = default_models_dir
        self.checks = CheckModel(self)

        title = QLabel("Doctor")
        title.setProperty("role", "title")
        self.machine_label = QLabel("Probing this machine…")
        self.machine_label.setWordWrap(True)
        self.table = QTableView()
        self.table.setModel(self.checks)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(True)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        # Room for a few checks at the least; the table takes the height the window has.
        self.table.setMinimumHeight(140)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.rerun_button = QPushButton("Run checks again")
        self.checks_status = QLabel("Running checks…")
        self.checks_status.setProperty("role", "hint")
        row = QHBoxLayout()
        row.addWidget(self.checks_status, 1)
        row.addWidget(self.rerun_button)

        box = QGroupBox("Settings")
        form = QFormLayout(box)
        self.models_dir = QLineEdit(settings.models_dir or default_models_dir)
        browse = QPushButton("Choose…")
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.models_dir, 1)
        folder_row.addWidget(browse)
        form.addRow("Models folder:", folder_row)
        self.token_field = QLineEdit()
        self.token_field.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_field.setPlaceholderText("hf_…  (only needed for gated or private models)")
        self.token_status = ElidedLabel("", mode=Qt.TextElideMode.ElideRight)
        self.token_status.setProperty("role", "hint")
        token_row = QHBoxLayout()
        token_row.addWidget(self.token_field, 1)
        token_row.addWidget(self.token_status, 1)
        form.addRow("Hugging Face token:", token_row)
        self.context_picker = QComboBox()
        for n in CONTEXT_CHOICES:
            self.context_picker.addItem(f"{n // 1024}k tokens", n)
        self.context_picker.setCurrentIndex(
            min(
                range(len(CONTEXT_CHOICES)),
                key=lambda i: abs(CONTEXT_CHOICES[i] - settings.default_context),
            )
        )
        form.addRow("Default context:", self.context_picker)
        self.theme_picker = QComboBox()
        for key, label in (("system", "Follow the system"), ("light", "Light"), ("dark", "Dark")):
            self.theme_picker.addItem(label, key)
        self.theme_picker.setCurrentIndex(max(0, self.theme_picker.findData(settings.theme)))
        form.addRow("Theme:", self.theme_picker)
        self.backend_label = QLabel("—")
        form.addRow("Backend in use:", self.backend_label)
        self.save_button = QPushButton("Save settings")
        self.saved_label = QLabel("")
        self.saved_label.setProperty("role", "hint")
        save_row = QHBoxLayout()
        save_row.addWidget(self.saved_label, 1)
        save_row.addWidget(self.save_button)
        form.addRow(save_row)

        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(self.machine_label)
        layout.addWidget(self.table, 1)
        layout.addLayout(row)
        self.remotes = RemoteServersBox()  # saved remote servers; wired in ui/app.py
        self.mcp = McpServersBox()  # saved MCP servers (tools); wired in ui/app.py
        # Remote and MCP servers share one column as tabs, and sit beside the settings, so
        # the checks keep their room on a 1280x720 screen.
        self.servers_tabs = QTabWidget()
        self.servers_tabs.setDocumentMode(True)
        self.servers_tabs.addTab(self.remotes, "Remote servers")
        self.servers_tabs.addTab(self.mcp, "MCP servers")
        lower = QHBoxLayout()
        lower.addWidget(box, 1)
        lower.addWidget(self.servers_tabs, 1)
        layout.addLayout(lower)

        self.rerun_button.clicked.connect(self._on_rerun)
        self.save_button.clicked.connect(self._on_save)
        browse.clicked.connect(self._on_browse)

    def set_machine(self, summary: str, backend: str) -> None:
        self.machine_label.setText(summary)
        self.backend_label.setText(backend)

    def set_checks(self, rows: list[CheckRow]) -> None:
        self.checks.set_rows(rows)
        self.table.resizeRowsToContents()
        problems = sum(1 for r in rows if r.status in ("warn", "fail"))
        self.checks_status.setText(
            "All checks passed." if not problems else f"{problems} problem(s) found: see the fixes."
        )
        self.rerun_button.setEnabled(True)

    def set_checks_error(self, message: str) -> None:
        self.checks_status.setText(message)
        self.rerun_button.setEnabled(True)

    def set_token_status(self, text: str) -> None:
        self.token_status.setText(text)

    def _on_rerun(self) -> None:
        self.rerun_button.setEnabled(False)
        self.checks_status.setText("Running checks…")
        self.rerun_requested.emit()

    def _on_browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Models folder", self.models_dir.text())
        if folder:
            self.models_dir.setText(folder)

    def _on_save(self) -> None:
        folder = self.models_dir.text().strip()
        self.settings.models_dir = (
            None if not folder or folder == self.default_models_dir else folder
        )
        self.settings.default_context = int(self.context_picker.currentData())
        self.settings.theme = str(self.theme_picker.currentData())
        token = self.token_field.text().strip()
        if token:
            self.token_entered.emit(token)
            self.token_field.clear()
        self.settings_saved.emit(dataclasses.replace(self.settings))
        self.saved_label.setText("Saved.")
