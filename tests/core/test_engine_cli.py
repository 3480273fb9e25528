"""``spark-launcher bench`` and ``spark-launcher chat`` on the real Gemma 3 270M."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from launcher.cli import main

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--threads", "1", "--ctx", "512"]


def test_bench_json_has_the_documented_keys(
    gemma_path: Path, app_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", str(gemma_path), "--tokens", "8", "--json", *FAST]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("load_s", "ttft_s", "prefill_tokens_per_s", "decode_tokens_per_s"):
        assert out[key] > 0, key
    assert out["generated_tokens"] == 8
    assert out["prompt_tokens"] > 10  # the whole prompt is evaluated, not a cached prefix
    assert out["rss_bytes"] > 50 * 2**20
    assert {b["kind"] for b in out["buffers"]} >= {"model", "kv", "compute"}
    # The measured run is kept so later estimates on this machine are calibrated.
    assert (app_home / "data" / "calibration.json").exists()


def test_bench_on_a_missing_file_says_so(
    app_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "no-such-model.gguf", "--json"]) == 1
    assert "no model file" in capsys.readouterr().err


def test_chat_keeps_the_conversation_and_reports_metrics(
    gemma_path: Path,
    app_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("What is the capital of France?\nThanks!\n"))
    args = ["chat", str(gemma_path), "--temperature", "0", "--max-tokens", "12", "--json", *FAST]
    assert main([*args, "--system", "Answer briefly."]) == 0
    replies = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert len(replies) == 2
    assert "Paris" in replies[0]["text"]
    first, second = (r["metrics"] for r in replies)
    assert first["template"] == "plain completion (model has no chat template)"
    # The second turn extends the first: its shared prefix comes from the KV cache.
    assert second["cached_tokens"] > first["prompt_tokens"]


def test_ctrl_c_stops_a_reply_and_a_second_quits(gemma_path: Path, app_home: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher", "chat", str(gemma_path), "--temperature", "0",
         "--max-tokens", "400", *FAST],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, text=True,
    )  # fmt: skip
    assert proc.stdin and proc.stdout and proc.stderr
    err_lines: queue.Queue[str] = queue.Queue()
    got_text = threading.Event()

    def pump_err() -> None:
        assert proc.stderr
        for line in proc.stderr:
            err_lines.put(line)

    def pump_out() -> None:
        assert proc.stdout
        while proc.stdout.read(1):
            got_text.set()

    readers = [threading.Thread(target=f, daemon=True) for f in (pump_err, pump_out)]
    for t in readers:
        t.start()
    try:
        assert "loaded" in err_lines.get(timeout=120)
        proc.stdin.write("Count from 1 to 500, separated by commas: 1, 2, 3,\n")
        proc.stdin.flush()
        assert got_text.wait(timeout=120)
        proc.send_signal(signal.SIGINT)  # first Ctrl-C: stop the reply
        metrics = ""
        while "stop:" not in metrics:
            metrics = err_lines.get(timeout=60)
        assert "stop: cancelled" in metrics
        assert proc.poll() is None  # still running, the model still loaded
        proc.send_signal(signal.SIGINT)  # Ctrl-C at the prompt: quit
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for t in readers:
            t.join(timeout=10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def test_chat_after_a_second_crash_reloads_with_safe_settings_and_goes_on(
    gemma_path: Path,
    app_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from launcher.engine.host import FAULT_ENV, SEGV_WITH_EXTRA_BUFFERS

    # Every host with extra buffer types dies at its first decode, the way the AMX kernels
    # do: the first reload is the same settings, the second must not be.
    monkeypatch.setenv(FAULT_ENV, SEGV_WITH_EXTRA_BUFFERS)
    monkeypatch.setattr(sys, "stdin", io.StringIO("one\ntwo\nthree\n"))
    args = ["chat", str(gemma_path), "--temperature", "0", "--max-tokens", "4", "--json", *FAST]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.err.count("The model stopped unexpectedly") == 2
    assert "segmentation fault" in captured.err
    assert "It crashed again: loading with safe settings (no extra buffer types" in captured.err
    replies = [json.loads(line) for line in captured.out.splitlines() if line]
    assert len(replies) == 1 and replies[0]["metrics"]["generated_tokens"] > 0
    # The crashes were counted where the app and the doctor read them, and the reply
    # with safe settings ended the streak.
    out = subprocess.run(
        [sys.executable, "-m", "launcher", "doctor", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "SPARK_LAUNCHER_HOME": str(app_home)},
        timeout=120,
    )
    crashes = next(c for c in json.loads(out.stdout) if c["id"] == "crashes")
    assert crashes["status"] == "ok"


def test_chat_safe_flag_names_each_change(
    gemma_path: Path,
    app_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hi\n"))
    args = ["chat", str(gemma_path), "--max-tokens", "2", "--json", "--safe", "--ctx", "512"]
    assert main([*args, "--threads", "2"]) == 0
    err = capsys.readouterr().err
    assert "Safe settings: no extra buffer types" in err
    assert "no memory-mapping" in err and "1 threads instead of 2" in err
