"""``spark-launcher mcp list|add|remove|import|export|test``: the saved MCP servers.

Servers are saved in ``<config>/mcp_servers.json`` (the ``mcp.json`` format, readable by the
user only: env values and headers often hold tokens). ``import`` reads a Cursor / Claude
Desktop / LM Studio ``mcp.json``; ``export`` writes one (to a file: with its secrets, mode
0600; to the terminal: secrets shown as ``***`` unless ``--with-secrets``). ``test NAME``
starts a server and lists its tools, or says why it failed. ``chat MODEL --mcp saved`` gives a
model the saved servers' tools.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from launcher.errors import McpConfigError, ToolError
from launcher.tools.config import (
    McpServerConfig,
    McpStore,
    check_name,
    load_mcp_json,
    server_from_json,
    to_mcp_json,
    write_private_json,
)
from launcher.tools.manager import McpManager


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("mcp", help="MCP servers whose tools a model may call",
                              description=__doc__)  # fmt: skip
    sub = p.add_subparsers(dest="mcp_command", metavar="ACTION", required=True)

    ls = sub.add_parser("list", help="the saved servers")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)

    add = sub.add_parser(
        "add",
        help="save a server: NAME -- COMMAND [ARGS...] (stdio) or NAME --url URL (HTTP)",
        description="spark-launcher mcp add NAME [--env K=V] -- COMMAND [ARGS...]\n"
        "spark-launcher mcp add NAME --url URL [--header 'Authorization=Bearer TOKEN']",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument("name", metavar="NAME")
    _add_options(add)
    # Everything after NAME: more options, then "--" and the command (argparse alone cannot
    # take a command whose own options look like ours).
    add.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    add.set_defaults(func=_add)

    rm = sub.add_parser("remove", help="forget a saved server")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(func=_remove)

    imp = sub.add_parser("import", help="save the servers of an mcp.json file")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--replace", action="store_true", help="forget the other saved servers")
    imp.set_defaults(func=_import)

    exp = sub.add_parser("export", help="write the saved servers as mcp.json")
    exp.add_argument("file", nargs="?", metavar="FILE", help="default: print it")
    exp.add_argument("--with-secrets", action="store_true",
                     help="print env values and headers too (a FILE always has them)")  # fmt: skip
    exp.set_defaults(func=_export)

    test = sub.add_parser("test", help="start a server and list its tools, or say why not")
    test.add_argument("name", metavar="NAME")
    test.add_argument("--mcp", metavar="FILE", help="take the server from this mcp.json")
    test.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    test.add_argument("--json", action="store_true")
    test.set_defaults(func=_test)


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="a streamable HTTP server's URL")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="an environment variable for a stdio server (repeatable)")  # fmt: skip
    p.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                   help="an HTTP header for an HTTP server (repeatable)")  # fmt: skip
    p.add_argument("--disabled", action="store_true", help="save it switched off")


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            # The value may be a secret: name only the key.
            raise McpConfigError(f"{what} {key or '?'!r}: write it as NAME=VALUE")
        out[key] = value
    return out


def _list(args: argparse.Namespace) -> int:
    servers = McpStore().all()
    if args.json:
        print(json.dumps([s.public_json() | {"enabled": s.enabled} for s in servers], indent=2))
        return 0
    if not servers:
        print("No MCP servers saved. Add one: spark-launcher mcp add NAME -- COMMAND ARGS")
        return 0
    for s in servers:
        off = "" if s.enabled else "  (off)"
        print(f"{s.name:<20} {s.transport:<6} {s.describe()}{off}")
    return 0


def _add(args: argparse.Namespace) -> int:
    check_name(args.name)
    rest = list(args.rest or [])
    split = rest.index("--") if "--" in rest else len(rest)
    command = rest[split + 1 :]
    more = argparse.ArgumentParser(prog=f"spark-launcher mcp add {args.name}", add_help=False)
    _add_options(more)
    later = more.parse_args(rest[:split])
    args.url = later.url or args.url
    args.env, args.header = args.env + later.env, args.header + later.header
    args.disabled = args.disabled or later.disabled
    env, headers = _pairs(args.env, "--env"), _pairs(args.header, "--header")
    if args.url and command:
        raise McpConfigError("give either --url (HTTP) or -- COMMAND (stdio), not both")
    if args.url:
        if env:
            raise McpConfigError("--env is for stdio servers; an HTTP server takes --header")
        entry: dict[str, Any] = {"url": args.url, "headers": headers}
    elif command:
        if headers:
            raise McpConfigError("--header is for HTTP servers; a stdio server takes --env")
        entry = {"command": command[0], "args": command[1:], "env": env}
    else:
        raise McpConfigError(
            "say how to reach it: mcp add NAME -- COMMAND [ARGS...] or mcp add NAME --url URL"
        )
    entry["disabled"] = args.disabled
    server = McpStore().save(server_from_json(args.name, entry))
    print(f"Saved {server.name}: {server.describe()}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    McpStore().remove(args.name)
    print(f"Removed {args.name}.")
    return 0


def _import(args: argparse.Namespace) -> int:
    servers = McpStore().import_servers(load_mcp_json(args.file), replace=args.replace)
    print(f"Imported {len(servers)} server(s): " + (", ".join(s.name for s in servers) or "none"))
    return 0


def _export(args: argparse.Namespace) -> int:
    servers = McpStore().all()
    if args.file:
        write_private_json(args.file, to_mcp_json(servers))
        print(f"Wrote {len(servers)} server(s) to {args.file} (readable by you only).",
              file=sys.stderr)  # fmt: skip
        return 0
    data = to_mcp_json(servers)
    if not args.with_secrets:
        for entry in data["mcpServers"].values():
            for key in ("env", "headers"):
                if key in entry:
                    entry[key] = dict.fromkeys(entry[key], "***")
    print(json.dumps(data, indent=2))
    return 0


def _test(args: argparse.Namespace) -> int:
    server: McpServerConfig
    if args.mcp:
        found = [s for s in load_mcp_json(args.mcp) if s.name == args.name]
        if not found:
            raise McpConfigError(f"{args.mcp} has no server named {args.name!r}")
        server = found[0]
    else:
        server = McpStore().get(args.name)
    try:
        with McpManager([server], connect_timeout_s=args.timeout) as manager:
            tools = manager.list_tools(server.name, timeout_s=args.timeout)
    except ToolError as exc:
        if args.json:
            print(json.dumps({"name": server.name, "ok": False, "error": str(exc)}))
        else:
            print(f"{server.name}: failed. {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"name": server.name, "ok": True, "tools": [
            {"name": t.name, "description": t.description, "input_schema": t.input_schema}
            for t in tools
        ]}, indent=2))  # fmt: skip
        return 0
    print(f"{server.name}: {len(tools)} tool(s)")
    for t in tools:
        params = ", ".join((t.input_schema.get("properties") or {}).keys())
        summary = (t.description or "").strip().splitlines()[0] if t.description else ""
        print(f"  {t.name}({params})" + (f"  {summary}" if summary else ""))
    return 0
