"""KV cache and compute-buffer sizes, per llama.cpp's cache layout and a model fitted to
llama.cpp's reported buffers (``../shared/reference/memory-and-speed.md``)."""

from __future__ import annotations

from typing import Literal

from launcher.planning.ggml import kv_type_id, pad, type_row_bytes
from launcher.planning.model import ModelSummary

#: Context cells are padded to this (llama.cpp pads n_ctx to 256).
CTX_PAD = 256


def kv_cells(summary: ModelSummary, ctx: int, n_ubatch: int = 512) -> tuple[int, int]:
    """(cells of full-attention layers, cells of sliding-window layers) for ``ctx``."""
    n_ctx = pad(max(1, ctx), CTX_PAD)
    if summary.sliding_window > 0:
        swa = min(n_ctx, pad(summary.sliding_window + n_ubatch, CTX_PAD))
    else:
        swa = n_ctx
    return n_ctx, swa


def layer_kv_bytes(
    summary: ModelSummary,
    ctx: int,
    kv_type: str = "f16",
    flash_attn: bool = True,
    n_ubatch: int = 512,
    n_seq: int = 1,
) -> list[int]:
    """KV (or recurrent state) bytes per layer, per llama.cpp's cache layout."""
    tk = kv_type_id(kv_type)
    tv = tk if flash_attn else kv_type_id("f16")
    full, swa = kv_cells(summary, ctx, n_ubatch)
    out = []
    for il in range(summary.n_layers):
        if summary.is_recurrent(il):
            out.append(_recurrent_state_bytes(summary) * max(1, n_seq))
            continue
        hkv = summary.n_head_kv[il]
        if hkv <= 0:
            out.append(0)
            continue
        cells = swa if summary.is_swa(il) else full
        k = type_row_bytes(tk, summary.key_length * hkv)
        # MLA caches (kv_lora_rank > 0) store K only since llama.cpp PR #19067.
        v = 0 if summary.kv_lora_rank > 0 else type_row_bytes(tv, summary.value_length * hkv)
        out.append((k + v) * cells)
    return out


def _recurrent_state_bytes(s: ModelSummary) -> int:
    if s.rwkv_head_size:
        r = max(1, s.token_shift_count) * s.n_embd
        st = s.n_embd * s.rwkv_head_size
    else:
        r = max(0, s.ssm_conv_kernel - 1) * (
            s.ssm_inner_size + 2 * s.ssm_group_count * s.ssm_state_size
        )
        st = s.ssm_state_size * s.ssm_inner_size
    return (r + st) * 4


def compute_bytes_estimate(
    summary: ModelSummary,
    ctx: int,
    flash_attn: bool = True,
    n_ubatch: int = 512,
    where: Literal["all", "gpu_full", "gpu_partial", "cpu_with_gpu"] = "all",
) -> int:
    """Compute-buffer bytes, a model fitted to llama.cpp's reported buffer sizes.

    llama.cpp reuses one buffer for the whole graph, so the size is the largest live set:
    either the output phase (logits ``n_vocab x n_tokens`` f32 plus two ``n_embd`` rows)
    or one layer (attention scores without flash attention grow with the context; FFN and
    MoE activations).
    """
    n_tokens = min(pad(max(1, ctx), CTX_PAD), n_ubatch)
    n_kv = pad(max(1, ctx), CTX_PAD)
    f32 = 4
    output_phase = (summary.n_vocab + 2 * summary.n_embd) * n_tokens * f32
    n_head = max(summary.n_head, default=0)
    q_dim = n_head * summary.key_length
    kv_dim = max(summary.n_head_kv, default=0) * summary.key_length
    if flash_attn:  # Q/K/V rows, the attention output, and the f16 KQ mask
        attn = (2 * q_dim + 2 * summary.n_embd) * n_tokens * f32 + n_kv * n_tokens * 2
    else:  # the full KQ score matrix per head, its f32 mask, Q/K/V rows
        attn = n_kv * n_tokens * (n_head + 1) * f32
        attn += (3 * summary.n_embd + 2 * q_dim + 2 * kv_dim) * n_tokens * f32
    ff = summary.n_ff
    if summary.n_expert and summary.n_expert_used:
        ff = summary.n_ff_exp or ff
        ffn = (2 * ff * summary.n_expert_used + summary.n_expert + 2 * summary.n_embd) * n_tokens
        ffn *= f32
    else:
        ffn = (2 * ff + 2 * summary.n_embd) * n_tokens * f32
    # with flash attention the mask and attention rows are still live during the FFN;
    # without it the KQ matrix is freed before the FFN runs
    layer_phase = attn + ffn if flash_attn else max(attn, ffn)
    if where == "cpu_with_gpu":  # input embeddings on the host (get_rows) and small copies
        return 2 * summary.n_embd * n_tokens * f32
    if where == "gpu_partial":
        # the output layer stays on the CPU; op offload streams one weight at a time
        return layer_phase + summary.largest_tensor_bytes
    return max(output_phase, layer_phase)
