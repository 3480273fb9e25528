"""``python -m bench [NAME ...]``: run benchmarks and rewrite BENCHMARKS.md.

Sections of benchmarks not run this time are kept as they were (with their own date), so a
single benchmark can be refreshed without re-running the slow ones.
"""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
import re
import sys
import time
import traceback

import bench
from bench.common import ROOT, machine_line

SKIP = {"common", "__main__"}
OUT = ROOT / "BENCHMARKS.md"
HEADER = """# Benchmarks

Written by `make bench` (`python -m bench [NAME ...]`); each section says when and where it
was measured and the command that produced it. Figures are ratios against a reference
measured in the same run wherever one exists.
"""


def _existing_sections() -> dict[str, str]:
    if not OUT.exists():
        return {}
    text = OUT.read_text(encoding="utf-8")
    parts = re.split(r"^<!-- bench:(\w+) -->\n", text, flags=re.M)
    return {parts[i]: parts[i + 1].rstrip() + "\n" for i in range(1, len(parts) - 1, 2)}


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name not in SKIP)
    wanted = argv or names
    unknown = [n for n in wanted if n not in names]
    if unknown:
        print(f"unknown benchmark(s): {unknown}; known: {names}", file=sys.stderr)
        return 2
    sections = _existing_sections()
    failed = 0
    for name in wanted:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name}: {module.TITLE}", flush=True)
        t0 = time.perf_counter()
        try:
            body = module.run()
        except Exception:
            failed += 1
            traceback.print_exc()
            continue
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        sections[name] = (
            f"## {module.TITLE}\n\n"
            f"Measured {when} on {machine_line()} with `python -m bench {name}` "
            f"({time.perf_counter() - t0:.0f} s).\n\n{body.strip()}\n"
        )
        print(body, flush=True)
        text = HEADER + "".join(
            f"\n<!-- bench:{n} -->\n{sections[n]}" for n in names if n in sections
        )
        OUT.write_text(text, encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
