"""A saved MCP server's env variables (stdio) or headers (HTTP) are set and removed in place,
kept in the 0600 file, and never part of an error message."""

from __future__ import annotations

import os
import stat

import pytest

from launcher.errors import McpConfigError
from launcher.paths import AppPaths
from launcher.tools.config import McpServerConfig, McpStore

SECRET = "sk-live-9f8e7d6c5b4a"


def test_env_and_headers_are_updated_in_the_private_file(app_home) -> None:
    store = McpStore(AppPaths.default())
    env = {"KEEP": "1", "OLD": "x"}
    store.save(McpServerConfig("calc", "stdio", command="calc-server", env=env))
    store.save(McpServerConfig("web", "http", url="https://mcp.example.com/mcp"))
    store.update_secrets("calc", {"API_TOKEN": SECRET, "OLD": None})
    store.update_secrets("web", {"Authorization": f"Bearer {SECRET}"})
    assert dict(store.get("calc").env) == {"KEEP": "1", "API_TOKEN": SECRET}
    assert dict(store.get("web").headers) == {"Authorization": f"Bearer {SECRET}"}
    assert stat.S_IMODE(os.stat(store.file).st_mode) == 0o600
    assert SECRET not in repr(store.get("calc")) and SECRET not in store.get("web").describe()


@pytest.mark.parametrize("changes", [{"BAD NAME": SECRET}, {"TOKEN": f"{SECRET}\nX"}])
def test_bad_names_and_values_are_refused_without_the_value(app_home, changes) -> None:
    store = McpStore(AppPaths.default())
    store.save(McpServerConfig("calc", "stdio", command="calc-server"))
    with pytest.raises(McpConfigError) as err:
        store.update_secrets("calc", changes)
    assert SECRET not in str(err.value)
    assert dict(store.get("calc").env) == {}
