"""Prompt suites for comparisons: the bundled ones, HumanEval, and the user's JSONL files.

A bundled suite is a JSON file in ``resources/prompt_suites/`` (``daily-assistant``,
``coding``, ``reasoning``, ``long-context-summary``); ``humaneval`` is built in code
(``launcher/compare_humaneval.py``); a user's suite is a ``.jsonl`` file, one prompt per line
with its system prompt, tools, ``response_format`` and checks (:func:`load_jsonl_suite`, whose
errors name the line). The checks themselves live in ``launcher/compare_checks.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from launcher.compare_checks import (
    Check,
    Reply,
    SuiteError,
)
from launcher.compare_prompts import SUITES_DIR, PromptSuite, SuitePrompt

__all__ = [
    "SUITES_DIR",
    "Check",
    "PromptSuite",
    "Reply",
    "SuiteError",
    "SuitePrompt",
    "accuracy",
    "load_jsonl_suite",
    "load_suite",
    "single_prompt",
    "suite_names",
]


def single_prompt(text: str, max_tokens: int | None = None) -> PromptSuite:
    """Wrap one ad-hoc prompt as a one-prompt suite (no check)."""
    return PromptSuite(
        "prompt", "Single prompt", "", (SuitePrompt("prompt", text, None, None, max_tokens),)
    )


BUILTIN_SUITES = ("humaneval",)
"""Suites built in code rather than from a file (``launcher/compare_humaneval.py``)."""


def suite_names(folder: Path = SUITES_DIR) -> list[str]:
    """Names of the suites available (file stems, then the built-in ones), sorted."""
    return sorted(p.stem for p in folder.glob("*.json")) + list(BUILTIN_SUITES)


def load_suite(name_or_path: str | Path, folder: Path = SUITES_DIR) -> PromptSuite:
    """Load a suite by name (``coding``, ``humaneval``) or by path to a JSON or JSONL file.
    (The user's own workloads, ``chats``, ``api-log`` and ``folder:PATH``, are
    ``launcher.compare_workloads``'s; ``CompareRequest.prompt_suite`` takes both.)"""
    if str(name_or_path) == "humaneval" and folder == SUITES_DIR:
        from launcher.compare_humaneval import humaneval_suite

        return humaneval_suite()
    path = Path(name_or_path)
    if path.suffix.lower() == ".jsonl":
        return load_jsonl_suite(path)
    if not path.suffix:
        path = folder / f"{name_or_path}.json"
    if not path.is_file():
        known = ", ".join(suite_names(folder)) or "none"
        raise SuiteError(f"no prompt suite {str(name_or_path)!r}; available suites: {known}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteError(f"prompt suite {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SuiteError(f"prompt suite {path} must be a JSON object with 'prompts'")
    return PromptSuite.from_json(data, name=path.stem)


def accuracy(passed: Sequence[bool | None]) -> float | None:
    """Share of checked prompts passed, or ``None`` when nothing was checked."""
    graded = [p for p in passed if p is not None]
    return sum(graded) / len(graded) if graded else None


def load_jsonl_suite(path: str | Path, name: str | None = None) -> PromptSuite:
    """A suite file in JSON Lines: one prompt per line (see README, "compare").

    Each line is an object with ``prompt`` (or ``text``) and optionally ``id`` (default: the
    line number), ``system``, ``tools``, ``response_format``, ``checks`` and ``max_tokens``.
    Blank lines and lines starting with ``#`` or ``//`` are skipped. Every error names the file
    and line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SuiteError(f"cannot read the suite file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SuiteError(f"suite file {path} is not UTF-8 text") from exc
    prompts: list[SuitePrompt] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "//")):
            continue
        where = f"{path.name} line {number}"
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise SuiteError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(data, dict):
            raise SuiteError(f"{where}: each line must be a JSON object with a 'prompt'")
        data.setdefault("id", f"line-{number}")
        try:
            prompt = SuitePrompt.from_json(data)
        except SuiteError as exc:
            raise SuiteError(f"{where}: {exc}") from exc
        if prompt.id in seen:
            raise SuiteError(
                f"{where}: id {prompt.id!r} was already used on line {seen[prompt.id]}"
            )
        seen[prompt.id] = number
        prompts.append(prompt)
    if not prompts:
        raise SuiteError(f"suite file {path} has no prompts")
    stem = name or path.stem
    return PromptSuite(stem, stem, f"{len(prompts)} prompts from {path.name}", tuple(prompts))
