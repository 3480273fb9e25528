"""``DiscoverView``: the models that fit this machine, with filters, Hub search and one button.

Each row shows the model, quant, size, a fit badge (Full GPU / Partial N/M / CPU only /
Won't fit), the memory breakdown and the estimated speed with its basis; the last column is
the row's one button: Download, the download's progress, then Chat. Hovering or selecting a
row reports the candidate (``candidate_hovered``) so the gauge can show its ghost; when the
selected row leaves the list (a filter, a new search) it reports ``None``, so no ghost stays
behind for a model that is no longer listed.

The view computes nothing: it reports what the user asks (``filters_changed``,
``search_requested``, ``download_requested``, ``chat_requested``, ``starter_requested``) and
``ui/app.py`` runs the work off the GUI thread and calls ``set_candidates`` with the result.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ui.models.candidates import (
    CandidateFilterModel,
    CandidateModel,
    CandidateRole,
    Column,
    action_label,
    memory_breakdown,
    speed_label,
)
from ui.models.rows import CandidateRow
from ui.theme import fmt_bytes, verdict_colour, verdict_label
from ui.widgets.button_delegate import ButtonDelegate

CONTEXT_STEPS = (2048, 4096, 8192, 16384, 32768, 65536, 131072)
DEFAULT_USES = {
    "assistant": "Daily assistant",
    "reasoning": "Reasoning",
    "coding": "Coding",
    "private-work": "Large private work",
    "agents": "Agents",
}
DEFAULT_QUANTS = ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "MXFP4")


def context_label(tokens: int) -> str:
    return f"{tokens // 1024}k tokens"


class DiscoverView(QWidget):
    """Recommendations and Hub search results for this machine."""

    filters_changed = Signal(str, int)  # use ("" = any), context tokens
    search_requested = Signal(str)
    download_requested = Signal(object)  # CandidateRow
    chat_requested = Signal(str)  # local path
    starter_requested = Signal()
    candidate_hovered = Signal(object)  # CandidateRow or None
    expand_requested = Signal(object)  # a Hub repository row: list and plan its files

    def __init__(
        self,
        model: CandidateModel | None = None,
        uses: dict[str, str] | None = None,
        default_context: int = 8192,
        starter_available: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.model = model or CandidateModel(self)
        self.proxy = CandidateFilterModel(self)
        self.proxy.setSourceModel(self.model)

        title = QLabel("Discover")
        title.setProperty("role", "title")
        self.machine_label = QLabel("Probing this machine…")
        self.machine_label.setProperty("role", "hint")
        self.machine_label.setWordWrap(True)

        # ---- starter
        self.starter_box = QFrame()
        self.starter_box.setFrameShape(QFrame.Shape.StyledPanel)
        starter_layout = QHBoxLayout(self.starter_box)
        self.starter_text = QLabel(
            "<b>New here?</b> Gemma 3 270M comes with the app (253 MB, no network needed): "
            "a <b>tiny test model</b> to check that loading and chatting work. It is not a chat "
            "model: its replies mostly echo your prompt. For real chats, download the model "
            "recommended for this machine."
        )
        self.starter_text.setWordWrap(True)
        self.starter_button = QPushButton("Try Gemma 3 270M")
        # The recommended real model, one click away (the same path as its row's button).
        self.starter_recommend_button = QPushButton("")
        self.starter_recommend_button.setVisible(False)
        self._starter_recommended: CandidateRow | None = None
        starter_buttons = QVBoxLayout()  # stacked: the text keeps its width on small screens
        starter_buttons.addWidget(self.starter_button)
        starter_buttons.addWidget(self.starter_recommend_button)
        starter_layout.addWidget(self.starter_text, 1)
        starter_layout.addLayout(starter_buttons)
        self.starter_box.setVisible(starter_available)

        # ---- filters
        self.use_picker = QComboBox()
        self.use_picker.addItem("Any use", "")
        for key, label in (uses or DEFAULT_USES).items():
            self.use_picker.addItem(label, key)
        self.context_slider = QSlider(Qt.Orientation.Horizontal)
        self.context_slider.setRange(0, len(CONTEXT_STEPS) - 1)
        self.context_slider.setPageStep(1)
        self.context_slider.setMaximumWidth(180)
        self.context_slider.setValue(self._context_step(default_context))
        self.context_label = QLabel(context_label(self.context))
        self.context_label.setMinimumWidth(80)
        self.quant_picker = QComboBox()
        self.quant_picker.addItem("Any quant", "")
        for q in DEFAULT_QUANTS:
            self.quant_picker.addItem(q, q)
        self.show_no_fit = QCheckBox("Show what won't fit")
        self.tools_only = QCheckBox("Tool calling")
        self.tools_only.setToolTip(
            "For agents: only models that call tools natively. Hub search results, whose "
            "abilities are not known before download, are hidden too."
        )
        self.search_field = QLineEdit()
        self.search_field.setPlaceholderText("Search Hugging Face for GGUF models…")
        self.search_field.setClearButtonEnabled(True)
        self.search_button = QPushButton("Search")
        self.recommend_button = QPushButton("Recommendations")
        filters = QHBoxLayout()
        filters.addWidget(QLabel("Use:"))
        filters.addWidget(self.use_picker)
        filters.addSpacing(12)
        filters.addWidget(QLabel("Context:"))
        filters.addWidget(self.context_slider)
        filters.addWidget(self.context_label)
        filters.addSpacing(12)
        filters.addWidget(self.quant_picker)
        filters.addWidget(self.show_no_fit)
        filters.addWidget(self.tools_only)
        filters.addStretch(1)
        search = QHBoxLayout()
        search.addWidget(self.search_field, 1)
        search.addWidget(self.search_button)
        search.addWidget(self.recommend_button)

        # ---- table
        self.table = QTableView()
        self.table.setModel(self.proxy)
        # Click a header to sort; until then the rows keep the recommendation ranking.
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setMouseTracking(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(Column.MODEL, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(Column.MEMORY, QHeaderView.ResizeMode.ResizeToContents)
        self.button_delegate = ButtonDelegate(self.table)
        self.table.setItemDelegateForColumn(Column.ACTION, self.button_delegate)
        self.status = QLabel("")
        self.status.setProperty("role", "hint")
        self.status.setWordWrap(True)

        # ---- details of the selected row
        self.details = QLabel("Select a model to see its memory plan.")
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.action_button = QPushButton("Download")
        self.action_button.setEnabled(False)
        self.action_button.setMinimumWidth(160)
        detail_row = QHBoxLayout()
        detail_row.addWidget(self.details, 1)
        detail_row.addWidget(self.action_button, 0, Qt.AlignmentFlag.AlignTop)

        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(self.machine_label)
        layout.addWidget(self.starter_box)
        layout.addLayout(filters)
        layout.addLayout(search)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        layout.addLayout(detail_row)

        # ---- wiring
        self.use_picker.currentIndexChanged.connect(self._emit_filters)
        self.context_slider.valueChanged.connect(self._on_context_moved)
        self.context_slider.sliderReleased.connect(self._emit_filters)
        self.quant_picker.currentIndexChanged.connect(
            lambda: self.proxy.set_quant(self.quant_picker.currentData() or "")
        )
        self.show_no_fit.toggled.connect(lambda on: self.proxy.set_hide_no_fit(not on))
        self.proxy.set_hide_no_fit(True)
        self.tools_only.toggled.connect(self.proxy.set_tools_only)
        self.search_field.returnPressed.connect(self._on_search)
        self.search_button.clicked.connect(self._on_search)
        self.recommend_button.clicked.connect(self._emit_filters)
        self.starter_button.clicked.connect(self.starter_requested)
        self.starter_recommend_button.clicked.connect(
            lambda: self.trigger(self._starter_recommended)
        )
        self.table.entered.connect(self._on_entered)
        self.table.selectionModel().currentRowChanged.connect(self._on_current_changed)
        self.button_delegate.clicked.connect(self._on_button_clicked)
        self.action_button.clicked.connect(self._on_action_clicked)
        self.model.dataChanged.connect(lambda *_: self._refresh_details())
        # A filter or a new list can take the selected row away without a currentRowChanged.
        self.proxy.modelReset.connect(self._on_rows_changed)
        self.proxy.layoutChanged.connect(self._on_rows_changed)
        self.proxy.rowsRemoved.connect(self._on_rows_changed)

    # ------------------------------------------------------------------ inputs from the app
    @property
    def use(self) -> str:
        return str(self.use_picker.currentData() or "")

    @property
    def context(self) -> int:
        return CONTEXT_STEPS[self.context_slider.value()]

    def _context_step(self, tokens: int) -> int:
        return min(range(len(CONTEXT_STEPS)), key=lambda i: abs(CONTEXT_STEPS[i] - tokens))

    def set_machine_text(self, text: str) -> None:
        self.machine_label.setText(text)

    def set_candidates(self, rows: list[CandidateRow], status: str = "") -> None:
        self.model.set_rows(rows)
        if not rows:
            status = status or "Nothing matches these filters on this machine."
        self.status.setText(status)

    def select_key(self, key: str) -> bool:
        """Select the row with this key (when the filters show it)."""
        for r in range(self.proxy.rowCount()):
            index = self.proxy.index(r, 0)
            row = index.data(CandidateRole.ROW)
            if row is not None and row.key == key:
                self.table.setCurrentIndex(index)
                return True
        return False

    def set_states(self, states: dict[str, tuple[str, object]]) -> None:
        self.model.set_states(states)

    def set_busy(self, text: str) -> None:
        self.status.setText(text)

    def show_search_failed(self, query: str, message: str) -> None:
        """The Hub could not be searched: say so, and show no rows (the catalog's rows under
        the query would read as its results)."""
        self.set_candidates(
            [],
            f"No search results: searching Hugging Face for “{query}” failed. {message} "
            "Press Recommendations for the offline catalog.",
        )

    def set_starter_available(self, available: bool) -> None:
        self.starter_box.setVisible(available)

    def set_recommended(self, row: CandidateRow | None, label: str = "") -> None:
        """The real model the starter banner points to (``label`` on its button)."""
        self._starter_recommended = row
        self.starter_recommend_button.setText(f"Download {label}" if label else "")
        self.starter_recommend_button.setVisible(row is not None)

    # ------------------------------------------------------------------ user actions
    def _on_context_moved(self, _value: int) -> None:
        self.context_label.setText(context_label(self.context))
        if not self.context_slider.isSliderDown():
            self._emit_filters()

    def _emit_filters(self) -> None:
        self.filters_changed.emit(self.use, self.context)

    def _on_search(self) -> None:
        text = self.search_field.text().strip()
        if text:
            self.search_requested.emit(text)

    def _row_at(self, proxy_index: QModelIndex) -> CandidateRow | None:
        if not proxy_index.isValid():
            return None
        return proxy_index.data(CandidateRole.ROW)

    def selected(self) -> CandidateRow | None:
        return self._row_at(self.table.currentIndex())

    def _on_entered(self, index: QModelIndex) -> None:
        self.candidate_hovered.emit(self._row_at(index))

    def leaveEvent(self, event) -> None:
        self.candidate_hovered.emit(self.selected())
        super().leaveEvent(event)

    def _on_rows_changed(self, *_args: object) -> None:
        self._refresh_details()
        if self.selected() is None:
            self.candidate_hovered.emit(None)  # the planned model is no longer listed

    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._refresh_details()
        row = self._row_at(current)
        self.candidate_hovered.emit(row)
        if row is not None and row.repo and not row.filename:
            self.expand_requested.emit(row)

    def _on_button_clicked(self, index: QModelIndex) -> None:
        self.table.setCurrentIndex(index)
        self.trigger(self._row_at(index))

    def _on_action_clicked(self) -> None:
        self.trigger(self.selected())

    def trigger(self, row: CandidateRow | None) -> None:
        """Do what the row's button says: download it, or chat with it."""
        if row is None:
            return
        action, extra = self.model.action_for(row)
        if action == "chat":
            self.chat_requested.emit(str(extra))
        elif action == "download":
            self.download_requested.emit(row)

    def _refresh_details(self) -> None:
        row = self.selected()
        if row is None:
            self.details.setText("Select a model to see its memory plan.")
            self.action_button.setEnabled(False)
            self.action_button.setText("Download")
            return
        action, extra = self.model.action_for(row)
        self.action_button.setText(action_label(action, extra if action == "downloading" else None))
        self.action_button.setEnabled(action != "downloading")
        colour = verdict_colour(row.verdict).name()
        badge = verdict_label(row.verdict, row.gpu_layers, row.total_layers)
        if row.verdict == "no_fit":
            speed = "does not fit in this machine's memory"
        elif row.tokens_per_s is not None:
            speed = speed_label(row)
        else:
            speed = "unknown"
        ctx = f" at {context_label(row.context)}" if row.context else ""
        self.details.setText(
            f"<b>{row.name}</b> {row.params} · {row.quant} · {fmt_bytes(row.size_bytes)} "
            f"<span style='color:{colour}'><b>{badge}</b></span><br>"
            f"Memory{ctx}: {memory_breakdown(row)}<br>"
            f"Speed: {speed}<br><span style='color:gray'>{row.note}</span>"
        )
