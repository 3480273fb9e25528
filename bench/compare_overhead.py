"""Sequential comparison overhead: model load/unload time against generation time.

Runs the same two-model comparison (Gemma 3 270M and a tiny random-weight llama, one
prompt, greedy, a fixed number of tokens) twice in the same run: one after another (load A,
answer, unload, load B, answer, unload) and both resident (load both, answer, answer). The
reference is the generation time measured in the same run; the table gives the load/unload
overhead as a ratio of it, and the wall time of the sequential plan against the resident one.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import CACHE, table

TITLE = "Comparison: sequential load/unload overhead vs generation"
PROMPT = "Write a short paragraph about the sea."
MAX_TOKENS = 64


def _tiny_llama() -> Path:
    from tests.support.gguf_builders import TINY_LLAMA, build_model

    target = CACHE / "bench" / "tiny-llama.gguf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        build_model(target, **TINY_LLAMA)
    return target


def _run(models: tuple[str, str], force: str) -> tuple[float, object]:
    from launcher.compare import CompareRequest, ComparisonJob, SessionDone
    from launcher.engine.events import Sampling

    request = CompareRequest(
        models,
        prompt=PROMPT,
        ctx=2048,
        force=force,  # type: ignore[arg-type]
        sampling=Sampling(temperature=0.0, max_tokens=MAX_TOKENS),
    )
    t0 = time.perf_counter()
    result = None
    for ev in ComparisonJob(request, save=False).run():
        if isinstance(ev, SessionDone):
            result = ev.result
    return time.perf_counter() - t0, result


def run() -> str:
    from bench.throughput import model_path

    models = (str(model_path()), str(_tiny_llama()))
    _run(models, "sequential")  # warm-up: page cache, first spawn
    seq_wall, seq = _run(models, "sequential")
    res_wall, res = _run(models, "resident")

    rows = []
    totals = {}
    for mode, wall, result in (("one after another", seq_wall, seq), ("both resident", res_wall,
                                                                      res)):  # fmt: skip
        load = sum(m.load_s or 0.0 for m in result.models)  # type: ignore[attr-defined]
        unload = sum(m.unload_s or 0.0 for m in result.models)  # type: ignore[attr-defined]
        gen = sum(r.total_s or 0.0 for r in result.runs)  # type: ignore[attr-defined]
        totals[mode] = (wall, load, unload, gen)
        rows.append((mode, wall, load, unload, gen, (load + unload) / gen if gen else 0.0))
    per_model = []
    for m in seq.models:  # type: ignore[attr-defined]
        run_ = seq.run_for(m.label, "prompt")  # type: ignore[attr-defined]
        gen = run_.total_s or 0.0
        per_model.append(
            (m.label, m.load_s or 0.0, m.unload_s or 0.0, gen, run_.completion_tokens or 0,
             ((m.load_s or 0.0) + (m.unload_s or 0.0)) / gen if gen else 0.0)
        )  # fmt: skip
    seq_total, res_total = totals["one after another"][0], totals["both resident"][0]
    note = ""
    if totals["both resident"][3] > totals["one after another"][3] * 1.1:
        note = (
            " Generation was slower with both resident in this run: two hosts share the CPU "
            "cores (and the machine's other load), so the wall ratio here mostly shows "
            "contention, not the cost of loading."
        )
    return (
        table(
            ["Plan", "Wall s", "Load s", "Unload s", "Generation s", "Load+unload / generation"],
            rows,
        )
        + "\n\nOne after another, per model:\n\n"
        + table(
            ["Model", "Load s", "Unload s", "Generation s", "Tokens", "Load+unload / generation"],
            per_model,
        )
        + f"\n\nSequential wall time / resident wall time: **{seq_total / res_total:.2f}×** "
        f"(prompt: one, {MAX_TOKENS} tokens max, greedy, ctx 2048). Load time includes starting "
        "the model host process (spawn, imports); unload ends it. With a suite, a sequential "
        "plan loads each model once, so the overhead is divided by the number of prompts."
        + note
        + "\n"
    )
