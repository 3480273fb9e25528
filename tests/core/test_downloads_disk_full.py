"""A disk that really fills up mid-download (ENOSPC on a small tmpfs, not a simulated limit):
the user is told, the hashed prefix is kept, and once space is freed the download resumes
to a verified file.

Needs root (or a user namespace) to mount a tmpfs; skipped with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.downloads import DownloadFinished, DownloadProgress, download_choice, part_paths
from launcher.errors import NotEnoughDiskSpace
from launcher.hub import list_gguf_files
from launcher.library import DiscoveryRoots, Library
from launcher.settings import Settings
from tests.support.hub_fixtures import make_gguf
from tests.support.loopback_hub import LoopbackHub

REPO = "me/diskfull-GGUF"
NAME = "diskfull-Q4_K_M.gguf"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs: a real file system that runs out of space."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_filling_up_mid_download_keeps_the_prefix_and_resumes(
    hub: LoopbackHub, app_home: Path, small_disk: Path
) -> None:
    data = make_gguf(name="diskfull") + random.Random(3).randbytes(3 * 2**20)
    hub.add_repo(REPO, {NAME: data})
    hub.fault(f"{REPO}/{NAME}", "slow", rate=512 * 1024)  # ~6 s: time for another app to fill
    lib = Library(settings=Settings(models_dir=str(small_disk)), roots=DiscoveryRoots())
    choice = list_gguf_files(REPO).choose(filename=NAME)
    filler = small_disk / "another-apps-file.bin"

    seen_bytes = 0
    with pytest.raises(NotEnoughDiskSpace, match="disk filled up") as err:
        for ev in download_choice(choice, lib, disk_margin=0):
            if isinstance(ev, DownloadProgress) and ev.bytes_done > 0 and not filler.exists():
                seen_bytes = ev.bytes_done
                # Another program takes every free byte while we download.
                with open(filler, "wb") as fh:
                    try:
                        while True:
                            fh.write(b"\0" * 65536)
                    except OSError:
                        pass
    assert seen_bytes > 0
    assert "Free some space" in str(err.value)
    part = part_paths(lib.local_path(REPO, NAME))[0]
    kept = part.read_bytes()
    assert 0 < len(kept) < len(data)
    assert kept == data[: len(kept)]  # exactly a prefix: nothing corrupt, nothing lost
    assert not lib.local_path(REPO, NAME).exists()  # nothing unverified in the library

    filler.unlink()
    hub.clear_faults()
    asked_before = len(hub.requests)
    events = list(download_choice(choice, lib, disk_margin=0))
    # Resumed where it stopped: the one file request asks only for the missing tail. (Not
    # counted in bytes served: the first run's rate-limited server thread may still be
    # writing its next chunk into the closed connection when that run returns.)
    gets = [r for r in hub.requests[asked_before:] if r.method == "GET" and NAME in r.path]
    assert [r.range for r in gets] == [f"bytes={len(kept)}-"]
    assert isinstance(events[-1], DownloadFinished)
    final = lib.local_path(REPO, NAME)
    assert hashlib.sha256(final.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert not part.exists()
