"""What the agent features cost: decode under a JSON-schema grammar, and a tool-heavy prompt.

Gemma 3 270M Q4_K_M on the CPU through the engine (``EngineClient``), greedy, in paired rounds:

- decode tok/s while a JSON-schema grammar constrains every token (an array of 60 integers,
  so the reply is long) ÷ free decode of a similar counting reply, same length;
- TTFT of an agent conversation with 10 tools in its prompt (the generic path: the tools are
  described in the system message), first turn and follow-up turn: the follow-up reuses the
  KV of the shared prefix, so only the new turn is evaluated.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.common import table

TITLE = "Agent features: grammar-constrained decode and a 10-tool prompt"
ROUNDS = 5
N = 120
SCHEMA = {"type": "array", "items": {"type": "integer"}, "minItems": 60, "maxItems": 60}
TOOLS = tuple(
    {
        "name": f"tool_{i}",
        "description": f"Tool number {i}: looks things up in catalogue {i} and returns JSON.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query"],
        },
    }
    for i in range(10)
)


def _finish(events: Any) -> Any:
    from launcher.engine import ReplyFinished

    done = [e for e in events if isinstance(e, ReplyFinished)]
    assert done
    return done[-1]


def run() -> str:
    from bench.throughput import model_path
    from launcher.engine import EngineClient, EngineParams, Sampling

    client = EngineClient(name="bench-agent")
    client.load(model_path(), EngineParams(n_ctx=4096, n_gpu_layers=0))
    ask = [{"role": "user", "content": "List sixty numbers."}]
    free_s = Sampling(max_tokens=N, temperature=0, cache_prompt=False)
    grammar_s = Sampling(max_tokens=N, temperature=0, cache_prompt=False, json_schema=SCHEMA)
    ratios, free, constrained = [], [], []
    try:
        for r in range(ROUNDS):
            order = [("free", free_s), ("grammar", grammar_s)]
            results = {}
            for name, s in order if r % 2 == 0 else order[::-1]:
                m = _finish(client.chat(ask, s)).metrics
                results[name] = m.decode_tokens_per_s
            free.append(results["free"])
            constrained.append(results["grammar"])
            ratios.append(results["grammar"] / results["free"])
        first, follow, prompt_tokens = [], [], 0
        for _ in range(ROUNDS):
            turn1 = [{"role": "user", "content": "Find the latest report on lighthouses."}]
            tools_s = Sampling(max_tokens=24, temperature=0, tools=TOOLS, cache_prompt=False)
            done = _finish(client.chat(turn1, tools_s))
            first.append(done.metrics.ttft_s)
            prompt_tokens = done.metrics.prompt_tokens
            turn2 = [
                *turn1,
                {"role": "assistant", "content": done.text or "Searching."},
                {"role": "user", "content": "Only from 2025, please."},
            ]
            again = _finish(client.chat(turn2, Sampling(max_tokens=24, temperature=0, tools=TOOLS)))
            follow.append(again.metrics.ttft_s)
            cached = again.metrics.cached_tokens
    finally:
        client.unload()
    med = statistics.median
    rows = [
        ["free decode (counting)", f"{med(free):.1f} tok/s", ""],
        ["JSON-schema grammar decode", f"{med(constrained):.1f} tok/s", f"**{med(ratios):.2f}**"],
        [f"10 tools, first turn ({prompt_tokens} prompt tokens)", f"{med(first) * 1e3:.0f} ms", ""],
        [
            f"10 tools, follow-up turn ({cached} tokens from the KV cache)",
            f"{med(follow) * 1000:.0f} ms",
            f"**{med(follow) / med(first):.2f}** of the first",
        ],
    ]
    return (
        table(["path", "median", "ratio"], rows)
        + f"\n\nDecode ratio = grammar ÷ free decode tok/s, median of {ROUNDS} paired rounds "
        "(target ≥ 0.9). The grammar is checked on the chosen token first and filters the whole "
        "vocabulary only when it rejects it, as llama-server does."
    )
