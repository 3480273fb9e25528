"""Partial downloads on disk: the ``.part`` file and its sidecar, its lock, the free-space
check, hashing (overlapping the network) and finding unfinished downloads after a restart."""

from __future__ import annotations

import hashlib
import queue
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.errors import DownloadError, LauncherError, NotEnoughDiskSpace
from launcher.fsutil import read_json
from launcher.hub import ModelChoice
from launcher.library import Library

CHUNK = 1 << 20
SIDECAR_VERSION = 1


class Hasher:
    """sha256 on a helper thread so hashing overlaps network and disk (hashlib drops the GIL)."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self._q: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self._t = threading.Thread(target=self._run, name="download-sha256", daemon=True)
        self._t.start()
        self._closed = False

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            self._h.update(item)

    def update(self, data: bytes) -> None:
        self._q.put(data)

    def reset(self) -> None:
        """Forget everything hashed so far (the download starts over)."""
        self.close()
        self.__init__()  # type: ignore[misc]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._q.put(None)
            self._t.join()

    def hexdigest(self) -> str:
        self.close()
        return self._h.hexdigest()


def part_paths(dest: Path) -> tuple[Path, Path]:
    """The ``.part`` data file and its sidecar for a final path."""
    return dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")


@dataclass(frozen=True)
class PendingDownload:
    """An unfinished download found on disk (after a restart), ready to be resumed."""

    repo_id: str
    path: str
    revision: str | None
    size: int
    bytes_kept: int
    part: Path

    def choice(self, token: str | None = None) -> ModelChoice:
        """Look the file up on the Hub again (a split file brings its whole set)."""
        from launcher.hub import list_gguf_files

        return list_gguf_files(self.repo_id, token=token).choose(filename=self.path)


def pending_downloads(library: Library) -> list[PendingDownload]:
    """Unfinished downloads in the models folder (their sidecars), e.g. to offer "Resume"."""
    out: list[PendingDownload] = []
    root = library.models_dir
    if not root.is_dir():
        return out
    for sidecar in sorted(root.rglob("*.gguf.part.json")):
        meta = read_json(sidecar, None)
        part = sidecar.with_name(sidecar.name.removesuffix(".json"))
        if not isinstance(meta, dict) or not part.exists():
            continue
        try:
            repo_id, path, size = str(meta["repo_id"]), str(meta["path"]), int(meta["size"])
            if library.local_path(repo_id, path) != part.with_name(part.name[: -len(".part")]):
                continue  # a sidecar that does not describe the file beside it
        except (KeyError, TypeError, ValueError, LauncherError):
            continue
        rev = meta.get("revision")
        kept = min(part.stat().st_size, size)
        out.append(
            PendingDownload(repo_id, path, rev if isinstance(rev, str) else None, size, kept, part)
        )
    return out


def check_space(dest: Path, need: int, margin: int) -> None:
    probe = dest.parent
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need + margin:
        raise NotEnoughDiskSpace(
            f"Not enough disk space for {dest.name}: it needs {(need + margin) / 2**30:.2f} GB "
            f"free on {probe} (including a safety margin) but only {free / 2**30:.2f} GB is "
            "free. Free some space or choose another models folder in Settings."
        )


def lock_part(fh: Any, name: str) -> None:
    """Take an exclusive lock on the ``.part`` file; the OS drops it if the process dies."""
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise DownloadError(
            f"{name} is already being downloaded by another Spark Launcher window or command; "
            "wait for that one to finish."
        ) from None


def sha256_file(path: Path, limit: int | None = None) -> str:
    h = hashlib.sha256()
    left = limit
    with open(path, "rb") as fh:
        while left is None or left > 0:
            block = fh.read(8 * CHUNK if left is None else min(8 * CHUNK, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h.hexdigest()
