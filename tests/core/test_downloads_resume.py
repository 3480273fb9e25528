"""Downloads survive being killed: SIGKILL at 20 random points, restart, right sha256.

Also the main path end to end: the real Gemma 3 270M GGUF from the loopback hub is
downloaded, verified and listed by the library with its header summary.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from launcher.downloads import DownloadFinished, FileVerified, download_choice, part_paths
from launcher.hub import list_gguf_files
from launcher.library import DiscoveryRoots, Library
from tests.support.hub_fixtures import GEMMA_FILE, GEMMA_REPO
from tests.support.loopback_hub import HubRepo, LoopbackHub

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from launcher.downloads import RetryPolicy, download_choice
from launcher.hub import list_gguf_files
from launcher.library import DiscoveryRoots, Library
lib = Library(roots=DiscoveryRoots())
choice = list_gguf_files(sys.argv[1]).choose(filename=sys.argv[2])
for _ in download_choice(choice, lib, policy=RetryPolicy(base_delay=0.01), disk_margin=0):
    pass
print("done")
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_killed_twenty_times_resumes_to_the_right_file(
    hub: LoopbackHub, app_home: Path, tmp_path: Path
) -> None:
    data = random.Random(5).randbytes(3 * 2**20 + 12345)
    expected = hashlib.sha256(data).hexdigest()
    repo, name = "me/resume-GGUF", "resume-Q4_K_M.gguf"
    hub.add_repo(repo, {name: data})
    hub.fault(repo, "slow", rate=1.5 * 2**20, times=None)  # throttled so kills land mid-file
    lib = Library(roots=DiscoveryRoots())
    dest = lib.local_path(repo, name)
    part, sidecar = part_paths(dest)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", CHILD, repo, name]
    targets = sorted(random.Random(2024).sample(range(1, len(data)), 20))
    kills = 0
    for target in targets:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, cwd=ROOT)
        try:
            while proc.poll() is None:
                if part.exists() and part.stat().st_size >= target:
                    break
                time.sleep(0.001)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
        # Whatever the moment of death, the library never shows an unverified file.
        for model in lib.scan(other_tools=False):
            assert model.verified and _sha(model.path) == expected
        if dest.exists():
            break
    assert kills >= 15
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "done"
    assert _sha(dest) == expected
    assert not part.exists() and not sidecar.exists()
    [model] = lib.scan(other_tools=False)
    assert model.path == dest and model.verified and model.sha256 == expected
    # Each restart asked for the bytes after what it had: the download resumed, never restarted.
    starts = [
        int(r.range.split("=")[1].split("-")[0])
        for r in hub.requests
        if r.method == "GET" and r.range and "/resolve/" in r.path
    ]
    assert starts == sorted(starts)
    assert starts.count(0) == 1 and len(starts) >= 10


def test_gemma_downloads_verifies_and_appears_in_the_library(
    hub: LoopbackHub, gemma_repo: HubRepo, app_home: Path, gemma_path: Path
) -> None:
    lib = Library(roots=DiscoveryRoots())
    files = list_gguf_files(GEMMA_REPO)
    choice = files.choose(quant="Q4_K_M")
    assert choice.first_file.size == gemma_path.stat().st_size
    events = list(download_choice(choice, lib))
    assert isinstance(events[-1], DownloadFinished)
    [path] = events[-1].paths
    assert path.name == GEMMA_FILE and path.is_relative_to(lib.models_dir)
    [model] = lib.scan(other_tools=False)
    assert model.verified and model.sha256 == gemma_repo.files[GEMMA_FILE].sha256
    assert model.architecture == "gemma3" and model.quant == "Q4_K_M"
    assert model.context_length == 32768 and model.parameters and model.parameters > 2e8
    # Run again: nothing is fetched, the verified file is recognised.
    served = sum(hub.bytes_served.values())
    again = list(download_choice(choice, lib))
    verified = [e for e in again if isinstance(e, FileVerified)]
    assert verified and verified[0].already_present
    assert sum(hub.bytes_served.values()) == served


FULL_DISK_CHILD = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
from launcher.downloads import download_choice
from launcher.errors import NotEnoughDiskSpace
from launcher.hub import list_gguf_files
from launcher.library import DiscoveryRoots, Library
lib = Library(roots=DiscoveryRoots())
choice = list_gguf_files(sys.argv[1]).choose(filename=sys.argv[2])
try:
    for _ in download_choice(choice, lib, disk_margin=0):
        pass
except NotEnoughDiskSpace as exc:
    print(exc)
    sys.exit(3)
"""


def test_a_write_limit_mid_download_keeps_exactly_the_hashed_prefix(
    hub: LoopbackHub, app_home: Path
) -> None:
    data = random.Random(9).randbytes(2 * 2**20)
    repo, name = "me/full-GGUF", "full-Q4_K_M.gguf"
    hub.add_repo(repo, {name: data})
    limit = 700_000  # like a FAT32 drive: the child may not write files past this size
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", FULL_DISK_CHILD, repo, name, str(limit)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 3, out.stderr
    assert "are kept" in out.stdout and "Settings" in out.stdout
    lib = Library(roots=DiscoveryRoots())
    part, _ = part_paths(lib.local_path(repo, name))
    kept = part.stat().st_size
    assert 0 < kept <= limit
    assert part.read_bytes() == data[:kept]  # exactly the prefix: a resume stays exact
    events = list(download_choice(list_gguf_files(repo).choose(), lib, disk_margin=0))
    assert isinstance(events[-1], DownloadFinished)
    assert _sha(events[-1].paths[0]) == hashlib.sha256(data).hexdigest()
