"""``spark-launcher models [list|import PATH|delete NAME] [--json]``: the model library.

``list`` (the default) shows every model on disk: downloaded here, imported, or found in the
Hugging Face cache, LM Studio, Ollama or llama.cpp's cache (used in place, never copied), with
where each lives. ``import PATH`` adds a .gguf from anywhere (``--copy`` copies it into the
models folder). ``delete NAME`` deletes one of ours; another tool's files need
``--allow-foreign``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from launcher.errors import LauncherError
from launcher.library import SOURCE_NAMES, Library, LocalModel


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "models", help="list, import or delete models on disk", description=__doc__
    )
    p.add_argument("action", nargs="?", choices=("list", "import", "delete"), default="list")
    p.add_argument("target", nargs="?", help="file to import / model to delete")
    p.add_argument("--copy", action="store_true", help="import: copy into the models folder")
    p.add_argument("--allow-foreign", action="store_true", help="delete: also another tool's files")
    p.add_argument("--no-other-tools", action="store_true", help="list: only our folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=handler)


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


def handler(args: argparse.Namespace) -> int:
    lib = Library()
    if args.action == "import":
        if not args.target:
            raise LauncherError("Say which file to import: spark-launcher models import PATH")
        m = lib.import_file(args.target, copy=args.copy)
        print(json.dumps(m.to_json(), indent=2) if args.json else f"imported {m.name}: {m.path}")
        return 0
    if args.action == "delete":
        if not args.target:
            raise LauncherError("Say which model to delete: spark-launcher models delete NAME")
        found = lib.find(args.target)
        if found is None:
            raise LauncherError(f"No model named {args.target!r}; see `spark-launcher models`.")
        res = lib.delete(found, allow_foreign=args.allow_foreign)
        if args.json:
            out = {"freed_bytes": res.freed_bytes, "removed": [str(p) for p in res.removed]}
            print(json.dumps(out | {"message": res.message}, indent=2))
        else:
            print(res.message)
        return 0
    models = lib.scan(other_tools=False if args.no_other_tools else None)
    if args.json:
        print(json.dumps([m.to_json() for m in models], indent=2))
        return 0
    if not models:
        print(f"No models yet. Models folder: {lib.models_dir}")
        print("Get one with: spark-launcher search QUERY, then spark-launcher download REPO")
        return 0
    _print(models)
    print(f"\n{len(models)} models; models folder: {lib.models_dir}")
    return 0


def _print(models: list[LocalModel]) -> None:
    rows = [
        (
            m.name,
            m.architecture or "?",
            m.quant or "?",
            _size(m.size),
            SOURCE_NAMES.get(m.source, m.source) + ("" if m.verified or not m.owned else "*"),
            str(m.path),
        )
        for m in models
    ]
    headers = ("Model", "Arch", "Quant", "Size", "From", "Path")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
