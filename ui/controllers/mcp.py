"""Doctor & settings → MCP servers: list, add, import, test, edit secrets, remove."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject

from launcher.paths import AppPaths
from ui.models.wording import plural
from ui.workers import TaskRunner

if TYPE_CHECKING:
    from ui.views.mcp_servers import McpServersBox


class McpServersController(QObject):
    """Runs the MCP servers tab's actions on the network task thread; keeps the last test of
    each server for the table (touched on that thread only)."""

    def __init__(self, paths: AppPaths, tasks: TaskRunner, view: McpServersBox) -> None:
        super().__init__()
        self.paths = paths
        self.tasks = tasks
        self.view = view
        self._tested: dict[str, str] = {}  # server -> last test result
        view.add_requested.connect(self.add)
        view.import_requested.connect(self.import_file)
        view.test_requested.connect(self.test)
        view.remove_requested.connect(self.remove)
        view.secrets_edited.connect(self.edit_secrets)

    def refresh(self) -> None:
        """List the saved MCP servers in Doctor & settings, with the last test of each."""
        from ui.views.mcp_servers import McpServerRow

        paths = self.paths
        tested = self._tested

        def work() -> list[McpServerRow]:
            from launcher.tools.config import McpStore

            return [
                McpServerRow(
                    s.name,
                    s.transport + ("" if s.enabled else " (off)"),
                    s.describe(),
                    tested.get(s.name, "not tested"),
                    tuple(sorted(s.headers if s.transport == "http" else s.env)),
                )
                for s in McpStore(paths).all()
            ]

        self.tasks.submit(work, self.view.set_servers, self.view.show_message)

    def _task(self, work: Callable[[], str]) -> None:
        def done(message: str) -> None:
            self.view.show_message(message)
            self.refresh()

        self.tasks.submit(work, done, self.view.show_message)

    def add(self, name: str, target: str) -> None:
        """Save a server from a command line (stdio) or a URL (HTTP), then test it."""
        paths = self.paths

        def work() -> str:
            import shlex

            from launcher.tools.config import McpStore, server_from_json

            if target.startswith(("http://", "https://")):
                entry: dict[str, Any] = {"url": target}
            else:
                words = shlex.split(target)
                entry = {"command": words[0], "args": words[1:]}
            server = McpStore(paths).save(server_from_json(name, entry))
            return f"Saved {server.name}. " + self._test_server(server)

        self._task(work)

    def import_file(self, path: str) -> None:
        paths = self.paths

        def work() -> str:
            from launcher.tools.config import McpStore, load_mcp_json

            servers = McpStore(paths).import_servers(load_mcp_json(path))
            names = ", ".join(s.name for s in servers) or "none"
            return f"Imported {len(servers)} server(s): {names}. Select one and Test it."

        self._task(work)

    def test(self, name: str) -> None:
        paths = self.paths

        def work() -> str:
            from launcher.tools.config import McpStore

            return self._test_server(McpStore(paths).get(name))

        self._task(work)

    def _test_server(self, server: Any) -> str:
        """Start ``server``, list its tools, stop it; the result is kept for the table.
        Runs on the network task thread."""
        from launcher.errors import ToolError
        from launcher.tools.manager import McpManager

        tested = self._tested
        try:
            with McpManager([server]) as manager:
                tools = manager.list_tools(server.name)
        except ToolError as exc:
            tested[server.name] = "failed"
            return str(exc)
        names = ", ".join(t.name for t in tools)
        tested[server.name] = f"{plural(len(tools), 'tool')}: {names}" if tools else "no tools"
        return f"{server.name}: {tested[server.name]}."

    def edit_secrets(self, name: str, changes: dict[str, str | None]) -> None:
        """Set or remove a saved server's env variables or headers (values never shown)."""
        paths = self.paths

        def work() -> str:
            from launcher.tools.config import McpStore

            McpStore(paths).update_secrets(name, changes)
            self._tested.pop(name, None)
            return f"Saved {name} ({', '.join(sorted(changes))}). Test it to check."

        self._task(work)

    def remove(self, name: str) -> None:
        paths = self.paths

        def work() -> str:
            from launcher.tools.config import McpStore

            McpStore(paths).remove(name)
            return f"Removed {name}."

        self._task(work)
