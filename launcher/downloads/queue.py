"""A download queue run by one or two plain threads (wrap ``on_event`` in a Qt signal)."""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from launcher.downloads.events import (
    DownloadEvent,
    DownloadFailed,
    DownloadFinished,
    DownloadPaused,
    DownloadProgress,
    DownloadStopped,
)
from launcher.downloads.parts import part_paths
from launcher.downloads.policy import RetryPolicy
from launcher.downloads.transfer import DISK_MARGIN, download_choice
from launcher.errors import DownloadCancelled, DownloadError, LauncherError
from launcher.hub import ModelChoice, redact
from launcher.library import Library


class JobState(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


_TERMINAL = {JobState.DONE, JobState.FAILED, JobState.CANCELLED}


@dataclass
class DownloadJob:
    """One queued model download and where it stands."""

    id: str
    choice: ModelChoice
    state: JobState = JobState.QUEUED
    bytes_done: int = 0
    error: str | None = None
    paths: tuple[Path, ...] = ()
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    pause: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def total(self) -> int:
        return self.choice.total_size


class DownloadManager:
    """A download queue run by ``max_parallel`` (1–2) plain threads; see the module docstring.

    ``on_event`` is called from the worker threads with every event (wrap it in a Qt signal in
    the UI). :meth:`shutdown` pauses what runs (data kept) and joins the threads.
    """

    def __init__(
        self,
        library: Library,
        *,
        max_parallel: int = 1,
        token: str | None = None,
        policy: RetryPolicy | None = None,
        on_event: Callable[[DownloadEvent], None] | None = None,
        progress_interval: float = 0.1,
        disk_margin: int = DISK_MARGIN,
    ) -> None:
        self.library = library
        self.max_parallel = max(1, min(2, max_parallel))
        self.token = token
        self.policy = policy
        self.on_event = on_event
        self.progress_interval = progress_interval
        self.disk_margin = disk_margin
        self._jobs: dict[str, DownloadJob] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._ids = itertools.count(1)
        self._closed = False

    def __enter__(self) -> DownloadManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def jobs(self) -> list[DownloadJob]:
        with self._cond:
            return list(self._jobs.values())

    def submit(self, choice: ModelChoice) -> DownloadJob:
        """Queue ``choice``; the same model already queued or running is returned instead."""
        with self._cond:
            if self._closed:
                raise DownloadError("The download queue is shut down.")
            for job in self._jobs.values():
                if job.choice == choice and job.state not in _TERMINAL:
                    if job.state == JobState.PAUSED:
                        self._requeue(job)
                    return job
            job = DownloadJob(f"dl-{next(self._ids)}", choice)
            self._jobs[job.id] = job
            self._queue.put(job.id)
            while len(self._threads) < self.max_parallel:
                t = threading.Thread(
                    target=self._worker, name=f"download-worker-{len(self._threads) + 1}"
                )
                self._threads.append(t)
                t.start()
            return job

    def _requeue(self, job: DownloadJob) -> None:
        job.pause.clear()
        job.cancel.clear()
        job.state = JobState.QUEUED
        job.error = None
        self._queue.put(job.id)
        self._cond.notify_all()

    def pause(self, job_id: str) -> None:
        with self._cond:
            job = self._jobs[job_id]
            if job.state == JobState.QUEUED:
                job.state = JobState.PAUSED
                self._cond.notify_all()
            job.pause.set()

    def resume(self, job_id: str) -> None:
        with self._cond:
            job = self._jobs[job_id]
            if job.state in (JobState.PAUSED, JobState.FAILED, JobState.CANCELLED):
                self._requeue(job)

    def cancel(self, job_id: str, *, discard: bool = False) -> None:
        """Stop a job; with ``discard`` its partial files are deleted (the user asked)."""
        with self._cond:
            job = self._jobs[job_id]
            job.cancel.set()
            if job.state in (JobState.QUEUED, JobState.PAUSED):
                job.state = JobState.CANCELLED
                self._cond.notify_all()
        if discard:
            self.wait(job_id)
            for f in job.choice.files:
                for p in part_paths(self.library.local_path(f.repo_id, f.path)):
                    with contextlib.suppress(OSError):
                        p.unlink()

    def wait(self, job_id: str, timeout: float | None = None) -> DownloadJob:
        """Block until the job is done, failed, cancelled or paused."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            job = self._jobs[job_id]
            while job.state not in _TERMINAL | {JobState.PAUSED}:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            return job

    def shutdown(self, timeout: float | None = 30.0) -> None:
        """Pause running jobs (data kept), stop the workers and join them."""
        with self._cond:
            self._closed = True
            for job in self._jobs.values():
                if job.state in (JobState.RUNNING, JobState.QUEUED):
                    job.pause.set()
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        for t in threads:
            t.join(timeout)

    def _emit(self, event: DownloadEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a broken listener must not kill the download
                pass

    def _worker(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._cond:
                job = self._jobs[job_id]
                if job.state != JobState.QUEUED:
                    continue
                if job.pause.is_set():
                    job.state = JobState.PAUSED
                    self._cond.notify_all()
                    continue
                job.state = JobState.RUNNING
                self._cond.notify_all()
            self._run(job)

    def _run(self, job: DownloadJob) -> None:
        state: JobState = JobState.DONE
        error: str | None = None
        paths: tuple[Path, ...] = ()
        try:
            for ev in download_choice(
                job.choice,
                self.library,
                token=self.token,
                cancel=job.cancel,
                pause=job.pause,
                policy=self.policy,
                job_id=job.id,
                progress_interval=self.progress_interval,
                disk_margin=self.disk_margin,
            ):
                if isinstance(ev, DownloadProgress):
                    job.bytes_done = ev.bytes_done
                if isinstance(ev, DownloadFinished):
                    paths = ev.paths
                    job.bytes_done = job.total
                self._emit(ev)
        except DownloadPaused as exc:
            state, error = JobState.PAUSED, str(exc)
        except DownloadCancelled as exc:
            state, error = JobState.CANCELLED, str(exc)
        except LauncherError as exc:
            state, error = JobState.FAILED, str(exc)
            self._emit(DownloadFailed(job.id, str(exc), exc))
        except Exception as exc:  # never let a worker die silently
            err = DownloadError(redact(f"Unexpected download failure: {exc!r}", self.token))
            state, error = JobState.FAILED, str(err)
            self._emit(DownloadFailed(job.id, str(err), err))
        if state in (JobState.PAUSED, JobState.CANCELLED):
            kept = 0
            for f in job.choice.files:
                part, _ = part_paths(self.library.local_path(f.repo_id, f.path))
                kept += part.stat().st_size if part.exists() else 0
            self._emit(DownloadStopped(job.id, state == JobState.PAUSED, kept))
        with self._cond:
            job.state, job.error, job.paths = state, error, paths
            self._cond.notify_all()
