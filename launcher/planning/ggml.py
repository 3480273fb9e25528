"""ggml facts the planner needs: type sizes and the KV cache types llama.cpp accepts."""

from __future__ import annotations

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

MiB = 1 << 20
GiB = 1 << 30

#: KV cache types the planner offers (name -> ggml type id, as llama-cpp-python's type_k/v).
KV_TYPES: dict[str, int] = {
    "f16": int(GGMLQuantizationType.F16),
    "bf16": int(GGMLQuantizationType.BF16),
    "f32": int(GGMLQuantizationType.F32),
    "q8_0": int(GGMLQuantizationType.Q8_0),
    "q5_1": int(GGMLQuantizationType.Q5_1),
    "q5_0": int(GGMLQuantizationType.Q5_0),
    "q4_1": int(GGMLQuantizationType.Q4_1),
    "q4_0": int(GGMLQuantizationType.Q4_0),
    "iq4_nl": int(GGMLQuantizationType.IQ4_NL),
}


def type_row_bytes(ggml_type: int, n: int) -> int:
    """Bytes of a row of ``n`` elements of a ggml type (``ggml_row_size``)."""
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    return n // block * size


def kv_type_id(kv_type: str) -> int:
    try:
        return KV_TYPES[kv_type.lower()]
    except KeyError:
        raise ValueError(
            f"Unknown KV cache type {kv_type!r}; use one of {', '.join(KV_TYPES)}."
        ) from None


def pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to
