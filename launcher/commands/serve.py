"""``spark-launcher serve MODEL... [--host H] [--port P] [--api-key K] [--cors-origin URL]
[--parallel N] [--on-demand [--models-dir DIR]] [--idle-unload SECONDS]``.

Loads each model in its own host process and serves them over the local API
(``launcher.server``: OpenAI chat/completions/responses, Anthropic messages) until Ctrl-C.
``--parallel N`` gives each model N slots: N requests are generated together in one batch
(the context split between them, as llama-server's ``--parallel``), more wait in the queue.
``--on-demand`` loads a model of the models folder when a request names it (unloading the
least recently used idle one when the memory plan says it would not fit); ``--idle-unload``
unloads a model nobody used for that many seconds.
Bound to 127.0.0.1 by default; any other address needs an API key (also read from
``SPARK_LAUNCHER_API_KEY``). CORS is off unless ``--cors-origin`` allows an origin.
``--json`` prints one JSON line when ready (``{"url": ..., "models": [...]}``), which scripts
and tests wait for.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from launcher.commands.chat import calibration_store, load_settings, progress_printer, resolve_model
from launcher.engine import EngineClient
from launcher.paths import AppPaths
from launcher.server.pool import (
    DEFAULT_MAX_WAITING,
    ModelRegistry,
    OnDemand,
    SharedModel,
    model_id,
)
from launcher.settings import load_settings as load_user_settings

API_KEY_ENV = "SPARK_LAUNCHER_API_KEY"
# Same values as launcher.server.httpd's; that module is imported only when serving, so
# every other command starts without the HTTP server's imports.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve", help="serve models over an OpenAI-compatible local API", description=__doc__
    )
    p.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="a .gguf path or models-folder name (none: with --on-demand only)",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8080; 0: any)")
    p.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV) or None,
        help=f"key clients must send as 'Authorization: Bearer KEY' (or ${API_KEY_ENV}); "
        "required for any address other than loopback",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="URL",
        help="let web pages from this origin call the API (e.g. http://localhost:3000; "
        "repeatable; * for any). CORS is off by default",
    )
    p.add_argument("--ctx", type=int, default=4096, help="context size in tokens (default 4096)")
    p.add_argument(
        "--gpu-layers", type=int, default=None, help="layers on the GPU (default: the plan's)"
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: cores)")
    p.add_argument("--kv-type", default="f16", help="KV cache type (default f16)")
    p.add_argument("--flash-attn", choices=("auto", "on", "off"), default="auto")
    p.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULT_MAX_WAITING,
        help=f"requests that may wait per model before 503 (default {DEFAULT_MAX_WAITING})",
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=None,
        metavar="N",
        help="requests generated at once per model, in one batch; the context is split "
        "between them (default: the app's setting, 1)",
    )
    p.add_argument(
        "--on-demand",
        action="store_true",
        help="load a model of the models folder when a request names it",
    )
    p.add_argument(
        "--models-dir",
        default=None,
        metavar="DIR",
        help="where --on-demand finds models (default: the app's models folder)",
    )
    p.add_argument(
        "--idle-unload",
        type=float,
        default=None,
        metavar="SECONDS",
        help="unload a model nobody used for this long (default: the app's setting, never)",
    )
    p.add_argument(
        "--record",
        action="store_true",
        help="record every chat request to api-traffic.jsonl in the data folder, for "
        "`compare --suite api-log` (default: the app's setting, off)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON line when ready")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from launcher.server.httpd import LocalApiServer, check_bind, check_origins
    from launcher.server.recording import TrafficRecorder, traffic_file

    # Refuse an unsafe address or a bad origin before spending time loading models.
    check_bind(args.host, args.api_key)
    check_origins(args.cors_origin)
    user = load_user_settings(AppPaths.default())
    if args.parallel is None:
        args.parallel = max(1, user.api_parallel_slots)
    if args.idle_unload is None and user.idle_unload_minutes > 0:
        args.idle_unload = 60.0 * user.idle_unload_minutes
    if not args.models and not args.on_demand:
        print("serve: name a model to serve, or use --on-demand.", file=sys.stderr)
        return 2
    if args.parallel < 1 or (args.idle_unload is not None and args.idle_unload <= 0):
        print("serve: --parallel and --idle-unload must be positive.", file=sys.stderr)
        return 2
    paths = [resolve_model(m) for m in args.models]
    registry = ModelRegistry()
    shared: list[SharedModel] = []
    stop = threading.Event()
    lock = threading.Lock()

    def load(path: str) -> SharedModel:
        model = registry.share(
            EngineClient(calibration=calibration_store()), max_waiting=args.max_queue
        )
        with lock:
            shared.append(model)
        params, plan = load_settings(Path(path), args)
        params = dataclasses.replace(params, n_parallel=args.parallel)
        model.load(str(path), params, plan=plan)
        return model

    on_demand: OnDemand | None = None
    if args.on_demand or args.idle_unload is not None:
        folder = Path(args.models_dir).expanduser() if args.models_dir else None
        on_demand = OnDemand(
            registry,
            (lambda: library_models(folder)) if args.on_demand else dict,
            load,
            fits=lambda path: memory_refusal(Path(path), args),
            idle_unload_s=args.idle_unload,
        )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server: LocalApiServer | None = None
    try:
        for path in paths:
            model = registry.share(
                EngineClient(calibration=calibration_store()), max_waiting=args.max_queue
            )
            shared.append(model)
            params, plan = load_settings(Path(path), args)
            params = dataclasses.replace(params, n_parallel=args.parallel)
            loaded = model.load(
                str(path), params, on_progress=progress_printer(sys.stderr.isatty()), plan=plan
            )
            if sys.stderr.isatty():
                print("\r", end="", file=sys.stderr)
            print(
                f"{model.name}: loaded in {loaded.load_s:.1f} s, context {loaded.n_ctx} tokens",
                file=sys.stderr,
                flush=True,
            )
            if stop.is_set():
                return 130
        server = LocalApiServer(
            registry,
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            cors_origins=args.cors_origin,
            recorder=TrafficRecorder(traffic_file()) if args.record else None,
        )
        server.start()
        if args.record:
            print(f"Recording chat requests to {traffic_file()}.", file=sys.stderr, flush=True)
        if on_demand is not None:
            on_demand.start()
        if args.json:
            print(json.dumps({"url": server.url, "models": registry.names()}), flush=True)
        else:
            print(
                f"Serving {', '.join(registry.names()) or 'models on demand'} at {server.url} "
                f"({'API key required' if args.api_key else 'no API key'}). Ctrl-C stops.",
                flush=True,
            )
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        if on_demand is not None:
            on_demand.stop()
        if server is not None:
            server.stop()
        with lock:
            models = list(shared)
        for model in models:
            model.unload()
        for sig, handler_ in previous.items():
            signal.signal(sig, handler_)


def library_models(folder: Path | None) -> dict[str, str]:
    """The models ``--on-demand`` may load: API id -> path of each GGUF in the models folder
    (the first file of a split model)."""
    root = folder or AppPaths.default().models_dir
    found: dict[str, str] = {}
    if not root.is_dir():
        return found
    for path in sorted(root.rglob("*.gguf")):
        stem = path.name[: -len(".gguf")]
        if "-of-" in stem and not stem.rpartition("-of-")[0].endswith("-00001"):
            continue  # a later shard of a split model
        found.setdefault(model_id(str(path)), str(path))
    return found


def memory_refusal(path: Path, args: argparse.Namespace) -> str | None:
    """None when this machine's memory plan says ``path`` fits next to what is loaded now,
    else why not (the plan reads the memory free at this moment)."""
    try:
        from launcher.gguf.reader import read_model
        from launcher.hardware import probe
        from launcher.planning import ModelSummary, plan

        memory_plan = plan(
            ModelSummary.from_header(read_model(path)),
            probe(),
            ctx=args.ctx,
            kv_type=args.kv_type.lower(),
            flash_attn=args.flash_attn != "off",
        )
    except Exception:  # no plan: try the load, which says clearly when memory runs out
        return None
    if memory_plan.verdict != "no_fit":
        return None
    return f"it needs about {memory_plan.total_bytes / 2**30:.1f} GiB and that is not free"
