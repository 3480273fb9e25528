"""``LibraryView``: models on disk (ours and other tools', used in place) and the downloads.

Downloads show progress, speed, ETA, verification and errors (the selected one's whole error
below the list); the buttons act on the selected download (pause, resume, cancel, retry).
Downloads set aside after failing sha256 verification are listed with their size and can be
deleted. Nothing is deleted without the user's confirmation: the view asks, naming the file
and its size (and saying when the model is loaded, so it will be unloaded first), then
reports intent through signals. It renders the item models it is given.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal, SignalInstance
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListView,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ui.models.library import (
    DownloadModel,
    DownloadRole,
    LocalModelModel,
    LocalModelRole,
    SetAsideModel,
    SetAsideRole,
)
from ui.models.wording import plural
from ui.theme import fmt_bytes
from ui.widgets.progress_delegate import DownloadDelegate


def confirm(parent: QWidget, title: str, text: str) -> bool:
    """Ask before something is deleted; "No" is the default answer."""
    answer = QMessageBox.question(
        parent,
        title,
        text,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


class LibraryView(QWidget):
    """Local models above, downloads below."""

    chat_requested = Signal(str)  # path
    rescan_requested = Signal()
    delete_requested = Signal(str)  # path (ours only), after the user confirmed
    delete_set_aside_requested = Signal(str)  # a set-aside download's path, confirmed
    import_requested = Signal(str)  # a .gguf path from anywhere (used in place)
    pause_requested = Signal(str)  # download id
    resume_requested = Signal(str)
    cancel_requested = Signal(str)
    retry_requested = Signal(str)

    def __init__(
        self,
        local_models: LocalModelModel,
        downloads: DownloadModel,
        models_dir: str = "",
        parent: QWidget | None = None,
        *,
        set_aside: SetAsideModel | None = None,
        is_loaded: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(parent)
        self.local_models = local_models
        self.downloads = downloads
        self.set_aside = set_aside if set_aside is not None else SetAsideModel(self)
        self._is_loaded = is_loaded or (lambda _path: False)

        title = QLabel("Library")
        title.setProperty("role", "title")
        self.folder_label = QLabel(f"Models folder: {models_dir}" if models_dir else "")
        self.folder_label.setProperty("role", "hint")
        self.summary = QLabel("")
        self.summary.setProperty("role", "hint")
        self.message = QLabel("")
        self.message.setWordWrap(True)

        self.table = QTableView()
        self.table.setModel(local_models)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.empty_label = QLabel(
            "No models on disk yet. Pick one in Discover and press Download; models already "
            "in LM Studio, Ollama or the Hugging Face cache appear here without copying."
        )
        self.empty_label.setWordWrap(True)
        self.empty_label.setProperty("role", "hint")
        self.chat_button = QPushButton("Chat with it")
        self.delete_button = QPushButton("Delete")
        self.rescan_button = QPushButton("Rescan")
        self.import_button = QPushButton("Import .gguf…")
        self.import_button.setToolTip("Add a GGUF file from anywhere; it is used where it is.")
        local_buttons = QHBoxLayout()
        local_buttons.addWidget(self.chat_button)
        local_buttons.addWidget(self.delete_button)
        local_buttons.addStretch(1)
        local_buttons.addWidget(self.import_button)
        local_buttons.addWidget(self.rescan_button)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(title)
        top_layout.addWidget(self.folder_label)
        top_layout.addWidget(self.summary)
        top_layout.addWidget(self.message)
        top_layout.addWidget(self.table, 1)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        top_layout.addWidget(self.empty_label, 1)
        top_layout.addLayout(local_buttons)

        # Downloads whose sha256 did not match: kept aside (never deleted silently).
        self.set_aside_title = QLabel("Set aside after failed verification")
        self.set_aside_title.setProperty("role", "subtitle")
        self.set_aside_list = QListView()
        self.set_aside_list.setModel(self.set_aside)
        self.set_aside_list.setMaximumHeight(90)
        self.delete_set_aside_button = QPushButton("Delete set-aside file")
        set_aside_buttons = QHBoxLayout()
        set_aside_buttons.addWidget(self.delete_set_aside_button)
        set_aside_buttons.addStretch(1)
        self.set_aside_box = QWidget()
        set_aside_layout = QVBoxLayout(self.set_aside_box)
        set_aside_layout.setContentsMargins(0, 6, 0, 0)
        set_aside_layout.addWidget(self.set_aside_title)
        set_aside_layout.addWidget(self.set_aside_list)
        set_aside_layout.addLayout(set_aside_buttons)
        top_layout.addWidget(self.set_aside_box)

        downloads_title = QLabel("Downloads")
        downloads_title.setProperty("role", "title")
        self.download_list = QListView()
        self.download_list.setModel(downloads)
        self.download_list.setItemDelegate(DownloadDelegate(self.download_list))
        self.download_list.setUniformItemSizes(True)
        self.downloads_empty = QLabel("No downloads yet.")
        self.downloads_empty.setProperty("role", "hint")
        # The selected download's whole error (a row has room for one line of it).
        self.download_details = QLabel("")
        self.download_details.setWordWrap(True)
        self.download_details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.cancel_button = QPushButton("Cancel")
        self.retry_button = QPushButton("Retry")
        dl_buttons = QHBoxLayout()
        for b in (self.pause_button, self.resume_button, self.cancel_button, self.retry_button):
            dl_buttons.addWidget(b)
        dl_buttons.addStretch(1)
        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addWidget(downloads_title)
        bottom_layout.addWidget(self.download_list, 1)
        bottom_layout.addWidget(self.downloads_empty)
        bottom_layout.addWidget(self.download_details)
        bottom_layout.addLayout(dl_buttons)

        splitter = QSplitter()
        splitter.setOrientation(splitter.orientation().Vertical)
        splitter.addWidget(top)
        splitter.addWidget(bottom)
        splitter.setSizes([420, 260])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        self.chat_button.clicked.connect(self._on_chat)
        self.table.doubleClicked.connect(lambda _i: self._on_chat())
        self.delete_button.clicked.connect(self._on_delete)
        self.delete_set_aside_button.clicked.connect(self._on_delete_set_aside)
        self.rescan_button.clicked.connect(self.rescan_requested)
        self.import_button.clicked.connect(self._on_import)
        self.pause_button.clicked.connect(lambda: self._on_download_action(self.pause_requested))
        self.resume_button.clicked.connect(lambda: self._on_download_action(self.resume_requested))
        self.cancel_button.clicked.connect(lambda: self._on_download_action(self.cancel_requested))
        self.retry_button.clicked.connect(lambda: self._on_download_action(self.retry_requested))
        for model in (local_models, downloads, self.set_aside):
            model.modelReset.connect(self._refresh)
            model.rowsInserted.connect(self._refresh)
            model.rowsRemoved.connect(self._refresh)
            model.dataChanged.connect(self._refresh_buttons)
        self.table.selectionModel().selectionChanged.connect(self._refresh_buttons)
        self.download_list.selectionModel().selectionChanged.connect(self._refresh_buttons)
        self.set_aside_list.selectionModel().selectionChanged.connect(self._refresh_buttons)
        self.show_message("")
        self._refresh()

    def show_message(self, text: str) -> None:
        """A result or an error for the user (deleted, freed space, scan failed, ...)."""
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def _selected_path(self) -> str | None:
        index = self.table.currentIndex()
        return index.data(LocalModelRole.PATH) if index.isValid() else None

    def _selected_download(self) -> tuple[str, str] | None:
        index = self.download_list.currentIndex()
        if not index.isValid():
            return None
        return index.data(DownloadRole.ID), index.data(DownloadRole.STATE)

    def _on_chat(self) -> None:
        path = self._selected_path()
        if path:
            self.chat_requested.emit(path)

    def _on_import(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(
            self, "Import a GGUF model", "", "GGUF models (*.gguf)"
        )
        if path:
            self.import_requested.emit(path)

    def _on_delete(self) -> None:
        index = self.table.currentIndex()
        if not index.isValid() or not index.data(LocalModelRole.OURS):
            return
        row = index.data(LocalModelRole.ROW)
        size = fmt_bytes(row.size_bytes) if row.size_bytes is not None else "size unknown"
        text = f"Delete {row.name} ({size}) from disk?\n\n{row.path}"
        if self._is_loaded(row.path):
            text += "\n\nIt is loaded now: it will be unloaded first."
        if confirm(self, "Delete model", text):
            self.delete_requested.emit(row.path)

    def _on_delete_set_aside(self) -> None:
        index = self.set_aside_list.currentIndex()
        if not index.isValid():
            return
        row = index.data(SetAsideRole.ROW)
        text = (
            f"Delete the copy of {row.name} that failed verification "
            f"({fmt_bytes(row.size_bytes)})?\n\n{row.path}"
        )
        if confirm(self, "Delete set-aside file", text):
            self.delete_set_aside_requested.emit(row.path)

    def _on_download_action(self, signal: SignalInstance) -> None:
        selected = self._selected_download()
        if selected:
            signal.emit(selected[0])

    def _refresh(self, *_args: object) -> None:
        rows = self.local_models.rows()
        self.empty_label.setVisible(not rows)
        self.table.setVisible(bool(rows))
        remote = sum(1 for r in rows if r.path.startswith("remote:"))  # on saved servers
        others = sum(1 for r in rows if not r.ours) - remote
        total = sum(r.size_bytes or 0 for r in rows)
        self.summary.setText(
            f"{plural(len(rows), 'model')}, {total / 2**30:.1f} GiB"
            + (f" ({others} found in other tools' folders, used in place)" if others else "")
            + (f" ({remote} on remote servers)" if remote else "")
            if rows
            else ""
        )
        has_downloads = self.downloads.rowCount() > 0
        self.downloads_empty.setVisible(not has_downloads)
        if has_downloads and not self.download_list.currentIndex().isValid():
            self.download_list.setCurrentIndex(self.downloads.index(self.downloads.rowCount() - 1))
        has_set_aside = self.set_aside.rowCount() > 0
        self.set_aside_box.setVisible(has_set_aside)
        if has_set_aside and not self.set_aside_list.currentIndex().isValid():
            self.set_aside_list.setCurrentIndex(self.set_aside.index(0))
        self._refresh_buttons()

    def _refresh_buttons(self, *_args: object) -> None:
        index = self.table.currentIndex()
        self.chat_button.setEnabled(index.isValid())
        self.delete_button.setEnabled(index.isValid() and bool(index.data(LocalModelRole.OURS)))
        selected = self._selected_download()
        state = selected[1] if selected else ""
        self.pause_button.setEnabled(state in ("queued", "downloading"))
        self.resume_button.setEnabled(state == "paused")
        self.cancel_button.setEnabled(state in ("queued", "downloading", "paused"))
        self.retry_button.setEnabled(state in ("failed", "cancelled"))
        self.delete_set_aside_button.setEnabled(self.set_aside_list.currentIndex().isValid())
        row = self.download_list.currentIndex().data(DownloadRole.ROW) if selected else None
        error = f"{row.name}: {row.error}" if row is not None and row.error else ""
        self.download_details.setText(error)
        self.download_details.setVisible(bool(error))
