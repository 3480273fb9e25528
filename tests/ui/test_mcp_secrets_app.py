"""Doctor & settings → MCP servers → "Env / headers…": the names a server has are listed, its
values never; a new value and a new variable are saved to the private file, one is removed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt

from launcher.tools.config import McpServerConfig, McpStore
from tests.ui.ui_fakes import started_app
from ui.app import AppContext

OLD, NEW = "tok-old-0a1b2c3d", "tok-new-9z8y7x6w"


@pytest.fixture
def ctx(qtbot, app_home) -> Iterator[AppContext]:
    McpStore().save(McpServerConfig("calc", "stdio", command="calc-server",
                                    env={"API_TOKEN": OLD, "REGION": "eu"}))  # fmt: skip
    yield from started_app(qtbot)


def test_env_values_are_set_added_and_removed_never_shown(qtbot, ctx: AppContext) -> None:
    box = ctx.doctor.mcp
    ctx.window.show_view("doctor")
    ctx.doctor.servers_tabs.setCurrentWidget(box)
    qtbot.waitUntil(lambda: box.table.rowCount() == 1, timeout=20000)
    box.table.selectRow(0)
    qtbot.mouseClick(box.secrets_button, Qt.MouseButton.LeftButton)
    dialog = box.secrets_dialog
    assert dialog is not None and dialog.isVisible()
    names = [dialog.table.item(i, 0).text() for i in range(dialog.table.rowCount())]
    assert names == ["API_TOKEN", "REGION"]
    assert all(dialog.table.cellWidget(i, 1).text() == "" for i in range(2))  # never shown
    dialog.set_value(0, NEW)
    dialog.table.setCurrentCell(1, 0)
    qtbot.mouseClick(dialog.remove_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    dialog.table.item(1, 0).setText("DEBUG")
    dialog.set_value(1, "1")
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: box.status_label.text().startswith("Saved calc"), timeout=20000)
    assert dict(McpStore().get("calc").env) == {"API_TOKEN": NEW, "DEBUG": "1"}
    texts = [box.status_label.text()] + [
        box.table.item(0, j).text() for j in range(box.table.columnCount())
    ]
    assert not any(OLD in t or NEW in t for t in texts)
