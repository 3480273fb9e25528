"""Tools for the model: MCP servers (``config``, ``manager``) and the tool loop (``loop``).

Users bring MCP servers (stdio commands or streamable-HTTP URLs, the ``mcp.json`` format);
the manager runs them with the official ``mcp`` SDK on a private event loop, and the loop
streams a model's reply, asks before each call, runs it with a time limit and feeds the result
back until the model answers. See ARCHITECTURE.md, "Tools (MCP)".
"""

from launcher.tools.config import McpServerConfig, McpStore, load_mcp_json, parse_mcp_json
from launcher.tools.manager import McpManager, McpTool, ToolOutput

__all__ = [
    "McpManager",
    "McpServerConfig",
    "McpStore",
    "McpTool",
    "ToolOutput",
    "load_mcp_json",
    "parse_mcp_json",
]
