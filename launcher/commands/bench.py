"""``spark-launcher bench MODEL [--prompt P] [--tokens N] [--ctx N] [--json]``: measure a model.

Loads the model in a host process, runs one fixed prompt as a plain completion (greedy, so
runs are comparable) after a short warm-up, and prints load time, time to first token,
prefill and decode tokens/s, and the host's memory (RSS, NVML GPU memory where available,
and llama.cpp's own buffer sizes per device).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from launcher.commands.chat import (
    add_engine_args,
    calibration_store,
    crash_history,
    load_settings,
    resolve_model,
)
from launcher.engine import BenchResult, EngineClient, ReplyFinished, Sampling
from launcher.errors import EngineError

DEFAULT_PROMPT = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle. "
    "Describe the sea, the weather and the keeper's thoughts in detail."
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench", help="measure load time, TTFT and tokens/s of a model", description=__doc__
    )
    add_engine_args(p)
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="the prompt to complete")
    p.add_argument("--tokens", type=int, default=128, help="tokens to generate (default 128)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=handler)


def run_bench(client: EngineClient, prompt: str, tokens: int) -> ReplyFinished:
    """Warm up with a few tokens, then one measured greedy completion of the whole prompt."""
    for _ in client.complete(prompt, Sampling(max_tokens=2, temperature=0, cache_prompt=False)):
        pass
    done = None
    measured = Sampling(max_tokens=tokens, temperature=0, cache_prompt=False)
    for ev in client.complete(prompt, measured):
        if isinstance(ev, ReplyFinished):
            done = ev
    if done is None:
        crash = client.last_crash
        raise EngineError(
            f"The model stopped during the benchmark: {crash.likely_cause if crash else ''}"
        )
    return done


def handler(args: argparse.Namespace) -> int:
    path = resolve_model(args.model)
    params, memory_plan = load_settings(path, args)
    with EngineClient(calibration=calibration_store(), crash_history=crash_history()) as client:
        loaded = client.load(path, params, plan=memory_plan)
        done = run_bench(client, args.prompt, args.tokens)
        rss, gpu = client.memory()
    m = done.metrics
    result = BenchResult(
        load_s=loaded.load_s,
        ttft_s=m.ttft_s,
        prefill_tokens_per_s=m.prefill_tokens_per_s,
        decode_tokens_per_s=m.decode_tokens_per_s,
        generated_tokens=m.generated_tokens,
        prompt_tokens=m.prompt_tokens,
        rss_bytes=max(rss, loaded.rss_bytes),
        gpu_bytes=gpu if gpu is not None else loaded.gpu_bytes,
        buffers=loaded.buffers,
    )
    if args.json:
        out = dataclasses.asdict(result)
        out.update(
            model=str(path),
            stop_reason=m.stop_reason,
            params=loaded.params.to_dict(),
            n_ctx=loaded.n_ctx,
        )
        print(json.dumps(out, indent=2))
        return 0
    mib = 2**20
    print(
        f"{path.name} ({loaded.description}), context {loaded.n_ctx}, "
        f"{loaded.params.n_threads} threads, GPU layers {loaded.params.n_gpu_layers}"
    )
    print(f"  load            {result.load_s:8.2f} s")
    print(f"  TTFT            {result.ttft_s:8.3f} s   ({result.prompt_tokens} prompt tokens)")
    print(f"  prefill         {result.prefill_tokens_per_s:8.1f} tokens/s")
    print(
        f"  decode          {result.decode_tokens_per_s:8.1f} tokens/s "
        f"({result.generated_tokens} tokens, stop: {m.stop_reason})"
    )
    gpu_text = "n/a" if result.gpu_bytes is None else f"{result.gpu_bytes / mib:.0f} MiB"
    print(f"  memory          {result.rss_bytes / mib:8.0f} MiB resident, GPU {gpu_text}")
    for b in result.buffers:
        print(f"    {b.device:>12} {b.kind:<8} {b.bytes / mib:9.1f} MiB")
    sys.stdout.flush()
    return 0
