"""Tools in the chat pane, end to end: real Qt widgets, Gemma 3 270M in a real model host,
the test suite's real MCP server over stdio. The user switches the server on in the Tools
panel, Gemma is made to call a tool (the first reply must call one, and only the wanted tool
is on), the call waits under the transcript for Allow once / Deny, and the transcript shows the
call folded (unfolded: the result) and the answer. Deny, a time-out, a crashed server and Esc
while the call waits each end the turn with the conversation kept; a saved chat reopened
shows its calls again and sends them back to the model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt, QUrl

from launcher.chats import SAMPLING_PRESETS, ChatStore
from launcher.engine import EngineClient
from launcher.engine.events import EngineParams
from launcher.tools.manager import McpManager
from tests.support.mcp_fixtures import kill_stdio_servers, stdio_config
from ui.app import PlannedEngine
from ui.models.chat_session import ChatSession
from ui.models.chat_tools import ToolRole
from ui.models.library import LocalModelModel
from ui.models.rows import LocalModelRow
from ui.views.chat import ChatView
from ui.workers import ModelHost, TaskRunner

LONG = 180_000  # ms: Gemma on a busy 2-core machine, two rounds


class Recording(PlannedEngine):
    """The app's engine, remembering what each model reply was sent."""

    def __init__(self) -> None:
        super().__init__(EngineClient(), None)
        self.sent: list[list[dict[str, Any]]] = []

    def chat(self, messages: list[dict[str, Any]], sampling: Any = None) -> Iterator[Any]:
        self.sent.append(json.loads(json.dumps(messages)))
        return super().chat(messages, sampling)


class Chat:
    """The chat pane with its session, model, MCP manager and task thread."""

    def __init__(self, qtbot: Any, store: ChatStore, gemma_path: Path) -> None:
        self.qtbot = qtbot
        self.engine = Recording()
        self.manager = McpManager(())
        self.tasks = TaskRunner("test tasks")
        self.session = ChatSession(
            store,
            lambda: ModelHost(self.engine),
            mcp=self.manager,
            mcp_servers=lambda: [stdio_config()],
            tasks=self.tasks,
        )
        models = LocalModelModel()
        models.set_rows([LocalModelRow(str(gemma_path), gemma_path.name, 1, "test", True)])
        self.view = ChatView(self.session, models)
        qtbot.addWidget(self.view)
        self.view.resize(1100, 760)
        self.view.show()
        self.gemma_path = gemma_path

    def load(self) -> None:
        with self.qtbot.waitSignal(self.session.model_loaded, timeout=LONG):
            self.session.load_model(str(self.gemma_path), EngineParams(n_ctx=2048, n_threads=2))

    def close(self) -> None:
        self.session.shutdown()
        self.manager.close()
        self.tasks.shutdown()

    @property
    def text(self) -> str:
        return self.view.transcript.toPlainText()

    def switch_on(self, *tools: str, rounds: int = 1, timeout_s: float = 60) -> None:
        """Open Tools, switch calc on, leave only ``tools`` on, the first reply must call."""
        view = self.view
        if not view.tools_toggle.isChecked():
            self.qtbot.mouseClick(view.tools_toggle, Qt.MouseButton.LeftButton)
        model = view.tools_panel.model
        self.qtbot.waitUntil(lambda: model.rowCount() == 1, timeout=LONG)
        calc = model.item(0)
        assert calc.text() == "calc — off" and calc.checkState() == Qt.CheckState.Unchecked
        calc.setCheckState(Qt.CheckState.Checked)  # what a click on its box does
        self.qtbot.waitUntil(lambda: model.item(0).rowCount() == 4, timeout=LONG)
        calc = model.item(0)
        assert calc.text() == "calc — 4 tools"
        for i in range(calc.rowCount()):
            item = calc.child(i)
            if item.data(ToolRole.TOOL) not in tools:
                item.setCheckState(Qt.CheckState.Unchecked)
        panel = view.tools_panel
        panel.rounds.setValue(rounds)
        panel.choice.setCurrentIndex(panel.choice.findData("required"))
        panel.timeout.setValue(timeout_s)
        assert view.tools_toggle.text() == f"Tools: {len(tools)}"
        chat_tools = self.session.conversation.tools
        assert chat_tools.servers == ["calc"] and chat_tools.tool_choice == "required"
        assert chat_tools.max_rounds == rounds

    def ask(self, text: str) -> None:
        """Type a message, press Enter, wait until a call waits for approval."""
        self.qtbot.keyClicks(self.view.input, text)
        self.qtbot.keyClick(self.view.input, Qt.Key.Key_Return)
        self.qtbot.waitUntil(self.view.approval_bar.isVisible, timeout=LONG)

    def answer(self, button: Any) -> Any:
        with self.qtbot.waitSignal(self.session.reply_ended, timeout=LONG) as ended:
            self.qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        return ended.args[0]

    def roles(self) -> list[str]:
        return [m.role for m in self.session.conversation.messages]


@pytest.fixture
def chat(qtbot: Any, tmp_path: Path, gemma_path: Path, monkeypatch: Any) -> Iterator[Chat]:
    # Short, deterministic replies: the 270M model would otherwise write up to 1024 tokens.
    monkeypatch.setitem(SAMPLING_PRESETS, "precise", {"temperature": 0.0, "max_tokens": 48})
    c = Chat(qtbot, ChatStore(tmp_path / "chats"), gemma_path)
    c.view.preset_picker.setCurrentText("precise")
    try:
        c.load()
        yield c
    finally:
        c.close()


def test_gemma_calls_add_the_user_allows_and_the_answer_follows(chat: Chat) -> None:
    view = chat.view
    chat.switch_on("add")
    chat.ask("What is 2 plus 3?")
    bar = view.approval_bar
    assert bar.label.text().startswith("Run add on calc with {")
    assert "Tool add" in chat.text and "waiting for your approval" in chat.text
    assert "waits for your approval" in view.model_status.text()
    reply = chat.answer(bar.allow_button)

    messages = chat.session.conversation.messages
    assert chat.roles() == ["user", "assistant", "tool", "assistant"]
    call = messages[1].tool_calls[0]
    args = json.loads(call["function"]["arguments"])
    result = messages[2]
    assert (result.tool_status, result.content) == ("ok", str(args["a"] + args["b"]))
    # The result went back to the model: the second round was sent the call and its result.
    assert chat.engine.sent[-1][-1] == {"role": "tool", "tool_call_id": call["id"],
                                        "name": "add", "content": result.content}  # fmt: skip
    assert reply is messages[3] and reply.content.strip() and not reply.incomplete

    text = chat.text
    assert "▸ Tool add" in text and "done in" in text
    assert reply.content.strip()[:20] in text
    assert "2 rounds · 1 tool call · tools" in text and "round limit reached" in text
    assert (reply.metrics["rounds"], reply.metrics["tool_calls"]) == (2, 1)
    assert "Result" not in text  # folded
    view.transcript.anchorClicked.emit(QUrl(f"tool:{call['id']}"))
    text = chat.text
    assert "▾ Tool add" in text and "Result" in text and "Arguments on calc" in text
    assert f"\n{result.content}\n" in text
    assert not view.approval_bar.isVisible() and view.send_button.isEnabled()

    # Saved: reopened from the list, the call is shown again and sent back on the next turn.
    conversation_id = chat.session.conversation.id
    view.new_chat()
    assert "Tool add" not in chat.text
    saved = chat.session.store.load(conversation_id)
    assert [m.role for m in saved.messages] == ["user", "assistant", "tool", "assistant"]
    chat.session.open_conversation(conversation_id)
    assert "Tool add" in chat.text and "2 rounds · 1 tool call" in chat.text
    assert view.tools_toggle.text() == "Tools: 1"
    view.tools_panel.model.item(0).setCheckState(Qt.CheckState.Unchecked)  # tools off
    assert not chat.session.conversation.tools.active
    with chat.qtbot.waitSignal(chat.session.reply_ended, timeout=LONG):
        chat.qtbot.keyClicks(view.input, "Thanks")
        chat.qtbot.keyClick(view.input, Qt.Key.Key_Return)
    sent = chat.engine.sent[-1]
    assert [m["role"] for m in sent][-5:] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[-3]["content"] == result.content


def test_deny_tells_the_model_and_the_turn_ends_with_an_answer(chat: Chat) -> None:
    chat.switch_on("add")
    chat.ask("What is 2 plus 3?")
    reply = chat.answer(chat.view.approval_bar.deny_button)
    assert chat.roles() == ["user", "assistant", "tool", "assistant"]
    denied = chat.session.conversation.messages[2]
    assert denied.tool_status == "denied" and "did not run" in denied.content
    assert "▸ Tool add" in chat.text and "· denied" in chat.text
    assert reply.content.strip() and not reply.incomplete


def test_a_tool_past_its_time_limit_is_an_error_line(chat: Chat) -> None:
    chat.switch_on("slow", timeout_s=1)
    chat.ask("Wait a little.")
    chat.answer(chat.view.approval_bar.allow_button)
    result = chat.session.conversation.messages[2]
    assert result.tool_status == "timeout"
    assert "timed out" in chat.text
    assert "⚠ Error: slow on MCP server 'calc' did not finish within 1 s" in chat.text
    assert chat.roles() == ["user", "assistant", "tool", "assistant"]
    assert chat.session.state == "ready"


def test_a_server_that_crashed_is_an_error_line_and_the_turn_ends(chat: Chat) -> None:
    chat.switch_on("add")
    chat.ask("What is 2 plus 3?")
    assert kill_stdio_servers()  # the server dies while the user is asked
    chat.answer(chat.view.approval_bar.allow_button)
    result = chat.session.conversation.messages[2]
    assert result.tool_status == "server_error"
    assert "server failed" in chat.text and "⚠ Error: MCP server 'calc' stopped" in chat.text
    assert chat.roles() == ["user", "assistant", "tool", "assistant"]
    assert chat.session.state == "ready"


def test_escape_while_a_call_waits_stops_the_turn_and_keeps_the_conversation(chat: Chat) -> None:
    view = chat.view
    chat.switch_on("add")
    chat.ask("What is 2 plus 3?")
    with chat.qtbot.waitSignal(chat.session.reply_ended, timeout=LONG) as ended:
        chat.qtbot.keyClick(view.input, Qt.Key.Key_Escape)
    reply = ended.args[0]
    assert reply.incomplete and reply.tool_calls
    assert chat.roles() == ["user", "assistant", "tool"]
    assert chat.session.conversation.messages[2].tool_status == "cancelled"
    assert not view.approval_bar.isVisible()
    assert "▸ Tool add" in chat.text and "· stopped" in chat.text
    assert view.send_button.isEnabled() and chat.session.state == "ready"
    saved = chat.session.store.load(chat.session.conversation.id)
    assert [m.role for m in saved.messages] == ["user", "assistant", "tool"]
