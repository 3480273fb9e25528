"""MemorySampler: each tracked model shows up in its pool, segments add up, gone means gone."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from launcher.hardware import MemorySampler, PoolSnapshot, probe
from launcher.hardware.adapters import ReplayAdapters

DATA = Path(__file__).parent / "data" / "hardware"
MiB, GiB = 1 << 20, 1 << 30


def replay(name: str) -> ReplayAdapters:
    return ReplayAdapters(json.loads((DATA / f"{name}.json").read_text()))


def segments(p: PoolSnapshot) -> int:
    return sum(p.models.values()) + p.other + p.reclaimable + p.free


def test_gb10_model_memory_is_its_rss_plus_its_gpu_memory_in_the_unified_pool() -> None:
    ad = replay("dgx_spark_gb10")
    sampler = MemorySampler(probe(ad), ad)
    sampler.track(4242, "Qwen3 32B")
    (pool,) = sampler.sample().pools
    assert pool.kind == "unified" and pool.total == 127_600_748 * 1024
    assert pool.models == {"Qwen3 32B": 2 * GiB + 40_426_242_867}
    assert pool.gpu_held == 40_426_242_867  # sum of NVML per-process figures
    assert pool.available == 79_433_728 * 1024
    assert pool.reclaimable > 0  # page cache, shown apart from "other"
    assert segments(pool) == pool.total


def test_discrete_gpu_model_shows_in_vram_and_its_host_side_in_ram() -> None:
    ad = replay("rtx4090_desktop")
    sampler = MemorySampler(probe(ad), ad)
    sampler.track(5151, "Llama 3.1 8B")
    vram, ram = sampler.sample().pools
    assert vram.name == "VRAM: NVIDIA GeForce RTX 4090"
    assert vram.models == {"Llama 3.1 8B": int(14.2 * GiB)}
    assert vram.free == 9512 * MiB and vram.reclaimable == 0
    assert segments(vram) == vram.total
    assert ram.models == {"Llama 3.1 8B": int(1.1 * GiB)}
    assert segments(ram) == ram.total


def test_a_model_whose_process_is_gone_drops_out_and_untrack_forgets_it() -> None:
    ad = replay("rtx4090_desktop")
    sampler = MemorySampler(probe(ad), ad)
    sampler.track(999_999, "ghost")
    assert all(p.models == {} for p in sampler.sample().pools)
    sampler.track(5151, "A")
    sampler.untrack(5151)
    assert all(p.models == {} for p in sampler.sample().pools)
    assert sampler.tracked == {999_999: "ghost"}


def test_missing_nvml_during_sampling_keeps_the_probe_figures() -> None:
    ad = replay("rtx4090_desktop")
    profile = probe(ad)
    ad.nvml = ReplayAdapters({}).nvml  # the driver went away after the probe
    snap = MemorySampler(profile, ad).sample()
    assert snap.pools[0].total == profile.pools[0].total
    assert "nvml" in snap.unknowns


@pytest.fixture
def allocating_child() -> Iterator[subprocess.Popen[str]]:
    """A real process holding about 300 MiB of touched memory."""
    code = "import sys; b = bytearray(300 * 2**20); print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream:
            stream.close()


def test_real_sampler_attributes_a_real_process_to_its_label(
    allocating_child: subprocess.Popen[str],
) -> None:
    sampler = MemorySampler(probe())
    try:
        sampler.track(allocating_child.pid, "Gemma 3 270M")
        (ram,) = sampler.sample().pools
        assert ram.kind == "ram"
        assert 300 * MiB <= ram.models["Gemma 3 270M"] < 600 * MiB
        assert ram.other >= ram.models["Gemma 3 270M"] - ram.reclaimable
        # The figures are read at slightly different instants; they still add up closely.
        assert abs(segments(ram) - ram.total) < 64 * MiB
        allocating_child.kill()
        allocating_child.wait()
        assert sampler.sample().pools[0].models == {}
    finally:
        sampler.close()


@given(
    total_kb=st.integers(1, 1 << 34),
    avail_frac=st.floats(0, 1),
    free_frac=st.floats(0, 1),
    rss=st.integers(0, 1 << 40),
    shared_frac=st.floats(0, 1),
    junk=st.text(max_size=40),
)
@settings(max_examples=60, deadline=None)
def test_sampler_segments_are_never_negative_and_fill_the_pool(
    total_kb: int, avail_frac: float, free_frac: float, rss: int, shared_frac: float, junk: str
) -> None:
    avail_kb = int(total_kb * avail_frac)
    free_kb = int(avail_kb * free_frac)
    data = json.loads((DATA / "cpu_only.json").read_text())
    data["meminfo"] = (
        f"MemTotal: {total_kb} kB\n{junk}\nMemFree: {free_kb} kB\nMemAvailable: {avail_kb} kB\n"
    )
    data["processes"] = {"7": {"rss": rss, "shared": int(rss * shared_frac)}}
    ad = ReplayAdapters(data)
    sampler = MemorySampler(probe(ad), ad)
    sampler.track(7, "m")
    (pool,) = sampler.sample().pools
    parts = [*pool.models.values(), pool.other, pool.reclaimable, pool.free]
    assert all(p >= 0 for p in parts)
    if rss <= (total_kb - free_kb) * 1024:  # the model fits in what the OS says is in use
        assert sum(parts) >= pool.total
