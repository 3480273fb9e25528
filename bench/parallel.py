"""Serving many at once: aggregate decode tokens/s and per-request latency with 1, 2, 4 and 8
concurrent streaming clients, through our local API (continuous batching in the model host,
``n_parallel`` slots) vs llama.cpp's own ``llama-server --parallel`` built from the same
vendored llama.cpp (``tools/build_llama_tools.sh llama-server``), in the same run.

Both servers load Gemma 3 270M Q4_K_M with the same settings (context 4096 split in 8 slots,
one llama.cpp thread, flash attention and batch sizes left at their defaults on both) and
stay loaded side by side; for each number of clients the two are measured in alternation,
``ROUNDS`` times, and the best round of each is kept. Every client streams a greedy
completion (``/v1/completions``, raw SSE over HTTP) of its own counting prompt, which
runs to ``MAX_TOKENS`` tokens, with the prompt cache off so each request evaluates its
prompt. Aggregate tokens/s = completion tokens of all clients / wall time from the first
request sent to the last reply ended (prefill included, as a user of the server sees it).
Latency per request: TTFT (request to first piece) and the whole request, medians.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import llama_tools_bin, table

TITLE = "Serving many: concurrent clients through our API vs llama-server --parallel"
CLIENTS = (1, 2, 4, 8)
SLOTS = 8
N_CTX = 4096
MAX_TOKENS = 96
ROUNDS = 3
THREADS = 1  # the machines this runs on are small and shared: both servers get the same
LLAMA_SERVER = llama_tools_bin() / "llama-server"


def _prompt(i: int) -> str:
    start = 10 + 37 * i  # each client its own prompt: no shared prefix between them
    return ", ".join(str(start + k) for k in range(8)) + ","


def _one(port: int, model: str, i: int, out: list[Any]) -> None:
    body = json.dumps(
        {
            "model": model,
            "prompt": _prompt(i),
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "stream": True,
            "cache_prompt": False,
            "stream_options": {"include_usage": True},
        }
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    first: float | None = None
    tokens = 0
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    for line in resp:
        if not line.startswith(b"data: {"):
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            tokens = int(chunk["usage"]["completion_tokens"])
        choices = chunk.get("choices") or []
        if first is None and choices and choices[0].get("text"):
            first = time.perf_counter()
    end = time.perf_counter()
    conn.close()
    out[i] = (t0, (first or end) - t0, end, tokens)


def _round(port: int, model: str, n: int) -> dict[str, float]:
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            _one(port, model, i, results)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    start = min(r[0] for r in results)
    end = max(r[2] for r in results)
    tokens = sum(r[3] for r in results)
    return {
        "tok_s": tokens / (end - start),
        "tokens": tokens,
        "ttft": statistics.median(r[1] for r in results),
        "latency": statistics.median(r[2] - r[0] for r in results),
    }


def _start_llama_server(model: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(LLAMA_SERVER), "-m", str(model), "-a", "gemma", "--host", "127.0.0.1",
         "--port", str(port), "-c", str(N_CTX), "-np", str(SLOTS), "-t", str(THREADS),
         "-tb", str(THREADS), "--no-webui"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("llama-server did not start")


def run() -> str:
    from bench.throughput import model_path
    from launcher.engine import EngineClient, EngineParams
    from launcher.server.httpd import LocalApiServer
    from launcher.server.pool import ModelRegistry

    path = model_path()
    registry = ModelRegistry()
    model = registry.share(EngineClient(), max_waiting=2 * SLOTS)
    model.load(
        str(path),
        EngineParams(n_ctx=N_CTX, n_threads=THREADS, n_threads_batch=THREADS, n_parallel=SLOTS),
    )
    server = LocalApiServer(registry, port=0)
    server.start()
    targets: dict[str, tuple[int, str]] = {"ours": (server.port, model.name)}
    proc: subprocess.Popen[bytes] | None = None
    try:
        if LLAMA_SERVER.exists():
            proc, port = _start_llama_server(path)
            targets["llama-server"] = (port, "gemma")
        for port, name in targets.values():
            _round(port, name, 2)  # warm-up: weights paged in, threads started
        best: dict[tuple[str, int], dict[str, float]] = {}
        for n in CLIENTS:
            for _ in range(ROUNDS):
                for key, (port, name) in targets.items():
                    r = _round(port, name, n)
                    if (key, n) not in best or r["tok_s"] > best[(key, n)]["tok_s"]:
                        best[(key, n)] = r
    finally:
        server.stop()
        model.unload()
        if proc is not None:
            proc.terminate()
            proc.wait(30)

    have_ref = "llama-server" in targets
    rows = []
    for n in CLIENTS:
        ours = best[("ours", n)]
        row: list[object] = [
            n,
            f"{ours['tok_s']:.1f}",
            f"{ours['tok_s'] / best[('ours', 1)]['tok_s']:.2f}",
            f"{ours['ttft'] * 1000:.0f}",
            f"{ours['latency']:.2f}",
        ]
        if have_ref:
            ref = best[("llama-server", n)]
            row += [
                f"{ref['tok_s']:.1f}",
                f"{ref['tok_s'] / best[('llama-server', 1)]['tok_s']:.2f}",
                f"{ref['ttft'] * 1000:.0f}",
                f"{ref['latency']:.2f}",
                f"**{ours['tok_s'] / ref['tok_s']:.2f}**",
            ]
        rows.append(row)
    headers = ["Clients", "Ours tok/s", "Ours speed-up", "Ours TTFT (ms)", "Ours latency (s)"]
    if have_ref:
        headers += [
            "llama-server tok/s",
            "llama-server speed-up",
            "llama-server TTFT (ms)",
            "llama-server latency (s)",
            "Ours / llama-server",
        ]
    text = (
        f"Gemma 3 270M Q4_K_M on the CPU, {THREADS} llama.cpp thread, context {N_CTX} split "
        f"in {SLOTS} slots on both servers; every client streams a greedy {MAX_TOKENS}-token "
        f"completion of its own counting prompt (prompt cache off); best of {ROUNDS} "
        "alternating rounds per server and client count. Aggregate tok/s = all clients' "
        "completion tokens / wall time from the first request to the last reply; speed-up = "
        "aggregate over one client's on the same server; TTFT and latency are per-request "
        "medians.\n\n" + table(headers, rows) + "\n\nTarget: ours / llama-server >= 0.9 at "
        "every client count, and a speed-up that grows with the clients as llama-server's "
        "does. Both decode every active request's next token in one `llama_decode` (ours: "
        "the model host's continuous batching, `launcher/engine/host.py`), with the KV cache "
        "split per slot (`kv_unified` off, llama-server's layout for an explicit "
        "`--parallel`).\n"
    )
    if not have_ref:
        text += (
            "\nllama-server columns left out: build it with "
            "`tools/build_llama_tools.sh llama-server`.\n"
        )
    return text
