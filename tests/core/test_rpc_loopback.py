"""llama.cpp RPC for real, on loopback: two ``rpc-server`` processes built from the vendored
llama.cpp source, a generated model split across them, planned, loaded and generating.

Needs llama-cpp-python built with ``-DGGML_RPC=on`` and ``rpc-server`` built by
``tools/build_llama_tools.sh rpc-server`` (or ``SPARK_BUILD_LLAMA_TOOLS=1`` to build it here);
skipped otherwise, with the reason. How to run it: README, "Two DGX Sparks over RPC".
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.common import llama_tools_bin
from launcher.cli import main
from launcher.rpc import rpc_library
from tests.support.gguf_builders import cached_model

ROOT = Path(__file__).resolve().parents[2]
RPC_SERVER = llama_tools_bin() / "rpc-server"
MiB = 1 << 20

pytestmark = [
    pytest.mark.rpc,
    pytest.mark.skipif(
        rpc_library() is None,
        reason="the installed llama.cpp is built without RPC; run this test in an RPC build "
        "(README: 'Two DGX Sparks over RPC')",
    ),
]


@pytest.fixture(scope="module")
def rpc_server_exe() -> Path:
    if not RPC_SERVER.exists():
        if os.environ.get("SPARK_BUILD_LLAMA_TOOLS") != "1":
            pytest.skip(
                "rpc-server is not built: run `tools/build_llama_tools.sh rpc-server` "
                "(or set SPARK_BUILD_LLAMA_TOOLS=1)"
            )
        subprocess.run(
            ["bash", str(ROOT / "tools" / "build_llama_tools.sh"), "rpc-server"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return RPC_SERVER


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"rpc-server exited: {log.read_text(errors='replace')[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"rpc-server did not listen on {port}")


@pytest.fixture(scope="module")
def servers(rpc_server_exe: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Two rpc-servers on 127.0.0.1 (one thread each: the machine is shared); "a:p,b:q"."""
    logs = tmp_path_factory.mktemp("rpc")
    procs: list[subprocess.Popen[bytes]] = []
    ports = []
    try:
        for i in range(2):
            port = _free_port()
            log = logs / f"rpc-{i}.log"
            with open(log, "wb") as fh:
                procs.append(
                    subprocess.Popen(
                        [str(rpc_server_exe), "-H", "127.0.0.1", "-p", str(port), "-t", "1"],
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                    )
                )
            _wait_listening(port, procs[-1], log)
            ports.append(port)
        yield ",".join(f"127.0.0.1:{p}" for p in ports)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def model() -> Path:
    # big enough that each block's bytes dwarf buffer alignment, small enough to load quickly
    return cached_model(n_layers=8, n_embd=256, n_ff=512, n_vocab=512, quant="F16")


def test_rpc_check_lists_both_servers_and_their_memory(
    servers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rpc", "check", *servers.split(","), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True
    devices = [d for s in out["servers"] for d in s["devices"]]
    assert [d["name"] for d in devices] == ["RPC0", "RPC1"]
    assert all(d["memory_total"] > 0 and d["memory_free"] > 0 for d in devices)


def test_a_model_split_across_two_rpc_servers_is_planned_loaded_and_generates(
    servers: str, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(model), "--ctx", "256", "--rpc", servers]
    assert main(["estimate", *args, "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["verdict"] == "full_gpu"
    assert {"RPC0", "RPC1"} <= set(planned["per_device"])
    assert planned["llama_params"]["rpc_servers"] == servers

    assert main(["bench", *args, "--tokens", "8", "--threads", "1", "--json"]) == 0
    ran = json.loads(capsys.readouterr().out)
    assert ran["generated_tokens"] == 8 and ran["params"]["rpc_servers"] == servers
    # llama.cpp put the model's blocks on both servers, as the plan said (its buffers are
    # named "RPC<device on that server>[host:port]"; the devices RPC0, RPC1 in server order)
    names = {f"RPC0[{ep}]": f"RPC{i}" for i, ep in enumerate(servers.split(","))}
    model_bytes = {
        names[b["device"]]: b["bytes"]
        for b in ran["buffers"]
        if b["kind"] == "model" and b["device"] in names
    }
    for dev in ("RPC0", "RPC1"):
        want = planned["per_device"][dev]["weights"]
        assert model_bytes.get(dev, 0) == pytest.approx(want, rel=0.1, abs=MiB)
