"""The engine when things go wrong: bad model files, not enough memory, a host that dies.

Real llama.cpp in real host processes; bad files are cut from the real Gemma 3 270M or
written with the ``gguf`` package. Every failure must leave the client able to load again.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import psutil
import pytest
from gguf import GGUFWriter

from launcher.engine import (
    EngineClient,
    EngineParams,
    HostCrashed,
    ReplyFinished,
    Sampling,
    Token,
)
from launcher.errors import ModelLoadError

PARAMS = EngineParams(n_ctx=512, n_threads=1)


def _truncated(src: Path, dst: Path) -> Path:
    with open(src, "rb") as fh:
        dst.write_bytes(fh.read(src.stat().st_size // 3))
    return dst


def _corrupt_header(src: Path, dst: Path) -> Path:
    with open(src, "rb") as fh:
        data = bytearray(fh.read(1 << 20))
    data[8:24] = b"\xff" * 16  # version and counts: magic is right, the rest is garbage
    dst.write_bytes(bytes(data))
    return dst


def _not_gguf(_src: Path, dst: Path) -> Path:
    dst.write_text("This is a README, not a model.\n" * 100)
    return dst


def _unknown_architecture(_src: Path, dst: Path) -> Path:
    w = GGUFWriter(str(dst), arch="sparknotarealarch")
    w.add_block_count(1)
    w.add_context_length(128)
    w.add_embedding_length(8)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (_truncated, "incomplete"),
        (_corrupt_header, "damaged"),
        (_not_gguf, "not a GGUF model file"),
        (_unknown_architecture, "'sparknotarealarch'"),
    ],
    ids=["truncated", "corrupt-header", "not-gguf", "unknown-architecture"],
)
def test_bad_model_files_raise_model_load_error_saying_what_to_do(
    make, expect: str, gemma_path: Path, tmp_path: Path
) -> None:
    bad = make(gemma_path, tmp_path / "model.gguf")
    client = EngineClient()
    with pytest.raises(ModelLoadError, match=expect) as info:
        client.load(bad, PARAMS)
    assert "model.gguf" in str(info.value)
    assert client.pid is None and not client.is_loaded  # the failed host is gone


def test_missing_file_and_impossible_memory_fail_cleanly(gemma_path: Path, tmp_path: Path) -> None:
    client = EngineClient()
    with pytest.raises(ModelLoadError, match="no model file"):
        client.load(tmp_path / "absent.gguf", PARAMS)
    if Path("/proc/sys/vm/overcommit_memory").read_text().strip() == "1":
        pytest.skip("memory overcommit is unlimited here: a huge cache would be granted")
    # A KV cache far larger than RAM + swap (Gemma 3 270M: about 3 KB per token).
    vm = psutil.virtual_memory().total + psutil.swap_memory().total
    n_ctx = min(2**31 - 1, max(10_000_000, int(1.3 * vm / 3000)))
    with pytest.raises(ModelLoadError, match="not enough memory"):
        client.load(gemma_path, EngineParams(n_ctx=n_ctx, n_threads=1))
    assert client.pid is None


@pytest.mark.parametrize(
    ("sig", "cause"), [(signal.SIGKILL, "SIGKILL"), (signal.SIGABRT, "aborted")]
)
def test_host_dying_mid_reply_is_reported_and_the_client_loads_again(
    sig: int, cause: str, gemma_path: Path
) -> None:
    client = EngineClient()
    try:
        loaded = client.load(gemma_path, PARAMS)
        kept: list[str] = []  # the caller keeps the conversation so far
        crash = None
        for ev in client.complete("1, 2, 3, 4, 5,", Sampling(max_tokens=400, temperature=0)):
            if isinstance(ev, Token):
                kept.append(ev.text)
                if len(kept) == 2:
                    os.kill(loaded.pid, sig)
            elif isinstance(ev, HostCrashed):
                crash = ev
            else:
                pytest.fail(f"the reply finished although its host was killed: {ev!r}")
        assert crash is not None
        assert crash.exit_code == -sig
        assert cause in crash.likely_cause
        assert any("llama" in line or "load" in line for line in crash.last_log_lines)
        assert len(kept) >= 2
        assert client.last_crash == crash
        assert cause in str(crash.as_error())
        assert client.pid is None and not client.is_loaded
        assert not psutil.pid_exists(loaded.pid)
        # The client is usable: a new host loads and answers.
        again = client.load(gemma_path, PARAMS)
        assert again.pid != loaded.pid
        events = list(client.complete("1, 2, 3,", Sampling(max_tokens=3, temperature=0)))
        assert isinstance(events[-1], ReplyFinished)
    finally:
        client.unload()


def test_a_failing_progress_callback_leaves_no_host_behind(gemma_path: Path) -> None:
    client = EngineClient()

    def broken(_progress: object) -> None:
        raise RuntimeError("the progress bar went away")

    with pytest.raises(RuntimeError, match="progress bar"):
        client.load(gemma_path, PARAMS, on_progress=broken)
    assert client.pid is None and not client.is_loaded
    loaded = client.load(gemma_path, PARAMS)  # and the client still works
    assert loaded.load_s > 0
    client.unload()
