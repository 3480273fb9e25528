"""``spark-launcher doctor [--json]``: check this set-up and say how to fix each problem.

Exit status 0 when nothing failed, 1 when at least one check failed (warnings do not fail).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from launcher.engine.crashes import CrashHistory, crash_check
from launcher.hardware import probe
from launcher.hardware.doctor import run_checks
from launcher.paths import AppPaths
from launcher.settings import load_settings

MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check this set-up (emulation, GPU build, NVML, disk, libraries)",
        description=__doc__,
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    paths = AppPaths.default()
    models_dir = load_settings(paths).models_path(paths)
    checks = run_checks(probe(), models_dir, extra=[crash_check(CrashHistory(paths.crashes_file))])
    if args.json:
        print(json.dumps([c.to_json() for c in checks], indent=2))
    else:
        for c in checks:
            print(f"[{MARKS[c.status]}] {c.title}: {c.detail}")
            if c.fix and (c.status in ("warn", "fail") or c.id == "rpc"):
                print(f"       fix: {c.fix}")
    return 1 if any(c.status == "fail" for c in checks) else 0
