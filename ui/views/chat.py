"""``ChatView``: conversations on the left; model picker, transcript and input on the right.

It renders a ``ChatSession`` and forwards the user's actions to it; it holds no chat logic.
Keyboard: Enter sends, Shift+Enter starts a new line, Esc stops the reply (wherever the focus
is in the window, while one streams), Ctrl+R asks again; the window adds Ctrl+N (new chat) and
Ctrl+L (the message box). Under each reply: its metrics and the estimate the model was checked
against. A model with no chat template (the bundled starter) gets a note above the transcript
saying what it is, with a button to the model recommended for this machine.

Tools: the "Tools" button opens a panel listing the saved MCP servers and their tools with
on/off switches for this chat, the rounds per message, whether the first reply must call a
tool, and a call's time limit. Each call the model makes waits under the transcript for
Allow once / Always allow / Deny; Esc stops the turn there too.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFrame,
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
from ui.widgets.elided_label import ElidedLabel
from ui.widgets.tools_panel import ApprovalBar, ToolsPanel
from ui.widgets.transcript import TranscriptView, call_arguments

# Below this many parameters a model is a toy: say so plainly.
TINY_PARAMS = 1_000_000_000


def base_model_note(name: str, n_params: int | None, recommendation: str) -> str:
    """The note shown above the transcript when the loaded model has no chat template."""
    tiny = n_params is not None and 0 < n_params < TINY_PARAMS
    what = (
        f"a tiny test model ({n_params / 1e9:.2f} B parameters)"
        if tiny and n_params
        else "a base model"
    )
    where = (
        "For real chats, download the model recommended for this machine."
        if recommendation
        else "For real chats, pick a chat model that fits this machine in Discover."
    )
    return (
        f"<b>{name} is {what} with no chat template.</b> It continues your text instead of "
        f"answering it, so its replies mostly echo the prompt: it is here to check that the app "
        f"works. {where}"
    )


class ChatView(QWidget):
    """The chat pane."""

    recommended_download_requested = Signal()  # the note's button: get the recommended model

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
        self.model_picker.setMinimumWidth(180)
        self.model_picker.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.model_picker.setMinimumContentsLength(16)
        self.model_picker.setPlaceholderText("No models yet (see Discover)")
        self.load_button = QPushButton("Load")
        self.load_progress = QProgressBar()
        self.load_progress.setRange(0, 100)
        self.load_progress.setMaximumWidth(80)
        self.load_progress.setVisible(False)
        # Elided: a long model name or error must not widen the window.
        self.model_status = ElidedLabel("No model loaded", mode=Qt.TextElideMode.ElideRight)
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
        # Offered after a model crashed twice in a row (launcher/engine/crashes.py).
        self.safe_button = QPushButton("Load with safe settings")
        self.safe_button.setVisible(False)
        self.safe_button.clicked.connect(session.load_with_safe_settings)
        bar.addWidget(self.safe_button)
        bar.addWidget(QLabel("Preset:"))
        bar.addWidget(self.preset_picker)
        bar.addWidget(self.system_toggle)
        self.tools_toggle = QToolButton()
        self.tools_toggle.setText("Tools: off")
        self.tools_toggle.setCheckable(True)
        self.tools_toggle.setToolTip("MCP tools this chat's model may call, with your approval")
        self.tools_toggle.setVisible(session.tools_available)
        bar.addWidget(self.tools_toggle)
        self.tools_panel = ToolsPanel()
        self.tools_panel.setVisible(False)
        self.approval_bar = ApprovalBar()

        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setMaximumHeight(80)
        self.system_prompt.setVisible(False)
        self.system_prompt.setPlaceholderText("System prompt sent before the conversation")

        # ---- note on a model that cannot chat (no chat template: the bundled starter)
        self.model_note = QLabel("")
        self.model_note.setWordWrap(True)
        self.model_note.setTextFormat(Qt.TextFormat.RichText)
        self.recommend_button = QPushButton("Download the recommended model")
        self.recommend_button.setVisible(False)
        self.model_note_box = QFrame()
        self.model_note_box.setObjectName("model_note")
        self.model_note_box.setFrameShape(QFrame.Shape.StyledPanel)
        note_layout = QHBoxLayout(self.model_note_box)
        note_layout.setContentsMargins(8, 4, 8, 4)
        note_layout.addWidget(self.model_note, 1)
        note_layout.addWidget(self.recommend_button, 0, Qt.AlignmentFlag.AlignVCenter)
        self.model_note_box.setVisible(False)
        self._recommendation = ""
        self._state = "unloaded"
        self._focus_was_here = False

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
        right_layout.addWidget(self.tools_panel)
        right_layout.addWidget(self.model_note_box)
        right_layout.addWidget(self.transcript, 1)
        right_layout.addWidget(self.approval_bar)
        right_layout.addLayout(bottom)

        # The conversation list keeps its width (the user may drag it); the transcript takes
        # what the window gives or takes.
        self.splitter = QSplitter()
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([220, 900])
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)

        # ---- wiring: view -> session
        self.new_button.clicked.connect(session.new_conversation)
        self.delete_button.clicked.connect(self._on_delete_clicked)
        self.conversation_list.clicked.connect(self._on_conversation_clicked)
        self.load_button.clicked.connect(self._on_load_clicked)
        self.send_button.clicked.connect(lambda: self._on_send(self.input.toPlainText()))
        self.input.send_requested.connect(self._on_send)
        self.input.stop_requested.connect(session.stop)
        self.stop_button.clicked.connect(session.stop)
        self.regenerate_button.clicked.connect(self._on_regenerate)
        self.preset_picker.currentTextChanged.connect(session.set_preset)
        self.system_toggle.toggled.connect(self.system_prompt.setVisible)
        self.tools_toggle.toggled.connect(self._on_tools_toggled)
        self.tools_panel.tools_edited.connect(session.set_tools)
        self.tools_panel.refresh_requested.connect(self._refresh_tools)
        self.approval_bar.answered.connect(session.answer_call)
        # Saved once typing pauses, not on every keystroke.
        self._system_prompt_timer = QTimer(self)
        self._system_prompt_timer.setSingleShot(True)
        self._system_prompt_timer.setInterval(500)
        self._system_prompt_timer.timeout.connect(
            lambda: session.set_system_prompt(self.system_prompt.toPlainText())
        )
        self.system_prompt.textChanged.connect(self._system_prompt_timer.start)
        self.recommend_button.clicked.connect(self.recommended_download_requested)
        # Window-wide while this view shows: after a click on Regenerate the focus is on a
        # button (or nowhere), and Esc must still stop the reply the status line says it stops.
        # Enabled only while a reply streams, so Esc keeps its usual meaning otherwise.
        self.stop_shortcut = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        self.stop_shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
        self.stop_shortcut.setEnabled(False)
        self.stop_shortcut.activated.connect(session.stop)
        self.regenerate_shortcut = QShortcut(QKeySequence("Ctrl+R"), self)
        self.regenerate_shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
        self.regenerate_shortcut.activated.connect(self._on_regenerate)
        self.regenerate_button.setToolTip("Ask again (Ctrl+R)")
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")

        # ---- wiring: session -> view
        session.conversation_changed.connect(self._show_conversation)
        session.message_added.connect(self.transcript.append_message)
        session.reply_started.connect(self.transcript.begin_reply)
        session.reply_text_received.connect(self.transcript.append_text)
        session.reply_reasoning_received.connect(self.transcript.append_reasoning)
        session.reply_ended.connect(self._on_reply_ended)
        session.conversation_saved.connect(self._on_saved)
        session.conversation_removed.connect(self.conversations.remove)
        session.model_state_changed.connect(self._on_model_state)
        session.load_progressed.connect(lambda f: self.load_progress.setValue(int(f * 100)))
        session.error_reported.connect(self.show_error)
        session.safe_settings_offered.connect(self._on_safe_settings_offered)
        session.tools_changed.connect(self._on_tools_changed)
        session.tool_catalog_changed.connect(self._on_tool_catalog)
        session.approval_requested.connect(self._on_approval_requested)
        session.tool_call_state_changed.connect(self._on_tool_call_state)
        session.round_ended.connect(self.transcript.end_round)

        self.conversations.set_items(session.list_conversations())
        self._show_conversation(session.conversation)
        self._on_tools_changed(session.conversation.tools)
        self._on_model_state(session.state, session.model_name)

    # ------------------------------------------------------------------ tools
    def _on_tools_toggled(self, shown: bool) -> None:
        self.tools_panel.setVisible(shown)
        if shown:
            self._refresh_tools()

    def _refresh_tools(self) -> None:
        self.tools_panel.set_status("Reading the saved MCP servers; those on start to list tools…")
        self.session.refresh_tools()

    def _on_tools_changed(self, tools: Any) -> None:
        if tools != self.tools_panel.tools:  # another chat (not the panel's own edit)
            self.tools_panel.show_tools(tools)
            listed = {e.name for e in self.session.tool_catalog if e.listed}
            if self.tools_panel.isVisible() and set(tools.servers) - listed:
                self._refresh_tools()
        self.tools_toggle.setText(self.tools_panel.summary())

    def _on_tool_catalog(self, catalog: Any) -> None:
        self.tools_panel.set_catalog(catalog)
        self.tools_toggle.setText(self.tools_panel.summary())

    def _on_approval_requested(self, call: Any, tool: Any) -> None:
        self.approval_bar.ask(
            call.name, call_arguments(call.arguments), getattr(tool, "server", "") or ""
        )
        self.model_status.setText(f"{call.name} waits for your approval (Esc stops)")
        self.transcript.set_call_state(call.id, "approval")

    def _on_tool_call_state(self, call_id: str, state: str) -> None:
        self.transcript.set_call_state(call_id, state)
        if self.session.pending_call is None:
            self.approval_bar.close_question()
        if state == "running":
            self.model_status.setText("A tool is running… (Esc stops)")

    def _on_safe_settings_offered(self, message: str) -> None:
        """Show (or, with an empty message, hide) the one-click safe-settings reload."""
        self.safe_button.setVisible(bool(message))
        self.safe_button.setToolTip(message)
        if message:
            self.show_error(message)

    # ------------------------------------------------------------------ actions
    def new_chat(self) -> None:
        """Start a new conversation and put the cursor in the message box (Ctrl+N)."""
        self.session.new_conversation()
        self.focus_input()

    def focus_input(self) -> None:
        """Put the keyboard focus in the message box (Ctrl+L)."""
        self.input.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def set_recommendation(self, label: str) -> None:
        """Name the model recommended for this machine (offered when a model cannot chat)."""
        self._recommendation = label
        self.recommend_button.setText(f"Download {label}" if label else "")
        self._render_model_note()

    def _on_regenerate(self) -> None:
        self._flush_system_prompt()
        self.session.regenerate()

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
        self.approval_bar.close_question()
        self.transcript.end_reply(msg)
        self._on_model_state(self.session.state, self.session.model_name)

    def _on_saved(self, summary: ConversationSummary) -> None:
        self.conversations.upsert(summary)
        row = self.conversations.row_of(summary.id)
        if row is not None:
            self.conversation_list.setCurrentIndex(self.conversations.index(row))

    def _on_model_state(self, state: str, name: str) -> None:
        previous, self._state = self._state, state
        focus = QApplication.focusWidget()
        in_view = focus is None or self.isAncestorOf(focus)
        if state == "busy" and previous != "busy":
            # Noted before the buttons turn off: a disabled button hands its focus on to
            # whatever comes next, perhaps outside this view.
            self._focus_was_here = in_view
        # Typing goes on where it makes sense: once a model is loaded (the starter opens this
        # view and loads it), and after a reply that started from this view.
        keep_typing = self.isVisible() and (
            (previous == "loading" and state == "ready")
            or (previous == "busy" and state == "ready" and (in_view or self._focus_was_here))
        )
        self.stop_shortcut.setEnabled(state == "busy")
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
        self._render_model_note()
        if keep_typing:
            self.focus_input()

    def _render_model_note(self) -> None:
        """Say plainly when the loaded model cannot chat (no chat template)."""
        loaded: Any = self.session.loaded if self._state in ("ready", "busy") else None
        # Only a model that reports it has no template: an engine that does not say (or a
        # remote server, which applies its own) gets no note.
        no_template = loaded is not None and getattr(loaded, "chat_template", "") is None
        self.model_note_box.setVisible(no_template)
        if no_template:
            self.model_note.setText(
                base_model_note(
                    self.session.model_name,
                    getattr(loaded, "n_params", None),
                    self._recommendation,
                )
            )
        self.recommend_button.setVisible(no_template and bool(self._recommendation))

    def show_error(self, message: str) -> None:
        self.model_status.setText(message)
        self.model_status.setToolTip(message)
