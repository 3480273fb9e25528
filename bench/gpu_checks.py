"""The CUDA path on a lent NVIDIA machine (``../shared/reference/gpu-checks.md``).

Run by ``tools/gpu_check.sh`` on the device after it has built llama.cpp with CUDA (shared
libraries and ``llama-bench`` from the same CMake run; the engine loads those libraries via
``LLAMA_CPP_LIB_PATH``). For models shaped like Llama 3.2 1B, Llama 3.1 8B and Qwen3 32B at
Q4_K_M (random weights, ``gguf_builders.build_model(cheap=True)``; the Gemma test model is
too big to carry there), with full offload, flash attention on and a 4096-token context:

- decode and prefill tokens/s through ``EngineClient`` against native ``llama-bench``
  (``-p 512 -n 128 -fa 1 -ngl 99``), same libraries, same run;
- the formula estimate's weights / KV / compute against the CUDA buffers llama.cpp reports
  and NVML's per-process figure;
- the speed estimate (the probed H200's bandwidth) against the measured decode tokens/s.

Results go to ``OUT/gpu-results.json`` after every step (a run cut short keeps what it
measured) and ``OUT/gpu-results.md`` (the tables for BENCHMARKS.md). ``--budget-s`` skips
the models that would not finish in time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB = 1 << 20
CTX = 4096
N_PROMPT = 512
N_GEN = 128

SHAPES: list[tuple[str, dict[str, Any], float]] = [
    # label, build_model kwargs, seconds the check needs at most (file, benches, engine)
    (
        "Llama-3.1-8B shape",
        dict(arch="llama", n_layers=32, n_embd=4096, n_head=32, n_head_kv=8, head_dim=128,
             n_ff=14336, n_vocab=128256, context_length=131072),
        100.0,
    ),
    (
        "Qwen3-32B shape",
        dict(arch="qwen3", n_layers=64, n_embd=5120, n_head=64, n_head_kv=8, head_dim=128,
             n_ff=25600, n_vocab=151936, context_length=40960),
        200.0,
    ),
    (
        "Llama-3.2-1B shape",
        dict(arch="llama", n_layers=16, n_embd=2048, n_head=32, n_head_kv=8, head_dim=64,
             n_ff=8192, n_vocab=128256, context_length=131072),
        60.0,
    ),
]  # fmt: skip
# For trying the script on a CPU build here (``--shapes tiny``) before spending device time.
TINY = ("Tiny llama", dict(arch="llama", n_layers=2, n_embd=256, n_head=4, n_head_kv=2,
        head_dim=64, n_ff=512, n_vocab=32000, context_length=8192), 30.0)  # fmt: skip


def _save(out: Path, results: dict[str, Any]) -> None:
    tmp = out / "gpu-results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2, default=str))
    tmp.replace(out / "gpu-results.json")


def llama_bench(exe: Path, model: Path) -> dict[str, float]:
    """Native prefill (pp512) and decode (tg128) tokens/s, full offload, flash attention."""
    r = subprocess.run(
        [str(exe), "-m", str(model), "-ngl", "99", "-fa", "1", "-p", str(N_PROMPT),
         "-n", str(N_GEN), "-r", "3", "-o", "json"],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    rows = json.loads(r.stdout)
    pp = next(x for x in rows if x["n_prompt"] and not x["n_gen"])
    tg = next(x for x in rows if x["n_gen"] and not x["n_prompt"])
    return {"prefill": float(pp["avg_ts"]), "decode": float(tg["avg_ts"])}


PARALLEL = (1, 4, 8)
PAR_PROMPT = 32


def batched_bench(exe: Path, model: Path) -> dict[int, float]:
    """Native aggregate decode tokens/s with 1, 4 and 8 sequences (``llama-batched-bench``)."""
    r = subprocess.run(
        [str(exe), "-m", str(model), "-c", str(CTX), "-b", "2048", "-ub", "512", "-ngl", "99",
         "-fa", "on", "-npp", str(PAR_PROMPT), "-ntg", str(N_GEN),
         "-npl", ",".join(map(str, PARALLEL)), "--output-format", "jsonl"],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = {}
    for line in (r.stdout + r.stderr).splitlines():
        if line.startswith("{") and '"speed_tg"' in line:
            row = json.loads(line)
            out[int(row["pl"])] = float(row["speed_tg"])
    return out


def engine_parallel(model: Path, plan: Any) -> dict[int, float]:
    """Aggregate decode tokens/s through ``EngineClient`` with 1, 4 and 8 replies at once in
    a host with 8 parallel slots (continuous batching): generated tokens over the span from
    the first reply's first token to the last reply's last token."""
    import dataclasses
    import threading

    from launcher.engine import EngineClient, EngineParams, Sampling, Token

    params = dataclasses.replace(EngineParams.from_plan(plan), n_parallel=max(PARALLEL))
    client = EngineClient()
    out: dict[int, float] = {}
    try:
        client.load(model, params, plan=plan)
        sampling = Sampling(
            max_tokens=N_GEN, temperature=0, cache_prompt=False, logit_bias=((2, -1e9),)
        )
        for n in (1, *PARALLEL):  # the first round warms up
            spans: list[tuple[float, float, int]] = []
            lock = threading.Lock()

            def one(i: int, spans: list[tuple[float, float, int]], lock: Any) -> None:
                first = last = 0.0
                count = 0
                for ev in client.complete(f"{i} " + "ab" * (PAR_PROMPT // 2 - 2), sampling):
                    if isinstance(ev, Token):
                        last = time.perf_counter()
                        first = first or last
                        count += 1
                with lock:
                    spans.append((first, last, count))

            threads = [threading.Thread(target=one, args=(i, spans, lock)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            start = min(a for a, _, _ in spans)
            end = max(b for _, b, _ in spans)
            out[n] = sum(c - 1 for _, _, c in spans) / (end - start) if end > start else 0.0
        return out
    finally:
        client.unload()


def engine_run(model: Path, plan: Any) -> dict[str, Any]:
    """Load ``model`` with the app's own plan; prefill 512 tokens, then decode 128 (twice)."""
    from launcher.engine import EngineClient, ReplyFinished, Sampling

    client = EngineClient()
    try:
        t0 = time.perf_counter()
        loaded = client.load(model, plan)
        load_s = time.perf_counter() - t0
        # The synthetic vocabulary spells text byte by byte: ~2 characters a token here.
        long_prompt = "ab" * (N_PROMPT // 2 - 1)
        eos = ((2, -1e9),)  # random weights: keep decoding the full length
        out: dict[str, Any] = {"load_s": load_s}

        def finish(prompt: str, sampling: Sampling) -> Any:
            done = None
            for ev in client.complete(prompt, sampling):
                if isinstance(ev, ReplyFinished):
                    done = ev
            assert done is not None
            return done.metrics

        prefill = []
        for _ in range(3):
            m = finish(long_prompt, Sampling(max_tokens=1, temperature=0, cache_prompt=False))
            prefill.append(m.prefill_tokens_per_s)
        out["prompt_tokens"] = m.prompt_tokens
        out["prefill"] = sorted(prefill)[1]
        decode = []
        for _ in range(3):
            m = finish(
                "hello",
                Sampling(max_tokens=N_GEN + 1, temperature=0, cache_prompt=False, logit_bias=eos),
            )
            decode.append(m.decode_tokens_per_s)
        out["generated_tokens"] = m.generated_tokens
        out["decode"] = sorted(decode)[1]
        out["decode_llama_share"] = m.decode_llama_s / m.decode_s if m.decode_s else 0.0
        rss, gpu = client.memory()
        out["buffers"] = [[b.device, b.kind, b.bytes] for b in loaded.buffers]
        out["nvml_after_load"] = loaded.gpu_bytes
        out["nvml_after_replies"] = gpu
        out["rss"] = rss
        out["system_info"] = loaded.system_info
        return out
    finally:
        client.unload()


def check_model(
    label: str, shape: dict[str, Any], work: Path, exe: Path, batched: Path | None = None
) -> dict[str, Any]:
    from launcher.gguf import read_model
    from launcher.hardware import probe
    from launcher.planning import ModelSummary, plan
    from tests.support import gguf_builders as gb

    path = work / "model.gguf"
    t0 = time.perf_counter()
    gb.build_model(path, quant="Q4_K_M", cheap=True, name=label, **shape)
    res: dict[str, Any] = {"model": label, "file_bytes": path.stat().st_size}
    res["build_s"] = time.perf_counter() - t0
    summary = ModelSummary.from_header(read_model(path))
    p = plan(summary, probe(), CTX, flash_attn=True)
    res["plan"] = p.to_json()
    res["native"] = llama_bench(exe, path)
    res["engine"] = engine_run(path, p)
    if batched is not None and batched.exists():
        try:
            res["native_parallel"] = batched_bench(batched, path)
            res["engine_parallel"] = engine_parallel(path, p)
        except Exception as exc:  # recorded; the single-stream results stand
            res["parallel_error"] = f"{exc!r}\n{traceback.format_exc()[-1500:]}"
    path.unlink()
    return res


def _gpu_buffer(buffers: list[list[Any]], kind: str) -> int:
    return sum(b for d, k, b in buffers if k == kind and d.upper().startswith("CUDA"))


def markdown(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    lines = [
        f"Machine: {m.get('gpu', '?')} ({m.get('gpu_total_gib', 0):.0f} GiB, "
        f"{m.get('bandwidth_gbps') or '?'} GB/s in the probe's table), driver "
        f"{m.get('driver', '?')}, {m.get('cpu', '?')}. llama.cpp from the llama-cpp-python "
        f"0.3.36 sdist built with `{results.get('cmake_args', '')}`; build "
        f"{results.get('build_s', 0):.0f} s. Models: random-weight Q4_K_M files of real "
        f"shapes; context {CTX}, flash attention on, all layers on the GPU.",
        "",
        "| model | file | decode engine / llama-bench (t/s) | ratio | prefill engine / "
        "llama-bench (t/s) | ratio | decode estimated / measured |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results.get("models", []):
        e, n, p = r["engine"], r["native"], r["plan"]
        est = p["decode_tokens_per_s"]
        lines.append(
            f"| {r['model']} | {r['file_bytes'] / MiB:,.0f} MiB | {e['decode']:.0f} / "
            f"{n['decode']:.0f} | {e['decode'] / n['decode']:.2f} | {e['prefill']:.0f} / "
            f"{n['prefill']:.0f} | {e['prefill'] / n['prefill']:.2f} | {est:.0f} / "
            f"{e['decode']:.0f} = {est / e['decode']:.2f} |"
        )
    lines += [
        "",
        "| model | weights MiB est / CUDA model buffer | KV MiB est / CUDA KV | compute MiB "
        "est / CUDA compute | total est / NVML per process (MiB) |",
        "|---|---|---|---|---|",
    ]
    for r in results.get("models", []):
        e, p = r["engine"], r["plan"]
        buf = e["buffers"]
        w, kv, c = (_gpu_buffer(buf, k) for k in ("model", "kv", "compute"))
        nvml = e.get("nvml_after_load") or 0
        lines.append(
            f"| {r['model']} | {p['weights_bytes'] / MiB:,.0f} / {w / MiB:,.0f} | "
            f"{p['kv_bytes'] / MiB:,.0f} / {kv / MiB:,.0f} | {p['compute_bytes'] / MiB:,.0f} / "
            f"{c / MiB:,.0f} | {p['total_bytes'] / MiB:,.0f} / {nvml / MiB:,.0f} |"
        )
    par = [r for r in results.get("models", []) if r.get("engine_parallel")]
    if par:
        lines += [
            "",
            "Several replies at once (continuous batching, 8 slots): aggregate decode tokens/s, "
            f"{PAR_PROMPT}-token prompts, {N_GEN} tokens each; native `llama-batched-bench` "
            "with the same sequences.",
            "",
            "| model | replies | engine t/s | llama-batched-bench t/s | ratio |",
            "|---|---|---|---|---|",
        ]
        for r in par:
            for n in PARALLEL:
                e = r["engine_parallel"].get(n) or r["engine_parallel"].get(str(n)) or 0.0
                nat = r["native_parallel"].get(n) or r["native_parallel"].get(str(n)) or 0.0
                ratio = f"{e / nat:.2f}" if nat else "-"
                lines.append(f"| {r['model']} | {n} | {e:.0f} | {nat:.0f} | {ratio} |")
    tests = results.get("pytest_gpu")
    if tests:
        lines += ["", f"`pytest tests/gpu` there: {tests}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", type=Path, required=True, help="the llama-bench executable")
    ap.add_argument("--batched-bench", type=Path, default=None)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/gpu-work"))
    ap.add_argument("--budget-s", type=float, default=400.0)
    ap.add_argument("--build-s", type=float, default=0.0)
    ap.add_argument("--cmake-args", default="")
    ap.add_argument("--shapes", default="", help="comma-separated label prefixes, or 'tiny'")
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    a.out.mkdir(parents=True, exist_ok=True)
    a.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "build_s": a.build_s,
        "cmake_args": a.cmake_args,
        "models": [],
        "errors": [],
    }
    try:
        import llama_cpp

        from launcher.hardware import probe

        prof = probe().to_json()
        g0 = (prof.get("gpus") or [{}])[0]
        results["machine"] = {
            "gpu": g0.get("name"),
            "gpu_total_gib": (g0.get("memory_total") or 0) / (1 << 30),
            "bandwidth_gbps": g0.get("bandwidth_gbps"),
            "driver": g0.get("driver"),
            "cpu": f"{prof.get('cpu_model')}, {prof.get('cpu_cores')} cores",
            "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
            "backend": prof.get("backend"),
        }
        results["probe"] = prof
    except Exception as exc:  # recorded; the checks go on
        results["errors"].append(f"probe: {exc!r}")
    _save(a.out, results)
    wanted = [w.strip().lower() for w in a.shapes.split(",") if w.strip()]
    shapes = [TINY] if wanted == ["tiny"] else SHAPES
    if wanted and wanted != ["tiny"]:
        shapes = [x for x in SHAPES if any(x[0].lower().startswith(w) for w in wanted)]
    for label, shape, need_s in shapes:
        left = a.budget_s - (time.perf_counter() - t_start)
        if left < need_s:
            results["errors"].append(f"{label}: skipped, {left:.0f} s left")
            continue
        try:
            results["models"].append(check_model(label, shape, a.work, a.bench, a.batched_bench))
        except Exception as exc:  # recorded; the next model goes on
            results["errors"].append(f"{label}: {exc!r}\n{traceback.format_exc()[-2000:]}")
        _save(a.out, results)
        (a.out / "gpu-results.md").write_text(markdown(results))
    if a.budget_s - (time.perf_counter() - t_start) > 40:
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/gpu"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        results["pytest_gpu"] = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
        (a.out / "pytest-gpu.txt").write_text(r.stdout[-20000:] + r.stderr[-5000:])
    _save(a.out, results)
    (a.out / "gpu-results.md").write_text(markdown(results))
    print(markdown(results))
    print("errors:", results["errors"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
