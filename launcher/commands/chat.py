"""``spark-launcher chat MODEL [--ctx N] [--system S]``: an interactive chat in the terminal.

The model runs in its own host process (``launcher.engine``). After each reply a metrics line
shows time to first token, prefill and decode speed, tokens and why the reply stopped. Ctrl-C
stops a reply (the model stays loaded); a second Ctrl-C, or Ctrl-C / Ctrl-D at the prompt,
quits. ``--json`` prints one JSON object per reply instead of streaming text.

``--mcp mcp.json`` gives the model the tools of those MCP servers (``launcher/tools``): each
call is printed and asked about (``--allow-tools``: not asked), its result goes back to the
model, and a turn ends with the answer; Ctrl-C stops the turn, tools included.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from launcher.engine import (
    EngineClient,
    EngineParams,
    HostCrashed,
    LoadProgress,
    ReplyFinished,
    ReplyMetrics,
    Sampling,
    Token,
)
from launcher.engine.crashes import CrashHistory, safe_settings
from launcher.errors import ModelLoadError, RemoteEngineError
from launcher.paths import AppPaths


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """Options shared by ``chat`` and ``bench``: how the model is loaded."""
    p.add_argument(
        "model", metavar="MODEL", help="path to a .gguf file (or a file name in the models folder)"
    )
    p.add_argument("--ctx", type=int, default=4096, help="context size in tokens (default 4096)")
    p.add_argument(
        "--gpu-layers",
        type=int,
        default=None,
        help="layers to offload to the GPU (-1: all; default: as many as this machine's memory "
        "plan fits, 0 without a GPU build)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: physical cores)"
    )
    p.add_argument(
        "--kv-type", default="f16", help="KV cache type: f16, q8_0, q4_0, ... (default f16)"
    )
    p.add_argument(
        "--flash-attn", choices=("auto", "on", "off"), default="auto", help="flash attention"
    )
    p.add_argument(
        "--rpc",
        metavar="HOST:PORT,...",
        help="also use these llama.cpp rpc-servers' memory (see `spark-launcher rpc check`)",
    )
    p.add_argument(
        "--safe",
        action="store_true",
        help="load with safe settings (no extra buffer types, no mmap, half the threads, CPU "
        "only), as offered after a model crashed twice in a row",
    )


def params_from_args(args: argparse.Namespace) -> EngineParams:
    fa = {"auto": None, "on": True, "off": False}[args.flash_attn]
    try:
        params = EngineParams(
            n_ctx=args.ctx,
            n_gpu_layers=args.gpu_layers or 0,
            n_threads=args.threads,
            type_k=args.kv_type.lower(),
            type_v=args.kv_type.lower(),
            flash_attn=fa,
        )
        params.validate()
    except ValueError as exc:
        raise ModelLoadError(f"Invalid load settings: {exc}") from exc
    return params


def load_settings(path: Path, args: argparse.Namespace) -> tuple[EngineParams, Any]:
    """The load parameters from the flags, and the memory plan they came from (or None).

    Without ``--gpu-layers`` on a GPU-capable llama.cpp build, the GPU layers are what this
    machine's memory plan fits (``launcher.planning``); the plan also files the measured run
    for calibration. Any failure to plan falls back to the CPU.
    """
    params = params_from_args(args)
    if getattr(args, "safe", False):
        record = crash_history().get(str(path))
        params, changes = safe_settings(params.resolved(), record.kind if record else "unknown")
        print(
            "Safe settings: " + ("; ".join(changes) or "nothing left to change"),
            file=sys.stderr,
            flush=True,
        )
        return params, None
    if getattr(args, "rpc", None):
        from launcher.rpc import load_settings_with_rpc

        return load_settings_with_rpc(path, params, args.rpc, args.gpu_layers)
    if args.gpu_layers is not None:
        return params, None
    try:
        import llama_cpp

        if not llama_cpp.llama_supports_gpu_offload():
            return params, None
        from launcher.gguf.reader import read_model
        from launcher.hardware import probe
        from launcher.planning import ModelSummary, plan

        memory_plan = plan(
            ModelSummary.from_header(read_model(path)),
            probe(),
            ctx=params.n_ctx,
            kv_type=params.type_k,
            flash_attn=params.flash_attn is not False,
        )
    except Exception:  # planning is a convenience here, never a reason not to chat
        return params, None
    return dataclasses.replace(params, n_gpu_layers=memory_plan.n_gpu_layers), memory_plan


def crash_history() -> CrashHistory:
    """The user's crash history, shared with the app: a second crash offers safe settings."""
    return CrashHistory(AppPaths.default().crashes_file)


def calibration_store() -> Any:
    """The user's calibration store, so CLI runs improve later estimates too."""
    from launcher.planning.calibration import CalibrationStore

    return CalibrationStore()


def resolve_model(name: str) -> Path:
    """A path as given, or a file of that name in the app's models folder."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    candidate = AppPaths.default().models_dir / name
    if candidate.is_file():
        return candidate
    raise ModelLoadError(
        f"There is no model file at {name}. Give the path of a .gguf file "
        "(`spark-launcher models` lists the models on this machine)."
    )


def progress_printer(enabled: bool) -> Any:
    def show(p: LoadProgress) -> None:
        if enabled:
            print(f"\rloading {p.fraction * 100:5.1f}%", end="", file=sys.stderr, flush=True)

    return show


def metrics_line(m: ReplyMetrics) -> str:
    """One line of numbers a user can read after a reply."""
    return (
        f"[{m.generated_tokens} tokens · {m.decode_tokens_per_s:.1f} tok/s · "
        f"TTFT {m.ttft_s:.2f} s · prompt {m.prompt_tokens} tok at "
        f"{m.prefill_tokens_per_s:.0f} tok/s · stop: {m.stop_reason} · {m.template}"
        + (f" · remote {m.remote}, measured here" if m.remote else "")
        + "]"
    )


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("chat", help="chat with a model in the terminal", description=__doc__)
    add_engine_args(p)
    p.add_argument("--system", default=None, help="a system prompt")
    p.add_argument("--max-tokens", type=int, default=1024, help="longest reply (default 1024)")
    p.add_argument("--temperature", type=float, default=0.7, help="0 for greedy (default 0.7)")
    p.add_argument("--json", action="store_true", help="print one JSON object per reply")
    from launcher.tools.terminal import add_tool_args

    add_tool_args(p)
    p.set_defaults(func=handler)


class _Interrupts:
    """SIGINT while a reply streams: the first cancels it, a second one quits."""

    def __init__(self, client: Any) -> None:  # EngineClient or RemoteEngineClient
        self.client = client
        self.cancel = client.cancel  # with tools: stop the whole turn
        self.replying = False
        self.cancelled = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.replying and not self.cancelled:
            self.cancelled = True
            self.cancel()
            return
        raise KeyboardInterrupt


def _reply(
    client: Any, history: list[dict[str, Any]], sampling: Sampling, as_json: bool
) -> Iterator[str]:
    """Stream one reply; yields text pieces; returns after printing the metrics."""
    for ev in client.chat(history, sampling):
        if isinstance(ev, Token):
            yield ev.text
        elif isinstance(ev, ReplyFinished):
            if ev.text:
                history.append({"role": "assistant", "content": ev.text})
            if as_json:
                print(
                    json.dumps({"text": ev.text, "metrics": dataclasses.asdict(ev.metrics)}),
                    flush=True,
                )
            else:
                print(f"\n{metrics_line(ev.metrics)}", file=sys.stderr, flush=True)
        elif isinstance(ev, HostCrashed):
            print(
                f"\nThe model stopped unexpectedly: {ev.likely_cause}\n"
                + "\n".join(f"  {line}" for line in ev.last_log_lines[-5:]),
                file=sys.stderr,
                flush=True,
            )


def handler(args: argparse.Namespace) -> int:
    from launcher.engine.remote import RemoteEngineClient
    from launcher.remotes import is_remote_spec
    from launcher.tools.terminal import TerminalToolChat, check_tool_args

    check_tool_args(args)
    remote = is_remote_spec(args.model)  # remote:NAME/MODEL runs on a saved server
    path = Path(args.model) if remote else resolve_model(args.model)
    params, memory_plan = (None, None) if remote else load_settings(path, args)
    sampling = Sampling(max_tokens=args.max_tokens, temperature=args.temperature)
    interactive = sys.stdin.isatty()
    client: Any = (
        RemoteEngineClient(read_timeout_s=600)
        if remote
        else EngineClient(calibration=calibration_store(), crash_history=crash_history())
    )
    with client:
        loaded = client.load(
            path, params, on_progress=progress_printer(interactive), plan=memory_plan
        )
        if interactive:
            print("\r", end="", file=sys.stderr)
        where = (
            f"{loaded.description}: answered in {loaded.load_s:.1f} s"
            if remote
            else f"{path.name}: loaded in {loaded.load_s:.1f} s, "
            f"{loaded.rss_bytes / 2**20:.0f} MiB resident, context {loaded.n_ctx} tokens"
            + ("" if loaded.chat_template else " (no chat template: plain completion)")
        )
        print(
            where + ". Ctrl-C stops a reply; Ctrl-C twice or Ctrl-D quits.",
            file=sys.stderr,
            flush=True,
        )
        history: list[dict[str, Any]] = []
        if args.system:
            history.append({"role": "system", "content": args.system})
        interrupts = _Interrupts(client)
        tools = TerminalToolChat(client, args) if args.mcp else None
        if tools is not None:
            interrupts.cancel = tools.stop

            def asking(prompting: bool) -> None:  # Ctrl-C at a y/N question: stop the turn
                interrupts.replying = not prompting

            tools.on_approval_prompt = asking
        previous = signal.signal(signal.SIGINT, interrupts)
        try:
            while True:
                try:
                    line = input("> " if interactive else "")
                except (EOFError, KeyboardInterrupt):
                    if interactive:
                        print(file=sys.stderr)
                    return 0
                if not line.strip():
                    continue
                history.append({"role": "user", "content": line})
                interrupts.replying, interrupts.cancelled = True, False
                try:
                    if tools is not None:
                        tools.turn(history, sampling, args.json)
                    else:
                        for piece in _reply(client, history, sampling, args.json):
                            if not args.json:
                                print(piece, end="", flush=True)
                except KeyboardInterrupt:
                    return 0
                except RemoteEngineError as exc:  # the server failed this reply: say so, go on
                    if not interactive:
                        raise  # a script gets the error and exit code 1
                    if history and history[-1]["role"] == "user":
                        history.pop()
                    print(f"\nerror: {exc}", file=sys.stderr, flush=True)
                finally:
                    interrupts.replying = False
                if not client.is_loaded:  # the host crashed: load again to go on
                    crash = client.last_crash
                    if crash is not None and crash.safe_params is not None:
                        # The second crash in a row: not the same settings a third time.
                        params, memory_plan = crash.safe_params, None
                        print(
                            "It crashed again: loading with safe settings ("
                            + "; ".join(crash.safe_changes)
                            + ").",
                            file=sys.stderr,
                            flush=True,
                        )
                    client.load(path, params, plan=memory_plan)
        finally:
            signal.signal(signal.SIGINT, previous)
            if tools is not None:
                tools.close()
