"""``DownloadService``: the Library's download manager, relayed into the GUI as rows.

It owns a ``launcher.downloads.DownloadManager`` (plain worker threads doing the HTTP, hashing
and verification) and turns its events, which arrive on those threads, into ``DownloadRow``s
emitted through ``progressed``; Qt queues the signal to the GUI thread. Resolving a catalog
row to the Hub's file list (sizes, sha256) is network work too, so ``start`` does it on the
network ``TaskRunner``. The manager reports progress at most every 0.2 s per download.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from launcher.downloads.events import (
    DownloadEvent,
    DownloadFailed,
    DownloadFinished,
    DownloadProgress,
    DownloadRetrying,
    DownloadStopped,
    FileStarted,
    FileVerified,
)
from launcher.paths import AppPaths
from launcher.settings import Settings
from ui.models.rows import DownloadRow
from ui.workers import TaskRunner


class DownloadService(QObject):
    """Start, pause, resume, cancel and retry downloads; rows come out of ``progressed``."""

    progressed = Signal(object)  # DownloadRow (a fresh copy each time)

    def __init__(self, paths: AppPaths, settings: Settings, runner: TaskRunner) -> None:
        super().__init__()
        from launcher.downloads import DownloadManager
        from launcher.library import Library

        self.library = Library(paths, settings)
        self._runner = runner
        self._rows: dict[str, DownloadRow] = {}  # our id (repo/file) -> row
        self._jobs: dict[str, str] = {}  # our id -> manager's job id
        self._ids: dict[str, str] = {}  # manager's job id -> our id
        self.manager = DownloadManager(
            self.library,
            max_parallel=settings.max_parallel_downloads,
            on_event=self._on_event,
            progress_interval=0.2,
        )

    def start(self, repo: str, filename: str, name: str) -> str:
        """Queue ``repo``/``filename``; returns the id the rows carry."""
        download_id = f"{repo}/{filename}"
        row = DownloadRow(download_id, name, state="queued", repo=repo, filename=filename)
        self._rows[download_id] = row
        self.progressed.emit(_copy(row))

        def resolve() -> Any:
            from launcher import hub
            from launcher.errors import LauncherError

            files = hub.list_gguf_files(repo)
            if filename:
                return files.choose(filename=filename)
            try:  # a Hub search result: the usual best trade-off, else the only file
                return files.choose(quant="Q4_K_M")
            except LauncherError:
                return files.choose()

        self._runner.submit(
            resolve,
            lambda choice: self._submit(download_id, choice),
            lambda message: self._fail(download_id, message),
        )
        return download_id

    def _submit(self, download_id: str, choice: Any) -> None:
        row = self._rows[download_id]
        row.total_bytes = int(choice.total_size)
        row.filename = row.filename or choice.first_file.path
        job = self.manager.submit(choice)
        self._jobs[download_id] = job.id
        self._ids[job.id] = download_id
        self.progressed.emit(_copy(row))

    def _fail(self, download_id: str, message: str) -> None:
        row = self._rows[download_id]
        row.state, row.error = "failed", message
        self.progressed.emit(_copy(row))

    # Called on the manager's threads: only touch our rows and emit (Qt queues the signal).
    def _on_event(self, event: DownloadEvent) -> None:
        download_id = self._ids.get(event.job_id)
        if download_id is None:
            return
        row = self._rows[download_id]
        match event:
            case FileStarted():
                row.state, row.error = "downloading", ""
            case DownloadProgress(bytes_done=done, total=total):
                row.state = "verifying" if total and done >= total else "downloading"
                row.done_bytes, row.total_bytes = done, total
                row.speed, row.eta_s, row.error = event.speed, event.eta, ""
            case DownloadRetrying(delay=delay, reason=reason):
                row.error = f"retrying in {delay:.0f} s: {reason}"
            case FileVerified(path=path):
                row.path = str(path)
            case DownloadFinished(paths=paths):
                row.state, row.verified, row.error = "done", True, ""
                row.done_bytes = row.total_bytes or row.done_bytes
                row.speed, row.eta_s = None, None
                if paths:
                    row.path = str(paths[0])
            case DownloadFailed(message=message):
                row.state, row.error = "failed", str(message)
            case DownloadStopped(paused=paused, bytes_kept=kept):
                row.state = "paused" if paused else "cancelled"
                row.done_bytes = kept
            case _:
                return
        self.progressed.emit(_copy(row))

    def _call(self, download_id: str, action: str) -> None:
        job_id = self._jobs.get(download_id)
        if job_id is not None:
            getattr(self.manager, action)(job_id)

    def pause(self, download_id: str) -> None:
        self._call(download_id, "pause")

    def resume(self, download_id: str) -> None:
        self._call(download_id, "resume")

    def cancel(self, download_id: str) -> None:
        self._call(download_id, "cancel")

    def retry(self, download_id: str) -> None:
        if download_id in self._jobs:
            self._call(download_id, "resume")
            return
        row = self._rows.get(download_id)
        if row is not None:  # the Hub lookup itself failed: look it up again
            self.start(row.repo, row.filename, row.name)

    def shutdown(self) -> None:
        """Pause running downloads (their data is kept for resume) and join the threads."""
        self.manager.shutdown()


def _copy(row: DownloadRow) -> DownloadRow:
    return DownloadRow(**row.__dict__)
