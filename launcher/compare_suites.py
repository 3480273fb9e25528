"""Prompt suites for comparisons, and the automatic checks some prompts carry.

A suite is a JSON file in ``resources/prompt_suites/`` (``daily-assistant``, ``coding``,
``reasoning``, ``long-context-summary``). Each prompt may carry a check that grades a reply
without anyone voting: an expected answer (``contains``), a number (``number``, the last number
in the reply) or a pattern (``regex``). Checks only *read* the reply: nothing a model writes is
ever executed, so a coding prompt is graded by the shape of the code, not by running it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from launcher.errors import LauncherError

SUITES_DIR = Path(__file__).resolve().parent.parent / "resources" / "prompt_suites"

CheckKind = Literal["contains", "number", "regex"]

# A number as people write it in an answer: "1,234.5", "-3", "42". Thousands separators are
# removed before parsing.
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


class SuiteError(LauncherError):
    """A prompt suite is missing or malformed."""


@dataclass(frozen=True)
class Check:
    """An automatic grade for one prompt's reply. Only reads the text; never runs it."""

    kind: CheckKind
    value: str | float | tuple[str, ...]
    tolerance: float = 0.0

    def passes(self, reply: str) -> bool:
        """True when ``reply`` satisfies the check."""
        if self.kind == "contains":
            options = self.value if isinstance(self.value, tuple) else (str(self.value),)
            text = reply.casefold()
            return any(opt.casefold() in text for opt in options)
        if self.kind == "number":
            numbers = [n.replace(",", "") for n in _NUMBER.findall(reply)]
            numbers = [n for n in numbers if n not in ("", "-")]
            if not numbers:
                return False
            try:
                got = float(numbers[-1])
            except ValueError:
                return False
            assert not isinstance(self.value, tuple)
            return abs(got - float(self.value)) <= self.tolerance
        pattern = self.value if isinstance(self.value, str) else str(self.value)
        return re.search(pattern, reply, flags=re.IGNORECASE | re.DOTALL) is not None

    def describe(self) -> str:
        """A short human description ("expects 42", "mentions Paris")."""
        if self.kind == "contains":
            options = self.value if isinstance(self.value, tuple) else (str(self.value),)
            return "mentions " + " or ".join(repr(o) for o in options)
        if self.kind == "number":
            tol = f" ± {self.tolerance:g}" if self.tolerance else ""
            return f"final number is {float(self.value):g}{tol}"  # type: ignore[arg-type]
        return f"matches /{self.value}/"

    def to_json(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        out: dict[str, Any] = {"type": self.kind, "value": value}
        if self.tolerance:
            out["tolerance"] = self.tolerance
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Check:
        kind = data.get("type")
        value = data.get("value")
        if kind == "contains":
            if isinstance(value, list):
                return cls("contains", tuple(str(v) for v in value))
            return cls("contains", str(value))
        if kind == "number":
            try:
                return cls("number", float(value), float(data.get("tolerance", 0.0)))  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                raise SuiteError(f"number check needs a numeric value, got {value!r}") from exc
        if kind == "regex":
            try:
                re.compile(str(value))
            except re.error as exc:
                raise SuiteError(f"regex check {value!r} does not compile: {exc}") from exc
            return cls("regex", str(value))
        raise SuiteError(f"unknown check type {kind!r}: use contains, number or regex")


@dataclass(frozen=True)
class SuitePrompt:
    """One prompt of a suite (or a single ad-hoc prompt), with an optional check."""

    id: str
    text: str
    check: Check | None = None
    system: str | None = None
    max_tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.check:
            out["check"] = self.check.to_json()
        if self.system:
            out["system"] = self.system
        if self.max_tokens:
            out["max_tokens"] = self.max_tokens
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SuitePrompt:
        text = data.get("text")
        if "text_file" in data and not text:
            text = (SUITES_DIR / str(data["text_file"])).read_text(encoding="utf-8")
        if not isinstance(text, str) or not text.strip():
            raise SuiteError(f"prompt {data.get('id')!r} has no text")
        check = Check.from_json(data["check"]) if data.get("check") else None
        return cls(
            id=str(data.get("id") or "prompt"),
            text=text,
            check=check,
            system=data.get("system"),
            max_tokens=int(data["max_tokens"]) if data.get("max_tokens") else None,
        )


@dataclass(frozen=True)
class PromptSuite:
    """A named set of prompts run over every model of a comparison."""

    name: str
    title: str
    description: str
    prompts: tuple[SuitePrompt, ...] = field(default_factory=tuple)

    @property
    def checked(self) -> int:
        """How many prompts carry an automatic check."""
        return sum(1 for p in self.prompts if p.check)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "prompts": [p.to_json() for p in self.prompts],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], name: str | None = None) -> PromptSuite:
        prompts = data.get("prompts")
        if not isinstance(prompts, list) or not prompts:
            raise SuiteError(f"suite {name or data.get('name')!r} has no prompts")
        return cls(
            name=str(name or data.get("name")),
            title=str(data.get("title") or name or data.get("name")),
            description=str(data.get("description", "")),
            prompts=tuple(SuitePrompt.from_json(p) for p in prompts),
        )


def single_prompt(text: str, max_tokens: int | None = None) -> PromptSuite:
    """Wrap one ad-hoc prompt as a one-prompt suite (no check)."""
    return PromptSuite(
        "prompt", "Single prompt", "", (SuitePrompt("prompt", text, None, None, max_tokens),)
    )


def suite_names(folder: Path = SUITES_DIR) -> list[str]:
    """Names of the suites available (file stems), sorted."""
    return sorted(p.stem for p in folder.glob("*.json"))


def load_suite(name_or_path: str | Path, folder: Path = SUITES_DIR) -> PromptSuite:
    """Load a suite by name (``coding``) or by path to a JSON file."""
    path = Path(name_or_path)
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
