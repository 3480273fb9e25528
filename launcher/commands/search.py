"""``spark-launcher search QUERY [--sort downloads|likes|recent] [--limit N] [--json]``.

Searches the Hugging Face Hub (or the mirror in ``HF_ENDPOINT``) for GGUF model repos.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from launcher.hub import search_models


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "search", help="search the Hugging Face Hub for GGUF models", description=__doc__
    )
    p.add_argument("query", help="words to look for in repo names (e.g. 'qwen3 8b')")
    p.add_argument("--sort", choices=("downloads", "likes", "recent"), default="downloads")
    p.add_argument("--limit", type=int, default=20, help="how many results (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    results = search_models(args.query, sort=args.sort, limit=max(1, args.limit))
    if args.json:
        print(json.dumps([r.__dict__ | {"tags": list(r.tags)} for r in results], indent=2))
        return 0
    if not results:
        print(f"No GGUF repos match {args.query!r}.")
        return 0
    width = max(len(r.repo_id) for r in results)
    print(f"{'Repo'.ljust(width)}  {'Downloads':>10}  {'Likes':>6}  Updated     Access")
    for r in results:
        access = "private" if r.private else "gated" if r.gated else ""
        updated = (r.last_modified or "")[:10]
        print(
            f"{r.repo_id.ljust(width)}  {r.downloads:>10,}  {r.likes:>6,}  {updated:<10}  {access}"
        )
    print("\nDownload one with: spark-launcher download REPO --quant Q4_K_M")
    return 0
