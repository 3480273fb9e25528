"""Counted nouns for the views: "1 model", "2 models", "1 repository", "3 repositories"."""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``count`` and the noun in the right number (``plural_form`` for irregular ones)."""
    word = singular if count == 1 else (plural_form or f"{singular}s")
    return f"{count:,} {word}"
