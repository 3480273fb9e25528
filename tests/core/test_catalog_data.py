"""The bundled catalog: complete, honest about its figures, usable offline by the estimator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from launcher.catalog import (
    BUNDLED_CATALOG,
    CAPABILITIES,
    Catalog,
    CatalogError,
    refreshed_path,
)
from launcher.paths import AppPaths

GiB = 1 << 30
RAW = json.loads(BUNDLED_CATALOG.read_text(encoding="utf-8"))
REQUIRED_MODELS = {
    "qwen3-4b",
    "qwen3-8b",
    "qwen3-14b",
    "qwen3-32b",
    "qwen3-30b-a3b",
    "gemma-3-4b",
    "gemma-3-12b",
    "gemma-3-27b",
    "llama-3.1-8b",
    "llama-3.3-70b",
    "deepseek-r1-distill-llama-70b",
    "phi-4",
    "gpt-oss-20b",
    "gpt-oss-120b",
}
ARCH_FIELDS = (
    "architecture",
    "n_layers",
    "n_embd",
    "n_vocab",
    "context_length",
    "n_head",
    "n_head_kv",
    "key_length",
    "value_length",
    "n_ff",
)


@pytest.fixture
def catalog(app_home: Path) -> Catalog:
    return Catalog.load(AppPaths.default())


def test_catalog_has_the_popular_models(catalog: Catalog) -> None:
    ids = {m.id for m in catalog}
    assert ids >= REQUIRED_MODELS
    assert any(m.family == "Granite" for m in catalog)
    assert set(catalog.uses) == {"assistant", "reasoning", "coding", "private-work", "agents"}
    assert "Editorial" in catalog.quality_source  # the ranking score says where it comes from


@pytest.mark.parametrize("entry", RAW["models"], ids=lambda m: m["id"])
def test_every_entry_is_complete_and_marked(entry: dict) -> None:
    assert entry["uses"] and set(entry["uses"]) <= set(RAW["uses"])
    assert 0 < entry["quality"]["score"] <= 100
    assert entry["params_status"] in ("verified", "estimated") and entry["params_source"]
    # what the model can do, and where that comes from; an agent model must call tools
    assert isinstance(entry["capabilities"], list)
    assert set(entry["capabilities"]) <= set(CAPABILITIES), entry["capabilities"]
    assert len(set(entry["capabilities"])) == len(entry["capabilities"])
    assert entry["capabilities_source"], f"{entry['id']} capabilities have no source"
    if "agents" in entry["uses"]:
        assert "tools" in entry["capabilities"], entry["id"]
    arch = entry["summary"]
    assert arch["status"] == "verified" and "config.json" in arch["source"]
    for name in ARCH_FIELDS:
        assert arch.get(name), f"{entry['id']} lacks {name}"
    assert entry["quants"]
    for q in entry["quants"]:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", q["repo"]), q["repo"]
        assert all(f.endswith(".gguf") for f in q["files"])
        if len(q["files"]) > 1:  # split models list every shard, in order
            assert all(
                f"-{i:05d}-of-{len(q['files']):05d}" in f for i, f in enumerate(q["files"], 1)
            )
        assert q["size_status"] in ("verified", "estimated")
        assert q["size_source"], f"{entry['id']} {q['quant']} size has no source"
        if q["size_status"] == "estimated":  # an estimate says how it was computed
            assert "bits per weight" in q["size_source"] or "same tensor shapes" in q["size_source"]
        # bits per weight in a plausible band for the quant: catches a unit slip
        bpw = q["size_bytes"] * 8 / entry["params"]
        assert 3.5 < bpw < 9.5, (entry["id"], q["quant"], bpw)


def test_offline_summaries_reproduce_the_file_size(catalog: Catalog) -> None:
    for cand in catalog.candidates():
        s = cand.summary
        assert not s.exact and not cand.summary_is_exact
        assert s.n_layers == cand.model.arch["n_layers"]
        # weights in the plan add up to the file's tensor bytes (within one byte per layer)
        assert abs(s.weights_bytes - cand.quant.size_bytes) <= s.n_layers + 8 * s.n_embd
        if cand.model.is_moe:
            assert 0 < s.active_params < s.n_params / 2


def test_known_kv_sizes_from_catalog_architecture(catalog: Catalog) -> None:
    """The reference's worked KV sizes (memory-and-speed.md §4) come out of the catalog data."""
    from launcher.planning import layer_kv_bytes

    expected_32k_gib = {
        "qwen3-32b": 8.0,
        "llama-3.3-70b": 10.0,
        "qwen3-30b-a3b": 3.0,
        "gemma-3-27b": 3.11,
        "gpt-oss-120b": 1.15,
    }
    for mid, gib in expected_32k_gib.items():
        cand = catalog.candidates(quants=["Q4_K_M", "MXFP4"])
        summary = next(c.summary for c in cand if c.model.id == mid)
        assert sum(layer_kv_bytes(summary, 32768)) / GiB == pytest.approx(gib, abs=0.01), mid


def test_candidates_filter_by_use_quant_and_size(catalog: Catalog) -> None:
    coding = catalog.candidates(use="coding", quants=["q4_k_m"])
    assert coding and all("coding" in c.model.uses and c.quant.quant == "Q4_K_M" for c in coding)
    small = catalog.candidates(max_size_bytes=5 * GiB)
    assert small and all(c.quant.size_bytes <= 5 * GiB for c in small)
    with pytest.raises(CatalogError, match="choose one of"):
        catalog.candidates(use="gaming")
    assert catalog.find_file("ggml-org/gpt-oss-120b-GGUF", "gpt-oss-120b-mxfp4-00002-of-00003.gguf")


def test_a_refreshed_file_is_merged_over_the_bundle(app_home: Path) -> None:
    paths = AppPaths.default()
    path = refreshed_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "refreshed": "2026-11-25T10:00:00+00:00",
                "models": {
                    "qwen3-8b": {
                        "quants": {
                            "Q4_K_M": {
                                "files": ["Qwen3-8B-Q4_K_M.gguf"],
                                "size_bytes": 5_027_783_488,
                                "size_status": "verified",
                                "size_source": "Hugging Face Hub file size",
                            },
                            # a refresh made for files the bundle no longer lists is ignored
                            "Q8_0": {"files": ["old-name.gguf"], "size_bytes": 1},
                        }
                    },
                    "no-longer-bundled": {"quants": {}},
                },
            }
        ),
        encoding="utf-8",
    )
    cat = Catalog.load(paths)
    q4 = cat.get("qwen3-8b").quant("Q4_K_M")
    assert q4 is not None and q4.size_bytes == 5_027_783_488
    assert q4.size_source == "Hugging Face Hub file size"
    q8 = cat.get("qwen3-8b").quant("Q8_0")
    assert q8 is not None and q8.size_bytes > GiB
    assert cat.refreshed == "2026-11-25T10:00:00+00:00"


def test_a_corrupt_refresh_file_falls_back_to_the_bundle(app_home: Path) -> None:
    paths = AppPaths.default()
    path = refreshed_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{ not json", encoding="utf-8")
    assert Catalog.load(paths).get("qwen3-32b").quants


def test_offline_summary_matches_the_real_header_of_gemma(gemma_path: Path) -> None:
    """A catalog-style entry (config numbers + file size) plans like the file's own header."""
    from launcher.catalog import CatalogModel, QuantFile, summary_for
    from launcher.gguf import read_model
    from launcher.machines import resolve_machine
    from launcher.planning import ModelSummary, plan

    model = read_model(gemma_path)
    exact = ModelSummary.from_header(model)
    arch = {
        "architecture": "gemma3", "n_layers": 18, "n_embd": 640, "n_vocab": 262144,
        "context_length": 32768, "n_head": 4, "n_head_kv": 1, "key_length": 256,
        "value_length": 256, "n_ff": 2048, "sliding_window": 512, "tied_output": True,
    }  # fmt: skip
    quant = QuantFile("Q4_K_M", "unsloth/gemma-3-270m-it-GGUF", ("g.gguf",), model.tensor_bytes,
                      "verified", "test")  # fmt: skip
    entry = CatalogModel(
        "gemma-3-270m", "Gemma 3 270M", "Gemma 3", "Google", "gemma", exact.n_params,
        ("assistant",), 30, {}, "tiny", arch, (quant,),
    )  # fmt: skip
    offline = summary_for(entry, quant)
    assert abs(offline.weights_bytes - exact.weights_bytes) <= exact.n_layers
    for machine in ("dgx-spark", "laptop-16gb"):
        for ctx in (4096, 32768):
            a = plan(offline, resolve_machine(machine), ctx)
            b = plan(exact, resolve_machine(machine), ctx)
            assert a.kv_bytes == b.kv_bytes, (machine, ctx)  # KV is exact from config numbers
            assert a.verdict == b.verdict
            assert a.total_bytes == pytest.approx(b.total_bytes, rel=0.10), (machine, ctx)


#: Models people run in late 2026 (issue 19): the catalog must not stop at 2025.
LATE_2026 = {
    "qwen3.6-27b": 16,
    "qwen3.6-35b-a3b": 10,  # model id -> blocks whose KV cache grows with the context
    "qwen3-coder-next": 12,
    "nemotron-3-nano-30b-a3b": 6,
    "gemma-4-31b": 10,
    "glm-4.5-air": 46,
}


def test_the_catalog_has_late_2026_models(catalog: Catalog) -> None:
    assert {m.id for m in catalog} >= set(LATE_2026)
    assert RAW["updated"] >= "2026-12"
    for mid in LATE_2026:
        m = catalog.get(mid)
        assert m.capabilities and m.quants, mid


@pytest.mark.parametrize("mid", sorted(LATE_2026))
def test_new_architectures_plan_their_caches_by_layer_kind(catalog: Catalog, mid: str) -> None:
    """Hybrid models (Gated DeltaNet, Mamba-2) and sliding-window models grow their KV cache
    only on their full-attention blocks; the rest hold a fixed state or a fixed window."""
    from launcher.planning import layer_kv_bytes

    summary = next(c.summary for c in catalog.candidates() if c.model.id == mid)
    short, long = layer_kv_bytes(summary, 16384), layer_kv_bytes(summary, 32768)
    growing = [il for il in range(summary.n_layers) if long[il] > short[il]]
    assert len(growing) == LATE_2026[mid]
    assert all(long[il] == 2 * short[il] for il in growing)  # full attention: linear in ctx
    fixed = [long[il] for il in range(summary.n_layers) if il not in growing]
    if summary.recurrent_layers and any(summary.recurrent_layers):
        assert max(fixed) < GiB // 8  # recurrent state: small and independent of the context


def test_qwen35_headers_are_hybrid_like_qwen3next() -> None:
    """A Qwen3.5 / 3.6 GGUF header (architecture qwen35moe / qwen35) has no per-layer KV head
    list: every 4th block is full attention, the others Gated DeltaNet, as in qwen3next."""
    from launcher.planning import ModelSummary

    base = {k: v for k, v in next(m for m in RAW["models"] if m["id"] == "qwen3.6-35b-a3b")[
        "summary"].items() if k not in ("recurrent_layers", "status", "source")}  # fmt: skip
    for arch in ("qwen35moe", "qwen35", "qwen3next"):
        s = ModelSummary.from_json({**base, "architecture": arch, "layer_bytes_total": 1})
        assert [il for il in range(40) if not s.is_recurrent(il)] == list(range(3, 40, 4))
