"""The Compare view with two real (tiny) models: streaming panes, blind vote, summary, export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from tests.support.gguf_builders import TINY_LLAMA, TINY_QWEN3, build_model
from ui.compare_view import AT_ONCE_CAVEAT, CompareView


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("compare-ui")
    return (
        build_model(folder / "tiny-llama.gguf", **TINY_LLAMA),
        build_model(folder / "tiny-qwen3.gguf", seed=1, **TINY_QWEN3),
    )


@pytest.fixture
def view(qtbot, app_home: Path):  # type: ignore[no-untyped-def]
    widget = CompareView()
    qtbot.addWidget(widget)
    widget.resize(1100, 760)
    widget.show()
    yield widget
    widget.shutdown()


def test_blind_comparison_at_once_then_vote_reveals_and_exports(
    qtbot, view: CompareView, tiny_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    view.set_models(str(tiny_pair[0]), str(tiny_pair[1]))
    view.prompt_edit.setPlainText("Tell me a story.")
    view.max_tokens_spin.setValue(12)
    view.ctx_spin.setValue(1024)
    view.blind_box.setChecked(True)
    view.at_once_box.setChecked(True)
    assert view.caveat_label.isVisible() and view.caveat_label.text() == AT_ONCE_CAVEAT

    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    assert view.stop_button.isEnabled() and not view.run_button.isEnabled()
    with qtbot.waitSignal(view.runner.finished, timeout=120_000):
        pass
    assert view.residency_label.text().startswith("<b>Both stay loaded</b>: both fit:")
    assert view.saved_path is not None and view.saved_path.is_file()

    # blind: letters only, the summary is held back, the vote bar asks
    assert [p.header.text() for p in view.panes] == ["A", "B"]
    assert all(p.text() for p in view.panes)
    assert all(p.metrics.text() == "" for p in view.panes)  # speeds would give it away
    assert view.vote_bar.isVisible() and view.vote_buttons["A"].isEnabled()
    assert view.summary_table.rowCount() == 1
    assert "Blind mode" in view.summary_table.item(0, 0).text()

    qtbot.mouseClick(view.vote_buttons["A"], Qt.MouseButton.LeftButton)
    winner = view.pane_labels("prompt")[0]
    assert view.panes[0].header.text() == f"A: {winner}"
    assert "decode" in view.panes[0].metrics.text() and "est." in view.panes[0].metrics.text()
    assert not view.vote_buttons["B"].isEnabled()
    assert view.summary_table.rowCount() == 2
    names = {view.summary_table.item(r, 0).text() for r in range(2)}
    assert names == {"tiny-llama", "tiny-qwen3"}
    assert [pt.label for pt in view.chart.points if pt.quality == 1.0] == [winner]

    saved = json.loads(view.saved_path.read_text())
    assert saved["votes"][0]["winner"] == winner and saved["concurrent"] is True
    md = view.export_to(tmp_path / "c.md").read_text()
    assert "all models at once" in md and "| tiny-llama |" in md
    rows = list(csv.DictReader(view.export_to(tmp_path / "c.csv").read_text().splitlines()))
    assert {r["vote"] for r in rows} == {"win", "loss"}
    assert json.loads(view.export_to(tmp_path / "c.json").read_text())["blind"] is True
    assert all(b.isEnabled() for b in view.export_buttons.values())


def test_missing_models_or_prompt_are_explained(qtbot, view: CompareView) -> None:
    view.start()
    assert "Pick a model for both panes" in view.residency_label.text()
    view.set_models("a.gguf", "b.gguf")
    view.start()
    assert "Type a prompt" in view.residency_label.text()
    view.prompt_edit.setPlainText("hi")
    view.start()  # the file does not exist: the core's message reaches the user
    with qtbot.waitSignal(view.runner.finished, timeout=30_000):
        pass
    assert "no model file" in view.residency_label.text()
    assert view.run_button.isEnabled()


def test_plan_preview_states_the_residency_before_anything_loads(qtbot, view: CompareView) -> None:
    from launcher.machines import resolve_machine

    view.machine = resolve_machine("dgx-spark")  # plan for a DGX Spark from this machine
    view.ctx_spin.setValue(32768)
    view.set_models("qwen3-32b:Q4_K_M", "llama-3.3-70b:Q4_K_M")
    qtbot.waitUntil(lambda: "both fit" in view.residency_label.text(), timeout=20_000)
    assert view.residency_label.text().startswith(
        "<b>Both stay loaded</b>: both fit: 19.8 + 42.5 GB of weights"
    )
    view.machine = resolve_machine("unified=40GiB")
    view.preview_plan()
    qtbot.waitUntil(lambda: "Cannot compare here" in view.residency_label.text(), timeout=20_000)
    assert "llama-3.3-70b:Q4_K_M does not fit even alone" in view.residency_label.text()


def test_a_saved_comparison_reopens(qtbot, view: CompareView, tmp_path: Path) -> None:
    from launcher.compare_results import ComparisonResult, ModelEntry, RunResult

    res = ComparisonResult(
        models=[ModelEntry("big", "big.gguf"), ModelEntry("small", "small.gguf")],
        prompts=[{"id": "p1", "text": "2+2?", "check": {"type": "number", "value": 4}}],
        suite="reasoning",
        residency={"mode": "sequential", "reason": "one after another: because", "ctx": 8192},
        runs=[
            RunResult("big", "p1", "It is 4", 0.5, 100.0, 4.0, 2.0, 5, 3, 10**9, None, None, True),
            RunResult("small", "p1", "5", 0.1, 900.0, 40.0, 0.3, 5, 3, 10**8, None, None, False),
        ],
    )
    saved = res.save(to=tmp_path / "r.json")
    view.show_result(ComparisonResult.load(saved), saved)
    assert view.residency_label.text() == "<b>One after another</b>: because"
    assert [p.text() for p in view.panes] == ["It is 4", "5"]
    assert view.ctx_spin.value() == 8192 and view.suite_picker.currentData() == "reasoning"
    assert [(pt.label, pt.quality) for pt in view.chart.points] == [("big", 1.0), ("small", 0.0)]
