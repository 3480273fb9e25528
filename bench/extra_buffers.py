"""What llama.cpp's extra buffer types are worth where they are safe (the AMX fix's cost).

On a CPU whose llama.cpp build has Intel AMX kernels, every load runs with
``use_extra_bufts = false`` (``launcher/hardware/cpufeatures.py``; llama.cpp issue 20824).
That also turns off the CPU backend's weight repacking (``CPU_REPACK``), so this measures
both settings on the machine at hand, where repacking is safe, on two files: Gemma 3 270M
Q4_K_M as shipped (its 640-wide tensors cannot use K-quants, so most are Q5_0/Q8_0 and little
is repacked) and the same model requantized to Q4_0 by llama.cpp's own ``llama_model_quantize``
(every linear weight repackable, like a Q4_0 7B-70B model), through the engine
(``EngineClient``, CPU, all physical cores): prefill of a ~400-token prompt and greedy
decode of 128 tokens, in paired rounds whose order alternates. Reported: each setting's
median, and off / on per round (median): what an AMX machine would give up, and what every
other machine keeps (the decision leaves extra buffers on there).
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from bench.common import table

TITLE = "Extra buffer types (weight repacking) on vs off: the cost of the AMX fix"
ROUNDS = 7
PROMPT = "The history of computing, told as a list of numbered events: " + ", ".join(
    str(i) for i in range(1, 120)
)
DECODE_TOKENS = 128


def _measure(client: Any) -> tuple[float, float]:
    from launcher.engine import ReplyFinished, Sampling

    prefill = decode = 0.0
    for ev in client.complete(
        PROMPT, Sampling(max_tokens=DECODE_TOKENS, temperature=0.0, cache_prompt=False)
    ):
        if isinstance(ev, ReplyFinished):
            prefill, decode = ev.metrics.prefill_tokens_per_s, ev.metrics.decode_tokens_per_s
    return prefill, decode


def _q4_0(src: Path) -> Path:
    """Gemma requantized to Q4_0 (cached beside it)."""
    import llama_cpp

    dst = src.with_name(src.stem + "-requant-q4_0.gguf")
    if not dst.exists():
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
        params.allow_requantize = True
        tmp = dst.with_suffix(".tmp")
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
        if rc != 0:
            raise RuntimeError(f"llama_model_quantize failed ({rc})")
        os.replace(tmp, dst)
    return dst


def run() -> str:
    from bench.throughput import model_path

    gemma = model_path()
    parts = []
    for label, path in (("Gemma 3 270M Q4_K_M", gemma), ("Gemma 3 270M as Q4_0", _q4_0(gemma))):
        parts.append(f"**{label}**\n\n" + _compare(path))
    return "\n\n".join(parts) + (
        "\n\nMachines without the AMX crash keep extra buffers on (ratio 1 by construction: "
        "the decision changes nothing there). An AMX machine whose llama.cpp has the AMX kernels "
        "loads with them off and pays the off ÷ on ratios above, which is why "
        "`tools/setup_llama.sh` builds without the AMX kernels on such a CPU (repacking stays "
        "on); the runtime switch is the guard for builds made elsewhere."
    )


def _compare(path: Path) -> str:
    from launcher.engine import EngineClient, EngineParams

    clients = {}
    buffers = {}
    for on in (True, False):
        client = EngineClient(name=f"bench-extra-{on}")
        loaded = client.load(path, EngineParams(n_ctx=1024, n_gpu_layers=0, use_extra_bufts=on))
        clients[on] = client
        buffers[on] = ", ".join(
            f"{b.device} {b.bytes / 2**20:.0f} MiB" for b in loaded.buffers if b.kind == "model"
        )
        _measure(client)  # warm-up
    samples: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    try:
        for r in range(ROUNDS):
            for on in (True, False) if r % 2 == 0 else (False, True):
                samples[on].append(_measure(clients[on]))
    finally:
        for c in clients.values():
            c.unload()
    pre_ratio = statistics.median(
        off[0] / on[0] for on, off in zip(samples[True], samples[False], strict=True)
    )
    dec_ratio = statistics.median(
        off[1] / on[1] for on, off in zip(samples[True], samples[False], strict=True)
    )
    rows = []
    for on in (True, False):
        rows.append(
            [
                "on (default)" if on else "off (AMX machines)",
                buffers[on],
                statistics.median(s[0] for s in samples[on]),
                statistics.median(s[1] for s in samples[on]),
            ]
        )
    return (
        table(["extra buffer types", "model buffers", "prefill tok/s", "decode tok/s"], rows)
        + f"\n\nOff ÷ on, median of {ROUNDS} paired rounds: prefill **{pre_ratio:.2f}**, "
        f"decode **{dec_ratio:.2f}**."
    )
