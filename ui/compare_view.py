"""``CompareView``: two models side by side on the user's own workload.

A model picker per pane; the workload (one prompt, a bundled suite, HumanEval, a suite file,
saved chats, recorded Local API requests or a folder of documents: ``WorkloadPicker``); the
residency decision stated plainly; replies streaming side by side with each check's outcome
under them and the differences between the two replies marked; progress with an estimate of
the time left; a summary table with pass rates and their 95% intervals, the one-line
recommendation, blind mode (A/B in random order, vote, then the names are revealed), a judge
model's verdicts next to the user's votes with their agreement, a chart of quality against
tokens/s, and export. A comparison stopped by Stop or by closing the app is saved after every
answer and offered for resuming. All the logic lives in ``launcher.compare*``; the view turns
the jobs' events into widgets, and runs nothing slow on the GUI thread (``CompareRunner``
iterates a comparison or a judge job on its own thread).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractItemModel, Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from launcher.compare import (
    CompareRequest,
    ComparisonJob,
    ModelFailed,
    ModelLoading,
    ModelReady,
    ModelUnloaded,
    Planned,
    Progress,
    RunDone,
    RunStarted,
    SessionDone,
)
from launcher.compare_judge import (
    Judged,
    JudgeDone,
    JudgeJob,
    JudgeLoading,
    JudgeStarted,
    agreement,
    verdict_counts,
)
from launcher.compare_results import ComparisonResult, RunResult, unfinished_comparisons
from launcher.compare_stats import wilson_interval
from launcher.engine.events import Sampling
from launcher.errors import LauncherError
from launcher.paths import AppPaths
from ui.theme import fmt_bytes
from ui.widgets.compare_chart import ChartPoint, QualitySpeedChart
from ui.widgets.compare_pane import ComparePane
from ui.widgets.compare_worker import CompareRunner
from ui.widgets.compare_workload import CHOOSABLE, WorkloadPicker
from ui.widgets.elided_label import ElidedLabel
from ui.workers import TaskRunner

JobFactory = Callable[[CompareRequest], ComparisonJob]
AT_ONCE_CAVEAT = (
    "Both at once: the models decode at the same time and share memory bandwidth, so their "
    "speeds are not comparable. Leave it off for fair figures."
)
SUMMARY_HEADERS = (
    "Model",
    "Pass rate (95%)",
    "Decode tok/s",
    "Prefill",
    "TTFT s",
    "Peak mem",
    "Total s",
    "Votes won",
    "Judge (95%)",
    "Errors",
)
SUMMARY_TIPS = {
    "Pass rate (95%)": "Prompts whose checks all passed, with the 95% interval: fewer prompts, "
    "wider interval",
    "Decode tok/s": "Mean decode speed, with the planner's estimate in parentheses",
    "Prefill": "Mean prefill (prompt reading) speed, tokens/s",
    "Total s": "Wall time of all this model's answers",
    "Judge (95%)": "The judge's win rate (a tie counts half) with its 95% interval",
}
PATH_ROLE = Qt.ItemDataRole.UserRole + 2  # LocalModelRole.PATH in ui.models.library


class CompareView(QWidget):
    """The Compare view. ``job_factory`` makes the core job for a request (tests pass one)."""

    def __init__(
        self,
        job_factory: JobFactory | None = None,
        local_models: QAbstractItemModel | None = None,
        parent: QWidget | None = None,
        paths: AppPaths | None = None,
    ) -> None:
        super().__init__(parent)
        self.paths = paths or AppPaths.default()
        self.job_factory: JobFactory = job_factory or (
            lambda req: ComparisonJob(req, machine=self.machine)
        )
        self.machine: Any = None  # this machine's profile, once a plan preview has probed it
        # Plan previews (GGUF headers, the catalog, the first probe) run on their own thread.
        self.tasks = TaskRunner("compare plan preview")
        self._preview_seq = 0
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(400)
        self._preview_timer.timeout.connect(self.preview_plan)
        self.local_models = local_models
        self.result: ComparisonResult | None = None
        self.saved_path: Path | None = None
        self.texts: dict[tuple[str, str], str] = {}
        self.model_status: dict[str, str] = {}
        self.runner = CompareRunner(self)
        self.stopped: tuple[Path, ComparisonResult] | None = None  # offered for resuming
        self._follow = True  # show the prompt being answered until the user picks one

        title = QLabel("Compare models")
        title.setProperty("role", "title")

        # ---- models
        self.model_pickers = [self._model_picker(), self._model_picker()]
        self.browse_buttons = [QPushButton("Browse…"), QPushButton("Browse…")]
        models_row = QHBoxLayout()
        for letter, picker, browse in zip(
            "AB", self.model_pickers, self.browse_buttons, strict=True
        ):
            models_row.addWidget(QLabel(f"Model {letter}:"))
            models_row.addWidget(picker, 1)
            models_row.addWidget(browse)
            browse.clicked.connect(lambda _=False, p=picker: self._browse(p))

        # ---- prompt and options
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setPlaceholderText("One prompt for both models…")
        self.prompt_edit.setFixedHeight(64)
        self.workload = WorkloadPicker(self.paths)
        self.suite_picker = self.workload.combo  # the workload's kind (a suite's name, ...)
        self.residency_picker = QComboBox()
        self.residency_picker.addItem("Residency: decide for me", None)
        self.residency_picker.addItem("Keep both loaded", "resident")
        self.residency_picker.addItem("One after another", "sequential")
        self.at_once_box = QCheckBox("Run both at once")
        self.at_once_box.setToolTip(AT_ONCE_CAVEAT)
        self.blind_box = QCheckBox("Blind (A/B)")
        self.blind_box.setToolTip("Replies shown as A and B in random order; vote, then see names")
        self.ctx_spin = QSpinBox()
        self.ctx_spin.setRange(512, 262144)
        self.ctx_spin.setSingleStep(1024)
        self.ctx_spin.setValue(4096)
        self.ctx_spin.setPrefix("ctx ")
        self.max_tokens_spin = QSpinBox()
        self.max_tokens_spin.setRange(1, 8192)
        self.max_tokens_spin.setValue(256)
        self.max_tokens_spin.setPrefix("max ")
        self.max_tokens_spin.setSuffix(" tokens")
        self.run_button = QPushButton("Compare")
        self.run_button.setDefault(True)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip(
            "Stop now: every finished answer is saved, and Resume finishes it later, "
            "even after the app is closed"
        )
        options = QGridLayout()
        options.addWidget(self.residency_picker, 0, 0, 1, 4)
        options.addWidget(self.ctx_spin, 1, 0)
        options.addWidget(self.max_tokens_spin, 1, 1)
        options.addWidget(self.at_once_box, 1, 2)
        options.addWidget(self.blind_box, 1, 3)
        options.addWidget(self.run_button, 0, 4)
        options.addWidget(self.stop_button, 1, 4)
        prompt_row = QHBoxLayout()
        prompt_row.addWidget(self.prompt_edit, 1)
        prompt_row.addLayout(options)

        # ---- decision
        self.residency_label = QLabel(
            "Pick two models and a prompt. The plan (both loaded together, or one after "
            "another) is decided from their memory plans and shown here."
        )
        self.residency_label.setWordWrap(True)
        self.residency_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.caveat_label = QLabel(AT_ONCE_CAVEAT)
        self.caveat_label.setWordWrap(True)
        self.caveat_label.setProperty("role", "hint")
        self.caveat_label.setVisible(False)

        # ---- progress, and a stopped comparison to resume
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setMaximumHeight(10)
        self.progress_label = ElidedLabel("", mode=Qt.TextElideMode.ElideRight)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Finish it: the answers already saved are not asked again")
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress_bar, 1)
        progress_row.addWidget(self.progress_label, 2)
        progress_row.addWidget(self.resume_button)
        self.progress_bar_row = QWidget()
        self.progress_bar_row.setLayout(progress_row)
        progress_row.setContentsMargins(0, 0, 0, 0)
        self.progress_bar_row.setVisible(False)

        # ---- panes
        self.prompt_picker = QComboBox()
        self.prompt_picker.setMinimumWidth(200)
        # One line, elided: a long prompt must not set the window's width.
        self.prompt_text = ElidedLabel("", mode=Qt.TextElideMode.ElideRight)
        self.prompt_text.setProperty("role", "hint")
        self.diff_box = QCheckBox("Mark differences")
        self.diff_box.setChecked(True)
        self.diff_box.setToolTip("Underline the words each reply has that the other does not")
        nav = QHBoxLayout()
        nav.addWidget(QLabel("Prompt:"))
        nav.addWidget(self.prompt_picker)
        nav.addWidget(self.prompt_text, 1)
        nav.addWidget(self.diff_box)
        self.panes = [ComparePane(), ComparePane()]
        pane_split = QSplitter(Qt.Orientation.Horizontal)
        for pane in self.panes:
            pane_split.addWidget(pane)
        self.vote_label = QLabel("Which reply is better?")
        self.vote_buttons = {
            "A": QPushButton("A is better"),
            "tie": QPushButton("Tie"),
            "B": QPushButton("B is better"),
        }
        vote_row = QHBoxLayout()
        vote_row.addStretch(1)
        vote_row.addWidget(self.vote_label)
        for choice, button in self.vote_buttons.items():
            vote_row.addWidget(button)
            button.clicked.connect(lambda _=False, c=choice: self.vote(c))
        vote_row.addStretch(1)
        self.vote_bar = QWidget()
        self.vote_bar.setLayout(vote_row)
        self.vote_bar.setVisible(False)
        self.verdict_label = QLabel("")
        self.verdict_label.setProperty("role", "hint")
        self.verdict_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.verdict_label.setVisible(False)

        middle = QWidget()
        middle_layout = QVBoxLayout(middle)
        middle_layout.setContentsMargins(0, 0, 0, 0)
        middle_layout.addLayout(nav)
        middle_layout.addWidget(pane_split, 1)
        middle_layout.addWidget(self.vote_bar)
        middle_layout.addWidget(self.verdict_label)

        # ---- summary, chart, export
        self.summary_table = QTableWidget(0, len(SUMMARY_HEADERS))
        self.summary_table.setHorizontalHeaderLabels(list(SUMMARY_HEADERS))
        for column, tip in SUMMARY_TIPS.items():
            item = self.summary_table.horizontalHeaderItem(SUMMARY_HEADERS.index(column))
            if item is not None:
                item.setToolTip(tip)
        self.summary_table.verticalHeader().setVisible(False)
        self.summary_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.summary_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.summary_table.setWordWrap(False)
        self.summary_table.setAlternatingRowColors(True)
        self.chart = QualitySpeedChart()
        self.chart.setMaximumWidth(400)
        self.recommendation_label = QLabel("")
        self.recommendation_label.setWordWrap(True)
        self.recommendation_label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
        )
        # ---- judge: a third model grades A against B blind, in both orders
        self.judge_picker = self._model_picker()
        _placeholder(self.judge_picker, "A third model to judge the replies")
        self.judge_button = QPushButton("Judge replies")
        self.judge_button.setEnabled(False)
        self.judge_button.setToolTip(
            "A third model reads each question and both replies (as Answer 1 and 2, twice, "
            "with the order swapped) and says which is better; a split verdict is a tie"
        )
        self.judge_label = QLabel("")
        self.judge_label.setWordWrap(True)
        judge_row = QHBoxLayout()
        judge_row.addWidget(QLabel("Judge:"))
        judge_row.addWidget(self.judge_picker, 1)
        judge_row.addWidget(self.judge_button)
        judge_row.addWidget(self.judge_label, 3)
        self.export_buttons = {
            "md": QPushButton("Markdown…"),
            "csv": QPushButton("CSV…"),
            "json": QPushButton("JSON…"),
        }
        # "Saved to /home/…/comparisons/<id>.json": elided in the middle (the tooltip has it
        # all), so a long path never widens the window past the screen.
        self.saved_label = ElidedLabel("")
        self.saved_label.setProperty("role", "hint")
        self.open_button = QPushButton("Open saved…")
        export_row = QHBoxLayout()
        export_row.addWidget(self.open_button)
        export_row.addSpacing(12)
        export_row.addWidget(QLabel("Export:"))
        for fmt, button in self.export_buttons.items():
            button.setEnabled(False)
            button.clicked.connect(lambda _=False, f=fmt: self._export_dialog(f))
            export_row.addWidget(button)
        export_row.addWidget(self.saved_label, 1)
        bottom = QWidget()
        bottom_layout = QGridLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addWidget(self.recommendation_label, 0, 0)
        bottom_layout.addWidget(self.summary_table, 1, 0)
        bottom_layout.addLayout(judge_row, 2, 0)
        bottom_layout.addWidget(self.chart, 0, 1, 4, 1)
        bottom_layout.addLayout(export_row, 3, 0)
        bottom_layout.setColumnStretch(0, 3)
        bottom_layout.setColumnStretch(1, 1)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(middle)
        split.addWidget(bottom)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([400, 200])

        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addLayout(models_row)
        layout.addWidget(self.workload)
        layout.addLayout(prompt_row)
        layout.addWidget(self.residency_label)
        layout.addWidget(self.caveat_label)
        layout.addWidget(self.progress_bar_row)
        layout.addWidget(split, 1)

        self.run_button.clicked.connect(self.start)
        for picker in self.model_pickers:
            picker.currentTextChanged.connect(self._schedule_preview)
        self.ctx_spin.valueChanged.connect(self._schedule_preview)
        self.residency_picker.currentIndexChanged.connect(self._schedule_preview)
        self.open_button.clicked.connect(self._open_dialog)
        self.stop_button.clicked.connect(self.runner.stop)
        self.at_once_box.toggled.connect(self.caveat_label.setVisible)
        self.workload.changed.connect(self._on_suite_changed)
        self.resume_button.clicked.connect(self.resume)
        self.judge_button.clicked.connect(self.judge)
        self.diff_box.toggled.connect(lambda _on: self._render_panes())
        self.prompt_picker.activated.connect(self._on_prompt_picked)
        self.prompt_picker.currentIndexChanged.connect(self._on_prompt_shown)
        self.runner.event_received.connect(self._on_event)
        self.runner.tokens_received.connect(self._on_tokens)
        self.runner.failed.connect(self._on_failed)
        self.runner.finished.connect(self._on_finished)
        if local_models is not None:
            local_models.modelReset.connect(self._refresh_choices)
            self._refresh_choices()
        self._render_panes()
        self.find_stopped()

    def _on_suite_changed(self, *_args: object) -> None:
        single = self.workload.kind() is None
        self.prompt_edit.setEnabled(single)
        self.prompt_edit.setPlaceholderText(
            "One prompt for both models…" if single else "The suite's prompts are used."
        )

    # ------------------------------------------------------------------ models
    def _model_picker(self) -> QComboBox:
        box = QComboBox()
        box.setEditable(True)
        box.setMinimumWidth(180)
        _placeholder(box, "A model on disk, a GGUF path or a catalog id")
        return box

    def _refresh_choices(self) -> None:
        model = self.local_models
        if model is None:
            return
        choices = []
        for row in range(model.rowCount()):
            index = model.index(row, 0)
            path = model.data(index, PATH_ROLE)
            if path:
                choices.append((str(model.data(index)), str(path)))
        self.set_model_choices(choices)
        judge = self.judge_picker.currentText()
        self.judge_picker.clear()
        for name, path in choices:
            self.judge_picker.addItem(name, path)
        self.judge_picker.setEditText(judge)

    def set_model_choices(self, choices: list[tuple[str, str]]) -> None:
        """Fill both pickers with (name, path) pairs of models on disk; keeps typed text."""
        for picker in self.model_pickers:
            text = picker.currentText()
            picker.clear()
            for name, path in choices:
                picker.addItem(name, path)
                picker.setItemData(picker.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
            picker.setEditText(text)

    def set_models(self, a: str, b: str) -> None:
        """Choose the two models by path or catalog id."""
        for picker, spec in zip(self.model_pickers, (a, b), strict=True):
            picker.setEditText(spec)

    def model_specs(self) -> list[str]:
        return [_picked(picker) for picker in self.model_pickers]

    def _browse(self, picker: QComboBox) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", "", "GGUF (*.gguf)")
        if path:
            picker.setEditText(path)

    # ------------------------------------------------------------------ run
    def request(self) -> CompareRequest:
        """The request the current controls describe."""
        return CompareRequest(
            models=tuple(self.model_specs()),
            prompt=self.prompt_edit.toPlainText(),
            suite=self.workload.spec(),
            limit=self.workload.limit() if self.workload.spec() else None,
            template=self.workload.template(),
            ctx=self.ctx_spin.value(),
            force=self.residency_picker.currentData(),
            concurrent=self.at_once_box.isChecked(),
            blind=self.blind_box.isChecked(),
            sampling=Sampling(temperature=0.0, max_tokens=self.max_tokens_spin.value()),
        )

    def start(self) -> None:
        """Start the comparison the controls describe (no-op while one runs)."""
        if self.runner.running:
            return
        specs = self.model_specs()
        if not all(specs):
            self._show_error("Pick a model for both panes first.")
            return
        if self.workload.kind() in CHOOSABLE and not self.workload.spec():
            self._show_error("Choose the suite file, folder or chats to compare on first.")
            return
        request = self.request()
        if not request.suite and not (request.prompt or "").strip():
            self._show_error("Type a prompt, or choose a prompt suite.")
            return
        self._begin(self.job_factory(request))

    def resume(self) -> None:
        """Finish the stopped comparison on offer (its saved answers are not asked again)."""
        if self.runner.running or self.stopped is None:
            return
        _path, saved = self.stopped
        try:
            job = ComparisonJob.resuming(saved, machine=self.machine)
        except LauncherError as exc:
            self._show_error(str(exc))
            return
        self.stopped = None
        self._begin(job)

    def _begin(self, job: Any) -> None:
        self.result = None
        self.saved_path = None
        self.texts.clear()
        self.model_status.clear()
        self._follow = True
        self.prompt_picker.clear()
        self.residency_label.setText("Planning…")
        self.residency_label.setStyleSheet("")
        self.saved_label.setText("")
        for button in self.export_buttons.values():
            button.setEnabled(False)
        self.progress_bar_row.setVisible(True)
        self.progress_bar.setRange(0, 0)  # busy until the first answer
        self.progress_label.setText("Planning…")
        self.resume_button.setVisible(False)
        self.recommendation_label.setText("")
        self.judge_label.setText("")
        self._set_running(True)
        self.workload.refresh()
        self.runner.start(job)
        self._render_panes()

    def stop(self) -> None:
        self.runner.stop()

    def show_result(self, result: ComparisonResult, saved_path: Path | None = None) -> None:
        """Show a finished (e.g. saved) comparison: replies, decision, summary, votes."""
        if self.runner.running:
            return
        self.result = result
        self.saved_path = saved_path
        self.texts.clear()
        self.model_status.clear()
        if len(result.models) >= 2:
            self.set_models(result.models[0].label, result.models[1].label)
        self._set_residency_text(
            str(result.residency.get("mode", "")),
            str(result.residency.get("reason", "")),
            result.residency.get("warning"),
            len(result.models),
        )
        if result.residency.get("ctx"):
            self.ctx_spin.setValue(int(result.residency["ctx"]))
        if result.sampling.get("max_tokens"):
            self.max_tokens_spin.setValue(int(result.sampling["max_tokens"]))
        request = result.request or {}
        self.workload.blockSignals(True)
        self.workload.select(request.get("suite", result.suite), request.get("limit"))
        self.workload.blockSignals(False)
        self._on_suite_changed()
        self.blind_box.setChecked(result.blind)
        self.at_once_box.setChecked(result.concurrent)
        self._fill_prompts(result)
        self.saved_label.setText(f"Saved to {saved_path}" if saved_path else "")
        for button in self.export_buttons.values():
            button.setEnabled(True)
        if not result.complete and result.request and saved_path is not None:
            self._offer_resume(saved_path, result)
        else:
            self.progress_bar_row.setVisible(False)
        self._set_running(False)
        self._render_panes()
        self._render_summary()

    def _fill_prompts(self, result: ComparisonResult) -> None:
        self.prompt_picker.blockSignals(True)
        self.prompt_picker.clear()
        for p in result.prompts:
            self.prompt_picker.addItem(p["id"], p["id"])
        self.prompt_picker.blockSignals(False)
        self.prompt_picker.setCurrentIndex(0)
        self._mark_prompts()

    def _mark_prompts(self) -> None:
        """Each prompt in the picker with its checks per model (✔/✘, in model order; only
        ticked once its answers are in; not in blind mode, where order would tell)."""
        res = self.result
        if res is None:
            return
        for i in range(self.prompt_picker.count()):
            pid = str(self.prompt_picker.itemData(i))
            marks = []
            if not res.blind:
                for label in res.labels:
                    run = res.run_for(label, pid)
                    if run is not None and run.check_passed is not None:
                        marks.append("✔" if run.check_passed else "✘")
                    elif run is not None and run.error:
                        marks.append("!")
            text = f"{pid}  {' '.join(marks)}" if marks else pid
            if self.prompt_picker.itemText(i) != text:
                self.prompt_picker.setItemText(i, text)

    # ------------------------------------------------------------------ stopped comparisons
    def find_stopped(self) -> None:
        """Look (in the background) for a comparison stopped before its end, to offer it."""
        paths = self.paths

        def work() -> Any:
            return unfinished_comparisons(paths)

        self.tasks.submit(work, self._on_stopped_found, lambda _message: None)

    def _on_stopped_found(self, stopped: Any) -> None:
        if stopped and not self.runner.running and self.result is None:
            self._offer_resume(*stopped[0])

    def _offer_resume(self, path: Path, result: ComparisonResult) -> None:
        self.stopped = (path, result)
        done, total = result.progress()
        workload = result.suite or "one prompt"
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)
        self.progress_label.setText(
            f"Stopped: {' vs '.join(result.labels)} on {workload}, {done} of {total} answers "
            "saved. Resume to finish it."
        )
        self.resume_button.setVisible(True)
        self.resume_button.setEnabled(not self.runner.running)
        self.progress_bar_row.setVisible(True)

    def _set_residency_text(
        self, mode: str, reason: str, warning: str | None, n_models: int
    ) -> None:
        title = {
            "resident": "Both stay loaded",
            "sequential": "One after another",
            "impossible": "Cannot compare here",
        }.get(mode, mode)
        if n_models > 2:
            title = title.replace("Both", "All")
        text = f"<b>{title}</b>: {reason.removeprefix('one after another: ')}"
        if warning:
            text += f"<br><b>Warning:</b> {warning}"
        self.residency_label.setStyleSheet("")
        self.residency_label.setText(text)

    def shutdown(self) -> None:
        """Stop any comparison and end the worker threads (the app calls this on close)."""
        self._preview_timer.stop()
        self.runner.shutdown()
        self.tasks.shutdown()

    # ------------------------------------------------------------------ plan preview
    def _schedule_preview(self, *_args: object) -> None:
        if not self.runner.running and all(self.model_specs()):
            self._preview_timer.start()

    def preview_plan(self) -> None:
        """Plan the chosen models in the background and state the residency decision."""
        if self.runner.running or not all(self.model_specs()):
            return
        request = self.request()
        machine = self.machine
        self._preview_seq += 1
        seq = self._preview_seq

        def work() -> Any:
            from launcher.compare_models import prepare

            return prepare(request, machine=machine)

        self.tasks.submit(
            work,
            lambda prepared: self._on_preview(seq, prepared),
            lambda message: self._on_preview_failed(seq, message),
        )

    def _on_preview(self, seq: int, prepared: Any) -> None:
        self.machine = self.machine or prepared.machine
        if seq != self._preview_seq or self.runner.running:
            return  # stale: the choice changed, or a run states its own plan
        plan = prepared.residency
        self._set_residency_text(plan.mode, plan.reason, plan.warning, len(prepared.models))

    def _on_preview_failed(self, seq: int, message: str) -> None:
        if seq == self._preview_seq and not self.runner.running:
            self._show_error(message)

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.resume_button.setEnabled(not running)
        res = self.result
        self.judge_button.setEnabled(
            not running and res is not None and len(res.labels) == 2 and bool(res.runs)
        )

    # ------------------------------------------------------------------ events
    def _on_event(self, ev: Any) -> None:
        if isinstance(ev, Planned):
            self.result = ev.result
            plan = ev.residency
            self._set_residency_text(plan.mode, plan.reason, plan.warning, len(ev.labels))
            self._fill_prompts(ev.result)
            done, total = ev.result.progress()
            self.progress_bar.setRange(0, max(total, 1))
            self.progress_bar.setValue(done)
            self.progress_label.setText(
                f"{done} of {total} answers (resumed)" if done else f"0 of {total} answers"
            )
        elif isinstance(ev, Progress):
            self.progress_bar.setRange(0, max(ev.total, 1))
            self.progress_bar.setValue(ev.done)
            left = ""
            if ev.eta_s is not None and ev.done < ev.total:
                left = f" · about {fmt_duration(ev.eta_s)} left"
            self.progress_label.setText(f"{ev.done} of {ev.total} answers{left}")
        elif isinstance(ev, JudgeLoading):
            self.progress_bar.setRange(0, 0)
            self.progress_label.setText(f"Loading the judge {ev.label}…")
        elif isinstance(ev, JudgeStarted):
            self.progress_label.setText(f"The judge reads {ev.prompt_id} (both orders)…")
        elif isinstance(ev, Judged):
            if self.result is not None:
                self.result.judge_verdicts = [
                    v for v in self.result.judge_verdicts if v.prompt_id != ev.verdict.prompt_id
                ] + [ev.verdict]
        elif isinstance(ev, JudgeDone):
            if self.result is not None:
                self.result.judge = ev.result.judge
                self.result.judge_verdicts = list(ev.result.judge_verdicts)
                if self.saved_path is not None:
                    self.result.save(to=self.saved_path)
            self.progress_bar_row.setVisible(False)
        elif isinstance(ev, ModelLoading):
            self.model_status[ev.label] = "Loading…"
        elif isinstance(ev, ModelReady):
            self.model_status[ev.label] = f"Loaded in {ev.load_s:.1f} s"
        elif isinstance(ev, ModelUnloaded):
            self.model_status[ev.label] = "Unloaded (answers kept)"
        elif isinstance(ev, ModelFailed):
            self.model_status[ev.label] = f"Error: {ev.message}"
        elif isinstance(ev, RunStarted):
            self.model_status[ev.label] = "Answering…"
            self.texts[(ev.label, ev.prompt_id)] = ""
            if self._follow:
                self._show_prompt(ev.prompt_id)
        elif isinstance(ev, RunDone):
            run = ev.result
            if self.result is not None:
                self.result.runs = [
                    r
                    for r in self.result.runs
                    if not (r.model == run.model and r.prompt_id == run.prompt_id)
                ] + [run]
            if not run.error:
                self.model_status[run.model] = "Done"
            self.texts[(run.model, run.prompt_id)] = run.reply
        elif isinstance(ev, SessionDone):
            final = ev.result
            if self.result is not None and self.result.votes:
                final.votes = list(self.result.votes)  # votes cast while it ran
                self.saved_path = final.save(to=ev.saved_to) if ev.saved_to else None
            self.result = final
            self.saved_path = self.saved_path or ev.saved_to
            if self.saved_path:
                self.saved_label.setText(f"Saved to {self.saved_path}")
            for button in self.export_buttons.values():
                button.setEnabled(True)
            done, total = final.progress()
            if not ev.complete and self.saved_path is not None:
                self._offer_resume(self.saved_path, final)
            else:
                self.progress_bar.setRange(0, max(total, 1))
                self.progress_bar.setValue(done)
                self.progress_label.setText(f"Done: {done} of {total} answers")
                self.resume_button.setVisible(False)
            self._mark_prompts()
        if isinstance(ev, RunDone):
            self._mark_prompts()
        self._render_panes()
        self._render_summary()

    def _on_tokens(self, label: str, prompt_id: str, text: str) -> None:
        key = (label, prompt_id)
        self.texts[key] = self.texts.get(key, "") + text
        if self.current_prompt() == prompt_id:
            for pane, pane_label in zip(self.panes, self.pane_labels(prompt_id), strict=False):
                if pane_label == label:
                    pane.append_text(text)

    def _on_failed(self, message: str) -> None:
        self._show_error(message)

    def _on_finished(self) -> None:
        self._set_running(False)
        self._render_panes()
        self._render_summary()

    def _show_error(self, message: str) -> None:
        self.residency_label.setText(message)
        self.residency_label.setStyleSheet("color: #cf222e;")

    # ------------------------------------------------------------------ prompts and panes
    def current_prompt(self) -> str | None:
        data = self.prompt_picker.currentData()
        return str(data) if data is not None else None

    def _show_prompt(self, prompt_id: str) -> None:
        idx = self.prompt_picker.findData(prompt_id)
        if idx >= 0 and idx != self.prompt_picker.currentIndex():
            self.prompt_picker.setCurrentIndex(idx)

    def _on_prompt_picked(self, _index: int) -> None:
        self._follow = False  # the user chose what to look at

    def _on_prompt_shown(self, _index: int) -> None:
        self._render_panes()

    def pane_labels(self, prompt_id: str | None) -> list[str]:
        """Model label shown in each pane for a prompt (shuffled per prompt in blind mode)."""
        if self.result is None:
            return []
        if prompt_id is None:
            return self.result.labels
        letters = self.result.letters_for(prompt_id)
        return [letters[k] for k in sorted(letters)]

    def revealed(self, prompt_id: str | None) -> bool:
        """Whether names are shown for a prompt: always, except blind mode before the vote."""
        if self.result is None or not self.result.blind or prompt_id is None:
            return True
        return self.result.voted(prompt_id) is not None

    def _render_panes(self) -> None:
        prompt_id = self.current_prompt()
        labels = self.pane_labels(prompt_id)
        prompt = None
        if self.result is not None and prompt_id is not None:
            prompt = next((p for p in self.result.prompts if p["id"] == prompt_id), None)
        self.prompt_text.setText(_one_line(prompt["text"]) if prompt else "")
        revealed = self.revealed(prompt_id)
        for i, pane in enumerate(self.panes):
            letter = "AB"[i]
            if i >= len(labels):
                pane.set_header(f"Model {letter}")
                pane.set_status("")
                pane.set_text("")
                pane.set_run(None)
                continue
            label = labels[i]
            if self.result is not None and self.result.blind:
                pane.set_header(f"{letter}: {label}" if revealed else letter)
            else:
                pane.set_header(label)
            pane.set_status(self.model_status.get(label, "") if revealed else "")
            key = (label, prompt_id or "")
            run = self._run(label, prompt_id)
            text = self.texts.get(key, run.reply if run else "")
            if pane.text() != text:
                pane.set_text(text)
            pane.set_run(run if revealed else None)
            pane.set_checks(run)
        self._mark_differences(prompt_id, labels)
        self._render_vote_bar(prompt_id, labels)
        self._render_verdict(prompt_id)

    def _mark_differences(self, prompt_id: str | None, labels: list[str]) -> None:
        """Underline what each finished reply has that the other does not."""
        runs = [self._run(label, prompt_id) for label in labels[:2]]
        both = len(runs) == 2 and all(r is not None and r.finished for r in runs)
        for i, pane in enumerate(self.panes):
            other = self.panes[1 - i].text() if both and self.diff_box.isChecked() else None
            pane.mark_differences(other)

    def _render_verdict(self, prompt_id: str | None) -> None:
        """The judge's verdict on the prompt shown (in blind mode, only after the user's vote,
        so it cannot sway it)."""
        res = self.result
        verdict = None
        if res is not None and prompt_id is not None:
            verdict = next((v for v in res.judge_verdicts if v.prompt_id == prompt_id), None)
        if verdict is None or prompt_id is None or res is None or not self.revealed(prompt_id):
            self.verdict_label.setVisible(False)
            return
        judge = (res.judge or "").removesuffix(" (judge)")
        if verdict.error:
            text = f"Judge {judge}: no verdict ({verdict.error})"
        elif verdict.winner:
            text = f"Judge {judge}: {verdict.winner} is better, in both orders"
        else:
            split = " (the two orders disagreed)" if not verdict.consistent else ""
            text = f"Judge {judge}: a tie{split}"
        vote = res.voted(prompt_id)
        if vote is not None and not verdict.error:
            same = vote.winner == verdict.winner
            text += " · agrees with your vote" if same else " · your vote differs"
        self.verdict_label.setText(text)
        self.verdict_label.setVisible(True)

    def _run(self, label: str, prompt_id: str | None) -> RunResult | None:
        if self.result is None or prompt_id is None:
            return None
        return self.result.run_for(label, prompt_id)

    def _render_vote_bar(self, prompt_id: str | None, labels: list[str]) -> None:
        blind = self.result is not None and self.result.blind
        self.vote_bar.setVisible(blind)
        if not blind or prompt_id is None or self.result is None:
            return
        done = all(self._run(label, prompt_id) is not None for label in labels)
        vote = self.result.voted(prompt_id)
        for button in self.vote_buttons.values():
            button.setEnabled(done and vote is None)
        if vote is not None:
            who = "a tie" if vote.winner is None else f"{vote.choice} ({vote.winner})"
            self.vote_label.setText(f"You voted {who}.")
        elif done:
            self.vote_label.setText("Which reply is better?")
        else:
            self.vote_label.setText("Vote when both replies are finished.")

    # ------------------------------------------------------------------ blind votes
    def vote(self, choice: str) -> None:
        """Vote A, B or tie on the prompt shown; names are revealed and the vote is saved."""
        prompt_id = self.current_prompt()
        if self.result is None or prompt_id is None:
            return
        self.result.vote(prompt_id, choice)
        if not self.runner.running and self.saved_path is not None:
            self.result.save(
                to=self.saved_path
            )  # after the run the view owns the result: keep votes on disk
        self._render_panes()
        self._render_summary()

    # ------------------------------------------------------------------ summary and chart
    def _render_summary(self) -> None:
        table = self.summary_table
        res = self.result
        if res is None:
            table.setRowCount(0)
            self.chart.set_points([])
            return
        table.clearSpans()
        if res.blind and any(res.voted(p["id"]) is None for p in res.prompts):
            # Speeds and names would give the blind pairs away: nothing until every vote.
            table.setRowCount(1)
            table.setSpan(0, 0, 1, len(SUMMARY_HEADERS))
            table.setItem(
                0,
                0,
                QTableWidgetItem("Blind mode: the summary appears once every prompt has a vote."),
            )
            self.chart.set_points([])
            return
        rows = res.summary()
        table.setRowCount(len(rows))
        points = []
        judged = [v for v in res.judge_verdicts if not v.error]
        ties = sum(1 for v in judged if v.winner is None)
        for r, s in enumerate(rows):
            name = s.label
            est = f" ({s.est_decode_tps:.1f})" if s.est_decode_tps else ""
            votes = "—" if not s.votes else f"{s.wins} of {s.votes} ({s.ties} ties)"
            cells = [
                name,
                pass_rate_text(s.accuracy, s.checked, s.accuracy_low, s.accuracy_high),
                "—" if s.mean_decode_tps is None else f"{s.mean_decode_tps:.1f}{est}",
                "—" if s.mean_prefill_tps is None else f"{s.mean_prefill_tps:.0f}",
                "—" if s.mean_ttft_s is None else f"{s.mean_ttft_s:.2f}",
                fmt_bytes(s.peak_memory_bytes),
                "—" if s.total_s is None else f"{s.total_s:.1f}",
                votes,
                judge_text(s.judge_wins, ties, len(judged)) if judged else "—",
                str(s.errors),
            ]
            for c, value in enumerate(cells):
                table.setItem(r, c, QTableWidgetItem(value))
            quality = s.accuracy if s.accuracy is not None else s.vote_score
            basis = "accuracy" if s.accuracy is not None else "votes"
            if quality is None and judged:  # open-ended work: the judge's win rate
                quality, basis = (s.judge_wins + 0.5 * ties) / len(judged), "judge"
            low: float | None = None
            high: float | None = None
            if basis == "accuracy":
                low, high = s.accuracy_low, s.accuracy_high
            elif basis == "judge":
                low, high = wilson_interval(s.judge_wins + 0.5 * ties, len(judged))
            if quality is not None and s.mean_decode_tps:
                points.append(ChartPoint(s.label, s.mean_decode_tps, quality, basis, low, high))
        self.chart.set_points(points)
        rec = res.recommendation()
        self.recommendation_label.setText(
            f"<b>Recommendation:</b> {rec.text}" if rec is not None else ""
        )
        self.judge_label.setText(self._judge_text(res))

    def _judge_text(self, res: ComparisonResult) -> str:
        """ "gemma: tiny 3, gemma 1, ties 2 · agrees with your votes on 4 of 5 (80%)"."""
        if not res.judge:
            return ""
        counts = verdict_counts(res.judge_verdicts, res.labels)
        wins = ", ".join(f"{label} {counts[label]}" for label in res.labels)
        text = f"{res.judge.removesuffix(' (judge)')} judged: {wins}, ties {counts['tie']}"
        agreed = agreement(res)
        if agreed.compared:
            share = agreed.agreed / agreed.compared
            text += (
                f" · agrees with your votes on {agreed.agreed} of {agreed.compared} "
                f"({share * 100:.0f}%)"
            )
        else:
            text += " · vote on replies to see whether it agrees with you"
        return text

    # ------------------------------------------------------------------ judge
    def judge(self) -> None:
        """Grade the comparison shown with the judge model picked (on the worker thread)."""
        spec = _picked(self.judge_picker)
        if self.runner.running or self.result is None:
            return
        if not spec:
            self._show_error("Pick a judge model first (a third model, local or remote).")
            return
        try:
            job = JudgeJob(self.result, spec, ctx=self.ctx_spin.value(), machine=self.machine)
        except LauncherError as exc:
            self._show_error(str(exc))
            return
        self.progress_bar_row.setVisible(True)
        self.resume_button.setVisible(False)
        self.progress_bar.setRange(0, 0)
        self.progress_label.setText("Starting the judge…")
        self._set_running(True)
        self.runner.start(job)

    # ------------------------------------------------------------------ export
    def export_to(self, path: Path, fmt: str | None = None) -> Path:
        """Export the finished comparison (``md``, ``csv``, ``json``)."""
        if self.result is None:
            raise RuntimeError("nothing to export yet")
        return self.result.export(Path(path), fmt)

    def _open_dialog(self) -> None:
        folder = AppPaths.default().comparisons_dir
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a saved comparison", str(folder), "Comparison (*.json)"
        )
        if path:
            try:
                self.show_result(ComparisonResult.load(Path(path)), Path(path))
            except LauncherError as exc:
                self._show_error(str(exc))

    def _export_dialog(self, fmt: str) -> None:
        if self.result is None:
            return
        names = {"md": "Markdown (*.md)", "csv": "CSV (*.csv)", "json": "JSON (*.json)"}
        suggested = f"comparison-{self.result.id}.{fmt}"
        path, _ = QFileDialog.getSaveFileName(self, "Export comparison", suggested, names[fmt])
        if path:
            try:
                self.export_to(Path(path), fmt)
            except Exception as exc:  # an unwritable folder: say so, keep the view usable
                self._show_error(f"Could not export: {exc}")
                return
            self.saved_label.setText(f"Exported to {path}")


def _picked(picker: QComboBox) -> str:
    """A picker's model: the path behind a listed name, or the typed path or id."""
    text = picker.currentText().strip()
    idx = picker.findText(text)
    data = picker.itemData(idx) if idx >= 0 else None
    return str(data) if data else text


def pass_rate_text(rate: float | None, checked: int, low: float | None, high: float | None) -> str:
    """ "75% of 8 (41–93%)": the interval shows that 8 prompts say less than 160 would."""
    if rate is None:
        return "—"
    text = f"{rate * 100:.0f}% of {checked}"
    if low is not None and high is not None:
        text += f" ({low * 100:.0f}–{high * 100:.0f}%)"
    return text


def judge_text(wins: int, ties: int, judged: int) -> str:
    """ "54% of 24 (35–72%)": the judge's win rate (a tie counts half) and its 95% interval."""
    low, high = wilson_interval(wins + 0.5 * ties, judged)
    return pass_rate_text((wins + 0.5 * ties) / judged, judged, low, high)


def fmt_duration(seconds: float) -> str:
    """ "40 s", "12 min", "2 h 05 min"."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60:02d} min"


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _placeholder(box: QComboBox, text: str) -> None:
    """The grey hint in an editable combo box's line edit."""
    edit = box.lineEdit()
    if edit is not None:
        edit.setPlaceholderText(text)
