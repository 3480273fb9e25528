"""Entry script that PyInstaller freezes into the ``spark-launcher`` executable.

It is ``ui.entry.main`` (no arguments: the app; arguments: the CLI; ``freeze_support`` first,
so model-host child processes started with ``spawn`` run inside the bundle) plus one
diagnostic: ``spark-launcher --self-test MODEL.gguf [--tokens N]``. The self-test loads the
model through the real engine (``EngineClient``: a ``spawn`` model-host process running
llama.cpp), generates a few tokens greedily and prints one JSON line. It proves, on the user's
machine, that the bundle carries llama.cpp's libraries and can start its own model hosts.
"""

from __future__ import annotations

import multiprocessing
import sys


def self_test(argv: list[str]) -> int:
    """Load MODEL in a model host, generate a few tokens, print one JSON line
    (``launcher.engine.selfcheck``, the same check ``make setup`` ends with)."""
    import argparse
    import json

    from launcher.engine.selfcheck import report, run

    parser = argparse.ArgumentParser(prog="spark-launcher --self-test")
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--prompt", default="The capital of France is")
    args = parser.parse_args(argv)
    result = run(args.model, tokens=args.tokens, prompt=args.prompt)
    print(json.dumps({**result.to_json(), "frozen": bool(getattr(sys, "frozen", False))}))
    if not result.ok:
        print(report(result), file=sys.stderr)
    return 0 if result.ok else 1


def main() -> int:
    multiprocessing.freeze_support()
    if sys.argv[1:2] == ["--self-test"]:
        return self_test(sys.argv[2:])
    from ui.entry import main as entry_main

    return entry_main()


if __name__ == "__main__":
    sys.exit(main())
