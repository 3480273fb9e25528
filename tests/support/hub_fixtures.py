"""Pytest fixtures for the loopback Hugging Face Hub (registered in ``tests/conftest.py``).

- ``loopback_hub_server``: one :class:`LoopbackHub` per session (a real HTTP server).
- ``hub``: that server, emptied for this test (repos, faults, counters), with ``HF_ENDPOINT``
  pointing at it and ``HF_TOKEN`` unset, so no test reaches the real Hub.
- ``gemma_repo``: ``hub`` serving the real Gemma 3 270M GGUF as ``unsloth/gemma-3-270m-it-GGUF``.
- :func:`make_gguf`: a small, valid synthetic GGUF (bytes) built with the ``gguf`` package.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.loopback_hub import HubRepo, LoopbackHub, Synthetic

GEMMA_REPO = "unsloth/gemma-3-270m-it-GGUF"
GEMMA_FILE = "gemma-3-270m-it-Q4_K_M.gguf"


def make_gguf(
    arch: str = "llama",
    *,
    context: int = 4096,
    file_type: int = 15,
    n_embd: int = 8,
    name: str = "tiny",
    split: tuple[int, int] | None = None,
    pad_to: int = 0,
) -> bytes:
    """Bytes of a small valid GGUF (one f32 tensor); ``pad_to`` appends zeros up to that size.

    ``split=(index, count)`` writes the ``split.*`` keys of shard ``index`` (0-based).
    """
    import gguf
    import numpy as np

    fd, tmp = tempfile.mkstemp(suffix=".gguf")
    os.close(fd)
    try:
        w = gguf.GGUFWriter(tmp, arch)
        w.add_name(name)
        w.add_context_length(context)
        w.add_block_count(1)
        w.add_embedding_length(n_embd)
        w.add_file_type(file_type)
        if split is not None:
            w.add_uint16("split.no", split[0])
            w.add_uint16("split.count", split[1])
            w.add_int32("split.tensors.count", split[1])
        tensor_name = "token_embd.weight" if split is None else f"blk.{split[0]}.w"
        w.add_tensor(tensor_name, np.arange(16 * n_embd, dtype=np.float32).reshape(16, n_embd))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        data = Path(tmp).read_bytes()
    finally:
        os.unlink(tmp)
    if pad_to > len(data):
        data += bytes(pad_to - len(data))
    return data


@pytest.fixture(scope="session")
def loopback_hub_server() -> Iterator[LoopbackHub]:
    """The session's loopback hub server (prefer the ``hub`` fixture, which resets it)."""
    server = LoopbackHub().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub(loopback_hub_server: LoopbackHub, monkeypatch: pytest.MonkeyPatch) -> LoopbackHub:
    """An empty loopback hub for this test; ``HF_ENDPOINT`` points at it, no token is set."""
    h = loopback_hub_server
    with h._lock:
        h.repos.clear()
        h.faults.clear()
    h.reset_counters()
    monkeypatch.setenv("HF_ENDPOINT", h.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    return h


@pytest.fixture
def gemma_repo(hub: LoopbackHub, gemma_path: Path) -> HubRepo:
    """``hub`` serving the real Gemma 3 270M GGUF (sha256 computed once per session)."""
    return hub.add_repo(
        GEMMA_REPO,
        {GEMMA_FILE: gemma_path},
        downloads=1000,
        likes=50,
        gguf={"total": 268098176, "architecture": "gemma3", "context_length": 32768},
    )


__all__ = ["GEMMA_FILE", "GEMMA_REPO", "Synthetic", "make_gguf"]
