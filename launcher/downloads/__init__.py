"""Resumable, verified model downloads: our own HTTP Range downloader and a small queue.

Why not ``hf_hub_download``: since huggingface_hub 1.18 it deletes partial data on failure,
so a download interrupted by closing the app starts over. Here, data goes to
``<name>.gguf.part`` beside a sidecar ``<name>.gguf.part.json`` (repo, file, commit, size,
sha256). Run again, and the download resumes where the ``.part`` file ends: the existing
prefix is re-hashed (hash state cannot be saved portably), the rest fetched with ``Range``.
The sha256 is computed while downloading, on its own thread so hashing overlaps the network,
and checked against the Hub's LFS sha256 before an atomic rename into the models folder. A
mismatch sets the bad file aside (``.sha256-mismatch-<time>``) and says so; nothing is deleted
silently. ``huggingface_hub`` still provides the URL (``hf_hub_url`` on ``HF_ENDPOINT``), the
HTTP session and the auth headers.

Failures: dropped connections, short bodies, 408/429/5xx are retried with exponential backoff
(``Retry-After`` honoured, bounded); the retry budget refills whenever bytes arrive. 401/403/
404 raise :mod:`launcher.hub` errors that say what to do. Disk space is checked before start
(remaining size + margin); ``ENOSPC`` mid-way keeps the partial data for resume.

API: :func:`download_choice` is a generator of :class:`DownloadEvent` values (plain
dataclasses; progress throttled) and takes ``cancel``/``pause`` :class:`threading.Event`;
:class:`DownloadManager` runs a queue of them on one or two plain threads. No Qt here.
"""

from launcher.downloads.events import (
    DownloadEvent,
    DownloadFailed,
    DownloadFinished,
    DownloadPaused,
    DownloadProgress,
    DownloadRetrying,
    DownloadStopped,
    FileStarted,
    FileVerified,
)
from launcher.downloads.parts import CHUNK, PendingDownload, part_paths, pending_downloads
from launcher.downloads.policy import RetryPolicy
from launcher.downloads.queue import DownloadJob, DownloadManager, JobState
from launcher.downloads.transfer import DISK_MARGIN, download_choice

__all__ = [
    "CHUNK", "DISK_MARGIN", "DownloadEvent", "DownloadFailed", "DownloadFinished",
    "DownloadJob", "DownloadManager", "DownloadPaused", "DownloadProgress", "DownloadRetrying",
    "DownloadStopped", "FileStarted", "FileVerified", "JobState", "PendingDownload",
    "RetryPolicy", "download_choice", "part_paths", "pending_downloads",
]  # fmt: skip
