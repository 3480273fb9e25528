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
    """Load MODEL in a model host, generate a few tokens, print one JSON line."""
    import argparse
    import json
    import time

    from launcher.engine.client import EngineClient
    from launcher.engine.events import EngineParams, HostCrashed, ReplyFinished, Sampling
    from launcher.errors import LauncherError

    parser = argparse.ArgumentParser(prog="spark-launcher --self-test")
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--prompt", default="The capital of France is")
    args = parser.parse_args(argv)
    result: dict[str, object] = {"ok": False, "frozen": bool(getattr(sys, "frozen", False))}
    t0 = time.perf_counter()
    try:
        with EngineClient(name="self-test") as client:
            loaded = client.load(args.model, EngineParams(n_ctx=512, n_gpu_layers=0))
            result.update(host_pid=loaded.pid, load_s=round(loaded.load_s, 3))
            sampling = Sampling(max_tokens=args.tokens, temperature=0.0, seed=1)
            for event in client.complete(args.prompt, sampling):
                if isinstance(event, ReplyFinished):
                    m = event.metrics
                    result.update(
                        ok=True,
                        text=event.text,
                        tokens=m.generated_tokens,
                        ttft_s=round(m.ttft_s, 3),
                        tokens_per_s=round(m.decode_tokens_per_s, 1),
                    )
                elif isinstance(event, HostCrashed):
                    result.update(error=f"model host crashed: {event.likely_cause}")
    except (LauncherError, OSError) as exc:
        result.update(error=f"{type(exc).__name__}: {exc}")
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


def main() -> int:
    multiprocessing.freeze_support()
    if sys.argv[1:2] == ["--self-test"]:
        return self_test(sys.argv[2:])
    from ui.entry import main as entry_main

    return entry_main()


if __name__ == "__main__":
    sys.exit(main())
