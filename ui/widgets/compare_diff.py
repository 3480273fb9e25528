"""Where two replies differ: the words of one that the other does not have, as character spans.

Word-level (``difflib.SequenceMatcher`` over words and the spaces between them), which is what
a reader compares; the Compare view underlines the spans in each pane, so two long answers that
agree except for one number or one sentence show that at a glance.
"""

from __future__ import annotations

import difflib
import re

_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")
MAX_WORDS = 4000  # beyond this, matching costs more than it shows


def different_spans(mine: str, theirs: str) -> list[tuple[int, int]]:
    """(start, end) character spans of ``mine`` not matched in ``theirs``, merged, whitespace
    excluded. Empty when either text is empty (nothing to compare with) or very long."""
    if not mine.strip() or not theirs.strip():
        return []
    a = [(m.start(), m.group()) for m in _TOKENS.finditer(mine)]
    b = [m.group() for m in _TOKENS.finditer(theirs)]
    if len(a) > MAX_WORDS or len(b) > MAX_WORDS:
        return []
    matcher = difflib.SequenceMatcher(None, [t for _, t in a], b, autojunk=False)
    spans: list[tuple[int, int]] = []
    for tag, i1, i2, _j1, _j2 in matcher.get_opcodes():
        if tag not in ("replace", "delete"):
            continue
        words = [(pos, tok) for pos, tok in a[i1:i2] if tok.strip()]
        if not words:
            continue
        start, end = words[0][0], words[-1][0] + len(words[-1][1])
        if spans and start - spans[-1][1] <= 1:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans
