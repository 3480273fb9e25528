"""``spark-launcher catalog [list|refresh] [--use U] [--capability C] [--json]``: the catalog.

``list`` (the default) shows every model and quant file with its size, whether that size
is verified or estimated, and what the model can do (tools, reasoning, vision);
``--capability tools`` lists only models that call tools natively. ``refresh`` asks the
Hugging Face Hub (``HF_ENDPOINT`` honoured) for exact file sizes and stores them in the user's
data folder.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from launcher.catalog import CAPABILITIES, Catalog, refresh

GIB = 1 << 30


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "catalog",
        help="list the bundled model catalog or refresh its sizes from the Hub",
        description=__doc__,
    )
    p.add_argument("action", nargs="?", choices=("list", "refresh"), default="list")
    p.add_argument("--use", help="only models suited to this use (assistant, reasoning, ...)")
    add_capability_argument(p)
    p.add_argument(
        "--headers",
        action="store_true",
        help="refresh: also read each file's GGUF header (a few MB each) for exact plans",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=handler)


def add_capability_argument(p: argparse.ArgumentParser) -> None:
    """``--capability C`` (repeatable): only models that have every capability given."""
    p.add_argument(
        "--capability",
        action="append",
        choices=CAPABILITIES,
        default=[],
        help="only models that can do this: tools (native tool calling, for agents), "
        "reasoning (a thinking mode), vision (image input); repeat to require several",
    )


def capability_label(capabilities: Sequence[str]) -> str:
    """'tools, reasoning', or '-' for a model that only chats."""
    return ", ".join(capabilities) or "-"


def _list(args: argparse.Namespace) -> int:
    cat = Catalog.load()
    cands = cat.candidates(use=args.use, capabilities=args.capability)
    if args.json:
        out = {
            "refreshed": cat.refreshed,
            "uses": cat.uses,
            "quality_source": cat.quality_source,
            "models": [
                {
                    "key": c.key,
                    "model": c.model.id,
                    "name": c.model.name,
                    "quant": c.quant.quant,
                    "repo": c.quant.repo,
                    "files": list(c.quant.files),
                    "uri": c.quant.uri,
                    "size_bytes": c.quant.size_bytes,
                    "size_status": c.quant.size_status,
                    "size_source": c.quant.size_source,
                    "params": c.model.params,
                    "uses": list(c.model.uses),
                    "capabilities": list(c.model.capabilities),
                    "quality": c.model.quality_for(args.use),
                }
                for c in cands
            ],
        }
        print(json.dumps(out, indent=2))
        return 0
    rows = [
        (
            c.model.name,
            c.quant.quant,
            f"{c.quant.size_bytes / GIB:6.1f}",
            c.quant.size_status,
            str(c.model.quality_for(args.use)),
            ", ".join(c.model.uses),
            capability_label(c.model.capabilities),
            c.quant.uri,
        )
        for c in cands
    ]
    headers = ("Model", "Quant", "GiB", "Size is", "Quality", "Uses", "Can", "Hub file")
    print_table(headers, rows)
    when = cat.refreshed or "never (bundled figures)"
    print(f"\n{len(rows)} files; sizes refreshed from the Hub: {when}.")
    print(f"Quality: {cat.quality_source}")
    return 0


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a plain left-aligned text table (shared by the estimate/recommend commands)."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def handler(args: argparse.Namespace) -> int:
    if args.action == "refresh":
        report = refresh(headers=args.headers)
        if args.json:
            print(json.dumps(report.to_json(), indent=2))
            return 0
        print(
            f"Checked {report.repos_checked} repos, updated {report.files_updated} files, "
            f"read {report.headers_read} headers -> {report.path}"
        )
        for line in report.sizes_changed:
            print(f"  size changed: {line}")
        for line in report.missing:
            print(f"  not on the Hub: {line}")
        for line in report.failed:
            print(f"  failed: {line}")
        return 0
    return _list(args)
