"""One model's files fetched with HTTP Range into ``.part`` files, verified and renamed."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.downloads.events import (
    DownloadEvent,
    DownloadFinished,
    DownloadPaused,
    DownloadProgress,
    DownloadRetrying,
    FileStarted,
    FileVerified,
)
from launcher.downloads.parts import (
    CHUNK,
    SIDECAR_VERSION,
    Hasher,
    check_space,
    lock_part,
    part_paths,
    sha256_file,
)
from launcher.downloads.policy import RetryPolicy, Transient, parse_retry_after
from launcher.errors import (
    ChecksumMismatch,
    DownloadCancelled,
    DownloadError,
    LauncherError,
    NotEnoughDiskSpace,
)
from launcher.fsutil import atomic_write_json, fsync_dir, read_json
from launcher.httpio import shutdown_socket
from launcher.hub import ModelChoice, RemoteFile, error_for_status, get_token, redact
from launcher.library import Library, set_aside_path

DISK_MARGIN = 256 << 20


class Meter:
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


# ---------------------------------------------------------------------- one file
@dataclass
class _Ctx:
    job_id: str
    token: str | None
    cancel: threading.Event
    pause: threading.Event
    policy: RetryPolicy
    meter: Meter
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
        if sha256_file(dest) == rf.sha256:
            if ctx.library:
                ctx.library.record_verified(
                    dest, rf.sha256, repo_id=rf.repo_id, revision=rf.revision
                )
            ctx.meter.add(rf.size)
            yield FileVerified(ctx.job_id, rf.path, dest, rf.sha256, already_present=True)
            return
    meta = {
        "version": SIDECAR_VERSION,
        "repo_id": rf.repo_id,
        "path": rf.path,
        "revision": rf.revision,
        "size": rf.size,
        "sha256": rf.sha256,
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    hasher = Hasher()
    try:
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
        with os.fdopen(fd, "r+b", buffering=0) as fh:
            lock_part(fh, rf.path)
            old = read_json(sidecar, None)
            same = isinstance(old, dict) and all(
                old.get(k) == meta[k] for k in ("repo_id", "path", "size", "sha256")
            )
            have = os.fstat(fh.fileno()).st_size if same else 0
            if have > rf.size:
                have = 0
            check_space(dest, rf.size - have, ctx.disk_margin)
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
    hasher: Hasher,
    have: int,
    index: int,
    count: int,
) -> Iterator[DownloadEvent]:
    """Fetch ``rf`` from byte ``have`` to its end into ``fh``, retrying what can be retried:
    the retry budget refills whenever bytes arrive; a server that ignores ``Range`` or has
    less than expected means starting the file over."""
    import httpx2

    attempt = 0
    done = have
    while done < rf.size:
        if ctx.cancel.is_set() or ctx.pause.is_set():
            raise _stopped(ctx, part)
        start = done
        try:
            with _open_range(ctx, rf, done) as r:
                for chunk in r.iter_raw():
                    if not chunk:
                        continue
                    done = _append(ctx, rf, fh, hasher, chunk, done)
                    if ctx.meter.due():
                        yield ctx.meter.event(ctx.job_id, rf.path, index, count)
                    if ctx.cancel.is_set() or ctx.pause.is_set():
                        raise _stopped(ctx, part)
                if done < rf.size:
                    raise Transient("the connection ended early")
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
        except LauncherError:
            raise
        except Exception as exc:
            if ctx.cancel.is_set() or ctx.pause.is_set():
                raise _stopped(ctx, part) from None  # the watchdog closed the stream
            if not isinstance(exc, Transient | httpx2.TransportError):
                raise
            attempt = 1 if done > start else attempt + 1
            reason = exc.reason if isinstance(exc, Transient) else type(exc).__name__
            if attempt > ctx.policy.max_attempts:
                raise DownloadError(
                    redact(
                        f"Downloading {rf.path} failed {attempt - 1} times in a row ({reason}); "
                        f"{done / 2**20:.0f} MB are kept. Check your connection and run the "
                        "download again to resume.",
                        ctx.token,
                    )
                ) from None
            retry_after = exc.retry_after if isinstance(exc, Transient) else None
            delay = ctx.policy.delay(attempt, retry_after)
            yield DownloadRetrying(ctx.job_id, rf.path, attempt, delay, reason)
            if _interruptible_sleep(ctx, delay):
                raise _stopped(ctx, part) from None


@contextlib.contextmanager
def _open_range(ctx: _Ctx, rf: RemoteFile, done: int) -> Iterator[Any]:
    """The response for bytes ``done``- of ``rf``, its status checked, under a watchdog."""
    import httpx2

    headers = {**ctx.headers, "Range": f"bytes={done}-"}
    timeout = httpx2.Timeout(30.0, read=ctx.policy.read_timeout)
    with (
        ctx.client.stream(
            "GET", rf.url, headers=headers, follow_redirects=True, timeout=timeout
        ) as r,
        _Watchdog(ctx, r),
    ):
        _check_status(ctx, rf, r, done)
        yield r


def _check_status(ctx: _Ctx, rf: RemoteFile, r: Any, done: int) -> None:
    """Raise what a response's status means: retry, start over, or a Hub error."""
    status = r.status_code
    if status in (408, 429) or status >= 500:
        raise Transient(f"HTTP {status}", parse_retry_after(r.headers.get("Retry-After")))
    if status == 416:
        raise _Restart()  # the server has less than we think: the file changed
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
            raise Transient(f"unexpected Content-Range {cr!r}")


def _append(ctx: _Ctx, rf: RemoteFile, fh: Any, hasher: Hasher, chunk: bytes, done: int) -> int:
    """Write and hash one chunk at byte ``done``; return the new count. A full disk keeps
    exactly the bytes hashed so far (a resume stays exact) and says what to do."""
    if done + len(chunk) > rf.size:
        raise DownloadError(
            f"The Hub sent more data than {rf.path} should have ({rf.size} bytes); run the "
            "download again."
        )
    try:
        _write_all(fh, chunk)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise
        with contextlib.suppress(OSError):
            fh.truncate(done)
        kept = f"{done / 2**20:.0f} MB of {rf.size / 2**20:.0f} MB are kept"
        if exc.errno == errno.EFBIG:
            raise NotEnoughDiskSpace(
                f"The models folder's file system cannot hold a file as big as {rf.path} "
                f"({kept}); FAT32 drives stop at 4 GB. Choose a models folder on another "
                "drive in Settings."
            ) from None
        raise NotEnoughDiskSpace(
            f"The disk filled up while downloading {rf.path}: {kept}. Free some space and "
            "run the download again to resume."
        ) from None
    hasher.update(chunk)
    ctx.meter.add(len(chunk))
    return done + len(chunk)


class _Restart(Exception):
    pass


class _Watchdog:
    """Shuts the response's socket down when the job is paused or cancelled, so a stalled
    read ends now, not at the next bytes or the read timeout (a minute)."""

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
                shutdown_socket(self._response)
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
    check_space(dests[0], remaining, disk_margin)
    headers = build_hf_headers(token=token if token else False)
    headers["Accept-Encoding"] = "identity"
    ctx = _Ctx(
        job_id=job_id,
        token=token,
        cancel=cancel or threading.Event(),
        pause=pause or threading.Event(),
        policy=policy or RetryPolicy(),
        meter=Meter(choice.total_size, progress_interval),
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
