"""Synthetic GGUF files for tests, written with the ``gguf`` package.

- ``build_model(path, arch=..., ...)``: a model of a real architecture (llama, qwen3,
  qwen3moe, gemma3) with the given shape. With ``header_only=False`` the tensors hold small
  random weights (F16/Q8_0 via ``gguf.quants``) and llama.cpp can load and run it; with
  ``header_only=True`` only the header (metadata and tensor table) is written, which is what
  a remote header fetch gives; ``sparse=True`` then extends it to its declared size with a
  hole (no disk used), which llama.cpp's no-alloc dry run accepts.
- Presets shaped like real models (``QWEN3_32B``, ``LLAMA33_70B``, ``GEMMA3_27B``,
  ``QWEN3_30B_A3B``), as keyword dicts for ``build_model``; ``TINY`` presets load fast.
- ``write_raw_gguf(...)``: hand-assembled bytes for malformed-input tests.

The tokenizer is a minimal SentencePiece-style vocabulary ("llama" model) of ``n_vocab``
tokens, enough for llama.cpp to load the file and for vocabulary-sized buffers to be real.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFWriter, quants
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

Q = GGMLQuantizationType

# ----------------------------------------------------------------------------- presets

QWEN3_32B: dict[str, Any] = dict(
    arch="qwen3", name="Qwen3-32B (synthetic)", n_layers=64, n_embd=5120, n_head=64,
    n_head_kv=8, head_dim=128, n_ff=25600, n_vocab=151936, context_length=40960,
)  # fmt: skip
LLAMA33_70B: dict[str, Any] = dict(
    arch="llama", name="Llama-3.3-70B (synthetic)", n_layers=80, n_embd=8192, n_head=64,
    n_head_kv=8, head_dim=128, n_ff=28672, n_vocab=128256, context_length=131072,
)  # fmt: skip
GEMMA3_27B: dict[str, Any] = dict(
    arch="gemma3", name="Gemma-3-27B (synthetic)", n_layers=62, n_embd=5376, n_head=32,
    n_head_kv=16, head_dim=128, n_ff=21504, n_vocab=262208, context_length=131072,
    sliding_window=1024,
)  # fmt: skip
QWEN3_30B_A3B: dict[str, Any] = dict(
    arch="qwen3moe", name="Qwen3-30B-A3B (synthetic)", n_layers=48, n_embd=2048, n_head=32,
    n_head_kv=4, head_dim=128, n_ff=6144, n_ff_exp=768, n_expert=128, n_expert_used=8,
    n_vocab=151936, context_length=40960,
)  # fmt: skip

TINY_LLAMA: dict[str, Any] = dict(
    arch="llama", n_layers=2, n_embd=128, n_head=4, n_head_kv=2, head_dim=64
)
TINY_QWEN3: dict[str, Any] = dict(
    arch="qwen3", n_layers=2, n_embd=128, n_head=4, n_head_kv=2, head_dim=64
)
TINY_GEMMA3: dict[str, Any] = dict(
    arch="gemma3", n_layers=7, n_embd=128, n_head=4, n_head_kv=1, head_dim=64, sliding_window=64
)
TINY_QWEN3MOE: dict[str, Any] = dict(
    arch="qwen3moe", n_layers=2, n_embd=128, n_head=4, n_head_kv=2, head_dim=64, n_expert=4,
    n_expert_used=2, n_ff_exp=64,
)  # fmt: skip

SUPPORTED_ARCHS = ("llama", "qwen3", "qwen3moe", "gemma3")


def _tensor_plan(
    arch: str,
    n_layers: int,
    n_embd: int,
    n_head: int,
    n_head_kv: int,
    head_dim: int,
    n_ff: int,
    n_vocab: int,
    n_expert: int,
    n_ff_exp: int,
    tied: bool,
    types: dict[str, GGMLQuantizationType],
) -> list[tuple[str, tuple[int, ...], GGMLQuantizationType]]:
    """(name, ggml shape ne0-first, type) for every tensor of the architecture."""
    f32 = Q.F32
    t: list[tuple[str, tuple[int, ...], GGMLQuantizationType]] = [
        ("token_embd.weight", (n_embd, n_vocab), types["embd"]),
        ("output_norm.weight", (n_embd,), f32),
    ]
    if not tied:
        t.append(("output.weight", (n_embd, n_vocab), types["output"]))
    q_dim, kv_dim = n_head * head_dim, n_head_kv * head_dim
    for i in range(n_layers):
        b = f"blk.{i}."
        t += [
            (b + "attn_norm.weight", (n_embd,), f32),
            (b + "attn_q.weight", (n_embd, q_dim), types["attn"]),
            (b + "attn_k.weight", (n_embd, kv_dim), types["attn"]),
            (b + "attn_v.weight", (n_embd, kv_dim), types["attn_v"]),
            (b + "attn_output.weight", (q_dim, n_embd), types["attn"]),
            (b + "ffn_norm.weight", (n_embd,), f32),
        ]
        if arch in ("qwen3", "qwen3moe", "gemma3"):
            t += [(b + "attn_q_norm.weight", (head_dim,), f32)]
            t += [(b + "attn_k_norm.weight", (head_dim,), f32)]
        if arch == "gemma3":
            t += [(b + "post_attention_norm.weight", (n_embd,), f32)]
            t += [(b + "post_ffw_norm.weight", (n_embd,), f32)]
        if arch == "qwen3moe":
            t += [
                (b + "ffn_gate_inp.weight", (n_embd, n_expert), f32),
                (b + "ffn_gate_exps.weight", (n_embd, n_ff_exp, n_expert), types["ffn"]),
                (b + "ffn_up_exps.weight", (n_embd, n_ff_exp, n_expert), types["ffn"]),
                (b + "ffn_down_exps.weight", (n_ff_exp, n_embd, n_expert), types["ffn_down"]),
            ]
        else:
            t += [
                (b + "ffn_gate.weight", (n_embd, n_ff), types["ffn"]),
                (b + "ffn_up.weight", (n_embd, n_ff), types["ffn"]),
                (b + "ffn_down.weight", (n_ff, n_embd), types["ffn_down"]),
            ]
    return t


#: Per-role tensor types for a quantization label (an approximation of llama-quantize's mix).
QUANT_MIXES: dict[str, dict[str, GGMLQuantizationType]] = {
    "F16": dict(embd=Q.F16, output=Q.F16, attn=Q.F16, attn_v=Q.F16, ffn=Q.F16, ffn_down=Q.F16),
    "Q8_0": dict(
        embd=Q.Q8_0, output=Q.Q8_0, attn=Q.Q8_0, attn_v=Q.Q8_0, ffn=Q.Q8_0, ffn_down=Q.Q8_0
    ),
    "Q4_K_M": dict(
        embd=Q.Q4_K, output=Q.Q6_K, attn=Q.Q4_K, attn_v=Q.Q6_K, ffn=Q.Q4_K, ffn_down=Q.Q6_K
    ),
    "Q4_0": dict(
        embd=Q.Q4_0, output=Q.Q8_0, attn=Q.Q4_0, attn_v=Q.Q4_0, ffn=Q.Q4_0, ffn_down=Q.Q4_0
    ),
}
_FILE_TYPES = {
    "F16": LlamaFileType.MOSTLY_F16,
    "Q8_0": LlamaFileType.MOSTLY_Q8_0,
    "Q4_K_M": LlamaFileType.MOSTLY_Q4_K_M,
    "Q4_0": LlamaFileType.MOSTLY_Q4_0,
}


def _nbytes(shape: Sequence[int], qtype: GGMLQuantizationType) -> int:
    block, size = GGML_QUANT_SIZES[qtype]
    n = 1
    for d in shape:
        n *= d
    return n // block * size


def _vocab(n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    special = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)] if n_vocab >= 259 + 16 else []
    tokens = special + byte_tokens
    tokens += [f"t{i}" for i in range(n_vocab - len(tokens))]
    tokens = tokens[:n_vocab]
    types = [2, 3, 3] + [6] * len(byte_tokens) + [1] * (n_vocab - 3 - len(byte_tokens))
    scores = (
        [0.0] * 3
        + [0.0] * len(byte_tokens)
        + [-float(i) for i in range(len(tokens) - 3 - len(byte_tokens))]
    )
    return tokens, scores[:n_vocab], types[:n_vocab]


def build_model(
    path: str | os.PathLike[str],
    arch: str = "llama",
    n_layers: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int | None = None,
    head_dim: int | None = None,
    n_ff: int | None = None,
    n_vocab: int = 512,
    context_length: int = 4096,
    sliding_window: int = 0,
    n_expert: int = 0,
    n_expert_used: int = 0,
    n_ff_exp: int | None = None,
    tie_embeddings: bool | None = None,
    quant: str | None = None,
    header_only: bool = False,
    sparse: bool = False,
    name: str | None = None,
    seed: int = 0,
    extra_metadata: dict[str, Any] | None = None,
    cheap: bool = False,
) -> Path:
    """Write a synthetic GGUF model of architecture ``arch``; return its path.

    ``quant`` picks the tensor-type mix (``F16``, ``Q8_0``, ``Q4_0``, ``Q4_K_M``); it defaults
    to ``F16`` for files with data and ``Q4_K_M`` for header-only ones. Random weights can be
    written only for F16 and Q8_0 (the types ``gguf.quants`` can quantize).

    ``cheap=True`` writes quantized blocks (Q8_0, Q4_0, Q4_K, Q6_K) directly from a small
    tiled pool of random bytes with small scales instead of quantizing normal samples: any
    mix, gigabyte models in seconds, for speed and memory measurements where the values do
    not matter.
    """
    if arch not in SUPPORTED_ARCHS:
        raise ValueError(f"arch must be one of {SUPPORTED_ARCHS}")
    n_head_kv = n_head if n_head_kv is None else n_head_kv
    head_dim = head_dim or n_embd // n_head
    n_ff = n_ff or 4 * n_embd
    n_ff_exp = n_ff_exp or n_ff
    tied = (arch == "gemma3") if tie_embeddings is None else tie_embeddings
    quant = quant or ("Q4_K_M" if header_only else "F16")
    types = QUANT_MIXES[quant]
    if not header_only and not cheap and quant not in ("F16", "Q8_0"):
        raise ValueError("random weights can be written only as F16 or Q8_0 (or cheap=True)")
    plan = _tensor_plan(
        arch, n_layers, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_expert,
        n_ff_exp, tied, types,
    )  # fmt: skip

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(out, arch)
    w.add_name(name or f"synthetic-{arch}")
    w.add_file_type(int(_FILE_TYPES[quant]))
    w.add_uint32("general.quantization_version", 2)
    a = arch
    w.add_uint32(f"{a}.block_count", n_layers)
    w.add_uint32(f"{a}.context_length", context_length)
    w.add_uint32(f"{a}.embedding_length", n_embd)
    w.add_uint32(f"{a}.feed_forward_length", n_ff)
    w.add_uint32(f"{a}.attention.head_count", n_head)
    w.add_uint32(f"{a}.attention.head_count_kv", n_head_kv)
    w.add_uint32(f"{a}.attention.key_length", head_dim)
    w.add_uint32(f"{a}.attention.value_length", head_dim)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_float32(f"{a}.rope.freq_base", 1000000.0)
    if arch == "llama":
        w.add_uint32(f"{a}.rope.dimension_count", head_dim)
        w.add_uint32(f"{a}.vocab_size", n_vocab)
    if sliding_window:
        w.add_uint32(f"{a}.attention.sliding_window", sliding_window)
    if n_expert:
        w.add_uint32(f"{a}.expert_count", n_expert)
        w.add_uint32(f"{a}.expert_used_count", n_expert_used)
        w.add_uint32(f"{a}.expert_feed_forward_length", n_ff_exp)
    tokens, scores, token_types = _vocab(n_vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(token_types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    for k, v in (extra_metadata or {}).items():
        if isinstance(v, bool):
            w.add_bool(k, v)
        elif isinstance(v, int):
            w.add_uint32(k, v)
        elif isinstance(v, float):
            w.add_float32(k, v)
        elif isinstance(v, str):
            w.add_string(k, v)
        else:
            w.add_array(k, v)

    for tname, shape, qtype in plan:
        w.add_tensor_info(
            tname, tuple(reversed(shape)), np.dtype(np.float32), _nbytes(shape, qtype), qtype
        )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    if header_only:
        w.close()
        if sparse:
            declared = _declared_size(out)
            with open(out, "r+b") as fh:
                fh.truncate(declared)
        return out
    rng = np.random.default_rng(seed)
    w.close()  # header written; append aligned tensor data ourselves (raw bytes per tensor)
    alignment = 32
    with open(out, "r+b") as fh:
        fh.seek(0, os.SEEK_END)
        pos = fh.tell()
        pad = (-pos) % alignment
        fh.write(b"\0" * pad)
        pools: dict[GGMLQuantizationType, bytes] = {}
        for tname, shape, qtype in plan:
            if cheap and qtype in _F16_FIELDS:
                if qtype not in pools:
                    pools[qtype] = _block_pool(rng, qtype)
                data = _tiled(pools[qtype], _nbytes(shape, qtype))
            else:
                data = _random_tensor(rng, tname, shape, qtype)
            fh.write(data)
            fh.write(b"\0" * ((-len(data)) % alignment))
    return out


# Byte offsets of the f16 scale fields in one block of each type (ggml-common.h); the other
# bytes are quants, any value of which is valid.
_F16_FIELDS = {Q.Q8_0: (0,), Q.Q4_0: (0,), Q.Q4_K: (0, 2), Q.Q6_K: (208,)}


def _block_pool(
    rng: np.random.Generator, qtype: GGMLQuantizationType, blocks: int = 1 << 14
) -> bytes:
    """Random blocks of ``qtype`` with small finite scales, to tile large tensors with."""
    size = GGML_QUANT_SIZES[qtype][1]
    pool = rng.integers(0, 256, size=(blocks, size), dtype=np.uint8)
    scale = np.frombuffer(np.float16(0.0005).tobytes(), dtype=np.uint8)
    for off in _F16_FIELDS[qtype]:
        pool[:, off : off + 2] = scale
    return pool.tobytes()


def _tiled(pool: bytes, n: int) -> bytes:
    reps, rest = divmod(n, len(pool))
    return pool * reps + pool[:rest]


def _random_tensor(
    rng: np.random.Generator, name: str, shape: Sequence[int], qtype: GGMLQuantizationType
) -> bytes:
    np_shape = tuple(reversed(shape))
    if name.endswith("norm.weight"):
        values = np.ones(np_shape, dtype=np.float32)
    else:
        values = (rng.standard_normal(np_shape) * 0.02).astype(np.float32)
    if qtype == Q.F32:
        return values.tobytes()
    if qtype == Q.F16:
        return values.astype(np.float16).tobytes()
    return np.asarray(quants.quantize(values, qtype)).tobytes()


def _declared_size(path: Path) -> int:
    from launcher.gguf import read_header

    return read_header(path).declared_size


def sparse_copy(header_only: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """A copy of a header-only file extended (sparsely) to its declared size."""
    from launcher.dryrun import materialize_header
    from launcher.gguf import read_header

    h = read_header(header_only)
    data = Path(header_only).read_bytes()[: h.data_offset]
    return materialize_header(data, h.declared_size, dest)


# ----------------------------------------------------------------------------- raw bytes


def gguf_string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def write_raw_gguf(
    kvs: Sequence[tuple[str, int, bytes]] = (),
    tensors: Sequence[tuple[str, Sequence[int], int, int]] = (),
    version: int = 3,
    n_kv: int | None = None,
    n_tensors: int | None = None,
    magic: bytes = b"GGUF",
) -> bytes:
    """Assemble GGUF header bytes by hand: ``kvs`` as (key, value type, encoded value),
    ``tensors`` as (name, ggml shape, ggml type, offset). Counts may lie on purpose."""
    out = bytearray(magic + struct.pack("<I", version))
    out += struct.pack("<QQ", len(tensors) if n_tensors is None else n_tensors,
                       len(kvs) if n_kv is None else n_kv)  # fmt: skip
    for key, vtype, value in kvs:
        out += gguf_string(key) + struct.pack("<I", vtype) + value
    for name, shape, ggml_type, offset in tensors:
        out += gguf_string(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", ggml_type, offset)
    return bytes(out)


# ----------------------------------------------------------------------------- cache

_CACHE_DIR = Path(__file__).resolve().parent.parent.parent / ".cache" / "synthetic-gguf"
#: Bump when the builder's output changes, so stale cached files are not reused.
BUILDER_VERSION = 1


def cached_model(**kwargs: Any) -> Path:
    """``build_model(**kwargs)`` built once into ``.cache/synthetic-gguf`` and reused.

    Big vocabularies make building a header take about a second; test modules sharing a
    shape (and later runs) reuse the file. Written to a temporary name and renamed, so a
    concurrent or interrupted build never leaves a half-written file behind.
    """
    import hashlib
    import json

    key = json.dumps({"v": BUILDER_VERSION, **kwargs}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    arch = kwargs.get("arch", "llama")
    target = _CACHE_DIR / f"{arch}-{digest}.gguf"
    if target.exists():
        return target
    _CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        build_model(tmp, **kwargs)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target
