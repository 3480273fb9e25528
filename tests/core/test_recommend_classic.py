"""Recommendations on reference machines, including the classic 32B-vs-70B question."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.catalog import Catalog
from launcher.machines import resolve_machine
from launcher.paths import AppPaths
from launcher.recommend import Recommendation, recommend, usable_floor


@pytest.fixture
def catalog(app_home: Path) -> Catalog:
    return Catalog.load(AppPaths.default())


def _by_key(recs: list[Recommendation]) -> dict[str, Recommendation]:
    return {r.candidate.key: r for r in recs}


@pytest.mark.parametrize("machine", ["unified=128GiB", "dgx-spark", "mac-studio-128gb"])
def test_128gb_unified_runs_both_32b_and_70b_on_the_gpu_at_32k(
    machine: str, catalog: Catalog
) -> None:
    recs = _by_key(recommend(resolve_machine(machine), context=32768, catalog=catalog))
    for key in ("qwen3-32b:Q4_K_M", "llama-3.3-70b:Q4_K_M"):
        rec = recs[key]
        assert rec.verdict == "full_gpu", (machine, key, rec.reason)
        assert rec.plan.context == 32768
        assert rec.plan.gpu_layers == rec.plan.total_layers
        assert rec.plan.max_context_full_gpu >= 32768
        assert rec.speed.decode_tokens_per_s > 0
    # the 70B reads ~2x the bytes per token of the 32B, so it is slower
    assert (
        recs["llama-3.3-70b:Q4_K_M"].speed.decode_tokens_per_s
        < recs["qwen3-32b:Q4_K_M"].speed.decode_tokens_per_s
    )


def test_24gb_gpu_needs_partial_offload_for_70b(catalog: Catalog) -> None:
    for machine in ("rtx-4090-64gb", "vram=24GiB,ram=64GiB"):
        recs = _by_key(recommend(resolve_machine(machine), context=32768, catalog=catalog))
        big = recs["llama-3.3-70b:Q4_K_M"]
        assert big.verdict == "partial", big.reason
        assert 0 < big.plan.gpu_layers < big.plan.total_layers
        assert big.plan.max_context_full_gpu == 0
        assert "partial offload" in big.reason
        small = recs["qwen3-8b:Q4_K_M"]
        assert small.verdict == "full_gpu"
        # memory split: the GPU part stays inside the 24 GiB card
        gpu = next(d for name, d in big.plan.per_device.items() if name != "CPU")
        assert gpu.total <= 24 * (1 << 30)


def test_ranking_puts_usable_speed_first_then_quality(catalog: Catalog) -> None:
    recs = recommend(resolve_machine("dgx-spark"), context=8192, catalog=catalog)
    assert [r.rank for r in recs] == list(range(1, len(recs) + 1))
    flags = [r.usable for r in recs]
    assert flags == sorted(flags, reverse=True)  # every usable one before any slow one
    usable = [r for r in recs if r.usable]
    assert [r.quality for r in usable] == sorted((r.quality for r in usable), reverse=True)
    assert all(r.speed.decode_tokens_per_s >= usable_floor(None) for r in usable)
    # a dense 70B at Q8_0 fits in 128 GB but is too slow for chat on 273 GB/s
    slow = _by_key(recs)["llama-3.3-70b:Q8_0"]
    assert slow.verdict == "full_gpu" and not slow.usable
    assert "below the 10 tok/s usable floor" in slow.reason


def test_small_laptop_gets_small_models_and_nothing_that_does_not_fit(catalog: Catalog) -> None:
    recs = recommend(
        resolve_machine("laptop-16gb"), use="assistant", catalog=catalog, one_per_model=True
    )
    assert recs
    assert all(r.verdict == "cpu" for r in recs)
    assert "llama-3.3-70b" not in {r.candidate.model.id for r in recs}
    assert len({r.candidate.model.id for r in recs}) == len(recs)
    everything = recommend(
        resolve_machine("laptop-16gb"), use="assistant", catalog=catalog, include_no_fit=True
    )
    assert everything[-1].verdict == "no_fit"


def test_use_filters_and_kv_type(catalog: Catalog) -> None:
    machine = resolve_machine("rtx-5090-64gb")
    coding = recommend(machine, use="coding", context=16384, catalog=catalog)
    assert coding and all("coding" in r.candidate.model.uses for r in coding)
    f16 = _by_key(recommend(machine, context=32768, catalog=catalog))
    q8 = _by_key(recommend(machine, context=32768, catalog=catalog, kv_type="q8_0"))
    key = "qwen3-32b:Q4_K_M"
    assert q8[key].plan.kv_bytes < f16[key].plan.kv_bytes
    assert q8[key].to_json()["kv_type"] == "q8_0"


def test_full_gpu_quant_beats_a_slightly_better_partial_one(catalog: Catalog) -> None:
    """On a 24 GB card the 32B's Q4_K_M (all on the GPU) ranks above its Q5_K_M (split)."""
    recs = recommend(resolve_machine("rtx-4090-64gb"), use="coding", catalog=catalog)
    by_key = _by_key(recs)
    q4, q5 = by_key["qwen3-32b:Q4_K_M"], by_key["qwen3-32b:Q5_K_M"]
    assert (q4.verdict, q5.verdict) == ("full_gpu", "partial")
    assert q4.rank < q5.rank
    best = recommend(
        resolve_machine("rtx-4090-64gb"), use="coding", catalog=catalog, one_per_model=True
    )
    assert _by_key(best).get("qwen3-32b:Q4_K_M") is not None
