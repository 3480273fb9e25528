"""Two real models compared end to end (Gemma 3 270M and a tiny random-weight llama), one
after another through the CLI and both resident with a host killed mid-comparison."""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import pytest

from launcher.cli import main
from launcher.compare import (
    CompareRequest,
    ComparisonJob,
    ModelFailed,
    ModelReady,
    Planned,
    RunDone,
    RunStarted,
    RunToken,
    SessionDone,
)
from launcher.compare_results import ComparisonResult, saved_comparisons
from launcher.engine.events import Sampling
from launcher.paths import AppPaths
from tests.support.gguf_builders import TINY_LLAMA, build_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("compare") / "tiny-llama.gguf", **TINY_LLAMA)


def test_sequential_comparison_from_the_cli(
    gemma_path: Path, tiny_llama: Path, app_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["compare", str(gemma_path), str(tiny_llama), "--prompt", "Say hello.",
         "--sequential", "--max-tokens", "6", "--ctx", "1024", "--json"]
    )  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["residency"]["mode"] == "sequential" and data["residency"]["forced"]
    assert data["sampling"]["seed"] == data["seed"] == 1234
    runs = {r["model"]: r for r in data["runs"]}
    assert set(runs) == {"gemma-3-270m-q4_k_m", "tiny-llama"}
    for run in runs.values():
        assert run["error"] is None and run["reply"]
        assert 1 <= run["generated_tokens"] <= 6
        assert run["decode_tokens_per_s"] > 0 and run["ttft_s"] > 0 and run["peak_memory_bytes"] > 0
        assert run["est_decode_tokens_per_s"] > 0 and run["est_memory_bytes"] > 0
    for model in data["models"]:
        assert model["loads"] == 1 and model["load_s"] > 0 and model["unload_s"] is not None
    saved = saved_comparisons(AppPaths.default())
    assert len(saved) == 1 and ComparisonResult.load(saved[0]).id == data["id"]


def test_resident_blind_comparison_survives_a_killed_host(
    gemma_path: Path, tiny_llama: Path, app_home: Path, tmp_path: Path
) -> None:
    suite = tmp_path / "two.json"
    suite.write_text(
        json.dumps(
            {
                "title": "Two",
                "prompts": [
                    {"id": "first", "text": "Name a colour.", "check": {"type": "regex",
                                                                        "value": "."}},
                    {"id": "second", "text": "Name a fruit."},
                ],
            }
        )
    )  # fmt: skip
    request = CompareRequest(
        (str(tiny_llama), str(gemma_path)),
        suite=str(suite),
        ctx=1024,
        blind=True,
        sampling=Sampling(temperature=0.0, max_tokens=5),
    )
    pids: dict[str, int] = {}
    events: list[object] = []
    streamed: dict[tuple[str, str], str] = {}
    killed = False
    for ev in ComparisonJob(request, rng=random.Random(1)).run():
        events.append(ev)
        if isinstance(ev, ModelReady):
            pids[ev.label] = ev.pid
        elif isinstance(ev, RunStarted) and ev.label == "tiny-llama" and not killed:
            os.kill(pids["tiny-llama"], signal.SIGKILL)  # the host dies as it starts answering
            killed = True
        elif isinstance(ev, RunToken):
            streamed[(ev.label, ev.prompt_id)] = (
                streamed.get((ev.label, ev.prompt_id), "") + ev.text
            )

    planned = events[0]
    assert isinstance(planned, Planned) and planned.residency.mode == "resident"
    assert any(isinstance(e, ModelFailed) and e.label == "tiny-llama" for e in events)
    done = events[-1]
    assert isinstance(done, SessionDone) and done.saved_to is not None
    result = done.result
    tiny_first = result.run_for("tiny-llama", "first")
    gemma_first = result.run_for("gemma-3-270m-q4_k_m", "first")
    assert tiny_first is not None and "crashed" in (tiny_first.error or "")
    # the other model went on, and its answer is kept, streamed and final alike
    assert gemma_first is not None and gemma_first.ok and gemma_first.reply
    assert streamed[("gemma-3-270m-q4_k_m", "first")] == gemma_first.reply
    # the crashed model was restarted for the next prompt
    assert all(r is not None and r.ok for r in (result.run_for(m, "second") for m in result.labels))
    assert result.model("tiny-llama").loads == 2
    assert [e.result.prompt_id for e in events if isinstance(e, RunDone)] == [
        "first", "first", "second", "second"
    ]  # fmt: skip
    # blind: every prompt has its own A/B order, votes are stored with the saved result
    letters = result.letters_for("first")
    result.vote("first", "A")
    result.vote("second", "tie")
    result.save(to=done.saved_to)
    again = ComparisonResult.load(done.saved_to)
    assert again.voted("first").winner == letters["A"]  # type: ignore[union-attr]
    by = {s.label: s for s in again.summary()}
    assert by["tiny-llama"].errors == 1 and by["tiny-llama"].accuracy == 0.0
    assert by["gemma-3-270m-q4_k_m"].accuracy == 1.0


def test_a_model_that_fails_to_load_is_reported_once_and_the_other_answers(
    tiny_llama: Path, app_home: Path, tmp_path: Path
) -> None:
    # A header without tensor data: the plan says it fits, llama.cpp refuses to load it.
    broken = build_model(tmp_path / "broken.gguf", header_only=True, quant="F16", **TINY_LLAMA)
    suite = tmp_path / "s.json"
    suite.write_text(
        json.dumps({"prompts": [{"id": "a", "text": "Hi"}, {"id": "b", "text": "Yo"}]})
    )
    request = CompareRequest(
        (str(broken), str(tiny_llama)), suite=str(suite), ctx=512,
        sampling=Sampling(temperature=0.0, max_tokens=4),
    )  # fmt: skip
    events = list(ComparisonJob(request, save=False).run())
    failures = [e for e in events if isinstance(e, ModelFailed)]
    assert len(failures) == 1 and failures[0].label == "broken"
    assert "broken.gguf" in failures[0].message and "download it again" in failures[0].message
    result = events[-1].result  # type: ignore[attr-defined]
    for prompt in ("a", "b"):
        assert result.run_for("broken", prompt).error == "not run: the model could not be loaded"
        assert result.run_for("tiny-llama", prompt).ok
