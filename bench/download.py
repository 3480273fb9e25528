"""Download throughput: our resumable, verifying downloader vs huggingface_hub's, same run.

A 1 GiB generated file (nothing stored in git, nothing read from disk by the server) is
served by the loopback hub running in its own process. Measured in alternation: our
``download_choice`` (writes ``.part``, sha256 on a helper thread, verify, atomic rename),
``hf_hub_download`` in-process (no hashing) and the ``hf download`` CLI (includes its start-up).
The sha256 rate alone and a bare HTTP read (no disk) show what bounds the numbers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, median, table

TITLE = "Model download throughput (1 GiB, loopback hub)"
SIZE = 1 << 30
REPO = "bench/big-GGUF"
NAME = "big-Q4_K_M.gguf"
REPEAT = 3

_SERVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from tests.support.loopback_hub import LoopbackHub, Synthetic
hub = LoopbackHub().start()
hub.add_repo("bench/big-GGUF", {"big-Q4_K_M.gguf": Synthetic(size=int(sys.argv[2]), head=b"GGUF")})
print(hub.url, flush=True)
sys.stdin.read()
hub.stop()
"""


def _hash_rate() -> float:
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    t0 = time.perf_counter()
    for _ in range(512):
        h.update(block)
    return 512 * (1 << 20) / (time.perf_counter() - t0)


def _bare_http(url: str) -> float:
    import httpx2

    t0 = time.perf_counter()
    n = 0
    with httpx2.Client() as c, c.stream("GET", url) as r:
        for chunk in r.iter_raw():
            n += len(chunk)
    assert n == SIZE
    return time.perf_counter() - t0


def _ours(work: Path) -> float:
    from launcher.downloads import download_choice
    from launcher.hub import list_gguf_files
    from launcher.library import DiscoveryRoots, Library
    from launcher.paths import AppPaths
    from launcher.settings import Settings

    root = work / "ours"
    paths = AppPaths(root / "c", root / "d", root / "k", root / "models")
    lib = Library(paths, Settings(), DiscoveryRoots())
    choice = list_gguf_files(REPO, token="").choose(filename=NAME)
    t0 = time.perf_counter()
    for _ in download_choice(choice, lib, token="", disk_margin=0):
        pass
    dt = time.perf_counter() - t0
    assert lib.local_path(REPO, NAME).stat().st_size == SIZE
    shutil.rmtree(root)
    return dt


def _hf_inprocess(work: Path, url: str) -> float:
    from huggingface_hub import hf_hub_download

    cache = work / "hf"
    t0 = time.perf_counter()
    p = hf_hub_download(REPO, NAME, cache_dir=cache, endpoint=url, token=False)
    dt = time.perf_counter() - t0
    assert Path(p).stat().st_size == SIZE
    shutil.rmtree(cache)
    return dt


def _hf_cli(work: Path, url: str) -> float:
    cache = work / "cli"
    env = {**os.environ, "HF_ENDPOINT": url, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    hf = Path(sys.executable).with_name("hf")
    t0 = time.perf_counter()
    subprocess.run(
        [str(hf), "download", REPO, NAME, "--cache-dir", str(cache)],
        env=env,
        check=True,
        capture_output=True,
    )
    dt = time.perf_counter() - t0
    shutil.rmtree(cache)
    return dt


def run() -> str:
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(ROOT), str(SIZE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdin is not None
    url = server.stdout.readline().strip()
    old = os.environ.get("HF_ENDPOINT")
    os.environ["HF_ENDPOINT"] = url
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    times: dict[str, list[float]] = {"ours": [], "hf_hub_download": [], "hf download": []}
    bare: list[float] = []
    try:
        file_url = f"{url}/{REPO}/resolve/main/{NAME}"
        bare.append(_bare_http(file_url))
        for _ in range(REPEAT):
            times["ours"].append(_ours(work))
            times["hf_hub_download"].append(_hf_inprocess(work, url))
            times["hf download"].append(_hf_cli(work, url))
        bare.append(_bare_http(file_url))
        hash_rate = _hash_rate()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        server.stdin.close()
        server.wait(timeout=30)
        if old is None:
            os.environ.pop("HF_ENDPOINT", None)
        else:
            os.environ["HF_ENDPOINT"] = old
    mb = SIZE / 2**20
    ref = median(times["hf_hub_download"])
    cli = median(times["hf download"])
    rows = []
    for name, ts in times.items():
        t = median(ts)
        rows.append((name, t, mb / t, ref / t, cli / t))
    rows.append(
        (
            "bare HTTP read, no disk (upper bound)",
            min(bare),
            mb / min(bare),
            ref / min(bare),
            cli / min(bare),
        )
    )
    body = table(
        (
            "Downloader",
            "Median s",
            "MiB/s",
            "Speed vs hf_hub_download",
            "Speed vs hf download CLI",
        ),
        rows,
    )
    ours = median(times["ours"])
    return (
        f"{body}\n\n"
        f"Ours includes the sha256 check; huggingface_hub's do not hash. Speed ratio of ours: "
        f"**{ref / ours:.2f}** vs `hf_hub_download`, **{cli / ours:.2f}** vs `hf download` "
        f"(target ≥ 0.95). sha256 alone: {hash_rate / 2**20:,.0f} MiB/s "
        f"({hash_rate / (mb / ours * 2**20):.1f}× our download rate), so hashing, which runs on "
        f"its own thread, is not the bottleneck. Median of {REPEAT} runs each, alternated."
    )
