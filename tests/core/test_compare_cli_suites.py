"""``compare A B --suite FILE.jsonl|humaneval [--limit N] [--judge MODEL] --json`` end to end on
real models: Gemma 3 270M and a tiny random-weight llama (cheap, so the checks are what is
tested, not the models)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from launcher.cli import main
from launcher.compare_results import ComparisonResult
from tests.support.gguf_builders import TINY_LLAMA, build_model

pytestmark = pytest.mark.slow

BENCH_NAMES = {"ttft_s", "prefill_tokens_per_s", "decode_tokens_per_s", "generated_tokens"}


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("cli-suites") / "tiny-llama.gguf", **TINY_LLAMA)


def _compare(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["compare", *args, "--ctx", "1024", "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_a_jsonl_suite_with_limit_and_bench_field_names(
    gemma_path: Path, tiny_llama: Path, app_home: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    suite = tmp_path / "mine.jsonl"
    lines = [
        {"id": "greet", "prompt": "Say hello.", "checks": [{"type": "regex", "value": "."}]},
        {"id": "json", "system": "Answer in JSON.", "prompt": "A colour as JSON.",
         "response_format": {"type": "json_object"}, "checks": [{"type": "json"}]},
        {"id": "weather", "system": "Use the tools.", "prompt": "Weather in Oslo?",
         "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
             "type": "object", "properties": {"city": {"type": "string"}},
             "required": ["city"]}}}],
         "checks": [{"type": "tool_call", "name": "get_weather"}]},
        {"id": "skipped", "prompt": "Not run: --limit 3."},
    ]  # fmt: skip
    suite.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    code, data = _compare(capsys, str(gemma_path), str(tiny_llama), "--suite", str(suite),
                          "--limit", "3", "--max-tokens", "24")  # fmt: skip
    assert code == 0
    ids = [p["id"] for p in data["prompts"]]
    assert data["suite"] == "mine" and ids == ["greet", "json", "weather"]
    assert len(data["runs"]) == 6
    for run in data["runs"]:
        assert set(run) >= BENCH_NAMES and "decode_tps" not in run
        assert run["error"] is None and 1 <= run["generated_tokens"] <= 24
        assert run["decode_tokens_per_s"] > 0
        kinds = {"greet": ["regex"], "json": ["json"], "weather": ["tool_call"]}
        assert [c["kind"] for c in run["checks"]] == kinds[run["prompt_id"]]
    # The JSON prompt was constrained to JSON, so every reply that finished parses.
    for run in data["runs"]:
        if run["prompt_id"] == "json" and run["stop_reason"] != "length":
            assert run["check_passed"] is True, run
    # Gemma (no chat template) gets the tools in the generic JSON envelope and calls one.
    gemma = next(r for r in data["runs"] if r["prompt_id"] == "weather" and "gemma" in r["model"])
    assert gemma["tool_calls"] and gemma["tool_calls"][0]["name"] == "get_weather", gemma
    for row in data["summary"]:
        assert "mean_decode_tokens_per_s" in row and row["accuracy_low"] is not None
    assert data["recommendation"]
    saved = ComparisonResult.load(next((app_home).rglob(f"{data['id']}.json")))
    assert saved.runs[0].decode_tps == data["runs"][0]["decode_tokens_per_s"]


def test_humaneval_limit_2_runs_the_problems_tests(
    gemma_path: Path, tiny_llama: Path, app_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, data = _compare(capsys, str(gemma_path), str(tiny_llama), "--suite", "humaneval",
                          "--limit", "2", "--max-tokens", "24")  # fmt: skip
    assert code == 0
    assert [p["id"] for p in data["prompts"]] == ["HumanEval/0", "HumanEval/1"]
    assert data["sampling"]["temperature"] == 0.0  # pass@1 with greedy decoding
    for run in data["runs"]:
        assert run["error"] is None and run["generated_tokens"] <= 24
        (outcome,) = run["checks"]
        assert outcome["kind"] == "code" and outcome["passed"] is run["check_passed"]
        if not outcome["passed"]:  # the tests ran and said why (these models cannot code)
            assert outcome["detail"].startswith(("exit code", "timed out"))
    for row in data["summary"]:
        assert row["checked"] == 2


def test_a_judge_grades_both_orders(
    gemma_path: Path, tiny_llama: Path, app_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["compare", str(gemma_path), str(tiny_llama), "--prompt", "Name a colour.",
                 "--max-tokens", "6", "--ctx", "1024", "--judge", str(gemma_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "(judge)] loading" in out and "Judge wins" in out
    saved = sorted(app_home.rglob("*.json"), key=lambda p: p.stat().st_mtime)[-1]
    result = ComparisonResult.load(saved)
    assert result.judge == "gemma-3-270m-q4_k_m (judge)"
    (verdict,) = result.judge_verdicts
    assert verdict.error is None and len(verdict.raw) == 2
    # A base model rarely gives a verdict in both orders; whatever it said, a split is a tie.
    if not verdict.consistent:
        assert verdict.winner is None
