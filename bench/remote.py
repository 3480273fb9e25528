"""Remote engines: what talking to a model over HTTP costs, and whether its numbers are honest.

Gemma 3 270M, the same chat request (greedy, 64 tokens) in the same run, rounds interleaved,
best of each:

- reference: the local engine (``EngineClient``), as the app's chat runs it;
- our own ``serve`` on 127.0.0.1 (the same engine behind the OpenAI API), driven by
  ``RemoteEngineClient``: decode tok/s and TTFT as the remote client measures them, as a
  ratio of / difference from the reference;
- llama.cpp's ``llama-server`` on 127.0.0.1 (when ``tools/build_llama_tools.sh`` has built it),
  driven by ``RemoteEngineClient``: our client-side decode tok/s against the server's own
  ``timings.predicted_per_second`` for the same reply (how honest the remote label's numbers
  are), and its speed against the reference.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import llama_tools_bin, table

TITLE = "Remote engines: HTTP overhead and client-side metrics"
N_TOKENS = 64
ROUNDS = 5
# Counting never meets a stop string or an end of turn, so every path makes all N_TOKENS.
MESSAGES = [{"role": "user", "content": "Count from 1 to 200: 1, 2, 3, 4, 5,"}]
LLAMA_SERVER = llama_tools_bin() / "llama-server"


def _gemma() -> Path:
    from bench.throughput import model_path

    return model_path()


def _reply(client: Any) -> tuple[Any, dict[str, Any] | None]:
    from launcher.engine import ReplyFinished, Sampling

    sampling = Sampling(max_tokens=N_TOKENS, temperature=0.0)
    done = None
    for ev in client.chat(MESSAGES, sampling):
        if isinstance(ev, ReplyFinished):
            done = ev
    assert done is not None
    return done.metrics, getattr(client, "last_server_timings", None)


def _start_llama_server(model: Path, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(LLAMA_SERVER), "-m", str(model), "-a", "gemma", "--host", "127.0.0.1",
         "--port", str(port), "-c", "2048", "-np", "1", "-t", str(threads), "--no-webui"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("llama-server did not start")


def run() -> str:
    from launcher.engine import EngineClient, EngineParams
    from launcher.engine.remote import RemoteEngineClient
    from launcher.remotes import Remote
    from launcher.server.httpd import LocalApiServer
    from launcher.server.pool import ModelRegistry

    model = _gemma()
    params = EngineParams(n_ctx=2048).resolved()
    threads = params.n_threads or 1
    local = EngineClient()
    local.load(model, params)
    registry = ModelRegistry()
    shared = registry.share(EngineClient())
    shared.load(str(model), params)
    server = LocalApiServer(registry, port=0)
    server.start()
    ours = RemoteEngineClient(Remote("serve", server.url))
    ours.load(shared.name)
    llama: RemoteEngineClient | None = None
    proc = None
    if LLAMA_SERVER.exists():
        proc, url = _start_llama_server(model, threads)
        llama = RemoteEngineClient(Remote("llama-server", f"{url}/v1"))
        llama.load("gemma")
    results: dict[str, list[tuple[Any, Any]]] = {"local": [], "serve": [], "llama": []}
    try:
        for _ in range(ROUNDS + 1):  # the first round warms every path up and is dropped
            results["local"].append(_reply(local))
            results["serve"].append(_reply(ours))
            if llama is not None:
                results["llama"].append(_reply(llama))
    finally:
        for client in (ours, llama, local):
            if client is not None:
                client.unload()
        server.stop()
        shared.unload()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)

    def best_decode(key: str) -> float:
        return max(m.decode_tokens_per_s for m, _ in results[key][1:])

    def best_ttft(key: str) -> float:
        return min(m.ttft_s for m, _ in results[key][1:])

    ref_tps, ref_ttft = best_decode("local"), best_ttft("local")
    rows: list[list[object]] = [
        ["local engine (reference)", f"{ref_tps:.1f}", "1.00", f"{ref_ttft * 1000:.0f}", "—"],
        [
            "our `serve` over HTTP (RemoteEngineClient)",
            f"{best_decode('serve'):.1f}",
            f"{best_decode('serve') / ref_tps:.3f}",
            f"{best_ttft('serve') * 1000:.0f}",
            f"{(best_ttft('serve') - ref_ttft) * 1000:+.0f}",
        ],
    ]
    honesty = ""
    if results["llama"]:
        rows.append(
            [
                "llama-server over HTTP (RemoteEngineClient)",
                f"{best_decode('llama'):.1f}",
                f"{best_decode('llama') / ref_tps:.3f}",
                f"{best_ttft('llama') * 1000:.0f}",
                f"{(best_ttft('llama') - ref_ttft) * 1000:+.0f}",
            ]
        )
        pairs = [
            (m.decode_tokens_per_s, float(t["predicted_per_second"]))
            for m, t in results["llama"][1:]
            if t and t.get("predicted_per_second")
        ]
        if pairs:
            ratios = sorted(ours_tps / theirs for ours_tps, theirs in pairs)
            mid = ratios[len(ratios) // 2]
            honesty = (
                "\n\nClient-side decode tok/s over llama-server's own "
                f"`timings.predicted_per_second` for the same replies: median {mid:.3f} "
                f"(range {ratios[0]:.3f}-{ratios[-1]:.3f}, {len(ratios)} replies)."
            )
    else:
        honesty = (
            "\n\nllama-server row left out: build it with "
            "`tools/build_llama_tools.sh llama-server`."
        )
    return (
        f"{threads} threads everywhere; Gemma 3 270M Q4_K_M, greedy, "
        f"{N_TOKENS} tokens, best of {ROUNDS} interleaved rounds.\n\n"
        + table(["path", "decode tok/s", "vs local", "TTFT ms", "TTFT overhead ms"], rows)
        + honesty
        + "\n\nRemote speeds are measured on this side of the network (the label `remote`): "
        "first streamed chunk to the finish chunk, so they include HTTP and SSE framing per token."
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(run())
