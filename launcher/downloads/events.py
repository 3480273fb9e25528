"""What a download reports: plain frozen dataclasses, throttled progress included."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from launcher.errors import DownloadCancelled, LauncherError


class DownloadPaused(DownloadCancelled):
    """The download was paused; its partial data is kept and it resumes when started again."""


@dataclass(frozen=True)
class DownloadEvent:
    job_id: str


@dataclass(frozen=True)
class FileStarted(DownloadEvent):
    file: str
    size: int
    resumed_from: int


@dataclass(frozen=True)
class DownloadProgress(DownloadEvent):
    """Raw numbers for the whole job (all files); the UI formats them."""

    file: str
    bytes_done: int
    total: int
    speed: float  # bytes per second over the last few seconds
    eta: float | None  # seconds
    file_index: int
    file_count: int


@dataclass(frozen=True)
class DownloadRetrying(DownloadEvent):
    file: str
    attempt: int
    delay: float
    reason: str


@dataclass(frozen=True)
class FileVerified(DownloadEvent):
    file: str
    path: Path
    sha256: str | None
    already_present: bool = False


@dataclass(frozen=True)
class DownloadFinished(DownloadEvent):
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class DownloadFailed(DownloadEvent):
    message: str
    error: LauncherError


@dataclass(frozen=True)
class DownloadStopped(DownloadEvent):
    """Paused or cancelled by the user; partial data kept."""

    paused: bool
    bytes_kept: int
