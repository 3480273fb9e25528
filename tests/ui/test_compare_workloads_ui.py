"""The Compare view on the user's own workload, with two real (tiny) models: a suite file with
checks (progress, each check under each reply, pass rates with intervals, the recommendation),
Stop then Resume after the view is rebuilt (as after closing the app), a judge next to the
user's vote, the workload picker's choices and the recording switch, and marked differences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from launcher.compare import Progress, RunStarted
from launcher.compare_results import ComparisonResult, ModelEntry, RunResult
from launcher.paths import AppPaths
from launcher.settings import load_settings
from tests.support.gguf_builders import TINY_LLAMA, TINY_QWEN3, build_model
from ui.compare_view import SUMMARY_HEADERS, CompareView
from ui.widgets.compare_workload import API_LOG, CHATS, FOLDER


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("compare-workloads-ui")
    return (
        build_model(folder / "tiny-llama.gguf", **TINY_LLAMA),
        build_model(folder / "tiny-qwen3.gguf", seed=1, **TINY_QWEN3),
    )


def _view(qtbot, paths: AppPaths) -> CompareView:  # type: ignore[no-untyped-def]
    view = CompareView(paths=paths)
    qtbot.addWidget(view)
    view.resize(1280, 800)
    view.show()
    return view


@pytest.fixture
def view(qtbot, app_home: Path):  # type: ignore[no-untyped-def]
    widget = _view(qtbot, AppPaths.default())
    yield widget
    widget.shutdown()


def _suite(folder: Path, n: int) -> Path:
    path = folder / "mine.jsonl"
    lines = [
        {"id": "any", "prompt": "Say something.", "checks": [{"type": "regex", "value": "."}]},
        {"id": "never", "prompt": "Say it.", "checks": [{"type": "exact", "value": "\u2603"}]},
    ] + [{"id": f"more{i}", "prompt": f"Word {i}?"} for i in range(n - 2)]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def _setup(view: CompareView, pair: tuple[Path, Path], suite: Path, tokens: int = 6) -> None:
    view.set_models(str(pair[0]), str(pair[1]))
    view.workload.set_file(suite)
    view.max_tokens_spin.setValue(tokens)
    view.ctx_spin.setValue(1024)


def test_a_suite_file_shows_progress_checks_intervals_and_a_recommendation(
    qtbot, view: CompareView, tiny_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    _setup(view, tiny_pair, _suite(tmp_path, 3))
    view.workload.limit_spin.setValue(2)  # only the two checked prompts
    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    assert view.progress_bar_row.isVisible()
    with qtbot.waitSignal(view.runner.finished, timeout=120_000):
        pass
    assert view.progress_label.text() == "Done: 4 of 4 answers"
    assert view.progress_bar.value() == view.progress_bar.maximum() == 4
    assert not view.resume_button.isVisible()

    # every reply says which of its checks passed; the picker marks each prompt per model
    view.prompt_picker.setCurrentIndex(view.prompt_picker.findData("never"))
    for pane in view.panes:
        assert pane.checks.isVisible() and "✘ exact" in pane.checks.text()
    assert view.prompt_picker.currentText() == "never  ✘ ✘"
    # pass rate with its interval (2 prompts: a wide one), and what to do about it
    rates = {view.summary_table.item(r, 0).text(): view.summary_table.item(r, 1).text()
             for r in range(2)}  # fmt: skip
    for text in rates.values():
        assert text.endswith("%)") and " of 2 (" in text
    assert view.recommendation_label.text().startswith("<b>Recommendation:</b> ")
    assert view.judge_button.isEnabled()


def test_stop_then_resume_after_the_view_is_rebuilt(
    qtbot, app_home: Path, tiny_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    paths = AppPaths.default()
    first = _view(qtbot, paths)
    _setup(first, tiny_pair, _suite(tmp_path, 4), tokens=8)
    answers: list[int] = []
    shown: list[str] = []

    def on_event(ev: object) -> None:  # runs after the view's own slot (connected later)
        if isinstance(ev, Progress):
            answers.append(ev.done)
            shown.append(first.progress_label.text())
            if ev.done == 3:
                first.stop()  # as the user presses Stop after three answers

    first.runner.event_received.connect(on_event)
    first.start()
    with qtbot.waitSignal(first.runner.finished, timeout=120_000):
        pass
    assert shown[0].startswith("1 of 8 answers · about ") and shown[0].endswith(" left")
    assert first.resume_button.isVisible() and first.resume_button.isEnabled()
    # the worker may finish an answer or two more before it reads the stop flag
    assert first.result is not None
    done, total = first.result.progress()
    assert 3 <= done < total == 8
    assert f"{done} of 8 answers saved" in first.progress_label.text()
    first.shutdown()  # the app is closed
    first.close()

    second = _view(qtbot, paths)  # ... and opened again
    try:
        qtbot.waitUntil(lambda: second.resume_button.isVisible(), timeout=20_000)
        assert f"Stopped: tiny-llama vs tiny-qwen3 on mine, {done} of 8" in (
            second.progress_label.text()
        )
        asked: list[tuple[str, str]] = []
        second.runner.event_received.connect(
            lambda ev: (
                asked.append((ev.label, ev.prompt_id)) if isinstance(ev, RunStarted) else None
            )
        )
        qtbot.mouseClick(second.resume_button, Qt.MouseButton.LeftButton)
        with qtbot.waitSignal(second.runner.finished, timeout=120_000):
            pass
        assert len(asked) == 8 - done  # only what was missing
        assert second.progress_label.text() == "Done: 8 of 8 answers"
        assert second.result is not None and second.result.complete
        assert second.saved_path is not None
        assert ComparisonResult.load(second.saved_path).progress() == (8, 8)
    finally:
        second.shutdown()


def test_a_judge_grades_the_replies_next_to_the_users_vote(
    qtbot, view: CompareView, tiny_pair: tuple[Path, Path]
) -> None:
    view.set_models(str(tiny_pair[0]), str(tiny_pair[1]))
    view.prompt_edit.setPlainText("Name a colour.")
    view.max_tokens_spin.setValue(6)
    view.ctx_spin.setValue(1024)
    view.blind_box.setChecked(True)
    view.start()
    with qtbot.waitSignal(view.runner.finished, timeout=120_000):
        pass
    view.vote("A")
    view.judge_picker.setEditText(str(tiny_pair[0]))
    qtbot.mouseClick(view.judge_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(view.runner.finished, timeout=120_000):
        pass
    assert view.result is not None and view.result.judge == "tiny-llama (judge)"
    assert len(view.result.judge_verdicts) == 1
    assert view.judge_label.text().startswith("tiny-llama judged: tiny-llama ")
    assert "agrees with your votes on " in view.judge_label.text() and " of 1 (" in (
        view.judge_label.text()
    )
    assert view.verdict_label.isVisible() and view.verdict_label.text().startswith("Judge")
    judge_column = SUMMARY_HEADERS.index("Judge (95%)")
    for row in range(2):  # the judge's win rate with its (very wide) interval: one prompt
        assert "% of 1 (" in view.summary_table.item(row, judge_column).text()
    assert view.saved_path is not None
    assert ComparisonResult.load(view.saved_path).judge == "tiny-llama (judge)"


def test_the_workload_picker_builds_the_request_and_the_recording_switch_is_a_setting(
    qtbot, view: CompareView, app_home: Path, tmp_path: Path
) -> None:
    picker = view.workload
    view.set_models("a.gguf", "b.gguf")
    picker.combo.setCurrentIndex(picker.combo.findData("humaneval"))
    picker.limit_spin.setValue(5)
    req = view.request()
    assert (req.suite, req.limit) == ("humaneval", 5)
    assert not view.prompt_edit.isEnabled()

    picker.combo.setCurrentIndex(picker.combo.findData(FOLDER))
    assert picker.choose_button.isVisible() and picker.template_edit.isVisible()
    view.start()  # no folder chosen yet
    assert "Choose the suite file, folder or chats" in view.residency_label.text()
    picker.set_folder(tmp_path, "Which dates are in {name}?")
    req = view.request()
    assert req.suite == f"folder:{tmp_path}" and req.template is not None
    assert req.template.startswith("Which dates are in {name}?") and "{text}" in req.template

    picker.combo.setCurrentIndex(picker.combo.findData(CHATS))
    assert view.request().suite == "chats"
    picker.set_chats(["0" * 32])
    assert view.request().suite == f"chats:{'0' * 32}"

    picker.combo.setCurrentIndex(picker.combo.findData(API_LOG))
    assert picker.record_box.isVisible() and not picker.record_box.isChecked()
    assert "Nothing recorded yet" in picker.description.text()
    picker.record_box.setChecked(True)
    assert load_settings(AppPaths.default()).record_api_traffic is True
    assert view.request().suite == "api-log"


def test_a_reopened_comparison_marks_where_the_replies_differ(
    qtbot, view: CompareView, tmp_path: Path
) -> None:
    res = ComparisonResult(
        models=[ModelEntry("big", "big.gguf"), ModelEntry("small", "small.gguf")],
        prompts=[{"id": "p1", "text": "Capital of Australia?"}],
        runs=[
            RunResult("big", "p1", "The capital is Canberra, not Sydney.", stop_reason="eos"),
            RunResult("small", "p1", "The capital is Sydney.", stop_reason="eos"),
        ],
    )
    res.finished = "2026-01-01T00:00:00+00:00"
    view.show_result(res, res.save(to=tmp_path / "r.json"))
    big, small = view.panes
    assert big.differences == 1 and small.differences == 0  # ", not Sydney" vs nothing new
    (sel,) = big.reply.extraSelections()
    assert sel.cursor.selectedText() == "Canberra, not"  # type: ignore[attr-defined]
    view.diff_box.setChecked(False)
    assert big.reply.extraSelections() == []
