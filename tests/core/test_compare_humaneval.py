"""HumanEval's check itself: the canonical solutions pass (as a continued body and as a chat
reply with the whole function in a code block), wrong, broken and endless completions fail."""

from __future__ import annotations

import pytest

from launcher.compare_checks import Reply
from launcher.compare_humaneval import humaneval_suite, problem_check, read_problems
from launcher.compare_suites import load_suite, suite_names

PROBLEMS = {p["task_id"]: p for p in read_problems()}
SAMPLE = ["HumanEval/0", "HumanEval/2", "HumanEval/32", "HumanEval/38", "HumanEval/53"]


def test_the_package_ships_all_164_problems_offline() -> None:
    assert len(PROBLEMS) == 164
    assert "humaneval" in suite_names()
    suite = load_suite("humaneval")
    assert len(suite.prompts) == suite.checked == 164
    first = suite.prompts[0]
    assert first.id == "HumanEval/0" and PROBLEMS["HumanEval/0"]["prompt"] in first.text
    assert [p.id for p in humaneval_suite(limit=2).prompts] == ["HumanEval/0", "HumanEval/1"]
    assert len(suite.head(3).prompts) == 3


@pytest.mark.parametrize("task_id", SAMPLE)
def test_canonical_solutions_pass_as_a_body_and_as_a_whole_function(task_id: str) -> None:
    p = PROBLEMS[task_id]
    check = problem_check(p)
    assert check.grade(Reply(p["canonical_solution"])).passed
    # A chat model's usual answer: the whole function in a fenced block, imports included.
    whole = f"Here it is:\n```python\n{p['prompt']}{p['canonical_solution']}```\nDone."
    outcome = check.grade(Reply(whole))
    assert outcome.passed, outcome.detail


@pytest.mark.parametrize(
    ("task_id", "completion", "detail"),
    [
        ("HumanEval/0", "    return False\n", "AssertionError"),
        ("HumanEval/2", "    return int(number)\n", "AssertionError"),
        ("HumanEval/53", "    return x - y\n", "AssertionError"),
        ("HumanEval/38", "    return s\n", "AssertionError"),
        ("HumanEval/0", "    return numbers[\n", "SyntaxError"),
        ("HumanEval/0", "```python\ndef has_close_elements(numbers, threshold):\n"
                        "    while True:\n        pass\n```", "timed out"),
        ("HumanEval/2", "I cannot help with that.", "SyntaxError"),
    ],
)  # fmt: skip
def test_wrong_broken_and_endless_completions_fail(
    task_id: str, completion: str, detail: str
) -> None:
    check = problem_check(PROBLEMS[task_id], timeout_s=2)
    outcome = check.grade(Reply(completion))
    assert not outcome.passed
    assert detail in outcome.detail


@pytest.mark.slow
def test_every_canonical_solution_passes() -> None:
    failed = [
        tid
        for tid, p in PROBLEMS.items()
        if not problem_check(p).grade(Reply(p["canonical_solution"])).passed
    ]
    assert failed == []
