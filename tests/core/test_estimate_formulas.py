"""KV and state formulas for the layouts the synthetic builders do not cover: gpt-oss's
sliding-window layers, a hybrid Mamba/attention model (granitehybrid), and MLA (DeepSeek).

Figures are the reference's (memory-and-speed.md §4) from llama.cpp's cache code.
"""

from __future__ import annotations

from typing import Any

from launcher.planning import ModelSummary, layer_kv_bytes

MiB = 1 << 20


def _summary(**kw: Any) -> ModelSummary:
    base: dict[str, Any] = dict(
        n_embd=2880, n_vocab=201088, context_length=131072, key_length=64, value_length=64,
        layer_bytes_total=10 << 30, non_layer_bytes=1 << 30,
    )  # fmt: skip
    return ModelSummary.from_json({**base, **kw})


def test_gpt_oss_even_layers_keep_a_small_sliding_window_cache() -> None:
    s = _summary(architecture="gpt-oss", n_layers=24, n_head=64, n_head_kv=8, sliding_window=128)
    assert s.swa_layers == [il % 2 == 0 for il in range(24)]
    per_token = 2 * 64 * 8 * 2  # K and V, 8 heads of 64, f16
    kv = layer_kv_bytes(s, 32768)
    full = 12 * per_token * 32768
    swa = 12 * per_token * 768  # window 128 + ubatch 512, padded to 256
    assert sum(kv) == full + swa
    assert swa == 18 * MiB  # the reference's "SWA fixed 18 MiB" for gpt-oss-20b
    # only the full-attention layers grow with the context
    assert sum(layer_kv_bytes(s, 65536)) - sum(kv) == full


def test_hybrid_model_state_does_not_grow_with_context() -> None:
    heads = [0, 0, 0, 8] * 10  # granitehybrid: head_count_kv 0 marks a Mamba layer
    s = _summary(
        architecture="granitehybrid", n_layers=40, n_head=32, n_head_kv=heads, key_length=128,
        value_length=128, ssm_conv_kernel=4, ssm_inner_size=8192, ssm_state_size=128,
        ssm_group_count=1,
    )  # fmt: skip
    assert sum(s.recurrent_layers) == 30
    state = ((4 - 1) * (8192 + 2 * 1 * 128) + 128 * 8192) * 4  # f32 conv + SSM state
    kv4k, kv32k = layer_kv_bytes(s, 4096), layer_kv_bytes(s, 32768)
    assert kv4k[0] == kv32k[0] == state
    assert kv32k[3] == 8 * kv4k[3] == 2 * 128 * 8 * 2 * 32768


def test_mla_cache_stores_the_compressed_latent_only() -> None:
    s = _summary(
        architecture="deepseek2", n_layers=61, n_head=128, n_head_kv=1, key_length=576,
        value_length=512, kv_lora_rank=512,
    )  # fmt: skip
    # V-less MLA cache (llama.cpp PR #19067): 576 f16 values per token per layer
    assert sum(layer_kv_bytes(s, 32768)) == 61 * 576 * 2 * 32768
    assert sum(layer_kv_bytes(s, 32768, "q8_0")) == 61 * 576 // 32 * 34 * 32768
