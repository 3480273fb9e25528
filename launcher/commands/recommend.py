"""``spark-launcher recommend [--use U] [--capability C] [--ctx N] [--machine M] [--json]``.

Ranks the catalog for a machine (this one by default) and a use: the best quality that runs
at a usable speed first (see :mod:`launcher.recommend` for the rule), each with where it
runs, how much memory it needs, how fast it should be and what it can do (tools, reasoning,
vision). ``--capability tools`` keeps only models that call tools natively (for agents).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from launcher.catalog import USES, Catalog
from launcher.commands.catalog import add_capability_argument, capability_label, print_table
from launcher.machines import resolve_machine
from launcher.planning import KV_TYPES
from launcher.recommend import recommend, usable_floor

GIB = 1 << 30


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "recommend",
        help="rank the catalog's models for this (or another) machine and a use",
        description=__doc__,
    )
    p.add_argument("--use", choices=USES, help="what the model is for (default: any)")
    add_capability_argument(p)
    p.add_argument("--ctx", type=int, default=8192, help="context length in tokens (8192)")
    p.add_argument("--kv-type", default="f16", choices=sorted(KV_TYPES), help="KV cache type")
    p.add_argument("--machine", help="reference name, probe --json file, or inline spec")
    p.add_argument("--all-quants", action="store_true", help="list every quant, not the best")
    p.add_argument("--limit", type=int, default=0, help="show at most N (0: all)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    profile = resolve_machine(args.machine)
    calibration = None
    try:
        from launcher.planning.calibration import CalibrationStore

        calibration = CalibrationStore()
    except ImportError:
        pass
    recs = recommend(
        profile,
        use=args.use,
        context=args.ctx,
        catalog=Catalog.load(),
        kv_type=args.kv_type,
        one_per_model=not args.all_quants,
        calibration=calibration,
        capabilities=args.capability,
    )
    if args.limit > 0:
        recs = recs[: args.limit]
    machine = profile.name or "this machine"
    if args.json:
        out = {
            "machine": machine,
            "use": args.use,
            "capabilities": list(args.capability),
            "context": args.ctx,
            "kv_type": args.kv_type,
            "usable_decode_tokens_per_s": usable_floor(args.use),
            "recommendations": [r.to_json() for r in recs],
        }
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"Best models for {args.use or 'any use'} on {machine} at {args.ctx} tokens "
        f"(usable: >= {usable_floor(args.use):g} tok/s)\n"
    )
    if not recs:
        needs = f" that can do {', '.join(args.capability)}" if args.capability else ""
        print(
            f"Nothing in the catalog{needs} fits this machine at this context; try a smaller --ctx."
        )
        return 0
    verdicts = {"full_gpu": "GPU", "partial": "GPU+CPU", "cpu": "CPU", "no_fit": "no fit"}
    rows = [
        (
            str(r.rank),
            r.candidate.model.name,
            r.candidate.quant.quant,
            f"{r.plan.total_bytes / GIB:.1f}",
            verdicts[r.verdict]
            + (f" {r.plan.gpu_layers}/{r.plan.total_layers}" if r.verdict == "partial" else ""),
            f"{r.speed.decode_tokens_per_s:.0f}",
            "yes" if r.usable else "slow",
            f"{r.quality:g}",
            capability_label(r.candidate.model.capabilities),
        )
        for r in recs
    ]
    headers = ("#", "Model", "Quant", "GiB", "Runs on", "tok/s", "Usable", "Quality", "Can")
    print_table(headers, rows)
    top = recs[0]
    print(f"\nTop pick: {top.candidate.label}: {top.reason}")
    print(f"Download: {top.candidate.quant.uri}")
    return 0
