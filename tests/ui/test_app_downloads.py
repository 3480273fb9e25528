"""Library downloads with the real download manager and the loopback Hub: progress, pause,
resume, a failure with its reason, and retry."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from launcher.machines import load_reference
from launcher.paths import AppPaths
from tests.support.hub_fixtures import Synthetic, make_gguf
from tests.ui.ui_fakes import FakeEngine
from ui.app import AppContext
from ui.models.library import DownloadRole
from ui.models.rows import CandidateRow

REPO = "org/tiny-GGUF"
FILE = "tiny-Q4_K_M.gguf"
SIZE = 6 * 2**20


def _candidate(filename: str) -> CandidateRow:
    return CandidateRow(
        key=f"{REPO}/{filename}",
        name="Tiny",
        repo=REPO,
        filename=filename,
        quant="Q4_K_M",
        size_bytes=SIZE,
        verdict="full_gpu",
    )


@pytest.fixture
def ctx(qtbot, app_home, hub):
    hub.add_repo(
        REPO,
        {
            FILE: Synthetic(size=SIZE, head=make_gguf(name="tiny")),
            "other-Q8_0.gguf": Synthetic(size=SIZE, head=make_gguf(name="other"), seed=2),
        },
    )
    context = AppContext(
        AppPaths.default(),
        profile=load_reference("rtx-4090-64gb"),
        engine_factory=FakeEngine,
        live_gauge=False,
    )
    qtbot.addWidget(context.window)
    context.window.show()
    context.start()
    yield context
    context.window.close()


def _state(ctx: AppContext, row: int = 0) -> str:
    return ctx.downloads.index(row).data(DownloadRole.STATE)


def test_pause_resume_and_finish_a_download(qtbot, ctx, hub) -> None:
    hub.fault(f"{REPO}/{FILE}", "slow", rate=512 * 1024)  # the first request crawls
    ctx.discover.download_requested.emit(_candidate(FILE))
    assert ctx.window.current_view() == "library"
    lib = ctx.library_view
    qtbot.waitUntil(
        lambda: _state(ctx) == "downloading" and ctx.downloads.rows()[0].done_bytes > 0,
        timeout=20000,
    )
    row = ctx.downloads.rows()[0]
    assert row.total_bytes == SIZE
    assert "MiB" in ctx.downloads.index(0).data() and "left" in ctx.downloads.index(0).data()
    lib.download_list.setCurrentIndex(ctx.downloads.index(0))
    qtbot.mouseClick(lib.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _state(ctx) == "paused", timeout=20000)
    kept = ctx.downloads.rows()[0].done_bytes
    assert 0 < kept < SIZE
    assert "Paused at" in ctx.downloads.index(0).data()
    assert lib.resume_button.isEnabled()
    qtbot.mouseClick(lib.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _state(ctx) == "done", timeout=30000)
    assert ctx.downloads.rows()[0].verified
    assert "Verified" in ctx.downloads.index(0).data()
    # The resumed request asked only for the bytes not yet downloaded.
    ranges = [r.range for r in hub.requests if r.method == "GET" and r.path.endswith(FILE)]
    assert any(r and r.startswith(f"bytes={kept}-") for r in ranges)
    qtbot.waitUntil(
        lambda: any(r.path.endswith(FILE) for r in ctx.local_models.rows()), timeout=20000
    )


def test_a_failed_download_says_why_and_retries(qtbot, ctx, hub) -> None:
    hub.fault(f"{REPO}/other-Q8_0.gguf", "status", status=403, times=None, method="GET")
    ctx.discover.download_requested.emit(_candidate("other-Q8_0.gguf"))
    qtbot.waitUntil(
        lambda: ctx.downloads.rowCount() == 1 and _state(ctx) == "failed", timeout=30000
    )
    text = ctx.downloads.index(0).data()
    assert text.startswith("Tiny — Failed: ")
    lib = ctx.library_view
    lib.download_list.setCurrentIndex(ctx.downloads.index(0))
    assert lib.retry_button.isEnabled()
    hub.clear_faults()
    qtbot.mouseClick(lib.retry_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _state(ctx) == "done", timeout=30000)
    assert ctx.downloads.rows()[0].error == ""
