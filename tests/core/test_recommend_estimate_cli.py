"""The ``estimate``, ``recommend`` and ``catalog`` commands, on header-only and remote models.

Header-only files (metadata and tensor table, no data) shaped like real 70B and 32B models
come from ``tests.support.gguf_builders``; the remote case is served by the loopback hub as
a full-size file whose data is zeros, and the test counts the bytes the hub sent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.cli import main
from launcher.gguf import read_header
from tests.support.gguf_builders import LLAMA33_70B, QWEN3_32B, _nbytes, _tensor_plan, build_model
from tests.support.loopback_hub import LoopbackHub, Synthetic

GiB = 1 << 30
MiB = 1 << 20


@pytest.fixture(scope="module")
def llama70_header(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A header-only Llama-3.3-70B-shaped Q4_K_M file (~3 MB on disk, ~42 GB declared)."""
    return build_model(
        tmp_path_factory.mktemp("h70") / "llama70.gguf", header_only=True, **LLAMA33_70B
    )


@pytest.fixture(scope="module")
def qwen32_header(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(
        tmp_path_factory.mktemp("h32") / "qwen32.gguf", header_only=True, **QWEN3_32B
    )


def _expected_weights(preset: dict) -> int:
    """Tensor bytes computed from the builder's own tensor list, not by reading the file."""
    from tests.support.gguf_builders import QUANT_MIXES

    n_head_kv = preset["n_head_kv"]
    plan = _tensor_plan(
        preset["arch"], preset["n_layers"], preset["n_embd"], preset["n_head"], n_head_kv,
        preset["head_dim"], preset["n_ff"], preset["n_vocab"], 0, preset["n_ff"], False,
        QUANT_MIXES["Q4_K_M"],
    )  # fmt: skip
    return sum(_nbytes(shape, qtype) for _, shape, qtype in plan)


def _run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_estimate_header_only_file_gives_exact_weights(
    llama70_header: Path, capsys: pytest.CaptureFixture[str], app_home: Path
) -> None:
    assert llama70_header.stat().st_size < 8 * MiB  # really only a header
    out = _run_json(
        capsys, "estimate", str(llama70_header), "--ctx", "32768", "--machine", "dgx-spark"
    )
    for key in (
        "weights_bytes", "kv_bytes", "compute_bytes", "total_bytes", "verdict", "gpu_layers",
        "total_layers", "max_context_full_gpu", "decode_tokens_per_s", "basis",
    ):  # fmt: skip
        assert key in out, key
    assert out["weights_bytes"] == _expected_weights(LLAMA33_70B)
    # 80 layers x 8 KV heads x 128 x (K + V) x f16 x 32768 cells = exactly 10 GiB
    assert out["kv_bytes"] == 10 * GiB
    assert out["verdict"] == "full_gpu" and out["gpu_layers"] == out["total_layers"] == 80
    assert out["total_bytes"] == out["weights_bytes"] + out["kv_bytes"] + out["compute_bytes"]
    assert out["model"]["summary_exact"] is True
    assert out["basis"] in ("estimated", "calibrated", "measured")


def test_estimate_on_a_24gb_gpu_is_partial_and_q8_kv_shrinks_the_cache(
    llama70_header: Path, capsys: pytest.CaptureFixture[str], app_home: Path
) -> None:
    args = ["estimate", str(llama70_header), "--ctx", "32768", "--machine", "vram=24GiB,ram=64GiB"]
    f16 = _run_json(capsys, *args)
    assert f16["verdict"] == "partial"
    assert 0 < f16["gpu_layers"] < 80
    assert f16["max_context_full_gpu"] == 0
    q8 = _run_json(capsys, *args, "--kv-type", "q8_0")
    assert q8["kv_bytes"] == pytest.approx(f16["kv_bytes"] * 34 / 64, rel=1e-6)
    assert q8["gpu_layers"] >= f16["gpu_layers"]  # a smaller cache leaves room for layers
    no_fa = _run_json(capsys, *args, "--kv-type", "q8_0", "--no-flash-attn")
    assert no_fa["type_v"] == "f16" and no_fa["kv_bytes"] > q8["kv_bytes"]


def test_estimate_prints_a_readable_table(
    qwen32_header: Path, capsys: pytest.CaptureFixture[str], app_home: Path
) -> None:
    assert (
        main(["estimate", str(qwen32_header), "--ctx", "8192", "--machine", "rtx-4090-64gb"]) == 0
    )
    text = capsys.readouterr().out
    assert "Weights" in text and "KV cache" in text and "GiB" in text
    assert "Verdict: fits fully on the GPU" in text
    assert "tok/s" in text


def test_estimate_hf_reads_only_the_header_from_the_hub(
    hub: LoopbackHub,
    llama70_header: Path,
    capsys: pytest.CaptureFixture[str],
    app_home: Path,
) -> None:
    header = read_header(llama70_header)
    head = llama70_header.read_bytes()[: header.data_offset]
    size = header.declared_size
    hub.add_repo(
        "someone/Llama-70B-GGUF",
        {"Llama-70B-Q4_K_M.gguf": Synthetic(size, head=head, fill="zeros", sha256="0" * 64)},
    )
    remote = _run_json(
        capsys,
        "estimate",
        "hf://someone/Llama-70B-GGUF/Llama-70B-Q4_K_M.gguf",
        "--ctx",
        "32768",
        "--machine",
        "dgx-spark",
    )
    served = sum(hub.bytes_served.values())
    assert size > 40 * GiB
    assert served < 16 * MiB, f"{served} bytes served for a header of {len(head)}"
    assert remote["header_bytes_read"] == served
    # HF_ENDPOINT (set by the hub fixture) was honoured: the requests reached the loopback hub
    assert any(r.path.endswith("/resolve/main/Llama-70B-Q4_K_M.gguf") for r in hub.requests)
    local = _run_json(
        capsys, "estimate", str(llama70_header), "--ctx", "32768", "--machine", "dgx-spark"
    )
    for key in ("weights_bytes", "kv_bytes", "compute_bytes", "verdict", "gpu_layers"):
        assert remote[key] == local[key], key


def test_estimate_bad_inputs_fail_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], app_home: Path
) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    assert main(["estimate", str(junk)]) == 1
    assert "GGUF" in capsys.readouterr().err
    assert main(["estimate", "hf://just-a-repo"]) == 1
    assert "hf://owner/repo/file.gguf" in capsys.readouterr().err
    assert main(["estimate", "qwen3-32b:Q4_K_M", "--machine", "a-toaster"]) == 1
    assert "reference machine" in capsys.readouterr().err


def test_estimate_catalog_entry_offline(capsys: pytest.CaptureFixture[str], app_home: Path) -> None:
    out = _run_json(
        capsys, "estimate", "qwen3-32b:Q4_K_M", "--ctx", "32768", "--machine", "unified=128GiB"
    )
    assert out["verdict"] == "full_gpu"
    assert out["kv_bytes"] == 8 * GiB
    assert out["model"]["kind"] == "catalog" and out["model"]["summary_exact"] is False


def test_recommend_command(capsys: pytest.CaptureFixture[str], app_home: Path) -> None:
    out = _run_json(
        capsys, "recommend", "--machine", "dgx-spark", "--ctx", "32768", "--use", "reasoning"
    )
    recs = out["recommendations"]
    assert recs and recs[0]["rank"] == 1 and recs[0]["usable"]
    assert len({r["model"] for r in recs}) == len(recs)  # one quant per model by default
    assert out["machine"] == "dgx-spark" and out["use"] == "reasoning"
    assert main(["recommend", "--machine", "laptop-16gb"]) == 0
    text = capsys.readouterr().out
    assert "tok/s" in text and "Qwen3" in text


def test_catalog_command_lists_and_marks_sizes(
    capsys: pytest.CaptureFixture[str], app_home: Path
) -> None:
    out = _run_json(capsys, "catalog", "list", "--use", "coding")
    assert out["models"] and all(
        m["size_status"] in ("verified", "estimated") for m in out["models"]
    )
    assert main(["catalog"]) == 0
    assert "Llama 3.3 70B" in capsys.readouterr().out


def test_estimate_exact_dry_runs_a_remote_header(
    hub: LoopbackHub,
    qwen32_header: Path,
    capsys: pytest.CaptureFixture[str],
    app_home: Path,
) -> None:
    """--exact on hf://: the header is saved as a sparse file and llama.cpp sizes the plan."""
    pytest.importorskip("llama_cpp")
    header = read_header(qwen32_header)
    head = qwen32_header.read_bytes()[: header.data_offset]
    hub.add_repo(
        "someone/Qwen-32B-GGUF",
        {
            "Qwen-32B-Q4_K_M.gguf": Synthetic(
                header.declared_size, head=head, fill="zeros", sha256="0" * 64
            )
        },
    )
    out = _run_json(
        capsys, "estimate", "hf://someone/Qwen-32B-GGUF/Qwen-32B-Q4_K_M.gguf", "--ctx", "32768",
        "--exact",
    )  # fmt: skip
    assert out["source"] == "dry_run"
    assert out["kv_bytes"] == 8 * GiB  # llama.cpp's own KV size: 64 layers x 8 x 128 x 2 x f16
    assert out["compute_bytes"] > 0
    assert sum(hub.bytes_served.values()) < 16 * MiB  # the header only, once


def test_estimate_hf_uses_the_users_token_for_gated_repos(
    hub: LoopbackHub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    app_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support.gguf_builders import TINY_LLAMA

    tiny = build_model(tmp_path / "tiny.gguf", header_only=True, quant="Q8_0", **TINY_LLAMA)
    h = read_header(tiny)
    hub.add_repo(
        "corp/Gated-GGUF",
        {"gated-Q8_0.gguf": Synthetic(h.declared_size, head=tiny.read_bytes()[: h.data_offset],
                                      fill="zeros", sha256="0" * 64)},
        gated=True,
    )  # fmt: skip
    uri = "hf://corp/Gated-GGUF/gated-Q8_0.gguf"
    assert main(["estimate", uri, "--machine", "dgx-spark"]) == 1
    assert "token" in capsys.readouterr().err  # says what to do
    monkeypatch.setenv("HF_TOKEN", hub.token)
    out = _run_json(capsys, "estimate", uri, "--machine", "dgx-spark")
    assert out["total_layers"] == TINY_LLAMA["n_layers"]
    assert any(r.authorized for r in hub.requests if "/resolve/" in r.path)


def test_a_hub_repository_is_planned_from_its_headers_usual_quants_first(
    hub: LoopbackHub, llama70_header: Path, app_home: Path
) -> None:
    """Discover's "expand a Hub repo": each choice planned from its header read by Range (a
    70B shape on a DGX Spark runs fully on the GPU at Q4_K_M), the usual quant listed first."""
    from launcher.machines import load_reference
    from launcher.recommend import MAX_PLANNED_FILES, plan_repo

    header = read_header(llama70_header)
    head = llama70_header.read_bytes()[: header.data_offset]
    files = {
        f"Llama-70B-{q}.gguf": Synthetic(header.declared_size, head=head, fill="zeros")
        for q in ("IQ1_S", "Q4_K_M")
    }
    hub.add_repo("someone/Llama-70B-GGUF", files)
    opts = plan_repo("someone/Llama-70B-GGUF", load_reference("dgx-spark"), 32768)
    assert [o.quant for o in opts] == ["Q4_K_M", "IQ1_S"]  # the usual quant first
    q4 = opts[0]
    assert q4.plan is not None and q4.plan.verdict == "full_gpu"
    assert (
        q4.plan.context == 32768 and q4.reason == "Planned from the file's header at 32768 tokens."
    )
    assert q4.size_bytes == header.declared_size and q4.files == ("Llama-70B-Q4_K_M.gguf",)
    assert sum(hub.bytes_served.values()) < 2 * 16 * MiB  # headers only, no tensor data
    assert MAX_PLANNED_FILES >= 2 and opts[1].plan is not None  # both among the planned few
