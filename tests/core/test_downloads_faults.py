"""Every fault the Hub or the network can throw gives its retry or its clear error, and loses
nothing already downloaded; a hostile listing never writes outside the models folder."""

from __future__ import annotations

import hashlib
import logging
import random
import sys
import threading
import traceback
from pathlib import Path

import pytest

from launcher.downloads import (
    DownloadFinished,
    DownloadManager,
    DownloadProgress,
    DownloadRetrying,
    JobState,
    RetryPolicy,
    download_choice,
    part_paths,
    pending_downloads,
)
from launcher.errors import (
    ChecksumMismatch,
    DownloadError,
    HubAccessError,
    HubNotFoundError,
    LauncherError,
    NotEnoughDiskSpace,
    UnsafeFileName,
)
from launcher.hub import ModelChoice, RemoteFile, list_gguf_files
from launcher.library import DiscoveryRoots, Library
from tests.support.hub_fixtures import make_gguf
from tests.support.loopback_hub import LoopbackHub, Synthetic

REPO = "me/faults-GGUF"
NAME = "faults-Q4_K_M.gguf"
SIZE = 2 * 2**20 + 777
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=4)


@pytest.fixture
def data() -> bytes:
    return make_gguf(name="faults") + random.Random(7).randbytes(SIZE)


@pytest.fixture
def lib(app_home: Path) -> Library:
    return Library(roots=DiscoveryRoots())


def _choice(repo: str = REPO, name: str = NAME) -> ModelChoice:
    return list_gguf_files(repo).choose(filename=name)


def _run(lib: Library, choice: ModelChoice, **kw: object) -> list[object]:
    return list(download_choice(choice, lib, policy=FAST, disk_margin=0, **kw))  # type: ignore[arg-type]


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.mark.parametrize(
    ("kind", "kwargs", "reason"),
    [
        ("drop", {"at": 1_000_000}, "RemoteProtocolError"),
        ("truncate", {"at": 700_000}, "the connection ended early"),
        ("status", {"status": 500, "times": 2}, "HTTP 500"),
        ("status", {"status": 503, "retry_after": 0.2}, "HTTP 503"),
        ("status", {"status": 429, "retry_after": 0.3}, "HTTP 429"),
        ("slow", {"delay": 0.2, "rate": 4 * 2**20}, None),
    ],
)
def test_transient_faults_are_retried_and_nothing_is_lost(
    hub: LoopbackHub, lib: Library, data: bytes, kind: str, kwargs: dict, reason: str | None
) -> None:
    hub.add_repo(REPO, {NAME: data})
    choice = _choice()
    hub.fault(f"{REPO}/{NAME}", kind, **kwargs)
    events = _run(lib, choice)
    retries = [e for e in events if isinstance(e, DownloadRetrying)]
    if reason is None:
        assert not retries
    else:
        assert retries and retries[0].reason == reason
        if "retry_after" in kwargs:
            assert retries[0].delay == pytest.approx(kwargs["retry_after"])
    assert isinstance(events[-1], DownloadFinished)
    assert events[-1].paths[0].read_bytes() == data
    # Resumed, not restarted: the Hub sent each byte at most once plus what a drop lost in flight.
    assert hub.bytes_served[f"{REPO}/{NAME}"] <= len(data) + 2**20
    progress = [e for e in events if isinstance(e, DownloadProgress)]
    assert progress[-1].bytes_done == progress[-1].total == len(data)


def test_persistent_failure_keeps_partial_data_and_resumes_later(
    hub: LoopbackHub, lib: Library, data: bytes
) -> None:
    hub.add_repo(REPO, {NAME: data})
    choice = _choice()
    hub.fault(f"{REPO}/{NAME}", "drop", at=1_500_000)
    with pytest.raises(DownloadError, match="run the download again to resume") as err:
        for ev in download_choice(choice, lib, policy=FAST, disk_margin=0):
            if isinstance(ev, DownloadRetrying) and ev.attempt == 1:  # then the Hub goes down
                hub.fault(f"{REPO}/{NAME}", "status", status=502, times=None)
    assert "failed 4 times" in str(err.value)
    dest = lib.local_path(REPO, NAME)
    part, sidecar = part_paths(dest)
    assert part.stat().st_size == 1_500_000 and sidecar.exists() and not dest.exists()
    hub.clear_faults()
    hub.reset_counters()
    # After a restart the app finds the unfinished download and resumes it.
    [pending] = pending_downloads(Library(roots=DiscoveryRoots()))
    assert (pending.repo_id, pending.path, pending.bytes_kept) == (REPO, NAME, 1_500_000)
    events = _run(lib, pending.choice())
    assert isinstance(events[-1], DownloadFinished) and dest.read_bytes() == data
    assert hub.bytes_served[f"{REPO}/{NAME}"] == len(data) - 1_500_000
    assert pending_downloads(lib) == []


def test_corrupt_body_is_set_aside_not_deleted_and_never_listed(
    hub: LoopbackHub, lib: Library, data: bytes
) -> None:
    hub.add_repo(REPO, {NAME: data})
    choice = _choice()
    hub.fault(f"{REPO}/{NAME}", "corrupt", at=123_456)
    with pytest.raises(ChecksumMismatch, match="kept as") as err:
        _run(lib, choice)
    dest = lib.local_path(REPO, NAME)
    [bad] = [p for p in dest.parent.iterdir() if ".sha256-mismatch-" in p.name]
    assert str(bad) in str(err.value)
    assert bad.stat().st_size == len(data) and not dest.exists()
    assert lib.scan(other_tools=False) == []
    events = _run(lib, choice)  # the fault fired once: a fresh try succeeds
    assert isinstance(events[-1], DownloadFinished) and dest.read_bytes() == data
    assert bad.exists()
    [model] = lib.scan(other_tools=False)
    assert model.verified


def test_not_found_and_gated_errors_say_what_to_do(hub: LoopbackHub, lib: Library) -> None:
    hub.add_repo(REPO, {NAME: make_gguf()})
    hub.add_repo("me/gated-GGUF", {"g-Q4_K_M.gguf": make_gguf()}, gated=True)
    with pytest.raises(HubNotFoundError, match="not found"):
        list_gguf_files("me/missing")
    choice = _choice()
    hub.fault(f"{REPO}/{NAME}", "status", status=404, error_code="EntryNotFound")
    with pytest.raises(HubNotFoundError, match="does not exist"):
        _run(lib, choice)

    gated = list_gguf_files("me/gated-GGUF")
    assert gated.gated
    g = gated.choose(quant="Q4_K_M")
    with pytest.raises(HubAccessError, match="gated model") as no_token:
        _run(lib, g, token="")
    assert "token" in str(no_token.value) and f"{hub.url}/me/gated-GGUF" in str(no_token.value)
    with pytest.raises(HubAccessError, match="no access"):
        _run(lib, g, token="hf_SomebodyElsesToken0000000000")
    events = _run(lib, g, token=hub.token)
    assert isinstance(events[-1], DownloadFinished)


def test_the_token_never_appears_in_errors_tracebacks_or_logs(
    hub: LoopbackHub,
    lib: Library,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "hf_TopSecretUserToken1234567890abcd"
    monkeypatch.setenv("HF_TOKEN", secret)
    hub.add_repo("me/gated-GGUF", {"g-Q4_K_M.gguf": make_gguf()}, gated=True)
    hub.add_repo("me/private-GGUF", {"p-Q4_K_M.gguf": make_gguf()}, private=True)
    caplog.set_level(logging.DEBUG)
    texts = []
    g = list_gguf_files("me/gated-GGUF").choose()
    hub.fault("me/gated-GGUF/g-Q4_K_M.gguf", "drop", at=100)
    hub.fault("me/gated-GGUF/g-Q4_K_M.gguf", "status", status=500, times=None, method="GET")
    for call in (
        lambda: _run(lib, g),
        lambda: list_gguf_files("me/private-GGUF"),
        lambda: list_gguf_files("me/gated-GGUF", revision="nope"),
    ):
        with pytest.raises(LauncherError) as err:
            call()
        texts.append(str(err.value))
        texts.append("".join(traceback.format_exception(err.value)))
    assert any("HTTP 500" in t or "failed" in t for t in texts)
    assert all(secret not in t for t in texts)
    assert secret not in caplog.text
    assert any(r.had_auth_header for r in hub.requests)  # it was really sent, to the Hub only


def test_not_enough_disk_space_is_refused_before_any_byte(hub: LoopbackHub, lib: Library) -> None:
    huge = Synthetic(size=2**50, head=b"GGUF", sha256="0" * 64)  # one petabyte, costs nothing
    hub.add_repo(REPO, {NAME: huge})
    with pytest.raises(NotEnoughDiskSpace, match="Free some space"):
        list(download_choice(_choice(), lib))
    assert not any(r.method == "GET" and "/resolve/" in r.path for r in hub.requests)
    assert not part_paths(lib.local_path(REPO, NAME))[0].exists()


def test_split_model_is_usable_only_when_every_shard_is_verified(
    hub: LoopbackHub, lib: Library
) -> None:
    shards = {
        f"big-Q4_K_M-{i:05d}-of-00003.gguf": make_gguf(split=(i - 1, 3), pad_to=300_000 + i)
        for i in (1, 2, 3)
    }
    hub.add_repo(REPO, shards)
    files = list_gguf_files(REPO)
    [choice] = files.choices
    assert choice.is_split and choice.label == "Q4_K_M (3 parts)"
    assert choice.total_size == sum(len(b) for b in shards.values())
    hub.fault(f"{REPO}/big-Q4_K_M-00003-of-00003.gguf", "corrupt")
    with pytest.raises(ChecksumMismatch):
        _run(lib, choice)
    assert lib.local_path(REPO, "big-Q4_K_M-00001-of-00003.gguf").exists()
    assert lib.scan(other_tools=False) == []  # two of three shards: not a usable model
    _run(lib, choice)
    [model] = lib.scan(other_tools=False)
    assert len(model.files) == 3 and model.verified and model.size == choice.total_size


HOSTILE = [
    "../../escape-Q4_K_M.gguf",
    "/etc/abs-Q4_K_M.gguf",
    "sub/../../../up-Q4_K_M.gguf",
    "\uff0e\uff0e/fullwidth-Q4_K_M.gguf",
    "bidi\u202egguf.Q4_K_M.gguf",
    "C:\\windows-Q4_K_M.gguf",
    "nul\x00-Q4_K_M.gguf",
]


def test_hostile_listing_never_writes_outside_the_models_folder(
    hub: LoopbackHub, lib: Library, tmp_path: Path
) -> None:
    files = {name: make_gguf() for name in HOSTILE}
    files["fine/ok-Q4_K_M.gguf"] = make_gguf()
    hub.add_repo(REPO, files)
    listing = list_gguf_files(REPO)
    assert [c.first_file.path for c in listing.choices] == ["fine/ok-Q4_K_M.gguf"]
    assert set(listing.skipped) == set(HOSTILE)
    before = {p for p in tmp_path.parent.rglob("*")}
    for name in HOSTILE:
        rf = RemoteFile(REPO, name, 100, "0" * 64, listing.revision)
        with pytest.raises(UnsafeFileName):
            list(download_choice(ModelChoice(REPO, listing.revision, name, None, (rf,)), lib))
    after = {p for p in tmp_path.parent.rglob("*")}
    assert after - before == set()
    _run(lib, listing.choices[0])
    assert lib.local_path(REPO, "fine/ok-Q4_K_M.gguf").is_relative_to(lib.models_dir)


def test_manager_pauses_resumes_cancels_and_shuts_down_cleanly(
    hub: LoopbackHub, lib: Library, data: bytes
) -> None:
    hub.add_repo(REPO, {NAME: data, "other-Q8_0.gguf": data[::-1]})
    hub.fault(REPO, "slow", rate=2**20, times=None)
    files = list_gguf_files(REPO)
    first, second = files.choose(filename=NAME), files.choose(filename="other-Q8_0.gguf")
    started = threading.Event()
    events: list[object] = []

    def on_event(ev: object) -> None:
        events.append(ev)
        if isinstance(ev, DownloadProgress) and ev.bytes_done > 0:
            started.set()

    with DownloadManager(lib, policy=FAST, on_event=on_event, disk_margin=0) as mgr:
        job = mgr.submit(first)
        queued = mgr.submit(second)
        assert mgr.submit(first) is job
        assert started.wait(30)
        mgr.pause(job.id)
        assert mgr.wait(job.id, 30).state == JobState.PAUSED
        kept = part_paths(lib.local_path(REPO, NAME))[0].stat().st_size
        assert 0 < kept < len(data)
        mgr.cancel(queued.id, discard=True)
        assert mgr.wait(queued.id, 30).state == JobState.CANCELLED
        hub.clear_faults()
        mgr.resume(job.id)
        done = mgr.wait(job.id, 60)
        assert done.state == JobState.DONE, done.error
        assert done.paths[0].read_bytes() == data
    assert not part_paths(lib.local_path(REPO, "other-Q8_0.gguf"))[0].exists()
    resumed = [e for e in events if getattr(e, "resumed_from", 0) > 0]
    assert resumed and resumed[0].resumed_from >= kept  # type: ignore[attr-defined]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX flock used to play the other process")
def test_a_second_downloader_of_the_same_file_is_refused(
    hub: LoopbackHub, lib: Library, data: bytes
) -> None:
    import fcntl

    hub.add_repo(REPO, {NAME: data})
    choice = _choice()
    part, _ = part_paths(lib.local_path(REPO, NAME))
    part.parent.mkdir(parents=True)
    with open(part, "wb") as other:  # another window holds this download
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(DownloadError, match="already being downloaded"):
            _run(lib, choice)
    events = _run(lib, choice)
    assert isinstance(events[-1], DownloadFinished) and events[-1].paths[0].read_bytes() == data


def test_shutdown_during_a_long_retry_after_pauses_and_joins(
    hub: LoopbackHub, lib: Library, data: bytes
) -> None:
    hub.add_repo(REPO, {NAME: data})
    choice = _choice()
    hub.fault(f"{REPO}/{NAME}", "status", status=503, retry_after=100, times=None)
    waiting = threading.Event()

    def on_event(ev: object) -> None:
        if isinstance(ev, DownloadRetrying):
            waiting.set()

    mgr = DownloadManager(lib, on_event=on_event, disk_margin=0)
    job = mgr.submit(choice)
    assert waiting.wait(30)
    mgr.shutdown()
    assert job.state == JobState.PAUSED and "resumes" in (job.error or "")
    assert not any(t.name.startswith("download-worker") for t in threading.enumerate())


def test_cancel_ends_a_stalled_transfer_at_once(
    hub: LoopbackHub, lib: Library, data: bytes
) -> None:
    hub.add_repo(REPO, {NAME: data})
    choice = _choice()
    hub.fault(f"{REPO}/{NAME}", "slow", rate=1)  # one KiB, then the server stalls for ~17 min
    stalled = threading.Event()

    def on_event(ev: object) -> None:
        if isinstance(ev, DownloadProgress) and ev.bytes_done > 0:
            stalled.set()

    with DownloadManager(lib, on_event=on_event, disk_margin=0) as mgr:
        job = mgr.submit(choice)
        assert stalled.wait(30)
        mgr.cancel(job.id)
        # Well inside the one-minute read timeout: the watchdog closed the stalled stream.
        assert mgr.wait(job.id, 20).state == JobState.CANCELLED
    assert part_paths(lib.local_path(REPO, NAME))[0].stat().st_size == 1024
