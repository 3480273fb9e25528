"""``spark-launcher rpc check HOST:PORT... [--json]``: can these llama.cpp RPC servers be used?

For each ``rpc-server`` it says whether it answers and what devices and free memory it
offers (asked through llama.cpp's own RPC client, so the protocol version is checked too).
Exit status 0 when every server can be used, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from launcher.errors import RpcError
from launcher.rpc import check_reachable, parse_endpoints, query_devices, rpc_library

GiB = 1 << 30


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "rpc",
        help="llama.cpp RPC servers (other machines' memory for one model)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="rpc_command", required=True)
    c = sub.add_parser("check", help="check RPC servers and show their memory")
    c.add_argument("servers", nargs="+", metavar="HOST:PORT", help="rpc-server addresses")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    try:
        endpoints = parse_endpoints(args.servers)
    except RpcError as exc:
        return _fail(args, str(exc))
    servers: list[dict[str, Any]] = []
    reachable = []
    for ep in endpoints:
        entry: dict[str, Any] = {"endpoint": str(ep), "reachable": True, "devices": []}
        try:
            check_reachable(ep)
            reachable.append(ep)
        except RpcError as exc:
            entry.update(reachable=False, error=str(exc))
        servers.append(entry)
    error = None
    if reachable and rpc_library() is None:
        error = str(_no_rpc())
    elif reachable:
        try:
            for d in query_devices(reachable):
                entry = next(s for s in servers if s["endpoint"] == str(d.endpoint))
                entry["devices"].append(d.to_json())
        except RpcError as exc:
            error = str(exc)
    ok = error is None and all(s["reachable"] and s["devices"] for s in servers)
    if args.json:
        print(json.dumps({"ok": ok, "servers": servers, "error": error}, indent=2))
        return 0 if ok else 1
    for s in servers:
        if not s["reachable"]:
            print(f"{s['endpoint']}: NOT REACHABLE - {s['error']}")
            continue
        print(f"{s['endpoint']}: answers")
        for d in s["devices"]:
            print(
                f"  {d['name']} (device {d['index']}): {d['memory_free'] / GiB:.1f} GiB free "
                f"of {d['memory_total'] / GiB:.1f} GiB"
            )
    if error:
        print(f"error: {error}")
    if ok:
        total = sum(d["memory_free"] for s in servers for d in s["devices"])
        print(
            f"All {len(servers)} server(s) usable: {total / GiB:.1f} GiB free in all. Use them "
            f"with --rpc {','.join(s['endpoint'] for s in servers)}"
        )
    return 0 if ok else 1


def _no_rpc() -> RpcError:
    from launcher.rpc import REBUILD_FIX

    return RpcError("The installed llama.cpp was built without RPC support. " + REBUILD_FIX)


def _fail(args: argparse.Namespace, message: str) -> int:
    if args.json:
        print(json.dumps({"ok": False, "servers": [], "error": message}, indent=2))
    else:
        print(f"error: {message}")
    return 1
