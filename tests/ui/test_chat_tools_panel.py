"""The chat's Tools panel without a model: the saved servers listed (only the ones switched on
are started), their tools as switches that become the conversation's ``ChatTools``, a server
that cannot start says why, and the item model passes Qt's model checks."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt

from launcher.chats import ChatStore, ChatTools
from launcher.tools.config import McpServerConfig
from launcher.tools.manager import McpManager
from tests.support.mcp_fixtures import stdio_config
from ui.models.chat_session import ChatSession
from ui.models.chat_tools import ChatToolsModel, ServerTools, list_server_tools
from ui.widgets.tools_panel import ToolsPanel
from ui.workers import ModelHost, TaskRunner

BROKEN = McpServerConfig("broken", "stdio", command=sys.executable,
                         args=("-c", "import sys; sys.exit('no tools today')"))  # fmt: skip
OFF = McpServerConfig("off", "stdio", command="never-started", enabled=False)


def test_only_servers_switched_on_start_and_a_broken_one_says_why() -> None:
    with McpManager(()) as manager:
        catalog = list_server_tools(
            manager, lambda: [stdio_config(), BROKEN, OFF], ["calc", "broken", "gone"]
        )
    by_name = {entry.name: entry for entry in catalog}
    assert list(by_name) == ["calc", "broken", "gone"]  # "off" is off in settings
    assert by_name["calc"].listed
    assert [name for name, _ in by_name["calc"].tools] == ["add", "lookup", "slow", "fail"]
    assert not by_name["broken"].listed and "could not start" in by_name["broken"].error
    assert "no longer saved" in by_name["gone"].error


def test_switches_become_the_chats_tools(qtbot, qtmodeltester) -> None:
    catalog = [
        ServerTools("calc", "python -m calc", True, (("add", "Add"), ("slow", "Sleep"))),
        ServerTools("web", "https://mcp.example.com/mcp"),
    ]
    panel = ToolsPanel()
    qtbot.addWidget(panel)
    panel.set_catalog(catalog)
    assert panel.summary() == "Tools: off"
    model: ChatToolsModel = panel.model
    qtmodeltester.check(model)
    assert [model.item(i).text() for i in range(2)] == ["calc — 2 tools", "web — off"]
    edited: list[ChatTools] = []
    panel.tools_edited.connect(edited.append)
    model.item(0).setCheckState(Qt.CheckState.Checked)
    model.item(0).child(1).setCheckState(Qt.CheckState.Unchecked)
    panel.rounds.setValue(2)
    panel.choice.setCurrentIndex(panel.choice.findData("required"))
    tools = edited[-1]
    assert tools == ChatTools(servers=["calc"], disabled=["calc/slow"], max_rounds=2,
                              tool_choice="required")  # fmt: skip
    assert panel.summary() == "Tools: 1"
    qtmodeltester.check(model)


def test_the_session_keeps_tool_settings_per_chat(qtbot, tmp_path: Path) -> None:
    tasks = TaskRunner("test tasks")
    with McpManager(()) as manager:
        session = ChatSession(
            ChatStore(tmp_path),
            lambda: ModelHost(None),  # type: ignore[arg-type]
            mcp=manager,
            mcp_servers=lambda: [stdio_config()],
            tasks=tasks,
        )
        try:
            with qtbot.waitSignal(session.tool_catalog_changed, timeout=60000) as listed:
                session.set_tools(ChatTools(servers=["calc"]))
            assert listed.args[0][0].listed
            first = session.conversation.id
            session.conversation.add("user", "hi")
            session.set_tools(ChatTools(servers=["calc"], max_rounds=1))  # saved with the chat
            session.new_conversation()
            assert not session.conversation.tools.active
            session.open_conversation(first)
            assert session.conversation.tools.max_rounds == 1
        finally:
            session.shutdown()
            tasks.shutdown()
