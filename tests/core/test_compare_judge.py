"""The judge: blind, both orders, a split verdict is a tie; agreement with the user's votes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launcher.compare_judge import (
    JudgeRun,
    agreement,
    combine,
    judge_comparison,
    judge_messages,
    parse_verdict,
    verdict_counts,
)
from launcher.compare_results import ComparisonResult, ModelEntry, RunResult
from launcher.engine.events import ReplyFinished, ReplyMetrics, Sampling


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("Answer 1 is right.\n[[1]]", "first"),
        ("Both fine. [[tie]]", "tie"),
        ("[[1]] no wait, [[2]]", "second"),
        ("[[ B ]]", "second"),
        ("The better one is answer 2", "second"),
        ("I cannot decide.", None),
        ("", None),
    ],
)
def test_parse_verdict(text: str, position: str | None) -> None:
    assert parse_verdict(text) == position


@pytest.mark.parametrize(
    ("a_first", "b_first", "winner", "consistent"),
    [
        ("first", "second", "A", True),  # A shown first wins, then A shown second wins
        ("second", "first", "B", True),
        ("first", "first", None, False),  # always the first position: a split, a tie
        ("second", "second", None, False),
        ("tie", "tie", None, True),
        ("first", "tie", None, False),
        (None, "second", None, False),
    ],
)
def test_combine_both_orders(
    a_first: Any, b_first: Any, winner: str | None, consistent: bool
) -> None:
    assert combine("A", "B", a_first, b_first) == (winner, consistent)


def _metrics() -> ReplyMetrics:
    return ReplyMetrics(0.1, 5, 0.1, 50.0, 3, 0.2, 10.0, "eos", "test")


class FakeJudge:
    """A judge engine: ``decide(answer1, answer2)`` returns its reply text."""

    def __init__(self, decide: Any) -> None:
        self.decide = decide
        self.asked: list[list[dict[str, str]]] = []
        self.closed = False

    def chat(self, messages: list[dict[str, str]], sampling: Sampling) -> Iterator[Any]:
        self.asked.append(messages)
        body = messages[-1]["content"]
        one = re.search(r"\[Answer 1\]\n(.*?)\n\n\[Answer 2\]", body, re.S)
        two = re.search(r"\[Answer 2\]\n(.*?)\n\nWhich", body, re.S)
        assert one and two
        yield ReplyFinished(self.decide(one.group(1), two.group(1)), _metrics())

    def cancel(self) -> None:
        pass

    def unload(self) -> None:
        self.closed = True


def _result() -> ComparisonResult:
    prompts = [{"id": f"p{i}", "text": f"Question {i}?"} for i in range(4)]
    result = ComparisonResult(
        models=[ModelEntry("qwen", "qwen.gguf"), ModelEntry("llama", "llama.gguf")],
        prompts=prompts,
    )
    for i in range(4):
        result.runs.append(RunResult("qwen", f"p{i}", reply=f"good answer {i}", decode_tps=20.0))
        result.runs.append(RunResult("llama", f"p{i}", reply=f"poor answer {i}", decode_tps=10.0))
    result.runs[-1].error = "the model host crashed"  # p3 has no reply from llama: skipped
    return result


def test_a_position_biased_judge_scores_only_ties() -> None:
    result = _result()
    judge = FakeJudge(lambda one, two: "The first one. [[1]]")
    events = list(JudgeRun(result, judge, "gemma-judge").run())
    assert len(judge.asked) == 6 and len(events) == 6  # 3 prompts, each in both orders
    assert [v.winner for v in result.judge_verdicts] == [None, None, None]
    assert not any(v.consistent for v in result.judge_verdicts)
    assert verdict_counts(result.judge_verdicts, result.labels) == {
        "qwen": 0,
        "llama": 0,
        "tie": 3,
    }


def test_the_judge_is_blind_and_sees_both_orders() -> None:
    result = _result()
    judge = FakeJudge(lambda one, two: "[[1]]" if "good" in one else "[[2]]")
    list(JudgeRun(result, judge, "gemma-judge").run())
    assert [v.winner for v in result.judge_verdicts] == ["qwen", "qwen", "qwen"]
    assert all(v.consistent and v.a_first == "first" for v in result.judge_verdicts)
    firsts = [m[-1]["content"].split("[Answer 1]\n")[1][:4] for m in judge.asked[:2]]
    assert firsts == ["good", "poor"]  # the order was swapped
    for messages in judge.asked:
        assert "qwen" not in str(messages) and "llama" not in str(messages)
    assert result.summary()[0].judge_wins == 3
    rec = result.recommendation()
    assert rec is not None and rec.label == "qwen"
    assert rec.text.startswith("qwen: same judge win rate within the interval, 2.0× faster")


def test_agreement_with_the_users_votes_and_storage(tmp_path: Path) -> None:
    result = _result()
    list(JudgeRun(result, FakeJudge(lambda o, t: "[[1]]" if "good" in o else "[[2]]"), "j").run())
    letters = result.letters_for("p0")
    qwen_letter = next(k for k, v in letters.items() if v == "qwen")
    llama_letter = next(k for k, v in letters.items() if v == "llama")
    result.vote("p0", qwen_letter)  # agrees
    result.vote("p1", llama_letter)  # disagrees
    result.vote("p2", qwen_letter)  # agrees
    result.vote("p3", "tie")  # the judge skipped p3: not compared
    agree = agreement(result)
    assert (agree.agreed, agree.compared, agree.rate) == (2, 3, pytest.approx(2 / 3))
    assert agree.describe() == "the judge agreed with your votes on 2 of 3 prompts (67%)"
    again = ComparisonResult.load(result.save(to=tmp_path / "r.json"))
    assert again.judge == "j" and again.judge_verdicts == result.judge_verdicts
    md = again.to_markdown()
    assert "Judge j (blind, both orders): qwen 3, llama 0, ties 0" in md
    assert "Judge: qwen" in md


def test_judge_comparison_loads_and_closes_the_judge() -> None:
    judge = FakeJudge(lambda o, t: "[[tie]]")
    events = list(judge_comparison(_result(), lambda: judge, "j"))
    assert events and judge.closed


def test_judge_messages_hold_the_question_and_both_answers() -> None:
    messages = judge_messages(" Why? ", "Because.", "")
    assert messages[0]["role"] == "system" and "[[tie]]" in messages[0]["content"]
    assert "[Question]\nWhy?" in messages[1]["content"]
    assert "[Answer 2]\n(empty)" in messages[1]["content"]


def test_results_saved_with_the_old_field_names_still_load(tmp_path: Path) -> None:
    old = _result().to_json()
    for run in old["runs"]:
        run["decode_tps"] = run.pop("decode_tokens_per_s")
        run["completion_tokens"] = run.pop("generated_tokens")
        run.pop("checks")
        run.pop("tool_calls")
    for key in ("judge", "judge_verdicts", "recommendation"):
        old.pop(key)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    loaded = ComparisonResult.load(path)
    assert loaded.runs[0].decode_tps == 20.0 and loaded.runs[0].checks == []
    assert loaded.to_json()["runs"][0]["decode_tokens_per_s"] == 20.0


def test_markdown_says_why_a_check_failed() -> None:
    result = _result()
    run = result.runs[0]
    run.check_passed = False
    run.checks = [{"kind": "code", "passed": False, "detail": "exit code 1: AssertionError"}]
    assert "- ✘ code: exit code 1: AssertionError" in result.to_markdown()
