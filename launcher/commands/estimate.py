"""``spark-launcher estimate MODEL --ctx N``: will this model fit on this machine, and how fast?

MODEL is a local ``.gguf`` file (only its header is read), ``hf://owner/repo/file.gguf``
(only the header is fetched, by HTTP Range on the Hub's ``resolve`` URL; ``HF_ENDPOINT`` and
the user's token are honoured; a split model's shards are all read), or a catalog entry
(``qwen3-32b:Q4_K_M``, offline). ``--machine`` plans for another machine (a reference name, a
``probe --json`` file, or ``unified=128GiB`` / ``vram=24GiB,ram=64GiB``). ``--exact`` replaces
the formula's KV and compute sizes with llama.cpp's own, from a no-alloc dry run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.catalog import Catalog, read_remote_model
from launcher.commands.catalog import print_table
from launcher.errors import GGUFError, LauncherError
from launcher.machines import resolve_machine
from launcher.planning import KV_TYPES, MemoryPlan, ModelSummary, plan

GIB = 1 << 30


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "estimate",
        help="memory plan and speed for a GGUF model (local, hf://, or a catalog entry)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="path.gguf, hf://owner/repo/file.gguf, or a catalog key")
    p.add_argument("--ctx", type=int, default=8192, help="context length in tokens (8192)")
    p.add_argument("--kv-type", default="f16", choices=sorted(KV_TYPES), help="KV cache type")
    p.add_argument("--no-flash-attn", action="store_true", help="plan without flash attention")
    p.add_argument("--machine", help="reference name, probe --json file, or inline spec")
    p.add_argument("--exact", action="store_true", help="ask llama.cpp itself (no-alloc dry run)")
    p.add_argument(
        "--rpc",
        metavar="HOST:PORT,...|FILE.json",
        help="plan over these llama.cpp rpc-servers too (live, or a saved `rpc check --json`)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=handler)


@dataclass
class ModelSource:
    """A model the estimate is about: its summary, and where llama.cpp can dry-run it."""

    summary: ModelSummary
    label: str
    local_paths: list[Path]  # files for the dry run (local, or sparse copies of remote headers)
    header_bytes_read: int = 0  # remote: bytes fetched from the Hub
    http_requests: int = 0
    kind: str = "local"  # "local" | "hf" | "catalog"


def parse_hf_uri(uri: str) -> tuple[str, str, str]:
    """``hf://owner/repo/path/file.gguf[@rev]`` -> (repo_id, filename, revision)."""
    rest = uri[len("hf://") :]
    rev = "main"
    if "@" in rest.split("/", 2)[-1]:
        rest, rev = rest.rsplit("@", 1)
    parts = rest.split("/")
    if len(parts) < 3 or not all(parts) or not parts[-1].endswith(".gguf"):
        raise LauncherError(
            f"cannot read {uri!r}: write hf://owner/repo/file.gguf "
            "(e.g. hf://Qwen/Qwen3-8B-GGUF/Qwen3-8B-Q4_K_M.gguf)"
        )
    return "/".join(parts[:2]), "/".join(parts[2:]), rev


def load_remote(uri: str, workdir: Path | None) -> ModelSource:
    """Read a Hub model's header(s) by HTTP Range; optionally save them as sparse files."""
    from launcher.gguf import split_names

    repo, filename, rev = parse_hf_uri(uri)
    names = split_names(filename)
    model, sources = read_remote_model(repo, names, rev)
    paths: list[Path] = []
    if workdir is not None:
        from launcher.dryrun import materialize_header

        for name, src, header in zip(names, sources, model.headers, strict=True):
            head = src.read(0, header.data_offset)
            total = max(header.file_size or 0, header.declared_size)
            paths.append(materialize_header(head, total, workdir / Path(name).name))
    return ModelSource(
        summary=ModelSummary.from_header(model),
        label=uri,
        local_paths=paths,
        header_bytes_read=sum(s.inner.bytes_read for s in sources),
        http_requests=sum(s.inner.requests for s in sources),
        kind="hf",
    )


def load_model_source(spec: str, workdir: Path | None = None) -> ModelSource:
    """The summary of a local file, an ``hf://`` file, or a catalog entry."""
    if spec.startswith("hf://"):
        return load_remote(spec, workdir)
    path = Path(spec).expanduser()
    if path.exists() or spec.endswith(".gguf"):
        from launcher.gguf import read_model

        if not path.is_file():
            raise GGUFError(f"no GGUF file at {path}; check the path")
        model = read_model(path)
        return ModelSource(
            summary=ModelSummary.from_header(model),
            label=str(path),
            local_paths=[Path(h.source_name) for h in model.headers][:1],
        )
    cat = Catalog.load()
    model_id, _, quant = spec.partition(":")
    entry = cat.get(model_id)
    q = entry.quant(quant) if quant else entry.quants[0]
    if q is None:
        raise LauncherError(
            f"{entry.name} has no {quant} file in the catalog; "
            f"available: {', '.join(x.quant for x in entry.quants)}"
        )
    cand = next(c for c in cat.candidates() if c.model.id == entry.id and c.quant is q)
    return ModelSource(summary=cand.summary, label=cand.key, local_paths=[], kind="catalog")


def estimate(
    spec: str,
    ctx: int,
    kv_type: str = "f16",
    flash_attn: bool = True,
    machine: str | None = None,
    exact: bool = False,
    rpc: str | None = None,
) -> tuple[ModelSource, MemoryPlan, str]:
    """Plan ``spec`` (see :func:`load_model_source`); return (source, plan, machine label)."""
    calibration = None
    try:
        from launcher.planning.calibration import CalibrationStore

        calibration = CalibrationStore()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="spark-estimate-") as tmp:
        src = load_model_source(spec, Path(tmp) if exact else None)
        profile = resolve_machine(machine)  # after the model: a bad model fails before probing
        if rpc:
            from launcher.rpc import plan_with_rpc, resolve_rpc

            if exact:
                raise LauncherError("--exact does not plan over --rpc servers yet; drop one.")
            devices = resolve_rpc(rpc)
            p = plan_with_rpc(src.summary, profile, devices, ctx, kv_type, flash_attn)
        elif not exact:
            p = plan(src.summary, profile, ctx, kv_type, flash_attn, calibration=calibration)
        else:
            if not src.local_paths:
                raise LauncherError(
                    "--exact needs the model's header: give a .gguf path or an hf:// file "
                    "(catalog entries are planned from the catalog's figures)"
                )
            from launcher.dryrun import plan_exact

            p = plan_exact(
                src.summary,
                src.local_paths[0],
                profile,
                ctx,
                kv_type,
                flash_attn,
                calibration=calibration,
            )
            if machine is not None:
                p.notes.append(
                    "The dry run used this computer's llama.cpp build; on the planned machine "
                    "the per-device buffer split follows the formula's placement."
                )
    label = profile.name or "this machine"
    return src, p, label


def to_json(src: ModelSource, p: MemoryPlan, machine: str) -> dict[str, Any]:
    s = src.summary
    return {
        **p.to_json(),
        "model": {
            "source": src.label,
            "kind": src.kind,
            "name": s.name,
            "architecture": s.architecture,
            "quant": s.quant,
            "file_size": s.file_size,
            "n_params": s.n_params,
            "context_length": s.context_length,
            "summary_exact": s.exact,
        },
        "machine": machine,
        "header_bytes_read": src.header_bytes_read,
        "http_requests": src.http_requests,
    }


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def print_human(src: ModelSource, p: MemoryPlan, machine: str) -> None:
    s = src.summary
    verdict = {
        "full_gpu": "fits fully on the GPU",
        "partial": f"partial offload: {p.gpu_layers} of {p.total_layers} layers on the GPU",
        "cpu": "runs on the CPU",
        "no_fit": "does NOT fit",
    }[p.verdict]
    print(f"{s.name or src.label} ({s.architecture}, {s.quant or '?'}) on {machine}")
    print(f"context {p.context}, KV {p.kv_type}, flash attention {'on' if p.flash_attn else 'off'}")
    print()
    rows = [
        (name, _gib(d.weights), _gib(d.kv), _gib(d.compute), _gib(d.total))
        for name, d in p.per_device.items()
    ]
    rows.append(
        (
            "total",
            _gib(p.weights_bytes),
            _gib(p.kv_bytes),
            _gib(p.compute_bytes),
            _gib(p.total_bytes),
        )
    )
    print_table(("Device", "Weights", "KV cache", "Compute", "Total"), rows)
    print()
    print(f"Verdict: {verdict}")
    if p.max_context_full_gpu:
        print(f"Largest context fully on the GPU: {p.max_context_full_gpu} tokens")
    if p.verdict != "no_fit":
        print(
            f"Speed ({p.speed.basis_label}): ~{p.speed.decode_tokens_per_s:.1f} tok/s generation, "
            f"~{p.speed.prefill_tokens_per_s:.0f} tok/s prompt"
        )
    source = "llama.cpp dry run" if p.source == "dry_run" else "formula estimate"
    print(f"Sizes: {source}" + ("" if s.exact else " (catalog figures, not the file's header)"))
    if src.header_bytes_read:
        print(f"Read {src.header_bytes_read / (1 << 20):.1f} MiB of header from the Hub.")
    for note in p.notes:
        print(f"Note: {note}")


def handler(args: argparse.Namespace) -> int:
    if args.ctx <= 0:
        raise LauncherError("--ctx must be a positive number of tokens, e.g. --ctx 8192")
    src, p, machine = estimate(
        args.model,
        args.ctx,
        kv_type=args.kv_type,
        flash_attn=not args.no_flash_attn,
        machine=args.machine,
        exact=args.exact,
        rpc=args.rpc,
    )
    if args.json:
        print(json.dumps(to_json(src, p, machine), indent=2))
    else:
        print_human(src, p, machine)
    return 0
