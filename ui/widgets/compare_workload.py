"""``WorkloadPicker``: what the two models are compared on, in one row of the Compare view.

One prompt, a bundled suite, HumanEval, a suite file (``.jsonl``), the user's saved chats, the
local API's recorded requests, or a folder of documents with a prompt template; a limit
("first N prompts"); a one-line description of the choice; a "Choose…" button for the file,
chats or folder; the switch that records the local API's requests (a setting, off by
default); and the template of the folder workload. The widget only keeps the choice: the
core turns :meth:`spec` into prompts (``launcher.compare_workloads``).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from launcher.compare_suites import load_suite, suite_names
from launcher.compare_workloads import DEFAULT_TEMPLATE
from launcher.paths import AppPaths
from launcher.server.recording import read_traffic, traffic_file
from launcher.settings import load_settings, save_settings
from ui.theme import fmt_bytes
from ui.widgets.elided_label import ElidedLabel

FILE, CHATS, API_LOG, FOLDER = "file:", "chats", "api-log", "folder:"
CHOOSABLE = (FILE, CHATS, FOLDER)
HUMANEVAL_PROBLEMS = 164


class WorkloadPicker(QWidget):
    """The workload row. ``changed`` fires whenever :meth:`spec` or the limit changes."""

    changed = Signal()

    def __init__(self, paths: AppPaths | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.paths = paths or AppPaths.default()
        self.file: Path | None = None
        self.folder: Path | None = None
        self.chat_ids: list[str] = []  # empty: every saved chat

        self.combo = QComboBox()
        self.combo.addItem("Single prompt (typed below)", None)
        for name in suite_names():
            if name == "humaneval":
                continue
            suite = load_suite(name)
            self.combo.addItem(f"Suite: {suite.title} ({len(suite.prompts)})", name)
        self.combo.addItem(f"HumanEval: {HUMANEVAL_PROBLEMS} coding problems", "humaneval")
        self.combo.addItem("Suite file (.jsonl)…", FILE)
        self.combo.addItem("Saved chats…", CHATS)
        self.combo.addItem("Recorded API requests", API_LOG)
        self.combo.addItem("Folder of documents…", FOLDER)
        self.limit_spin = QSpinBox()
        self.limit_spin.setRange(0, 100_000)
        self.limit_spin.setSpecialValueText("all prompts")
        self.limit_spin.setPrefix("first ")
        self.limit_spin.setToolTip("Run only the first N prompts (0: all of them)")
        self.description = ElidedLabel("", mode=Qt.TextElideMode.ElideMiddle)
        self.description.setProperty("role", "hint")
        self.choose_button = QPushButton("Choose…")
        self.record_box = QCheckBox("Record Local API requests")
        self.record_box.setToolTip(
            "Keep every chat request the Local API receives (messages, tools, response "
            f"format) in {traffic_file(self.paths).name}, to replay them here. Off by default."
        )
        self.template_edit = QLineEdit(DEFAULT_TEMPLATE.split("\n")[0])
        self.template_edit.setToolTip(
            "The prompt for each document: {text} is the document, {name} its file name. "
            "Without {text}, the document follows the prompt."
        )
        self.template_edit.setMinimumWidth(160)

        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Workload:"))
        row.addWidget(self.combo)
        row.addWidget(self.limit_spin)
        row.addWidget(self.choose_button)
        row.addWidget(self.record_box)
        row.addWidget(self.template_edit, 2)
        row.addWidget(self.description, 3)

        self.combo.currentIndexChanged.connect(self._on_kind_changed)
        self.limit_spin.valueChanged.connect(lambda _v: self.changed.emit())
        self.choose_button.clicked.connect(self.choose)
        self.record_box.toggled.connect(self._on_record_toggled)
        self.template_edit.textChanged.connect(lambda _t: self.changed.emit())
        self._on_kind_changed()

    # ------------------------------------------------------------------ state
    def kind(self) -> str | None:
        data = self.combo.currentData()
        return None if data is None else str(data)

    def spec(self) -> str | None:
        """The ``--suite`` value for the choice (None: the single typed prompt, or a file,
        folder or chats not chosen yet)."""
        kind = self.kind()
        if kind == FILE:
            return str(self.file) if self.file else None
        if kind == FOLDER:
            return f"folder:{self.folder}" if self.folder else None
        if kind == CHATS:
            return f"chats:{','.join(self.chat_ids)}" if self.chat_ids else "chats"
        return kind

    def limit(self) -> int | None:
        return self.limit_spin.value() or None

    def template(self) -> str | None:
        """The folder workload's template; the document is appended when it has no {text}."""
        if self.kind() != FOLDER:
            return None
        text = self.template_edit.text().strip() or DEFAULT_TEMPLATE
        return text if "{text}" in text else f"{text}\n\n--- {{name}} ---\n{{text}}"

    def select(self, spec: str | None, limit: int | None = None) -> None:
        """Show a saved comparison's workload (a name, a file, ``chats...``, ``folder:...``)."""
        if spec and spec.endswith(".jsonl"):
            self.file = Path(spec)
            spec = FILE
        elif spec and spec.startswith(FOLDER):
            self.folder = Path(spec.removeprefix(FOLDER))
            spec = FOLDER
        elif spec and spec.startswith(CHATS):
            self.chat_ids = [i for i in spec.partition(":")[2].split(",") if i]
            spec = CHATS
        idx = self.combo.findData(spec)
        self.combo.setCurrentIndex(max(idx, 0))
        self.limit_spin.setValue(limit or 0)
        self._describe()

    def set_file(self, path: Path) -> None:
        self.file = Path(path)
        self._show(FILE)

    def set_folder(self, path: Path, template: str | None = None) -> None:
        self.folder = Path(path)
        if template is not None:
            self.template_edit.setText(template)
        self._show(FOLDER)

    def set_chats(self, ids: list[str]) -> None:
        self.chat_ids = list(ids)
        self._show(CHATS)

    def _show(self, kind: str) -> None:
        self.combo.setCurrentIndex(self.combo.findData(kind))
        self._describe()
        self.changed.emit()

    # ------------------------------------------------------------------ UI
    def _on_kind_changed(self, *_args: object) -> None:
        kind = self.kind()
        self.choose_button.setVisible(kind in CHOOSABLE)
        self.record_box.setVisible(kind == API_LOG)
        self.template_edit.setVisible(kind == FOLDER)
        self.limit_spin.setEnabled(kind is not None)
        if kind == API_LOG:
            self.record_box.blockSignals(True)
            self.record_box.setChecked(load_settings(self.paths).record_api_traffic)
            self.record_box.blockSignals(False)
        self._describe()
        self.changed.emit()

    def refresh(self) -> None:
        """Describe the choice again (the recording grows while the Local API serves)."""
        self._describe()

    def showEvent(self, event: QShowEvent) -> None:
        self._describe()
        super().showEvent(event)

    def _describe(self) -> None:
        kind = self.kind()
        text = ""
        if kind == FILE:
            text = str(self.file) if self.file else "Choose a suite file (one prompt per line)."
        elif kind == FOLDER:
            text = (
                f"Every text file in {self.folder}"
                if self.folder
                else "Choose a folder: each text file becomes one prompt."
            )
        elif kind == CHATS:
            n = len(self.chat_ids)
            text = (
                f"{n} chosen chat{'s' if n != 1 else ''}: each of your messages, in context"
                if n
                else "Every saved chat: each of your messages, asked in context"
            )
        elif kind == API_LOG:
            traffic = read_traffic(traffic_file(self.paths))
            n = len(traffic.entries)
            text = (
                f"{n} request{'s' if n != 1 else ''} recorded ({fmt_bytes(traffic.size_bytes)})"
                if n
                else "Nothing recorded yet: turn recording on, then use the Local API."
            )
        elif kind == "humaneval":
            text = "pass@1, greedy: each answer runs the problem's tests"
        self.description.setText(text)

    def _on_record_toggled(self, on: bool) -> None:
        settings = load_settings(self.paths)
        settings.record_api_traffic = on
        save_settings(self.paths, settings)
        self._describe()

    def choose(self) -> None:
        kind = self.kind()
        if kind == FILE:
            path, _ = QFileDialog.getOpenFileName(
                self, "Choose a suite file", "", "Suite (*.jsonl)"
            )
            if path:
                self.set_file(Path(path))
        elif kind == FOLDER:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder of documents")
            if path:
                self.set_folder(Path(path))
        elif kind == CHATS:
            dialog = ChatsDialog(self.paths, self.chat_ids, self)
            if dialog.exec() == QDialog.DialogCode.Accepted:
                self.set_chats(dialog.chosen())


class ChatsDialog(QDialog):
    """Tick the saved chats to compare on (none ticked: all of them)."""

    def __init__(self, paths: AppPaths, chosen: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from launcher.chats import ChatStore

        self.setWindowTitle("Saved chats to compare on")
        self.list = QListWidget()
        for summary in ChatStore(paths.chats_dir).list():
            item = QListWidgetItem(f"{summary.title}  ({summary.message_count} messages)")
            item.setData(Qt.ItemDataRole.UserRole, summary.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            ticked = summary.id in chosen
            item.setCheckState(Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)
            self.list.addItem(item)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Each of your messages in these chats is asked again, in context."))
        layout.addWidget(self.list)
        layout.addWidget(buttons)

    def chosen(self) -> list[str]:
        out = []
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(str(item.data(Qt.ItemDataRole.UserRole)))
        return out
