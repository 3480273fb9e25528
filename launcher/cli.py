"""The ``spark-launcher`` command line: one sub-command per module in ``launcher.commands``.

Each module there defines ``register(subparsers)``, which adds its parser(s) and sets
``func`` (``args -> int`` exit code). Adding a command is adding a module; this file does not
change. Commands print human text by default and JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import launcher
import launcher.commands
from launcher.errors import LauncherError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spark-launcher",
        description="Find, download, run and compare local LLMs that fit this machine. "
        "With no command, the desktop app opens.",
    )
    parser.add_argument(
        "--version", action="version", version=f"spark-launcher {launcher.__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(launcher.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"launcher.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code. Errors a user can act on print one clear line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LauncherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
