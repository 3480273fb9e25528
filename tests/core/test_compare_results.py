"""Comparison results a user keeps: suite checks, blind votes, summary, saving and export."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest

from launcher.compare_results import (
    CompareError,
    ComparisonResult,
    ModelEntry,
    RunResult,
    saved_comparisons,
)
from launcher.compare_suites import Check, SuiteError, load_suite, suite_names
from launcher.paths import AppPaths


@pytest.mark.parametrize(
    ("check", "reply", "passes"),
    [
        (Check("contains", "Canberra"), "The capital is canberra.", True),
        (Check("contains", ("flour", "egg")), "You need eggs and milk.", True),
        (Check("contains", "Canberra"), "It is Sydney.", False),
        (Check("number", 26.0), "48 / 4 = 12 sold, 36 - 10 = 26", True),
        (Check("number", 1234.0), "The total is 1,234.", True),
        (Check("number", 26.0), "26 apples, then 30 remain", False),
        (Check("number", 80.0, 0.5), "about 80.0 km/h", True),
        (Check("number", 5.0), "no digits here", False),
        (Check("regex", r"def\s+is_palindrome"), "```python\ndef is_palindrome(s):", True),
        (Check("regex", r"O\(log n\)"), "It is o(LOG N).", True),
    ],
)
def test_checks_grade_replies_by_reading_them(check: Check, reply: str, passes: bool) -> None:
    assert check.passes(reply) is passes
    assert check.describe()


def test_bundled_suites_load_and_carry_checks() -> None:
    names = suite_names()
    assert {"daily-assistant", "coding", "reasoning", "long-context-summary"} <= set(names)
    for name in names:
        suite = load_suite(name)
        assert suite.prompts and suite.checked >= len(suite.prompts) // 2
        assert len({p.id for p in suite.prompts}) == len(suite.prompts)
    long = load_suite("long-context-summary")
    assert min(len(p.text) for p in long.prompts) > 3000


def test_unknown_suite_and_bad_check_say_what_exists(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"available suites: .*coding"):
        load_suite("nope")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"prompts": [{"id": "x", "text": "t", "check": {"type": "exec"}}]}))
    with pytest.raises(SuiteError, match="contains, number or regex"):
        load_suite(bad)


def _result() -> ComparisonResult:
    res = ComparisonResult(
        models=[ModelEntry("big", "big.gguf", est_decode_tps=5.0), ModelEntry("small", "s.gguf")],
        prompts=[
            {"id": "p1", "text": "2+2?", "check": {"type": "number", "value": 4}},
            {"id": "p2", "text": "Say hi"},
        ],
        suite="reasoning",
        seed=7,
        residency={"mode": "resident", "reason": "both fit: 1.0 + 2.0 GB"},
    )
    res.runs = [
        RunResult("big", "p1", "It is 4", 0.5, 100.0, 4.0, 2.0, 5, 3, 10**9, 5.0, None, True),
        RunResult("small", "p1", "It is 5", 0.1, 900.0, 40.0, 0.3, 5, 3, 10**8, None, None, False),
        RunResult("big", "p2", 'hi, "you", bye', 0.4, 90.0, 5.0, 1.0),
        RunResult("small", "p2", "", error="the model host crashed: killed"),
    ]
    return res


def test_blind_votes_are_recorded_for_the_hidden_model() -> None:
    res = _result()
    res.assign_blind_letters(random.Random(3))
    letters = res.letters_for("p2")
    assert sorted(letters) == ["A", "B"] and sorted(letters.values()) == ["big", "small"]
    vote = res.vote("p2", "a")
    assert vote.winner == letters["A"]
    res.vote("p1", "tie")
    res.vote("p2", "B")  # changing one's mind replaces the earlier vote
    assert len(res.votes) == 2 and res.voted("p2").winner == letters["B"]  # type: ignore[union-attr]
    with pytest.raises(CompareError, match="A, B or 'tie'"):
        res.vote("p1", "C")
    by = {s.label: s for s in res.summary()}
    assert by[letters["B"]].wins == 1 and by[letters["B"]].ties == 1
    assert by[letters["B"]].vote_score == 0.75


def test_summary_counts_accuracy_speed_and_errors() -> None:
    by = {s.label: s for s in _result().summary()}
    assert by["big"].accuracy == 1.0 and by["small"].accuracy == 0.0
    assert by["big"].mean_decode_tps == pytest.approx(4.5)
    assert by["small"].errors == 1 and by["small"].mean_decode_tps == 40.0
    assert by["big"].peak_memory_bytes == 10**9


def test_saved_atomically_and_exported_in_three_formats(app_home: Path, tmp_path: Path) -> None:
    res = _result()
    res.vote("p1", "A")
    paths = AppPaths.default()
    saved = res.save(paths)
    assert saved.parent == paths.comparisons_dir and saved_comparisons(paths) == [saved]
    again = ComparisonResult.load(saved)
    assert again.runs == res.runs and again.votes == res.votes

    md = res.export(tmp_path / "c.md").read_text()
    assert "| big | 4.5 (5.0)" in md and "both fit" in md and "crashed" in md
    rows = list(csv.DictReader(io.StringIO(res.export(tmp_path / "c.csv").read_text())))
    assert len(rows) == 4 and rows[2]["reply"] == 'hi, "you", bye'
    assert rows[0]["vote"] == "win" and rows[1]["vote"] == "loss"
    data = json.loads(res.export(tmp_path / "c.json").read_text())
    assert data["summary"][0]["label"] == "big" and data["votes"][0]["winner"] == "big"
    with pytest.raises(CompareError, match=r"\.md, \.csv or \.json"):
        res.export(tmp_path / "c.txt")
