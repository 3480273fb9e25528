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

from __future__ import annotations

import contextlib
import email.utils
import errno
import hashlib
import itertools
import os
import queue
import random
import shutil
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from launcher.errors import (
    ChecksumMismatch,
    DownloadCancelled,
    DownloadError,
    LauncherError,
    NotEnoughDiskSpace,
)
from launcher.fsutil import atomic_write_json, fsync_dir, read_json
from launcher.hub import ModelChoice, RemoteFile, error_for_status, get_token, redact
from launcher.library import Library, set_aside_path

CHUNK = 1 << 20
DISK_MARGIN = 256 << 20
_SIDECAR_VERSION = 1


class DownloadPaused(DownloadCancelled):
    """The download was paused; its partial data is kept and it resumes when started again."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry. ``max_attempts`` counts consecutive failures with no bytes received."""

    max_attempts: int = 8
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    read_timeout: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_retry_after))
        d = min(self.max_delay, self.base_delay * 2 ** max(0, attempt - 1))
        return d * (0.75 + 0.5 * random.random())  # jitter: many clients do not retry in step


# ---------------------------------------------------------------------- events
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


# ---------------------------------------------------------------------- helpers
class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Hasher:
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


class _Meter:
    """Job-wide bytes, windowed speed, ETA and event throttling."""

    def __init__(self, total: int, interval: float) -> None:
        self.total = total
        self.done = 0
        self.interval = interval
        self._samples: deque[tuple[float, int]] = deque()
        self._last_emit = 0.0

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        self._samples.append((now, self.done))
        while self._samples and now - self._samples[0][0] > 5.0:
            self._samples.popleft()

    def speed(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def due(self, force: bool = False) -> bool:
        now = time.monotonic()
        if force or now - self._last_emit >= self.interval:
            self._last_emit = now
            return True
        return False

    def event(self, job_id: str, file: str, index: int, count: int) -> DownloadProgress:
        speed = self.speed()
        left = max(0, self.total - self.done)
        eta = left / speed if speed > 0 else None
        return DownloadProgress(job_id, file, self.done, self.total, speed, eta, index, count)


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


def _check_space(dest: Path, need: int, margin: int) -> None:
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


def _lock(fh: Any, name: str) -> None:
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


def _sha256_file(path: Path, limit: int | None = None) -> str:
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


# ---------------------------------------------------------------------- one file
@dataclass
class _Ctx:
    job_id: str
    token: str | None
    cancel: threading.Event
    pause: threading.Event
    policy: RetryPolicy
    meter: _Meter
    library: Library | None
    disk_margin: int
    client: Any
    headers: dict[str, str]


def _stopped(ctx: _Ctx, part: Path) -> DownloadCancelled:
    kept = part.stat().st_size if part.exists() else 0
    if ctx.pause.is_set():
        return DownloadPaused(
            f"Download paused; {kept / 2**20:.0f} MB kept, it resumes where it stopped."
        )
    return DownloadCancelled(
        f"Download cancelled; {kept / 2**20:.0f} MB kept in {part.name} so it can resume."
    )


def _download_file(
    ctx: _Ctx, rf: RemoteFile, dest: Path, index: int, count: int
) -> Iterator[DownloadEvent]:
    part, sidecar = part_paths(dest)
    # Already here and verified (by us, unchanged since): nothing to do.
    if dest.exists() and dest.stat().st_size == rf.size:
        if rf.sha256 is None or (ctx.library and ctx.library.is_verified(dest, rf.sha256)):
            ctx.meter.add(rf.size)
            yield FileVerified(ctx.job_id, rf.path, dest, rf.sha256, already_present=True)
            return
        if _sha256_file(dest) == rf.sha256:
            if ctx.library:
                ctx.library.record_verified(
                    dest, rf.sha256, repo_id=rf.repo_id, revision=rf.revision
                )
            ctx.meter.add(rf.size)
            yield FileVerified(ctx.job_id, rf.path, dest, rf.sha256, already_present=True)
            return
    meta = {
        "version": _SIDECAR_VERSION,
        "repo_id": rf.repo_id,
        "path": rf.path,
        "revision": rf.revision,
        "size": rf.size,
        "sha256": rf.sha256,
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    hasher = _Hasher()
    try:
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
        with os.fdopen(fd, "r+b", buffering=0) as fh:
            _lock(fh, rf.path)
            old = read_json(sidecar, None)
            same = isinstance(old, dict) and all(
                old.get(k) == meta[k] for k in ("repo_id", "path", "size", "sha256")
            )
            have = os.fstat(fh.fileno()).st_size if same else 0
            if have > rf.size:
                have = 0
            _check_space(dest, rf.size - have, ctx.disk_margin)
            atomic_write_json(sidecar, meta)
            fh.truncate(have)
            # Re-hash the prefix we keep (the only way to resume a sha256 portably).
            fh.seek(0)
            left = have
            while left > 0:
                block = fh.read(min(8 * CHUNK, left))
                if not block:
                    break
                hasher.update(block)
                left -= len(block)
            fh.seek(have)
            ctx.meter.add(have)
            yield FileStarted(ctx.job_id, rf.path, rf.size, have)
            yield ctx.meter.event(ctx.job_id, rf.path, index, count)
            yield from _fetch(ctx, rf, fh, part, hasher, have, index, count)
            os.fsync(fh.fileno())
        digest = hasher.hexdigest()
    finally:
        hasher.close()
    if rf.sha256 is not None and digest != rf.sha256:
        bad = set_aside_path(dest, time.time())  # listed by Library.set_aside_files
        os.replace(part, bad)
        with contextlib.suppress(OSError):
            sidecar.unlink()
        raise ChecksumMismatch(
            f"{rf.path} from {rf.repo_id} arrived corrupted (sha256 {digest[:12]}… instead of "
            f"{rf.sha256[:12]}…). The bad file was kept as {bad} (the Library lists it as "
            f"failed verification: delete it there to free {rf.size / 2**30:.2f} GB); run the "
            "download again to fetch it afresh."
        )
    os.replace(part, dest)
    fsync_dir(dest.parent)
    with contextlib.suppress(OSError):
        sidecar.unlink()
    if ctx.library:
        ctx.library.record_verified(dest, rf.sha256, repo_id=rf.repo_id, revision=rf.revision)
    yield ctx.meter.event(ctx.job_id, rf.path, index, count)
    yield FileVerified(ctx.job_id, rf.path, dest, rf.sha256)


def _write_all(fh: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = fh.write(view)
        view = view[n:]


def _fetch(
    ctx: _Ctx,
    rf: RemoteFile,
    fh: Any,
    part: Path,
    hasher: _Hasher,
    have: int,
    index: int,
    count: int,
) -> Iterator[DownloadEvent]:
    import httpx2

    attempt = 0
    done = have
    url = rf.url
    while done < rf.size:
        if ctx.cancel.is_set() or ctx.pause.is_set():
            raise _stopped(ctx, part)
        progressed = False
        try:
            headers = dict(ctx.headers)
            headers["Range"] = f"bytes={done}-"
            timeout = httpx2.Timeout(30.0, read=ctx.policy.read_timeout)
            with (
                ctx.client.stream(
                    "GET", url, headers=headers, follow_redirects=True, timeout=timeout
                ) as r,
                _Watchdog(ctx, r),
            ):
                status = r.status_code
                if status in (408, 429) or status >= 500:
                    raise _Transient(
                        f"HTTP {status}", _parse_retry_after(r.headers.get("Retry-After"))
                    )
                if status == 416:
                    # The server has less than we think: the file changed; start over.
                    raise _Restart()
                if status >= 400:
                    raise error_for_status(
                        status,
                        rf.repo_id,
                        filename=rf.path,
                        error_code=r.headers.get("X-Error-Code"),
                        server_message=r.headers.get("X-Error-Message"),
                        token=ctx.token,
                    )
                if status == 200 and done > 0:
                    raise _Restart()  # the server ignored Range: only a fresh start is safe
                if status == 206:
                    cr = r.headers.get("Content-Range", "")
                    if not cr.startswith(f"bytes {done}-"):
                        raise _Transient(f"unexpected Content-Range {cr!r}")
                for chunk in r.iter_raw():
                    if not chunk:
                        continue
                    if done + len(chunk) > rf.size:
                        raise DownloadError(
                            f"The Hub sent more data than {rf.path} should have "
                            f"({rf.size} bytes); run the download again."
                        )
                    try:
                        _write_all(fh, chunk)
                    except OSError as exc:
                        if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                            raise
                        # Keep exactly the bytes that were hashed, so a resume stays exact.
                        with contextlib.suppress(OSError):
                            fh.truncate(done)
                        kept = f"{done / 2**20:.0f} MB of {rf.size / 2**20:.0f} MB are kept"
                        if exc.errno == errno.EFBIG:
                            raise NotEnoughDiskSpace(
                                f"The models folder's file system cannot hold a file as big as "
                                f"{rf.path} ({kept}); FAT32 drives stop at 4 GB. Choose a "
                                "models folder on another drive in Settings."
                            ) from None
                        raise NotEnoughDiskSpace(
                            f"The disk filled up while downloading {rf.path}: {kept}. "
                            "Free some space and run the download again to resume."
                        ) from None
                    hasher.update(chunk)
                    done += len(chunk)
                    progressed = True
                    ctx.meter.add(len(chunk))
                    if ctx.meter.due():
                        yield ctx.meter.event(ctx.job_id, rf.path, index, count)
                    if ctx.cancel.is_set() or ctx.pause.is_set():
                        raise _stopped(ctx, part)
                if done < rf.size:
                    raise _Transient("the connection ended early")
        except _Restart:
            ctx.meter.add(-done)
            done = 0
            fh.seek(0)
            fh.truncate(0)
            hasher.reset()
            attempt += 1
            if attempt > ctx.policy.max_attempts:
                raise DownloadError(
                    f"The Hub kept restarting {rf.path}; try again later."
                ) from None
            continue
        except LauncherError:
            raise
        except Exception as exc:
            if ctx.cancel.is_set() or ctx.pause.is_set():
                raise _stopped(ctx, part) from None  # the watchdog closed the stream
            if not isinstance(exc, _Transient | httpx2.TransportError):
                raise
            if progressed:
                attempt = 0
            attempt += 1
            reason = exc.reason if isinstance(exc, _Transient) else type(exc).__name__
            retry_after = exc.retry_after if isinstance(exc, _Transient) else None
            if attempt > ctx.policy.max_attempts:
                raise DownloadError(
                    redact(
                        f"Downloading {rf.path} failed {attempt - 1} times in a row ({reason}); "
                        f"{done / 2**20:.0f} MB are kept. Check your connection and run the "
                        "download again to resume.",
                        ctx.token,
                    )
                ) from None
            delay = ctx.policy.delay(attempt, retry_after)
            yield DownloadRetrying(ctx.job_id, rf.path, attempt, delay, reason)
            if _interruptible_sleep(ctx, delay):
                raise _stopped(ctx, part) from None


class _Restart(Exception):
    pass


class _Watchdog:
    """Closes the response when the job is paused or cancelled, so a stalled read ends now.

    Without it, pause/cancel would wait for the next bytes or the read timeout (a minute).
    """

    def __init__(self, ctx: _Ctx, response: Any) -> None:
        self._ctx = ctx
        self._response = response
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-watchdog", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(0.1):
            if self._ctx.cancel.is_set() or self._ctx.pause.is_set():
                # Closing the response does not wake a thread blocked in recv(); shutting the
                # socket down does (httpcore exposes it as the "network_stream" extension).
                with contextlib.suppress(Exception):
                    stream = self._response.extensions.get("network_stream")
                    sock = stream.get_extra_info("socket") if stream is not None else None
                    if sock is not None:
                        sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(Exception):
                    self._response.close()
                return


def _interruptible_sleep(ctx: _Ctx, delay: float) -> bool:
    """Sleep ``delay`` s; return True early if the job is cancelled or paused meanwhile."""
    end = time.monotonic() + delay
    while (left := end - time.monotonic()) > 0:
        if ctx.cancel.wait(min(left, 0.1)) or ctx.pause.is_set():
            return True
    return ctx.cancel.is_set() or ctx.pause.is_set()


# ---------------------------------------------------------------------- a whole model
def download_choice(
    choice: ModelChoice,
    library: Library,
    *,
    token: str | None = None,
    cancel: threading.Event | None = None,
    pause: threading.Event | None = None,
    policy: RetryPolicy | None = None,
    job_id: str = "",
    progress_interval: float = 0.1,
    disk_margin: int = DISK_MARGIN,
) -> Iterator[DownloadEvent]:
    """Download every file of ``choice`` into ``library``'s models folder, verified.

    Yields events; the last is :class:`DownloadFinished`. Raises :class:`LauncherError`
    subclasses (``DownloadCancelled``/``DownloadPaused`` when stopped). Safe to call again
    after any failure or a killed process: it resumes.
    """
    from huggingface_hub.utils import build_hf_headers, get_session

    token = token if token is not None else get_token()
    dests = [library.local_path(f.repo_id, f.path) for f in choice.files]
    # Space for the whole model up front, so a split set does not fail at its last shard.
    remaining = 0
    for f, d in zip(choice.files, dests, strict=True):
        if d.exists() and d.stat().st_size == f.size:
            continue
        part, _ = part_paths(d)
        remaining += f.size - (min(part.stat().st_size, f.size) if part.exists() else 0)
    _check_space(dests[0], remaining, disk_margin)
    headers = build_hf_headers(token=token if token else False)
    headers["Accept-Encoding"] = "identity"
    ctx = _Ctx(
        job_id=job_id,
        token=token,
        cancel=cancel or threading.Event(),
        pause=pause or threading.Event(),
        policy=policy or RetryPolicy(),
        meter=_Meter(choice.total_size, progress_interval),
        library=library,
        disk_margin=disk_margin,
        client=get_session(),
        headers=headers,
    )
    paths = []
    try:
        for i, (f, d) in enumerate(zip(choice.files, dests, strict=True)):
            yield from _download_file(ctx, f, d, i, len(choice.files))
            paths.append(d)
    except LauncherError:
        raise
    except OSError as exc:
        raise DownloadError(
            redact(
                f"Could not write the download to {dests[0].parent}: {exc.strerror or exc}. "
                "Check the models folder's permissions and free space; partial data is kept.",
                token,
            )
        ) from None
    yield DownloadFinished(job_id, tuple(paths))


# ---------------------------------------------------------------------- the queue
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
