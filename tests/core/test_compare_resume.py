"""A long comparison stopped half-way (Ctrl-C, a closed app) resumes where it stopped, after a
restart, without asking the finished answers again: in the core and through the CLI, on real
models (Gemma 3 270M and a tiny random-weight llama)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher.compare import (
    CompareRequest,
    ComparisonJob,
    Progress,
    RunDone,
    RunStarted,
    SessionDone,
)
from launcher.compare_results import ComparisonResult, unfinished_comparisons
from launcher.engine.events import Sampling
from launcher.paths import AppPaths
from tests.support.gguf_builders import TINY_LLAMA, build_model

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("resume") / "tiny-llama.gguf", **TINY_LLAMA)


def _suite(folder: Path, n: int) -> Path:
    path = folder / "long.jsonl"
    lines = [
        {"id": f"q{i}", "prompt": f"Count to {i + 3}.", "checks": [{"type": "regex", "value": "."}]}
        for i in range(n)
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def _finished(result: ComparisonResult) -> dict[tuple[str, str], tuple[str, float | None]]:
    return {(r.model, r.prompt_id): (r.reply, r.decode_tps) for r in result.runs if r.finished}


def test_a_stopped_comparison_resumes_after_a_restart_without_redoing_answers(
    gemma_path: Path, tiny_llama: Path, app_home: Path, tmp_path: Path
) -> None:
    request = CompareRequest(
        (str(gemma_path), str(tiny_llama)),
        suite=str(_suite(tmp_path, 4)),
        ctx=1024,
        sampling=Sampling(temperature=0.0, max_tokens=6),
    )
    job = ComparisonJob(request)
    progress: list[Progress] = []
    last = None
    for ev in job.run():
        if isinstance(ev, Progress):
            progress.append(ev)
            if ev.done == 3:
                job.cancel()  # the user presses Stop (or closes the app) after 3 answers
        last = ev
    assert isinstance(last, SessionDone) and not last.complete and last.saved_to is not None
    assert [p.done for p in progress][:3] == [1, 2, 3] and progress[0].total == 8
    assert all(p.eta_s is not None and p.eta_s > 0 for p in progress[:3])

    # "restart": only what is on disk is used
    stopped = unfinished_comparisons(AppPaths.default())
    assert [p for p, _ in stopped] == [last.saved_to]
    saved = ComparisonResult.load(last.saved_to)
    assert saved.finished is None and not saved.complete
    before = _finished(saved)
    assert len(before) == 3 and saved.progress() == (3, 8)

    events = list(ComparisonJob.resuming(saved).run())
    started = [(e.label, e.prompt_id) for e in events if isinstance(e, RunStarted)]
    assert len(started) == 5 and not set(started) & set(before)  # only the missing answers
    done = events[-1]
    assert isinstance(done, SessionDone) and done.complete and done.saved_to == last.saved_to
    final = ComparisonResult.load(last.saved_to)
    assert final.complete and final.id == saved.id and final.progress() == (8, 8)
    after = _finished(final)
    assert {k: after[k] for k in before} == before  # the first answers, untouched
    assert [e.done for e in events if isinstance(e, Progress)] == [4, 5, 6, 7, 8]
    assert unfinished_comparisons(AppPaths.default()) == []
    assert all(s.checked == 4 for s in final.summary())


def test_every_answer_is_on_disk_as_soon_as_it_is_done(
    gemma_path: Path, tiny_llama: Path, app_home: Path, tmp_path: Path
) -> None:
    request = CompareRequest(
        (str(tiny_llama), str(gemma_path)),
        suite=str(_suite(tmp_path, 2)),
        ctx=1024,
        force="sequential",
        sampling=Sampling(temperature=0.0, max_tokens=4),
    )
    seen = []
    for ev in ComparisonJob(request).run():
        if isinstance(ev, RunDone):
            (path,) = AppPaths.default().comparisons_dir.glob("*.json")
            on_disk = ComparisonResult.load(path)
            seen.append(on_disk.progress()[0])
            assert on_disk.run_for(ev.result.model, ev.result.prompt_id) is not None
    assert seen == [1, 2, 3, 4]


def _cli(*args: str, home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "SPARK_LAUNCHER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "launcher", "compare", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_in_the_cli_then_resume_finishes_it(
    gemma_path: Path, tiny_llama: Path, app_home: Path, tmp_path: Path
) -> None:
    suite = _suite(tmp_path, 8)
    args = (str(gemma_path), str(tiny_llama), "--suite", str(suite), "--ctx", "1024")
    proc = _cli(*args, "--max-tokens", "24", home=app_home)
    folder = AppPaths.default().comparisons_dir
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            files = list(folder.glob("*.json"))
            if files and ComparisonResult.load(files[0]).progress()[0] >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the comparison ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    (path,) = folder.glob("*.json")
    saved = ComparisonResult.load(path)
    match = re.search(r"(\d+) of 16 answers are saved\. .*--resume (\w+)", err)
    assert match and match.group(2) == saved.id, err
    before = _finished(saved)
    assert 2 <= len(before) < 16 and saved.finished is None

    resumed = _cli("--resume", home=app_home)  # the latest stopped one
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    asked = re.findall(r"^\[(.+?)\] (q\d+): ", out, flags=re.M)
    assert len(asked) == 16 - len(before) and not set(asked) & set(before)
    assert "[16/16 answers]" in out and "Recommendation:" in out
    final = ComparisonResult.load(path)
    assert final.complete and final.progress() == (16, 16)
    after = _finished(final)
    assert {k: after[k] for k in before} == before
