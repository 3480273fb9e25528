"""The ``spark-launcher`` executable: the app with no arguments, the CLI with any.

Qt is imported only when the window opens, so CLI commands start fast and work where Qt's
system libraries are missing. Model host processes are started with ``spawn``; inside a
frozen bundle ``freeze_support`` lets the executable act as that child.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    multiprocessing.freeze_support()
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] != "gui":
        from launcher.cli import main as cli_main

        return cli_main(args)
    from ui.app import run_app

    return run_app(args[1:])


if __name__ == "__main__":
    sys.exit(main())
