"""Discover as a person uses it: the ghost on the gauge goes when its model leaves the list,
a search that cannot reach Hugging Face says so instead of leaving the catalog under the
query, counts read "1 repository" / "2 models", and a model that will not fit shows
"does not fit" rather than a speed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from launcher.hardware import MemorySnapshot, PoolSnapshot
from launcher.machines import load_reference
from launcher.paths import AppPaths
from launcher.settings import Settings
from tests.support.hub_fixtures import Synthetic, make_gguf
from tests.ui.ui_fakes import FakeEngine
from ui.app import AppContext
from ui.models.candidates import CandidateRole, Column
from ui.models.library import DownloadModel, LocalModelModel
from ui.models.rows import CandidateRow, LocalModelRow
from ui.models.wording import plural
from ui.views.discover import DiscoverView
from ui.views.library import LibraryView


@pytest.fixture
def ctx(qtbot, app_home: Path) -> Iterator[AppContext]:
    context = AppContext(
        AppPaths.default(),
        Settings(scan_other_tools=False),
        profile=load_reference("laptop-16gb"),
        engine_factory=FakeEngine,
        live_gauge=False,
    )
    qtbot.addWidget(context.window)
    context.window.show()
    context.start()
    qtbot.waitUntil(lambda: context.discover.model.rowCount() > 0, timeout=60000)
    yield context
    context.window.close()


def _ghosts(ctx: AppContext) -> list[object]:
    if ctx.gauge.snapshot is None:  # no sampler in tests: one snapshot of this machine
        pool = ctx.profile.ram_pool
        half = pool.total // 2
        ctx.gauge.on_snapshot_taken(
            MemorySnapshot(
                taken_at=1000.0,
                pools=(PoolSnapshot(pool.name, "ram", pool.total, half, half, 0, half),),
            )
        )
    return [s for s in ctx.gauge.segments() if s.kind == "ghost"]


def test_the_ghost_goes_when_the_planned_model_is_filtered_out(qtbot, ctx: AppContext) -> None:
    d = ctx.discover
    assert "catalog models fit this machine" in d.status.text()
    d.table.setCurrentIndex(d.proxy.index(0, 0))
    planned = d.selected()
    assert planned is not None and _ghosts(ctx)
    other = next(q for q in ("Q8_0", "Q4_K_M", "Q6_K") if q != planned.quant.upper())
    d.quant_picker.setCurrentIndex(d.quant_picker.findData(other))
    assert all(
        d.proxy.index(r, 0).data(CandidateRole.ROW).quant != planned.quant
        for r in range(d.proxy.rowCount())
    )
    assert d.selected() is None
    assert not _ghosts(ctx)
    assert d.details.text().startswith("Select a model")


def test_an_offline_search_says_so_and_shows_no_catalog_rows(
    qtbot, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    d = ctx.discover
    d.table.setCurrentIndex(d.proxy.index(0, 0))
    assert _ghosts(ctx)
    d.search_field.setText("qwen")
    qtbot.keyClick(d.search_field, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "No search results" in d.status.text(), timeout=60000)
    assert "“qwen”" in d.status.text() and "Could not reach the Hub" in d.status.text()
    assert d.model.rowCount() == 0  # no catalog rows dressed up as results
    assert not _ghosts(ctx)
    qtbot.mouseClick(d.recommend_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: d.model.rowCount() > 0, timeout=60000)


def test_a_search_with_one_result_counts_it_in_the_singular(qtbot, ctx: AppContext, hub) -> None:
    hub.add_repo("org/only-GGUF", {"only-Q4_K_M.gguf": Synthetic(size=4096, head=make_gguf())})
    ctx.discover_ctl.search("only")
    qtbot.waitUntil(lambda: "on Hugging Face" in ctx.discover.status.text(), timeout=30000)
    assert ctx.discover.status.text().startswith("1 repository on Hugging Face.")


def test_models_that_do_not_fit_show_no_speed(qtbot, ctx: AppContext) -> None:
    d = ctx.discover
    d.show_no_fit.setChecked(True)
    no_fit = [
        r for r in range(d.proxy.rowCount()) if d.proxy.index(r, Column.FIT).data() == "Won't fit"
    ]
    assert no_fit, "a 16 GB laptop has catalog models that do not fit"
    for r in no_fit:
        assert d.proxy.index(r, Column.SPEED).data() == "does not fit"
    d.table.setCurrentIndex(d.proxy.index(no_fit[0], 0))
    assert "Speed: does not fit" in d.details.text()
    assert "tok/s" not in d.details.text()


def _candidate(verdict: str, tokens_per_s: float) -> CandidateRow:
    return CandidateRow(
        key=f"org/m/m-{verdict}.gguf",
        name=f"M {verdict}",
        repo="org/m",
        filename=f"m-{verdict}.gguf",
        quant="Q4_K_M",
        size_bytes=2**30,
        verdict=verdict,
        tokens_per_s=tokens_per_s,
    )


def test_speed_column_and_details_for_a_row_that_fits_and_one_that_does_not(qtbot) -> None:
    view = DiscoverView()
    qtbot.addWidget(view)
    view.show_no_fit.setChecked(True)
    view.set_candidates([_candidate("cpu", 12.3), _candidate("no_fit", 0.0)])
    speeds = [view.proxy.index(r, Column.SPEED).data() for r in range(2)]
    assert speeds == ["12.3 tok/s (estimated)", "does not fit"]


def test_counts_are_pluralised(qtbot) -> None:
    assert [plural(n, "model") for n in (0, 1, 2)] == ["0 models", "1 model", "2 models"]
    assert plural(1, "repository", "repositories") == "1 repository"
    assert plural(3, "repository", "repositories") == "3 repositories"
    models = LocalModelModel()
    view = LibraryView(models, DownloadModel())
    qtbot.addWidget(view)
    models.set_rows([LocalModelRow("/m/a.gguf", "a.gguf", 2**30, "Spark Launcher", True)])
    assert view.summary.text().startswith("1 model, 1.0 GiB")
    models.set_rows(
        [
            LocalModelRow("/m/a.gguf", "a.gguf", 2**30, "Spark Launcher", True),
            LocalModelRow("/m/b.gguf", "b.gguf", 2**30, "Spark Launcher", True),
        ]
    )
    assert view.summary.text().startswith("2 models, 2.0 GiB")
