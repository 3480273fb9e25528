"""GGUF header reading: agreement with the ``gguf`` package, split models, hostile input, HTTP.

The reader must agree with ``gguf.GGUFReader`` on every file both can read, read only the
header of a local file or a remote one, and turn any malformed input into a ``GGUFError``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from huggingface_hub import hf_hub_url
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher.errors import GGUFError
from launcher.gguf import FileSource, HTTPRangeSource, read_header, read_model, split_names
from launcher.planning import ModelSummary
from tests.support import gguf_builders as gb
from tests.support.loopback_hub import LoopbackHub, Synthetic

MiB = 1 << 20


def _sampled(field: Any, mine: Any) -> tuple[Any, Any]:
    """(ours, GGUFReader's) for one field; long arrays are compared by length and samples
    (decoding a 262k-token vocabulary through GGUFReader alone takes many seconds)."""
    if field.types and field.types[0] == gguf.GGUFValueType.ARRAY and len(field.data) > 64:
        n = len(field.data)
        idx = sorted({0, 1, n // 3, n // 2, n - 2, n - 1})
        return (n, [mine[i] for i in idx]), (len(mine), [field.contents(i) for i in idx])
    return mine, field.contents()


def _assert_agrees(path: Path) -> None:
    ours = read_header(path)
    ref = gguf.GGUFReader(path)
    ref_kv = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert set(ours.metadata) == set(ref_kv)
    for key, field in ref_kv.items():
        mine, theirs = _sampled(field, ours.metadata[key])
        if isinstance(theirs, float):
            assert mine == pytest.approx(theirs), key
        else:
            assert mine == theirs, key
    assert [t.name for t in ours.tensors] == [t.name for t in ref.tensors]
    for mine_t, ref_t in zip(ours.tensors, ref.tensors, strict=True):
        assert mine_t.shape == tuple(int(x) for x in ref_t.shape), mine_t.name
        assert mine_t.ggml_type == int(ref_t.tensor_type), mine_t.name
        assert ours.data_offset + mine_t.offset == int(ref_t.data_offset), mine_t.name
        assert mine_t.nbytes == int(ref_t.n_bytes), mine_t.name


@pytest.mark.slow  # gguf.GGUFReader itself takes seconds on a 262k-token vocabulary
def test_agrees_with_gguf_package_on_real_gemma_and_reads_only_the_header(gemma_path: Path) -> None:
    _assert_agrees(gemma_path)
    src = FileSource(gemma_path)
    h = read_header(src)
    assert h.architecture == "gemma3"
    assert h.is_complete and h.file_size == gemma_path.stat().st_size
    # the header is about 6.5 MB (262k-token vocabulary); the file is 253 MB
    assert h.data_offset < src.bytes_read <= h.data_offset + 2 * MiB
    assert src.bytes_read < gemma_path.stat().st_size / 20


@pytest.mark.parametrize(
    "preset",
    [gb.TINY_LLAMA, gb.TINY_QWEN3, gb.TINY_GEMMA3, gb.TINY_QWEN3MOE],
    ids=lambda p: p["arch"],
)
def test_agrees_with_gguf_package_on_generated_models(
    tmp_path: Path, preset: dict[str, Any]
) -> None:
    path = gb.build_model(tmp_path / "m.gguf", **preset)
    _assert_agrees(path)
    assert read_header(path).is_complete


def test_header_only_file_gives_the_full_declared_size(tmp_path: Path) -> None:
    path = gb.build_model(tmp_path / "q32.gguf", header_only=True, **gb.QWEN3_32B)
    h = read_header(path)
    assert not h.is_complete
    assert path.stat().st_size < 8 * MiB
    # a Qwen3-32B Q4_K_M is about 19.8 GB of tensors
    assert 19 * 2**30 < h.tensor_bytes < 20 * 2**30
    sparse = gb.sparse_copy(path, tmp_path / "sparse.gguf")
    assert sparse.stat().st_size == h.declared_size
    assert read_header(sparse).tensors == h.tensors
    assert read_header(sparse).is_complete


def test_split_model_is_read_as_one(tmp_path: Path) -> None:
    whole = gb.build_model(tmp_path / "whole.gguf", **gb.TINY_LLAMA)
    ref = read_header(whole)
    w = gguf.GGUFWriter(tmp_path / "split.gguf", "llama", split_max_tensors=8)
    for key, value in ref.metadata.items():
        if key in ("general.architecture",):
            continue
        vtype = gguf.GGUFValueType(ref.value_types[key])
        sub = None
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = gguf.GGUFValueType.STRING if isinstance(value[0], str) else None
        w.add_key_value(key, value, vtype, sub_type=sub)
    reader = gguf.GGUFReader(whole)
    for t in reader.tensors:
        w.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    shards = sorted(tmp_path.glob("split-*-of-*.gguf"))
    assert len(shards) == 3
    assert split_names(str(shards[1])) == [str(s) for s in shards]
    model = read_model(shards[0])
    assert len(model.headers) == 3
    assert sorted(t.name for t in model.tensors) == sorted(t.name for t in ref.tensors)
    assert model.tensor_bytes == ref.tensor_bytes
    with pytest.raises(GGUFError, match="part 2 of a model split in 3"):
        read_model([shards[1]])
    shards[2].unlink()
    with pytest.raises(GGUFError):
        read_model(shards[0])


# ------------------------------------------------------------------------------ hostile input


def _string(s: str) -> bytes:
    return gb.gguf_string(s)


def _u32(v: int) -> bytes:
    return struct.pack("<I", v)


VALID = gb.write_raw_gguf(
    kvs=[
        ("general.architecture", 8, _string("llama")),
        ("llama.block_count", 4, _u32(1)),
        ("llama.embedding_length", 4, _u32(32)),
        ("llama.attention.head_count_kv", 9, _u32(4) + struct.pack("<Q", 1) + _u32(2)),
        (
            "tokenizer.ggml.tokens",
            9,
            _u32(8) + struct.pack("<Q", 3) + b"".join(_string(t) for t in "abc"),
        ),
        ("general.alignment", 4, _u32(32)),
    ],
    tensors=[("token_embd.weight", (32, 3), 0, 0), ("blk.0.attn_q.weight", (32, 32), 8, 384)],
)


def _read_bytes(tmp_path: Path, data: bytes) -> Any:
    p = tmp_path / "x.gguf"
    p.write_bytes(data)
    return read_header(p)


def test_valid_hand_made_header_reads(tmp_path: Path) -> None:
    h = _read_bytes(tmp_path, VALID)
    assert h.metadata["tokenizer.ggml.tokens"] == ["a", "b", "c"]
    assert [t.nbytes for t in h.tensors] == [32 * 3 * 4, 32 * 32 // 32 * 34]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GGML" + VALID[4:], "not a GGUF"),
        (VALID[:4] + _u32(1) + VALID[8:], "version 1"),
        (VALID[:4] + _u32(99) + VALID[8:], "version 99"),
        (gb.write_raw_gguf(n_kv=1 << 62), "count"),
        (gb.write_raw_gguf(n_tensors=1 << 40), "count"),
        (gb.write_raw_gguf(kvs=[("a", 8, struct.pack("<Q", 1 << 60))]), "length"),
        (gb.write_raw_gguf(kvs=[("a", 9, _u32(4) + struct.pack("<Q", 1 << 40))]), "array"),
        (gb.write_raw_gguf(kvs=[("a", 77, b"")]), "unknown value type"),
        (gb.write_raw_gguf(tensors=[("t", (32,) * 9, 0, 0)]), "dimensions"),
        (gb.write_raw_gguf(tensors=[("t", (32,), 250, 0)]), "ggml type"),
        (gb.write_raw_gguf(tensors=[("t", (33,), 8, 0)]), "block size"),
        (gb.write_raw_gguf(tensors=[("t", (1 << 40, 1 << 40), 0, 0)]), "absurd"),
        (gb.write_raw_gguf(tensors=[("t", (32,), 0, 0), ("t", (32,), 0, 128)]), "twice"),
        (gb.write_raw_gguf(kvs=[("general.alignment", 4, _u32(3))]), "power of two"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_malformed_headers_give_a_clear_error(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(GGUFError, match=message):
        _read_bytes(tmp_path, data)


def test_every_truncation_gives_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "t.gguf"
    for n in range(len(VALID)):
        p.write_bytes(VALID[:n])
        with pytest.raises(GGUFError):
            read_header(p)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    cut=st.integers(0, len(VALID) + 64),
    tail=st.binary(max_size=64),
)
def test_fuzzed_headers_never_crash_hang_or_explode(
    tmp_path: Path, edits: list[tuple[int, int]], cut: int, tail: bytes
) -> None:
    data = bytearray(VALID)
    for pos, byte in edits:
        data[pos] = byte
    blob = bytes(data[:cut]) + tail
    try:
        h = _read_bytes(tmp_path, blob)
    except GGUFError:
        return
    assert len(h.tensors) <= 2 and len(h.metadata) <= 6
    try:  # whatever parsed must also plan, or be refused clearly
        ModelSummary.from_header(h)
    except GGUFError:
        pass


# ------------------------------------------------------------------------------ HTTP range


def test_http_range_source_reads_only_the_header_and_honours_hf_endpoint(
    hub: LoopbackHub, tmp_path: Path
) -> None:
    header = gb.build_model(tmp_path / "q.gguf", header_only=True, **gb.QWEN3_32B)
    sparse = gb.sparse_copy(header, tmp_path / "Qwen3-32B-Q4_K_M.gguf")
    head = read_header(header)
    served_file = Synthetic(
        size=head.declared_size,
        head=header.read_bytes()[: head.data_offset],
        fill="zeros",
        sha256="0" * 64,  # hashing 20 GB of zeros would dominate the test
    )
    hub.add_repo("Qwen/Qwen3-32B-GGUF", {"Qwen3-32B-Q4_K_M.gguf": served_file})
    endpoint = os.environ["HF_ENDPOINT"]
    url = hf_hub_url("Qwen/Qwen3-32B-GGUF", "Qwen3-32B-Q4_K_M.gguf", endpoint=endpoint)
    assert url.startswith(hub.url)
    src = HTTPRangeSource(url)
    remote = read_header(src)
    local = read_header(sparse)
    assert remote.metadata == local.metadata
    assert remote.tensors == local.tensors
    assert src.size == sparse.stat().st_size > 19 * 2**30
    served = sum(hub.bytes_served.values())
    assert served == src.bytes_read
    assert remote.data_offset <= served < 16 * MiB  # a few MB for a 20 GB file


def test_http_range_source_reports_missing_files(hub: LoopbackHub) -> None:
    from launcher.errors import HubError

    hub.add_repo("me/none", {})
    with pytest.raises(HubError):
        read_header(HTTPRangeSource(f"{hub.url}/me/none/resolve/main/missing.gguf"))
