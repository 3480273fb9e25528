"""``ChatView``: conversations on the left; model picker, transcript and input on the right.

It renders a ``ChatSession`` and forwards the user's actions to it; it holds no chat logic.
Keyboard: Enter sends, Shift+Enter starts a new line, Esc stops the reply (anywhere in the
view). Under each reply: its metrics and the estimate the model was checked against.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from launcher.chats import SAMPLING_PRESETS, ChatMessage, Conversation, ConversationSummary
from ui.models.chat_session import ChatSession
from ui.models.conversations import ConversationListModel
from ui.models.library import LocalModelModel, LocalModelRole
from ui.widgets.chat_input import ChatInput
from ui.widgets.transcript import TranscriptView


class ChatView(QWidget):
    """The chat pane."""

    def __init__(
        self,
        session: ChatSession,
        local_models: LocalModelModel,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.local_models = local_models
        self.conversations = ConversationListModel(self)

        # ---- left: conversations
        self.new_button = QPushButton("New chat")
        self.conversation_list = QListView()
        self.conversation_list.setModel(self.conversations)
        self.conversation_list.setEditTriggers(QListView.EditTrigger.NoEditTriggers)
        self.conversation_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.conversation_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.delete_button = QPushButton("Delete")
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.new_button)
        left_layout.addWidget(self.conversation_list, 1)
        left_layout.addWidget(self.delete_button)

        # ---- right: model bar
        self.model_picker = QComboBox()
        self.model_picker.setModel(local_models)
        self.model_picker.setMinimumWidth(260)
        self.model_picker.setPlaceholderText("No models yet (see Discover)")
        self.load_button = QPushButton("Load")
        self.load_progress = QProgressBar()
        self.load_progress.setRange(0, 100)
        self.load_progress.setMaximumWidth(120)
        self.load_progress.setVisible(False)
        self.model_status = QLabel("No model loaded")
        self.model_status.setProperty("role", "hint")
        self.preset_picker = QComboBox()
        self.preset_picker.addItems(list(SAMPLING_PRESETS))
        self.preset_picker.setToolTip("Sampling preset (temperature, top-p, top-k, min-p)")
        self.system_toggle = QToolButton()
        self.system_toggle.setText("System prompt")
        self.system_toggle.setCheckable(True)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Model:"))
        bar.addWidget(self.model_picker, 1)
        bar.addWidget(self.load_button)
        bar.addWidget(self.load_progress)
        bar.addWidget(self.model_status, 1)
        bar.addWidget(QLabel("Preset:"))
        bar.addWidget(self.preset_picker)
        bar.addWidget(self.system_toggle)

        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setMaximumHeight(80)
        self.system_prompt.setVisible(False)
        self.system_prompt.setPlaceholderText("System prompt sent before the conversation")

        self.transcript = TranscriptView()
        self.input = ChatInput()
        self.send_button = QPushButton("Send")
        self.stop_button = QPushButton("Stop (Esc)")
        self.regenerate_button = QPushButton("Regenerate")
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.regenerate_button)
        buttons.addStretch(1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.input, 1)
        bottom.addLayout(buttons)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addLayout(bar)
        right_layout.addWidget(self.system_prompt)
        right_layout.addWidget(self.transcript, 1)
        right_layout.addLayout(bottom)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([220, 900])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        # ---- wiring: view -> session
        self.new_button.clicked.connect(session.new_conversation)
        self.delete_button.clicked.connect(self._on_delete_clicked)
        self.conversation_list.clicked.connect(self._on_conversation_clicked)
        self.load_button.clicked.connect(self._on_load_clicked)
        self.send_button.clicked.connect(lambda: self._on_send(self.input.toPlainText()))
        self.input.send_requested.connect(self._on_send)
        self.input.stop_requested.connect(session.stop)
        self.stop_button.clicked.connect(session.stop)
        self.regenerate_button.clicked.connect(
            lambda: (self._flush_system_prompt(), session.regenerate())
        )
        self.preset_picker.currentTextChanged.connect(session.set_preset)
        self.system_toggle.toggled.connect(self.system_prompt.setVisible)
        # Saved once typing pauses, not on every keystroke.
        self._system_prompt_timer = QTimer(self)
        self._system_prompt_timer.setSingleShot(True)
        self._system_prompt_timer.setInterval(500)
        self._system_prompt_timer.timeout.connect(
            lambda: session.set_system_prompt(self.system_prompt.toPlainText())
        )
        self.system_prompt.textChanged.connect(self._system_prompt_timer.start)
        esc = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        esc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        esc.activated.connect(session.stop)

        # ---- wiring: session -> view
        session.conversation_changed.connect(self._show_conversation)
        session.message_added.connect(self.transcript.append_message)
        session.reply_started.connect(self.transcript.begin_reply)
        session.reply_text_received.connect(self.transcript.append_text)
        session.reply_ended.connect(self._on_reply_ended)
        session.conversation_saved.connect(self._on_saved)
        session.conversation_removed.connect(self.conversations.remove)
        session.model_state_changed.connect(self._on_model_state)
        session.load_progressed.connect(lambda f: self.load_progress.setValue(int(f * 100)))
        session.error_reported.connect(self.show_error)

        self.conversations.set_items(session.list_conversations())
        self._show_conversation(session.conversation)
        self._on_model_state(session.state, session.model_name)

    # ------------------------------------------------------------------ actions
    def select_model(self, path: str) -> bool:
        """Pick the model at ``path`` in the picker (True when it is in the library)."""
        for row in range(self.local_models.rowCount()):
            if self.local_models.index(row, 0).data(LocalModelRole.PATH) == path:
                self.model_picker.setCurrentIndex(row)
                return True
        return False

    def _on_load_clicked(self) -> None:
        if self.session.state in ("ready", "busy", "loading"):
            self.session.unload_model()
            return
        row = self.model_picker.currentIndex()
        if row < 0:
            self.show_error("Pick a model first (download one in Discover).")
            return
        path = self.local_models.index(row, 0).data(LocalModelRole.PATH)
        self.session.load_model(path)

    def _flush_system_prompt(self) -> None:
        if self._system_prompt_timer.isActive():
            self._system_prompt_timer.stop()
            self.session.set_system_prompt(self.system_prompt.toPlainText())

    def _on_send(self, text: str) -> None:
        self._flush_system_prompt()
        if self.session.send(text):
            self.input.clear()
        elif self.session.state != "ready" and self.session.state != "busy":
            self.show_error("Load a model first.")

    def _on_conversation_clicked(self, index: QModelIndex) -> None:
        self.session.open_conversation(self.conversations.id_at(index.row()))

    def _on_delete_clicked(self) -> None:
        index = self.conversation_list.currentIndex()
        if index.isValid():
            self.session.delete_conversation(self.conversations.id_at(index.row()))

    # ------------------------------------------------------------------ rendering
    def _show_conversation(self, conversation: Conversation) -> None:
        self.transcript.set_messages(conversation.messages)
        self.preset_picker.blockSignals(True)
        self.preset_picker.setCurrentText(conversation.preset)
        self.preset_picker.blockSignals(False)
        self.system_prompt.blockSignals(True)
        self.system_prompt.setPlainText(conversation.system_prompt)
        self.system_prompt.blockSignals(False)
        row = self.conversations.row_of(conversation.id)
        if row is not None:
            self.conversation_list.setCurrentIndex(self.conversations.index(row))
        else:
            self.conversation_list.clearSelection()

    def _on_reply_ended(self, msg: ChatMessage) -> None:
        self.transcript.end_reply(msg)
        self._on_model_state(self.session.state, self.session.model_name)

    def _on_saved(self, summary: ConversationSummary) -> None:
        self.conversations.upsert(summary)
        row = self.conversations.row_of(summary.id)
        if row is not None:
            self.conversation_list.setCurrentIndex(self.conversations.index(row))

    def _on_model_state(self, state: str, name: str) -> None:
        self.load_progress.setVisible(state == "loading")
        if state == "loading":
            self.load_progress.setValue(0)
        self.load_button.setText("Load" if state == "unloaded" else "Unload")
        self.send_button.setEnabled(state == "ready")
        self.stop_button.setEnabled(state == "busy")
        self.regenerate_button.setEnabled(state == "ready")
        self.model_picker.setEnabled(state == "unloaded")
        self.model_status.setText(
            {
                "unloaded": "No model loaded",
                "loading": f"Loading {name}…",
                "ready": f"{name} ready",
                "busy": f"{name} is replying… (Esc stops)",
            }.get(state, state)
        )

    def show_error(self, message: str) -> None:
        self.model_status.setText(message)
        self.model_status.setToolTip(message)
