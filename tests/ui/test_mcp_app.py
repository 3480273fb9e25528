"""MCP servers in Doctor & settings: add one from a command line (it is started and its tools
listed), import an ``mcp.json``, test a broken one (it says why, without its secrets), remove
one. Against the real test server (``tests/support/mcp_test_server.py``) over stdio."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from launcher.tools.config import McpStore
from tests.support.mcp_fixtures import SERVER_MODULE
from tests.ui.ui_fakes import started_app
from ui.app import AppContext

SECRET = "tok-ui-0a1b2c3d4e"


@pytest.fixture
def ctx(qtbot, app_home) -> Iterator[AppContext]:
    yield from started_app(qtbot)


def test_add_test_import_and_remove_mcp_servers(qtbot, ctx: AppContext, tmp_path: Path) -> None:
    box = ctx.doctor.mcp
    ctx.window.show_view("doctor")
    ctx.doctor.servers_tabs.setCurrentWidget(box)
    box.name_field.setText("calc")
    box.target_field.setText(shlex.join([sys.executable, "-m", SERVER_MODULE]))
    qtbot.mouseClick(box.add_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: box.status_label.text().startswith("Saved calc."), timeout=60000)
    assert "4 tools: add, lookup, slow, fail" in box.status_label.text()
    qtbot.waitUntil(lambda: box.table.rowCount() == 1, timeout=20000)
    assert box.table.item(0, 1).text() == "stdio"
    assert box.table.item(0, 3).text() == "4 tools: add, lookup, slow, fail"

    # An mcp.json with a server that cannot start; its token is never shown.
    broken = {"command": sys.executable, "args": ["-c", "import sys; sys.exit('nope')"],
              "env": {"API_TOKEN": SECRET}}  # fmt: skip
    file = tmp_path / "mcp.json"
    file.write_text(json.dumps({"mcpServers": {"broken": broken}}))
    ctx.mcp_servers.import_file(str(file))
    qtbot.waitUntil(lambda: box.table.rowCount() == 2, timeout=20000)
    assert "Imported 1 server(s): broken" in box.status_label.text()
    box.table.selectRow(1)
    qtbot.mouseClick(box.test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "could not start" in box.status_label.text(), timeout=60000)
    assert SECRET not in box.status_label.text()
    qtbot.waitUntil(lambda: box.table.item(1, 3).text() == "failed", timeout=20000)
    assert all(SECRET not in (box.table.item(1, j).text()) for j in range(4))

    box.table.selectRow(1)
    qtbot.mouseClick(box.remove_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: box.table.rowCount() == 1, timeout=20000)
    assert [s.name for s in McpStore().all()] == ["calc"]
