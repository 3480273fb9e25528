"""The chat's "Tools" data: MCP servers with their tools, and a tree model with on/off switches.

``list_server_tools`` runs on a task thread: it reads the saved servers, hands them to the
app's ``McpManager`` and lists the tools of the servers switched on in this chat (starting
them if needed); servers that are off are listed without starting them. ``ChatToolsModel``
shows the result as a checkable tree (server, then its tools) and turns the switches back
into the conversation's ``ChatTools``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel

from launcher.chats import ChatTools


@dataclass(frozen=True)
class ServerTools:
    """One saved MCP server as the Tools control shows it. ``listed``: its tools are known
    (it started); ``error``: why they are not."""

    name: str
    target: str
    listed: bool = False
    tools: tuple[tuple[str, str], ...] = ()  # (name, description)
    error: str = ""


def list_server_tools(
    manager: Any,
    saved: Callable[[], Iterable[Any]] | None,
    wanted: Iterable[str],
    known: Mapping[str, ServerTools] | None = None,
) -> list[ServerTools]:
    """The saved servers, with the tools of those in ``wanted`` (started now if needed).
    ``known`` keeps earlier listings of the others. Blocks: run it on a task thread."""
    from launcher.errors import ToolError

    configs = list(saved()) if saved is not None else list(manager.servers)
    manager.set_servers(configs)
    wanted = set(wanted)
    known = known or {}
    out: list[ServerTools] = []
    for config in configs:
        if not config.enabled:
            continue
        entry = ServerTools(config.name, config.describe())
        if config.name in wanted:
            try:
                tools = manager.list_tools(config.name)
            except ToolError as exc:
                entry = dataclasses.replace(entry, error=str(exc))
            else:
                listing = tuple((t.name, t.description) for t in tools)
                entry = dataclasses.replace(entry, listed=True, tools=listing)
        elif config.name in known:
            entry = dataclasses.replace(known[config.name], target=entry.target)
        out.append(entry)
    names = {s.name for s in out}
    for name in sorted(wanted - names):
        out.append(ServerTools(name, "", error="no longer saved (or switched off in settings)"))
    return out


class ToolRole(IntEnum):
    SERVER = Qt.ItemDataRole.UserRole + 1  # the server's name (on server and tool rows)
    TOOL = Qt.ItemDataRole.UserRole + 2  # the tool's name (tool rows only)


def server_label(entry: ServerTools) -> str:
    if entry.error:
        return f"{entry.name} — {entry.error.splitlines()[0]}"
    if entry.listed:
        n = len(entry.tools)
        return f"{entry.name} — {n} tool{'s' if n != 1 else ''}"
    return f"{entry.name} — off"


class ChatToolsModel(QStandardItemModel):
    """Servers (checkable) and their tools (checkable) for one conversation."""

    switches_changed = Signal()  # the user turned a server or a tool on or off

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._filling = False
        self.itemChanged.connect(self._on_item_changed)

    def set_catalog(self, catalog: list[ServerTools], tools: ChatTools) -> None:
        """Show ``catalog`` with ``tools``' switches."""
        self._filling = True
        try:
            self.clear()
            for entry in catalog:
                on = entry.name in tools.servers
                server = QStandardItem(server_label(entry))
                server.setCheckable(True)
                server.setEditable(False)
                server.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
                server.setData(entry.name, ToolRole.SERVER)
                server.setToolTip(entry.error or entry.target)
                for name, description in entry.tools:
                    item = QStandardItem(name)
                    item.setCheckable(True)
                    item.setEditable(False)
                    item.setEnabled(on)
                    # Greyed while its server is off, keeping its own switch.
                    enabled = f"{entry.name}/{name}" not in tools.disabled
                    item.setCheckState(
                        Qt.CheckState.Checked if enabled else Qt.CheckState.Unchecked
                    )
                    item.setData(entry.name, ToolRole.SERVER)
                    item.setData(name, ToolRole.TOOL)
                    item.setToolTip(description)
                    server.appendRow(item)
                self.appendRow(server)
        finally:
            self._filling = False

    def chat_tools(self, base: ChatTools) -> ChatTools:
        """``base`` with the servers and tools as switched here."""
        servers: list[str] = []
        disabled = [d for d in base.disabled if d.split("/", 1)[0] not in self._names()]
        for row in range(self.rowCount()):
            server = self.item(row)
            if server is None:
                continue
            name = str(server.data(ToolRole.SERVER))
            if server.checkState() == Qt.CheckState.Checked:
                servers.append(name)
            for i in range(server.rowCount()):
                tool = server.child(i)
                if tool is not None and tool.checkState() != Qt.CheckState.Checked:
                    disabled.append(f"{name}/{tool.data(ToolRole.TOOL)}")
        return dataclasses.replace(base, servers=servers, disabled=disabled)

    def _names(self) -> set[str]:
        return {
            str(item.data(ToolRole.SERVER))
            for row in range(self.rowCount())
            if (item := self.item(row)) is not None
        }

    def _on_item_changed(self, item: QStandardItem) -> None:
        if self._filling:
            return
        if item.data(ToolRole.TOOL) is None:  # a server: its tools follow its switch
            on = item.checkState() == Qt.CheckState.Checked
            self._filling = True
            try:
                for i in range(item.rowCount()):
                    child = item.child(i)
                    if child is not None:
                        child.setEnabled(on)
            finally:
                self._filling = False
        self.switches_changed.emit()
