"""Entry script that PyInstaller freezes into the ``spark-launcher`` executable.

It is ``ui.entry.main`` (no arguments: the app; arguments: the CLI; ``freeze_support`` first,
so model-host child processes started with ``spawn`` run inside the bundle) plus one
diagnostic: ``spark-launcher --self-test MODEL.gguf [--tokens N]``. The self-test starts a
child process with the ``spawn`` method, exactly as the model host does, loads the model there
with llama.cpp, generates a few tokens and prints one JSON line. It proves, on the user's
machine, that the bundle carries llama.cpp's libraries and can start its own child processes.
"""

from __future__ import annotations

import multiprocessing
import sys


def _self_test_child(model: str, tokens: int, conn: object) -> None:  # runs in the child
    import os
    import time

    result: dict[str, object] = {"child_pid": os.getpid()}
    try:
        t0 = time.perf_counter()
        from llama_cpp import Llama

        llm = Llama(model_path=model, n_ctx=512, n_gpu_layers=0, n_threads=2, verbose=False)
        t1 = time.perf_counter()
        text, first, count = "", None, 0
        for chunk in llm.create_completion(
            "The capital of France is", max_tokens=tokens, temperature=0.0, stream=True
        ):
            if first is None:
                first = time.perf_counter()
            choice = chunk["choices"][0]
            text += choice["text"]
            if choice.get("finish_reason") is None:  # the last chunk only says why it stopped
                count += 1
        t2 = time.perf_counter()
        llm.close()
        result.update(
            ok=True,
            text=text,
            tokens=count,
            load_s=round(t1 - t0, 3),
            first_token_s=round((first or t2) - t1, 3),
            tokens_per_s=round(count / max(t2 - (first or t1), 1e-9), 1),
        )
    except Exception as exc:  # reported to the parent, which exits non-zero
        result.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    conn.send(result)  # type: ignore[attr-defined]
    conn.close()  # type: ignore[attr-defined]


def self_test(argv: list[str]) -> int:
    """Load MODEL in a spawned child, generate a few tokens, print one JSON line."""
    import argparse
    import json
    import time

    parser = argparse.ArgumentParser(prog="spark-launcher --self-test")
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, default=8)
    args = parser.parse_args(argv)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    proc = ctx.Process(target=_self_test_child, args=(args.model, args.tokens, child))
    proc.start()
    child.close()
    result: dict[str, object] = {"ok": False, "error": "the child process died without a reply"}
    if parent.poll(300):
        try:
            result = parent.recv()
        except EOFError:
            pass
    proc.join(30)
    if proc.is_alive():
        proc.kill()
        proc.join()
    result.update(
        frozen=bool(getattr(sys, "frozen", False)),
        child_exitcode=proc.exitcode,
        wall_s=round(time.perf_counter() - t0, 3),
    )
    print(json.dumps(result))
    return 0 if result.get("ok") and proc.exitcode == 0 else 1


def main() -> int:
    multiprocessing.freeze_support()
    if sys.argv[1:2] == ["--self-test"]:
        return self_test(sys.argv[2:])
    from ui.entry import main as entry_main

    return entry_main()


if __name__ == "__main__":
    sys.exit(main())
