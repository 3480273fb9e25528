"""Wilson intervals and the one-line recommendation: table-driven."""

from __future__ import annotations

import pytest

from launcher.compare_stats import Candidate, recommend, wilson_interval

GB = 10**9


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),  # reference values (Wilson 1927; Newcombe 1998, table I)
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
        (3, 6, 0.1876, 0.8124),  # 6 prompts: almost anything is possible
        (80, 160, 0.4234, 0.5766),  # 160 prompts: ± 8 points
        (1, 6, 0.0301, 0.5635),
        (0.5, 1, 0.0546, 0.9454),  # a tie counts half
        (0, 0, 0.0, 1.0),  # nothing graded: nothing known
    ],
)
def test_wilson_interval(successes: float, n: int, low: float, high: float) -> None:
    got = wilson_interval(successes, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="between 0 and n"):
        wilson_interval(7, 6)


def cand(
    label: str, passed: float | None, n: int, tps: float | None, mem_gb: float = 0
) -> Candidate:
    return Candidate(label, passed, n, tps, int(mem_gb * GB) or None)


@pytest.mark.parametrize(
    ("a", "b", "label", "text"),
    [
        (cand("qwen3-32b", 5, 6, 21.0), cand("llama-70b", 6, 6, 10.0), "qwen3-32b",
         "qwen3-32b: same pass rate within the interval, 2.1× faster"),
        (cand("small", 40, 160, 50.0), cand("big", 120, 160, 10.0), "big",
         "big: higher pass rate (75% vs 25%, 95% intervals apart), but 5.0× slower"),
        (cand("a", 150, 160, 30.0), cand("b", 20, 160, 10.0), "a",
         "a: higher pass rate (94% vs 12%, 95% intervals apart), also 3.0× faster"),
        (cand("a", 150, 160, 30.0), cand("b", 20, 160, 29.0), "a",
         "a: higher pass rate (94% vs 12%, 95% intervals apart)"),
        (cand("a", 3, 6, 20.0, 40), cand("b", 3, 6, 21.0, 20), "b",
         "b: same pass rate within the interval, similar speed, 50% less memory"),
        (cand("a", 3, 6, 20.0, 20), cand("b", 3, 6, 21.0, 21), None,
         "No clear winner: same pass rate within the interval, similar speed and memory"),
        (cand("a", None, 0, 12.0), cand("b", None, 0, 36.0), "b",
         "b: no pass rate to compare, 3.0× faster"),
        (cand("a", 2, 2, None), cand("b", 0, 2, None), None,
         "No clear winner: same pass rate within the interval, similar speed and memory"),
    ],
)  # fmt: skip
def test_recommendation_line(a: Candidate, b: Candidate, label: str | None, text: str) -> None:
    rec = recommend(a, b)
    assert rec.text == text
    assert rec.label == label
    assert recommend(b, a).text == text  # the order the models were given does not matter


def test_recommendation_names_the_measure() -> None:
    rec = recommend(cand("a", 9, 10, 10.0), cand("b", 1, 10, 10.0), measure="win rate")
    assert rec.text == "a: higher win rate (90% vs 10%, 95% intervals apart)"
