"""Local API throughput: decode tokens/s and TTFT through the local API server (Starlette on
uvicorn, ``launcher/server``) vs through ``EngineClient`` directly, on the same model host in
the same run.

One Gemma 3 270M host is loaded once and shared (``SharedModel``) by the direct path and the
server on 127.0.0.1. Every round runs the same greedy completion (a counting prompt that
always runs to ``max_tokens``, no prompt cache, so each run evaluates the prompt again)
three ways, interleaved so machine load hits all alike: (a) ``EngineClient.complete``
consumed in-process, (b) the API streamed over HTTP and parsed as raw SSE, (c) the API
through the official ``openai`` client. Speeds are what the *consumer* sees: (tokens - 1) /
(last piece - first piece), where every run generates ``MAX_TOKENS`` tokens (the engine
batches fast text into at most 20 pieces a second, so pieces < tokens); TTFT is request to
first piece. Best of the rounds per path.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

from bench.common import table

TITLE = "Local API: tokens/s and TTFT through the API vs EngineClient directly"
PROMPT = "1, 2, 3, 4, 5, 6, 7, 8,"
MAX_TOKENS = 64
ROUNDS = 7


def _rate(stamps: list[float]) -> float:
    return (MAX_TOKENS - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0


def _direct(model: Any, sampling: Any) -> tuple[float, float, int]:
    from launcher.engine.events import ReplyFinished, Token

    stamps: list[float] = []
    t0 = time.perf_counter()
    for ev in model.client.complete(PROMPT, sampling):
        if isinstance(ev, Token):
            stamps.append(time.perf_counter())
        elif isinstance(ev, ReplyFinished):  # the rate assumes the whole budget was used
            assert ev.metrics.generated_tokens == MAX_TOKENS, ev.metrics
    return stamps[0] - t0, _rate(stamps), len(stamps)


def _raw_sse(port: int) -> tuple[float, float, int]:
    body = json.dumps(
        {
            "prompt": PROMPT,
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "stream": True,
            "cache_prompt": False,
        }
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    stamps: list[float] = []
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    for line in resp:
        if line.startswith(b"data: {") and json.loads(line[6:])["choices"][0]["text"]:
            stamps.append(time.perf_counter())
    conn.close()
    return stamps[0] - t0, _rate(stamps), len(stamps)


def _openai(client: Any, name: str) -> tuple[float, float, int]:
    stamps: list[float] = []
    t0 = time.perf_counter()
    stream = client.completions.create(
        model=name,
        prompt=PROMPT,
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream=True,
        extra_body={"cache_prompt": False},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            stamps.append(time.perf_counter())
    return stamps[0] - t0, _rate(stamps), len(stamps)


def run() -> str:
    import openai

    from bench.throughput import model_path
    from launcher.engine import EngineClient, EngineParams, Sampling
    from launcher.server.httpd import LocalApiServer
    from launcher.server.pool import ModelRegistry

    registry = ModelRegistry()
    model = registry.share(EngineClient())
    # One llama.cpp thread: on a small shared machine the server and client threads need a
    # core too, and spinning llama.cpp workers would otherwise fight them (and each other).
    model.load(str(model_path()), EngineParams(n_ctx=2048, n_threads=1))
    server = LocalApiServer(registry, port=0)
    server.start()
    client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0)
    sampling = Sampling(max_tokens=MAX_TOKENS, temperature=0.0, cache_prompt=False)
    paths = {
        "EngineClient directly (reference)": lambda: _direct(model, sampling),
        "Local API, raw SSE over HTTP": lambda: _raw_sse(server.port),
        "Local API, `openai` client": lambda: _openai(client, model.name),
    }
    results: dict[str, list[tuple[float, float, int]]] = {k: [] for k in paths}
    try:
        for fn in paths.values():
            fn()  # warm-up
        for _ in range(ROUNDS):
            for key, fn in paths.items():
                results[key].append(fn())
    finally:
        client.close()
        server.stop()
        model.unload()

    ref = next(iter(results))
    best_rate = {k: max(r[1] for r in v) for k, v in results.items()}
    best_ttft = {k: min(r[0] for r in v) for k, v in results.items()}
    rows = [
        (
            key,
            f"{best_rate[key]:.1f}",
            f"{best_rate[key] / best_rate[ref]:.3f}",
            f"{best_ttft[key] * 1000:.1f}",
            f"{(best_ttft[key] - best_ttft[ref]) * 1000:+.1f}",
            results[key][-1][2],
        )
        for key in results
    ]
    return (
        f"Gemma 3 270M Q4_K_M on the CPU (1 llama.cpp thread), greedy, {MAX_TOKENS} tokens after a "
        f"{len(PROMPT)}-character prompt evaluated afresh each time; best of {ROUNDS} "
        "interleaved rounds; speeds as seen by the consumer.\n\n"
        + table(
            (
                "Path",
                "Decode tok/s",
                "Ratio vs direct",
                "TTFT (ms)",
                "TTFT overhead (ms)",
                "Pieces",
            ),
            rows,
        )
        + "\n\nTarget: the API at >= 0.98 of the direct decode rate, TTFT overhead a few ms. "
        "The server is Starlette on uvicorn (h11): the overhead is the HTTP request, "
        "validating the body (pydantic), the queue, and a worker thread handing each engine "
        "event to the event loop; each piece costs one JSON chunk and one `send` "
        "(asyncio sets TCP_NODELAY, so no Nagle delay).\n"
    )
