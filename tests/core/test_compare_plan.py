"""Residency plans a user relies on before loading anything: together, one after another, or
not at all, on reference machines, for catalog ids and for local GGUF headers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.cli import main
from launcher.compare import CompareRequest, Footprint, plan_residency
from launcher.compare_models import prepare
from launcher.compare_results import CompareError
from launcher.machines import resolve_machine
from tests.support.gguf_builders import LLAMA33_70B, QWEN3_32B, build_model

PAIR = ("qwen3-32b:Q4_K_M", "llama-3.3-70b:Q4_K_M")
GB = 1e9


def test_32b_and_70b_stay_loaded_together_on_128gb_unified(app_home: Path) -> None:
    prepared = prepare(CompareRequest(PAIR, ctx=32768, machine="dgx-spark"))
    plan = prepared.residency
    assert plan.mode == "resident" and not plan.forced
    # "both fit: 19.8 + 42.5 GB of weights + 19.3 GB KV at 32k ... = 82.3 GB of 131 GB"
    assert plan.reason.startswith("both fit: 19.8 + 42.5 GB of weights + ")
    assert "KV at 32k" in plan.reason and "of 131 GB" in plan.reason
    assert 75 * GB < plan.needed_bytes < 90 * GB
    assert all(f.est_decode_tps and f.est_decode_tps > 0 for f in plan.footprints)


def test_32b_and_70b_take_turns_on_rtx_4090_with_64gb(app_home: Path) -> None:
    plan = prepare(CompareRequest(PAIR, ctx=32768, machine="rtx-4090-64gb")).residency
    assert plan.mode == "sequential"
    assert plan.reason.startswith("one after another: together they need")
    assert "RTX 4090" in plan.reason and "each fits alone" in plan.reason


def test_user_can_force_either_way_with_a_warning(app_home: Path) -> None:
    forced = prepare(
        CompareRequest(PAIR, ctx=32768, machine="rtx-4090-64gb", force="resident")
    ).residency
    assert forced.mode == "resident" and forced.recommended == "sequential" and forced.forced
    assert forced.warning and "out-of-memory" in forced.warning
    seq = prepare(CompareRequest(PAIR, ctx=32768, machine="dgx-spark", force="sequential"))
    assert seq.residency.mode == "sequential" and seq.residency.warning


def test_a_model_that_does_not_fit_even_alone_is_named(app_home: Path) -> None:
    plan = prepare(CompareRequest(PAIR, ctx=32768, machine="unified=40GiB")).residency
    assert plan.mode == "impossible"
    assert plan.reason.startswith("llama-3.3-70b:Q4_K_M does not fit even alone: it needs")
    assert "smaller quantization or a shorter context" in plan.reason
    # forcing cannot make an impossible plan possible
    forced = prepare(CompareRequest(PAIR, ctx=32768, machine="unified=40GiB", force="resident"))
    assert forced.residency.mode == "impossible"
    none_fit = prepare(CompareRequest(PAIR, ctx=32768, machine="laptop-16gb")).residency
    assert none_fit.reason.startswith("neither model fits")


def test_local_gguf_headers_plan_like_the_catalog(tmp_path: Path, app_home: Path) -> None:
    a = build_model(tmp_path / "Qwen3-32B-Q4_K_M.gguf", header_only=True, **QWEN3_32B)
    b = build_model(tmp_path / "Llama-3.3-70B-Q4_K_M.gguf", header_only=True, **LLAMA33_70B)
    prepared = prepare(CompareRequest((str(a), str(b)), ctx=32768, machine="dgx-spark"))
    assert [m.label for m in prepared.models] == ["Qwen3-32B-Q4_K_M", "Llama-3.3-70B-Q4_K_M"]
    assert prepared.residency.mode == "resident"
    assert all(m.path is not None for m in prepared.models)


def test_headroom_and_per_device_rules() -> None:
    machine = resolve_machine("vram=24GiB,ram=64GiB")
    small = Footprint("a", 8 * 10**9, 10**9, 10**8, 9 * 10**9 + 10**8, {"CUDA0": 9 * 10**9})
    assert plan_residency([small, small], machine).mode == "resident"
    big = Footprint("b", 14 * 10**9, 10**9, 0, 15 * 10**9, {"CUDA0": 15 * 10**9})
    plan = plan_residency([small, big], machine)
    assert plan.mode == "sequential" and "on " in plan.reason
    with pytest.raises(CompareError, match="at least two"):
        plan_residency([small], machine)


def test_cli_plan_only_for_reference_machine_and_catalog_ids(
    app_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["compare", *PAIR, "--machine", "dgx-spark", "--ctx", "32768", "--plan-only"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Residency: resident — both fit: 19.8 + 42.5 GB of weights" in out
    assert "llama-3.3-70b:Q4_K_M: 42.5 GB weights" in out
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["residency"]["mode"] == "resident" and len(data["models"]) == 2
    assert main(["compare", *PAIR, "--machine", "unified=40GiB", "--ctx", "32768",
                 "--plan-only"]) == 1  # fmt: skip
    assert "does not fit even alone" in capsys.readouterr().out


def test_cli_says_what_to_do_for_unknown_models(
    app_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", "no-such-model", "qwen3-32b", "--plan-only"]) == 1
    assert "catalog list" in capsys.readouterr().err
    assert main(["compare", "/nope/a.gguf", "qwen3-32b", "--plan-only"]) == 1
    assert "no model file" in capsys.readouterr().err
