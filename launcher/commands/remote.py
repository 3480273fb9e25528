"""``spark-launcher remote add NAME URL [--api-key K] | list | models NAME | remove NAME``.

Remote engines are OpenAI-compatible servers (llama.cpp's ``llama-server``, vLLM, Ollama,
LM Studio, another Spark Launcher's ``serve``). Once added, their models are named
``remote:NAME/MODEL`` and work wherever a local model does: ``spark-launcher chat
remote:spark/gpt-oss-120b``, ``spark-launcher compare model.gguf remote:spark/gemma``.
Keys are stored in ``remotes.json`` (readable by you only) and never printed.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from launcher.engine.remote import list_models
from launcher.remotes import RemoteStore, make_spec


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "remote", help="add, list and browse remote OpenAI-compatible servers", description=__doc__
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = False
    add = sub.add_parser("add", help="save a server by name: remote add NAME URL [--api-key K]")
    add.add_argument("name", metavar="NAME")
    add.add_argument("url", metavar="URL", help="e.g. http://192.168.1.20:8080 (the /v1 root)")
    add.add_argument(
        "--api-key",
        default=None,
        help="the server's API key (default: $SPARK_REMOTE_API_KEY, else none)",
    )
    add.add_argument(
        "--no-check", action="store_true", help="save without asking the server for its models"
    )
    add.add_argument("--json", action="store_true", help="print JSON")
    ls = sub.add_parser("list", help="the saved servers (keys are never shown)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    models = sub.add_parser("models", help="the models a saved server serves")
    models.add_argument("name", metavar="NAME")
    models.add_argument("--json", action="store_true", help="print JSON")
    rm = sub.add_parser("remove", help="forget a saved server")
    rm.add_argument("name", metavar="NAME")
    rm.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    store = RemoteStore()
    action = args.action or "list"
    if action == "add":
        key = args.api_key or os.environ.get("SPARK_REMOTE_API_KEY") or None
        remote = store.make(args.name, args.url, key)
        # Ask first: a server that does not answer (or refuses the key) is not saved.
        served = None if args.no_check else [m["id"] for m in list_models(remote)]
        store.save(remote)
        if args.json:
            print(json.dumps(remote.public_json() | {"models": served}, indent=2))
        else:
            print(f"saved {remote.name}: {remote.base_url}" + (" (with API key)" * remote.has_key))
            for model_id in served or ():
                print(f"  {make_spec(remote.name, model_id)}")
        return 0
    if action == "remove":
        store.remove(args.name)
        print(json.dumps({"removed": args.name}) if args.json else f"removed {args.name}")
        return 0
    if action == "models":
        remote = store.get(args.name)
        models = list_models(remote)
        if args.json:
            print(
                json.dumps(
                    [{"id": m["id"], "spec": make_spec(remote.name, m["id"])} for m in models],
                    indent=2,
                )
            )
        else:
            for m in models:
                print(make_spec(remote.name, m["id"]))
        return 0
    remotes = store.all()
    if args.json:
        print(json.dumps([r.public_json() for r in remotes], indent=2))
    elif not remotes:
        print("no remote servers yet; add one with `spark-launcher remote add NAME URL`")
    else:
        for r in remotes:
            print(f"{r.name:16} {r.base_url}" + ("  (API key saved)" if r.has_key else ""))
    return 0
