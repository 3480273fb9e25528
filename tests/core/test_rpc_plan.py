"""llama.cpp RPC without RPC servers: addresses, plans spanning recorded remote memory, the
doctor check, ``rpc check`` and a load on a build without RPC, as a user meets them."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from launcher.cli import main
from launcher.engine import EngineClient, EngineParams
from launcher.engine.logparse import parse_buffers
from launcher.errors import ModelLoadError, RpcError
from launcher.hardware.doctor import check_rpc
from launcher.machines import resolve_machine
from launcher.planning import GiB, ModelSummary, plan
from launcher.rpc import (
    RpcDevice,
    RpcEndpoint,
    check_reachable,
    machine_with_rpc,
    parse_endpoints,
    plan_with_rpc,
    resolve_rpc,
    rpc_library,
)
from tests.support.gguf_builders import cached_model

# What `spark-launcher rpc check --json` printed for a second DGX Spark running
# `rpc-server` with CUDA (free/total of its GB10 as ggml's RPC client reports them).
SPARK2 = RpcDevice(RpcEndpoint("spark2.local", 50052), 0, "RPC0", 119 * GiB, 121 * GiB, "spark2")


def big_model(total_gib: float = 140, n_layers: int = 94) -> ModelSummary:
    """A ~235B-class dense-shaped model (Q4): too big for one 128 GB machine."""
    return ModelSummary.from_json(
        {
            "architecture": "llama",
            "n_layers": n_layers,
            "n_embd": 4096,
            "n_vocab": 151936,
            "context_length": 40960,
            "n_head": 64,
            "n_head_kv": 4,
            "key_length": 128,
            "layer_bytes_total": int(total_gib * GiB),
            "non_layer_bytes": int(0.6 * GiB),
            "output_bytes": int(0.6 * GiB),
            "name": "Big 235B",
        }
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("192.168.1.20:50052", ["192.168.1.20:50052"]),
        ("a:1,b:2", ["a:1", "b:2"]),
        (" spark2 , spark3:50053 ", ["spark2:50052", "spark3:50053"]),  # default port
        (["a:1", "b:2,c:3"], ["a:1", "b:2", "c:3"]),
    ],
)
def test_rpc_server_lists_are_read_like_llama_server_rpc(
    spec: str | list[str], expected: list[str]
) -> None:
    assert [str(e) for e in parse_endpoints(spec)] == expected


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "No RPC server"),
        ("host:0", "port must be"),
        ("host:http", "port must be"),
        (":50052", "no host"),
        ("[::1]:50052", "IPv6"),
        ("a:1,a:1", "twice"),
        (",".join(f"h{i}:1" for i in range(17)), "at most 16"),
    ],
)
def test_bad_rpc_server_lists_say_what_to_write(spec: str, says: str) -> None:
    with pytest.raises(RpcError, match=says):
        parse_endpoints(spec)


def test_a_server_that_does_not_answer_says_how_to_start_it() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        check_reachable(RpcEndpoint("127.0.0.1", port))  # something listens: fine
    with pytest.raises(
        RpcError, match=rf"does not answer.*rpc-server --host 0.0.0.0 --port {port}"
    ):
        check_reachable(RpcEndpoint("127.0.0.1", port))


def test_a_model_too_big_for_one_spark_fits_fully_across_two_over_rpc() -> None:
    spark = resolve_machine("dgx-spark")
    s = big_model()
    assert plan(s, spark, 8192).verdict == "no_fit"
    p = plan_with_rpc(s, spark, [SPARK2], 8192)
    assert p.verdict == "full_gpu"
    assert set(p.per_device) == {"CPU", "RPC0", "CUDA0"}
    for name in ("RPC0", "CUDA0"):
        d = p.per_device[name]
        assert d.budget is not None and 0 < d.total <= d.budget
        # each Spark holds a large share of the blocks, not a token few
        assert d.weights > 0.35 * s.weights_bytes
    # what the engine receives: both machines, RPC first (llama.cpp's device order)
    params = EngineParams.from_plan(p)
    assert params.rpc_servers == "spark2.local:50052"
    assert len(params.tensor_split) == 2 and sum(params.tensor_split) == pytest.approx(1, 1e-3)
    assert params.n_gpu_layers == s.n_layers + 1
    assert p.to_json()["rpc_servers"] == ["spark2.local:50052"]
    assert p.speed.decode_tokens_per_s > 0 and "RPC" in p.speed.explanation


def test_layers_follow_each_devices_free_memory_and_spill_to_the_cpu() -> None:
    laptop = resolve_machine("laptop-16gb")  # CPU-only llama.cpp: all offload is remote
    devices = [
        RpcDevice(RpcEndpoint("127.0.0.1", 50052), 0, "RPC0", 7 * GiB, 8 * GiB),
        RpcDevice(RpcEndpoint("127.0.0.1", 50053), 0, "RPC1", 3 * GiB, 4 * GiB),
    ]
    s = big_model(total_gib=12, n_layers=48)
    p = plan_with_rpc(s, laptop, devices, 4096)
    assert p.verdict == "partial" and 0 < p.gpu_layers < s.n_layers
    r0, r1 = p.per_device["RPC0"], p.per_device["RPC1"]
    assert r0.total <= 6 * GiB and r1.total <= 2 * GiB
    assert r0.weights > 2 * r1.weights  # 6 GiB budget vs 2 GiB budget
    assert p.per_device["CPU"].weights > 0
    assert p.tensor_split == pytest.approx((0.75, 0.25))
    # forcing more layers than the remote memory holds is reported, not attempted
    assert plan_with_rpc(s, laptop, devices, 4096, gpu_layers=s.n_layers + 1).verdict == "no_fit"


def test_remote_devices_appear_as_memory_pools_of_the_machine() -> None:
    spark = resolve_machine("dgx-spark")
    m = machine_with_rpc(spark, [SPARK2])
    assert m.pools[: len(spark.pools)] == spark.pools
    extra = m.pools[-1]
    assert extra.device == "RPC0" and extra.available == 119 * GiB
    assert "spark2.local:50052" in extra.name
    assert plan(big_model(), m, 8192).per_device.keys() == {"CPU", "CUDA0"}  # local plan unchanged


def test_estimate_plans_over_saved_rpc_servers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "sparks.json"
    saved.write_text(
        json.dumps(
            {
                "ok": True,
                "servers": [{"endpoint": "spark2.local:50052", "devices": [SPARK2.to_json()]}],
            }
        )
    )
    assert resolve_rpc(str(saved)) == (SPARK2,)
    model = cached_model(n_layers=4, n_embd=64)
    assert (
        main(["estimate", str(model), "--machine", "laptop-16gb", "--rpc", str(saved), "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "full_gpu" and "RPC0" in out["per_device"]
    assert out["llama_params"]["rpc_servers"] == "spark2.local:50052"
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["estimate", str(model), "--rpc", str(bad)]) == 1
    assert "rpc check" in capsys.readouterr().err


def test_doctor_says_how_to_build_with_rpc(tmp_path: Path) -> None:
    missing = check_rpc(None)
    assert missing.id == "rpc" and missing.status == "skip"
    assert "without RPC" in missing.detail and "LLAMA_CMAKE_ARGS=-DGGML_RPC=on" in (
        missing.fix or ""
    )
    (tmp_path / "libggml-rpc.so").write_bytes(b"")
    assert rpc_library(tmp_path) == tmp_path / "libggml-rpc.so"
    assert check_rpc(rpc_library(tmp_path)).status == "ok"


def test_rpc_check_reports_a_server_that_is_down(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["rpc", "check", f"127.0.0.1:{port}", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["servers"][0]["reachable"] is False
    assert "does not answer" in out["servers"][0]["error"]
    assert main(["rpc", "check", "nohost:"]) == 1
    assert "port must be" in capsys.readouterr().out


def test_loading_over_an_unusable_rpc_server_says_what_to_do() -> None:
    """Without an RPC build: the rebuild command; with one: the server is not answering
    (never ggml's process abort on a failed connect)."""
    model = cached_model(n_layers=2, n_embd=64)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    says = "GGML_RPC=on" if rpc_library() is None else f"127.0.0.1:{port} does not answer"
    client = EngineClient()
    try:
        params = EngineParams(n_ctx=256, n_gpu_layers=99, rpc_servers=f"127.0.0.1:{port}")
        with pytest.raises(ModelLoadError, match=says):
            client.load(model, params)
        assert client.last_crash is None  # a clean refusal, not a crashed host
    finally:
        client.unload()


def test_llama_cpp_buffers_on_rpc_servers_are_reported_per_server() -> None:
    lines = [
        "load_tensors: RPC0[10.0.0.2:50052] model buffer size = 70123.50 MiB",
        "load_tensors: RPC0[10.0.0.3:50052] model buffer size =   512.00 MiB",
        "load_tensors:        CUDA0 model buffer size = 69000.00 MiB",
        "llama_context: RPC0[10.0.0.2:50052] compute buffer size =    74.00 MiB",
    ]
    got = {(b.device, b.kind): b.bytes for b in parse_buffers(lines)}
    assert got[("RPC0[10.0.0.2:50052]", "model")] == round(70123.5 * 2**20)
    assert got[("RPC0[10.0.0.3:50052]", "model")] == 512 * 2**20
    assert ("CUDA0", "model") in got and ("RPC0[10.0.0.2:50052]", "compute") in got
