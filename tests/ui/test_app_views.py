"""Discover, Library, Doctor views and the main window, each against plain rows (fakes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from launcher.settings import Settings
from ui.main_window import MainWindow
from ui.models.library import DownloadModel, LocalModelModel
from ui.models.rows import CandidateRow, CheckRow, DownloadRow, LocalModelRow
from ui.views.discover import DiscoverView
from ui.views.doctor import DoctorView
from ui.views.library import LibraryView
from ui.widgets.lazy_view import LazyView


def _row(name: str, verdict: str, quant: str = "Q4_K_M", **kw) -> CandidateRow:
    return CandidateRow(
        key=f"org/{name}/{name}-{quant}.gguf",
        name=name,
        repo=f"org/{name}",
        filename=f"{name}-{quant}.gguf",
        quant=quant,
        size_bytes=5 * 2**30,
        verdict=verdict,
        gpu_layers=kw.get("gpu_layers"),
        total_layers=kw.get("total_layers"),
        weights_bytes=5 * 2**30,
        kv_bytes=2**30,
        compute_bytes=2**28,
        total_bytes=6 * 2**30 + 2**28,
        tokens_per_s=42.0,
        note="runs fully on the GPU",
    )


@pytest.fixture
def discover(qtbot) -> DiscoverView:
    view = DiscoverView(starter_available=True)
    qtbot.addWidget(view)
    view.resize(1200, 700)
    view.show()
    view.set_candidates(
        [
            _row("Qwen3 8B", "full_gpu"),
            _row("Llama 70B", "partial", gpu_layers=40, total_layers=80),
            _row("Giant 405B", "no_fit"),
            _row("Qwen3 8B", "full_gpu", quant="Q8_0"),
        ]
    )
    return view


def test_discover_filters_badges_and_the_one_button(qtbot, discover: DiscoverView) -> None:
    assert discover.proxy.rowCount() == 3  # "won't fit" hidden by default
    fits = [discover.proxy.index(r, 3).data() for r in range(3)]
    assert fits == ["Full GPU", "Partial 40/80", "Full GPU"]  # the ranking's order
    discover.table.sortByColumn(3, Qt.SortOrder.DescendingOrder)  # fit, worst first
    assert discover.proxy.index(0, 0).data() == "Llama 70B"
    discover.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # back to the ranking
    assert [discover.proxy.index(r, 3).data() for r in range(3)] == fits
    qtbot.mouseClick(discover.show_no_fit, Qt.MouseButton.LeftButton)
    assert discover.proxy.rowCount() == 4
    discover.quant_picker.setCurrentIndex(discover.quant_picker.findData("Q8_0"))
    assert discover.proxy.rowCount() == 1
    discover.quant_picker.setCurrentIndex(0)

    discover.table.setCurrentIndex(discover.proxy.index(1, 0))
    assert "Partial 40/80" in discover.details.text()
    assert "weights 5.0 + KV 1.0" in discover.details.text()
    assert "42.0 tok/s (estimated)" in discover.details.text()
    with qtbot.waitSignal(discover.download_requested) as blocker:
        qtbot.mouseClick(discover.action_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0].name == "Llama 70B"

    # Downloading, then ready: the same button follows the state.
    key = blocker.args[0].key
    discover.set_states({key: ("downloading", 0.5)})
    assert discover.action_button.text() == "Downloading 50%"
    assert not discover.action_button.isEnabled()
    discover.set_states({key: ("chat", "/models/llama.gguf")})
    assert discover.action_button.text() == "Chat"
    with qtbot.waitSignal(discover.chat_requested) as chat:
        qtbot.mouseClick(discover.action_button, Qt.MouseButton.LeftButton)
    assert chat.args == ["/models/llama.gguf"]


def test_discover_row_button_hover_ghost_context_and_search(qtbot, discover) -> None:
    table = discover.table
    rect = table.visualRect(discover.proxy.index(0, 6))
    with qtbot.waitSignal(discover.download_requested) as blocker:
        qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args[0].name == "Qwen3 8B"
    with qtbot.waitSignal(discover.candidate_hovered) as hovered:
        table.setCurrentIndex(discover.proxy.index(1, 0))
    assert hovered.args[0].name == "Llama 70B"
    with qtbot.waitSignal(discover.filters_changed) as filters:
        discover.context_slider.setValue(discover.context_slider.value() + 1)
    assert filters.args[1] == 16384
    assert discover.context_label.text() == "16k tokens"
    discover.use_picker.setCurrentIndex(discover.use_picker.findData("coding"))
    assert discover.use == "coding"
    qtbot.keyClicks(discover.search_field, "qwen gguf")
    with qtbot.waitSignal(discover.search_requested) as search:
        qtbot.keyClick(discover.search_field, Qt.Key.Key_Return)
    assert search.args == ["qwen gguf"]
    assert discover.starter_box.isVisible()
    with qtbot.waitSignal(discover.starter_requested):
        qtbot.mouseClick(discover.starter_button, Qt.MouseButton.LeftButton)
    discover.set_candidates([])
    assert "Nothing matches" in discover.status.text()


def test_library_marks_other_tools_and_drives_downloads(qtbot) -> None:
    local = LocalModelModel()
    downloads = DownloadModel()
    view = LibraryView(local, downloads, "/home/u/models")
    qtbot.addWidget(view)
    view.show()
    assert view.empty_label.isVisible() and view.downloads_empty.isVisible()
    local.set_rows(
        [
            LocalModelRow("/lm/qwen.gguf", "qwen.gguf", 2**30, "LM Studio", False),
            LocalModelRow("/m/gemma.gguf", "gemma.gguf", 2**28, "Spark Launcher", True),
        ]
    )
    assert not view.empty_label.isVisible()
    assert "1 found in other tools' folders" in view.summary.text()
    view.table.setCurrentIndex(local.index(1, 0))  # the LM Studio one (ours sort first)
    assert not view.delete_button.isEnabled()  # never delete another tool's files
    with qtbot.waitSignal(view.chat_requested) as chat:
        qtbot.mouseClick(view.chat_button, Qt.MouseButton.LeftButton)
    assert chat.args == ["/lm/qwen.gguf"]

    downloads.update(DownloadRow("d1", "Qwen3 8B", state="downloading", total_bytes=100))
    assert view.pause_button.isEnabled() and not view.resume_button.isEnabled()
    with qtbot.waitSignal(view.pause_requested) as paused:
        qtbot.mouseClick(view.pause_button, Qt.MouseButton.LeftButton)
    assert paused.args == ["d1"]
    downloads.update(DownloadRow("d1", "Qwen3 8B", state="failed", error="HTTP 500"))
    assert view.retry_button.isEnabled() and not view.pause_button.isEnabled()
    with qtbot.waitSignal(view.retry_requested):
        qtbot.mouseClick(view.retry_button, Qt.MouseButton.LeftButton)


def test_doctor_shows_checks_and_saves_settings(qtbot, tmp_path: Path) -> None:
    view = DoctorView(Settings(default_context=8192), str(tmp_path / "models"))
    qtbot.addWidget(view)
    view.show()
    view.set_machine("This machine: test", "CUDA")
    view.set_checks(
        [CheckRow("NVML", "warn", "missing", "install the driver"), CheckRow("Disk", "ok", "ok")]
    )
    assert view.checks_status.text() == "1 problem(s) found: see the fixes."
    assert view.backend_label.text() == "CUDA"
    with qtbot.waitSignal(view.rerun_requested):
        qtbot.mouseClick(view.rerun_button, Qt.MouseButton.LeftButton)
    view.models_dir.setText(str(tmp_path / "elsewhere"))
    view.context_picker.setCurrentIndex(view.context_picker.findData(32768))
    qtbot.keyClicks(view.token_field, "hf_secret")
    with (
        qtbot.waitSignal(view.token_entered) as token,
        qtbot.waitSignal(view.settings_saved) as saved,
    ):
        qtbot.mouseClick(view.save_button, Qt.MouseButton.LeftButton)
    assert token.args == ["hf_secret"]
    assert view.token_field.text() == ""  # never shown back
    assert saved.args[0].models_dir == str(tmp_path / "elsewhere")
    assert saved.args[0].default_context == 32768


def test_main_window_views_gauge_and_close_hook(qtbot) -> None:
    closed: list[bool] = []
    window = MainWindow(QLabel("gauge"), on_close=lambda: closed.append(True))
    qtbot.addWidget(window)
    built: list[bool] = []
    window.add_view("one", "One", QLabel("first"))
    window.add_view("lazy", "Lazy", LazyView(lambda: built.append(True) or QLabel("late")))
    with qtbot.waitSignal(window.first_painted):
        window.show()
    assert window.current_view() == "one"
    assert not built
    with qtbot.waitSignal(window.view_changed) as changed:
        window.show_view("lazy")
    assert changed.args == ["lazy"] and built == [True]
    window.set_gauge(QLabel("live gauge"))
    assert window.gauge.text() == "live gauge"
    window.close()
    assert closed == [True]


def test_dark_theme_recolours_fit_badges(qapp) -> None:
    from ui.theme import apply_theme, is_dark, verdict_colour

    old_palette, old_style = qapp.palette(), qapp.style().name()
    light_green = verdict_colour("full_gpu").name()
    try:
        apply_theme(qapp, "dark")
        assert is_dark(qapp.palette())
        assert verdict_colour("full_gpu").name() != light_green
    finally:
        qapp.setStyle(old_style)
        qapp.setPalette(old_palette)
        qapp.styleHints().unsetColorScheme()
    assert not is_dark(qapp.palette())
