"""``CompareView``: two models side by side on one prompt or a prompt suite.

A model picker per pane, one prompt box (or a suite), the residency decision stated plainly,
replies streaming side by side, a summary table, blind mode (A/B in random order, vote, then
the names are revealed), a chart of quality against tokens/s, and export. All the logic lives
in ``launcher.compare``; the view turns the job's events into widgets, and runs nothing slow
on the GUI thread (``CompareRunner`` iterates the job on its own thread).
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
    RunDone,
    RunStarted,
    SessionDone,
)
from launcher.compare_results import ComparisonResult, RunResult
from launcher.compare_suites import load_suite, suite_names
from launcher.engine.events import Sampling
from launcher.errors import LauncherError
from launcher.paths import AppPaths
from ui.theme import fmt_bytes
from ui.widgets.compare_chart import ChartPoint, QualitySpeedChart
from ui.widgets.compare_pane import ComparePane
from ui.widgets.compare_worker import CompareRunner
from ui.widgets.elided_label import ElidedLabel
from ui.workers import TaskRunner

JobFactory = Callable[[CompareRequest], ComparisonJob]
AT_ONCE_CAVEAT = (
    "Both at once: the models decode at the same time and share memory bandwidth, so their "
    "speeds are not comparable. Leave it off for fair figures."
)
SUMMARY_HEADERS = (
    "Model",
    "Decode tok/s (est.)",
    "Prefill tok/s",
    "TTFT s",
    "Peak mem",
    "Accuracy",
    "Votes won",
    "Errors",
)
PATH_ROLE = Qt.ItemDataRole.UserRole + 2  # LocalModelRole.PATH in ui.models.library


class CompareView(QWidget):
    """The Compare view. ``job_factory`` makes the core job for a request (tests pass one)."""

    def __init__(
        self,
        job_factory: JobFactory | None = None,
        local_models: QAbstractItemModel | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
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
        self.suite_picker = QComboBox()
        self.suite_picker.addItem("Single prompt (above)", None)
        for name in suite_names():
            suite = load_suite(name)
            self.suite_picker.addItem(f"Suite: {suite.title} ({len(suite.prompts)})", name)
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
        options = QGridLayout()
        options.addWidget(self.suite_picker, 0, 0, 1, 2)
        options.addWidget(self.residency_picker, 0, 2, 1, 2)
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

        # ---- panes
        self.prompt_picker = QComboBox()
        self.prompt_picker.setMinimumWidth(200)
        # One line, elided: a long prompt must not set the window's width.
        self.prompt_text = ElidedLabel("", mode=Qt.TextElideMode.ElideRight)
        self.prompt_text.setProperty("role", "hint")
        nav = QHBoxLayout()
        nav.addWidget(QLabel("Prompt:"))
        nav.addWidget(self.prompt_picker)
        nav.addWidget(self.prompt_text, 1)
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
        middle = QWidget()
        middle_layout = QVBoxLayout(middle)
        middle_layout.setContentsMargins(0, 0, 0, 0)
        middle_layout.addLayout(nav)
        middle_layout.addWidget(pane_split, 1)
        middle_layout.addWidget(self.vote_bar)

        # ---- summary, chart, export
        self.summary_table = QTableWidget(0, len(SUMMARY_HEADERS))
        self.summary_table.setHorizontalHeaderLabels(list(SUMMARY_HEADERS))
        self.summary_table.verticalHeader().setVisible(False)
        self.summary_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.summary_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.summary_table.setWordWrap(False)
        self.summary_table.setAlternatingRowColors(True)
        self.chart = QualitySpeedChart()
        self.chart.setMaximumWidth(400)
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
        bottom_layout.addWidget(self.summary_table, 0, 0)
        bottom_layout.addWidget(self.chart, 0, 1, 2, 1)
        bottom_layout.addLayout(export_row, 1, 0)
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
        layout.addLayout(prompt_row)
        layout.addWidget(self.residency_label)
        layout.addWidget(self.caveat_label)
        layout.addWidget(split, 1)

        self.run_button.clicked.connect(self.start)
        for picker in self.model_pickers:
            picker.currentTextChanged.connect(self._schedule_preview)
        self.ctx_spin.valueChanged.connect(self._schedule_preview)
        self.residency_picker.currentIndexChanged.connect(self._schedule_preview)
        self.open_button.clicked.connect(self._open_dialog)
        self.stop_button.clicked.connect(self.runner.stop)
        self.at_once_box.toggled.connect(self.caveat_label.setVisible)
        self.suite_picker.currentIndexChanged.connect(self._on_suite_changed)
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

    def _on_suite_changed(self, _index: int) -> None:
        single = self.suite_picker.currentData() is None
        self.prompt_edit.setEnabled(single)
        self.prompt_edit.setPlaceholderText(
            "One prompt for both models…" if single else "The suite's prompts are used."
        )

    # ------------------------------------------------------------------ models
    def _model_picker(self) -> QComboBox:
        box = QComboBox()
        box.setEditable(True)
        box.setMinimumWidth(180)
        box.lineEdit().setPlaceholderText("A model on disk, a GGUF path or a catalog id")
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
        specs = []
        for picker in self.model_pickers:
            text = picker.currentText().strip()
            idx = picker.findText(text)
            data = picker.itemData(idx) if idx >= 0 else None
            specs.append(str(data) if data else text)
        return specs

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
            suite=self.suite_picker.currentData(),
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
        request = self.request()
        if not request.suite and not (request.prompt or "").strip():
            self._show_error("Type a prompt, or choose a prompt suite.")
            return
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
        self._set_running(True)
        self.runner.start(self.job_factory(request))
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
        idx = self.suite_picker.findData(result.suite) if result.suite else 0
        self.suite_picker.setCurrentIndex(max(idx, 0))
        self.blind_box.setChecked(result.blind)
        self.at_once_box.setChecked(result.concurrent)
        self.prompt_picker.blockSignals(True)
        self.prompt_picker.clear()
        for p in result.prompts:
            self.prompt_picker.addItem(p["id"], p["id"])
        self.prompt_picker.blockSignals(False)
        self.prompt_picker.setCurrentIndex(0)
        self.saved_label.setText(f"Saved to {saved_path}" if saved_path else "")
        for button in self.export_buttons.values():
            button.setEnabled(True)
        self._render_panes()
        self._render_summary()

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

    # ------------------------------------------------------------------ events
    def _on_event(self, ev: Any) -> None:
        if isinstance(ev, Planned):
            self.result = ev.result
            plan = ev.residency
            self._set_residency_text(plan.mode, plan.reason, plan.warning, len(ev.labels))
            self.prompt_picker.blockSignals(True)
            self.prompt_picker.clear()
            for p in ev.result.prompts:
                self.prompt_picker.addItem(p["id"], p["id"])
            self.prompt_picker.blockSignals(False)
            self.prompt_picker.setCurrentIndex(0)
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
        self._render_vote_bar(prompt_id, labels)

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
        for r, s in enumerate(rows):
            name = s.label
            est = f" ({s.est_decode_tps:.1f})" if s.est_decode_tps else ""
            acc = "—" if s.accuracy is None else f"{s.accuracy * 100:.0f}% of {s.checked}"
            votes = "—" if not s.votes else f"{s.wins} of {s.votes} ({s.ties} ties)"
            cells = [
                name,
                "—" if s.mean_decode_tps is None else f"{s.mean_decode_tps:.1f}{est}",
                "—" if s.mean_prefill_tps is None else f"{s.mean_prefill_tps:.0f}",
                "—" if s.mean_ttft_s is None else f"{s.mean_ttft_s:.2f}",
                fmt_bytes(s.peak_memory_bytes),
                acc,
                votes,
                str(s.errors),
            ]
            for c, value in enumerate(cells):
                table.setItem(r, c, QTableWidgetItem(value))
            quality = s.accuracy if s.accuracy is not None else s.vote_score
            if quality is not None and s.mean_decode_tps:
                basis = "accuracy" if s.accuracy is not None else "votes"
                points.append(ChartPoint(s.label, s.mean_decode_tps, quality, basis))
        self.chart.set_points(points)

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


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
