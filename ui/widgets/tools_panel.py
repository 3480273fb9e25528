"""The chat's tool widgets: ``ToolsPanel`` (which MCP servers and tools this chat may use, and
the limits of a turn) and ``ApprovalBar`` (a call waiting for the user: Allow once, Always for
this tool, Deny).

Both only render and emit what the user chose; ``ChatView`` passes it to the ``ChatSession``.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from launcher.chats import ChatTools
from ui.models.chat_tools import ChatToolsModel, ServerTools
from ui.widgets.elided_label import ElidedLabel

MAX_TREE_ROWS = 8
# The first reply of a turn: what the combo box says, and the engine's tool_choice.
TOOL_CHOICES = (("May call a tool", "auto"), ("Must call a tool", "required"))
NO_SERVERS = (
    "No MCP servers yet. Add one in Doctor & settings → MCP servers (a command such as "
    "npx -y @modelcontextprotocol/server-…, or a URL), then switch it on here."
)


class ToolsPanel(QFrame):
    """MCP servers with their tools (on/off switches), rounds per turn, first reply, time limit."""

    tools_edited = Signal(object)  # ChatTools
    refresh_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("tools_panel")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.model = ChatToolsModel(self)
        self.tree = QTreeView()
        self.tree.setModel(self.model)
        self.tree.setHeaderHidden(True)
        self.tree.setUniformRowHeights(True)
        self.hint = QLabel(NO_SERVERS)
        self.hint.setWordWrap(True)
        self.hint.setProperty("role", "hint")
        self.rounds = QSpinBox()
        self.rounds.setRange(0, 50)
        self.rounds.setToolTip(
            "Replies with tool calls per message before the model must answer in text"
        )
        self.choice = QComboBox()
        for label, value in TOOL_CHOICES:
            self.choice.addItem(label, value)
        self.choice.setToolTip(
            "The model's first reply to each message: it may call a tool, or it must call one "
            "(small models often need this)"
        )
        self.timeout = QDoubleSpinBox()
        self.timeout.setRange(1, 3600)
        self.timeout.setDecimals(0)
        self.timeout.setSuffix(" s")
        self.timeout.setToolTip("A tool still running after this long is stopped")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Read the saved servers again and list their tools")
        self.status = ElidedLabel("", mode=Qt.TextElideMode.ElideRight)
        self.status.setProperty("role", "hint")
        self.status.setVisible(False)

        limits = QHBoxLayout()
        limits.addWidget(QLabel("Rounds per message:"))
        limits.addWidget(self.rounds)
        limits.addWidget(QLabel("First reply:"))
        limits.addWidget(self.choice)
        limits.addWidget(QLabel("Time limit per call:"))
        limits.addWidget(self.timeout)
        limits.addStretch(1)
        limits.addWidget(self.refresh_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.addWidget(self.tree)
        layout.addWidget(self.hint)
        layout.addLayout(limits)
        layout.addWidget(self.status)

        self._tools = ChatTools()
        self._catalog: list[ServerTools] = []
        self._filling = False
        self.model.switches_changed.connect(self._on_edited)
        self.rounds.valueChanged.connect(self._on_edited)
        self.choice.currentIndexChanged.connect(self._on_edited)
        self.timeout.valueChanged.connect(self._on_edited)
        self.refresh_button.clicked.connect(self.refresh_requested)
        self._render()

    @property
    def tools(self) -> ChatTools:
        return self._tools

    def show_tools(self, tools: ChatTools) -> None:
        """Show one conversation's settings (another chat was opened)."""
        self._tools = tools
        self._render()

    def set_catalog(self, catalog: list[ServerTools]) -> None:
        """The saved servers and the tools of those listed."""
        self._catalog = list(catalog)
        self.set_status("")
        self._render()

    def set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setToolTip(text)
        self.status.setVisible(bool(text))

    def summary(self) -> str:
        """The Tools button's text: how many tools this chat gives the model."""
        if not self._tools.servers:
            return "Tools: off"
        n = sum(
            1
            for entry in self._catalog
            if entry.name in self._tools.servers
            for name, _ in entry.tools
            if self._tools.tool_enabled(entry.name, name)
        )
        listed = any(e.listed and e.name in self._tools.servers for e in self._catalog)
        return f"Tools: {n}" if listed else f"Tools: {len(self._tools.servers)} server(s)"

    def _render(self) -> None:
        self._filling = True
        try:
            self.model.set_catalog(self._catalog, self._tools)
            self.tree.expandAll()
            self._fit_tree()
            self.tree.setVisible(bool(self._catalog))
            self.hint.setVisible(not self._catalog)
            self.rounds.setValue(self._tools.max_rounds)
            index = self.choice.findData(self._tools.tool_choice)
            self.choice.setCurrentIndex(max(index, 0))
            self.timeout.setValue(self._tools.timeout_s)
        finally:
            self._filling = False

    def _fit_tree(self) -> None:
        """As tall as its rows, up to ``MAX_TREE_ROWS`` (then it scrolls)."""
        servers = [self.model.item(r) for r in range(self.model.rowCount())]
        rows = sum(1 + item.rowCount() for item in servers if item is not None)
        row_height = max(self.tree.sizeHintForRow(0), self.fontMetrics().height() + 2)
        shown = min(max(rows, 1), MAX_TREE_ROWS)
        self.tree.setFixedHeight(shown * row_height + 2 * self.tree.frameWidth() + 4)

    def _on_edited(self) -> None:
        if self._filling:
            return
        tools = self.model.chat_tools(self._tools)
        self._tools = dataclasses.replace(
            tools,
            max_rounds=self.rounds.value(),
            tool_choice=str(self.choice.currentData()),
            timeout_s=float(self.timeout.value()),
        )
        self.tools_edited.emit(self._tools)


class ApprovalBar(QFrame):
    """A tool call waiting for the user, under the transcript: what it runs, and the answers."""

    answered = Signal(str)  # "once", "always", "deny" (launcher.tools.loop.Approval values)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("approval_bar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.label = ElidedLabel("", mode=Qt.TextElideMode.ElideRight)
        self.allow_button = QPushButton("Allow once")
        self.always_button = QPushButton("Always for this tool")
        self.deny_button = QPushButton("Deny")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.allow_button)
        layout.addWidget(self.always_button)
        layout.addWidget(self.deny_button)
        self.allow_button.clicked.connect(lambda: self._answer("once"))
        self.always_button.clicked.connect(lambda: self._answer("always"))
        self.deny_button.clicked.connect(lambda: self._answer("deny"))
        self.setVisible(False)

    def ask(self, tool: str, arguments: str, server: str) -> None:
        """Show the question for one call and put the focus on Allow once."""
        where = f" on {server}" if server else ""
        text = f"Run {tool}{where} with {arguments}?"
        self.label.setText(text)
        self.label.setToolTip(text)
        self.always_button.setText(f"Always allow {tool}")
        self.setVisible(True)
        self.allow_button.setFocus(Qt.FocusReason.OtherFocusReason)

    def close_question(self) -> None:
        self.setVisible(False)

    def _answer(self, value: str) -> None:
        self.setVisible(False)
        self.answered.emit(value)
