"""How sure a comparison is, and what to do about it: intervals and a one-line recommendation.

A pass rate from 6 prompts is far less certain than one from 160, so every rate comes with a
95% Wilson score interval (it stays inside 0..1 and behaves at 0% and 100%, unlike the normal
approximation). :func:`recommend` turns two models' rates, speeds and memory into one line a
person can act on: "qwen3-32b: same pass rate within the interval, 2.1× faster". Two rates
count as different only when their 95% intervals do not overlap, a deliberately cautious rule
that is easy to explain. Pure functions; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95% normal quantile
SPEED_MARGIN = 1.10  # speeds within 10% are "similar" (run-to-run noise is a few percent)
MEMORY_MARGIN = 0.90  # 10% less peak memory counts as "less memory"


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` out of ``n`` (a tie may count 0.5).

    ``n == 0`` gives ``(0.0, 1.0)``: nothing is known.
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} must be between 0 and n={n}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Candidate:
    """One model as the recommendation sees it."""

    label: str
    successes: float | None = None  # prompts passed (or votes won, a tie counting half)
    graded: int = 0  # prompts graded (or votes cast)
    decode_tps: float | None = None
    peak_memory_bytes: int | None = None

    @property
    def rate(self) -> float | None:
        if self.successes is None or self.graded <= 0:
            return None
        return self.successes / self.graded

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.successes is None or self.graded <= 0:
            return None
        return wilson_interval(self.successes, self.graded)


@dataclass(frozen=True)
class Recommendation:
    """Which model to pick (None: no clear winner), and the line that says why."""

    label: str | None
    text: str
    quality: str  # "same", "better", "unknown"


def _ratio(x: float) -> str:
    return f"{x:.1f}×" if x < 10 else f"{x:.0f}×"


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def recommend(a: Candidate, b: Candidate, measure: str = "pass rate") -> Recommendation:
    """One line saying which of ``a`` and ``b`` to use and why.

    Quality decides first (when both have a ``measure`` and their 95% intervals do not
    overlap); when quality is the same within the intervals (or unknown), decode speed
    decides, then peak memory. ``measure`` names the rate ("pass rate", "win rate").
    """
    ia, ib = a.interval, b.interval
    speed = _speed(a, b)
    if ia is not None and ib is not None and a.rate is not None and b.rate is not None:
        if ia[0] > ib[1] or ib[0] > ia[1]:
            best, other = (a, b) if a.rate > b.rate else (b, a)
            line = (
                f"{best.label}: higher {measure} ({_pct(best.rate or 0)} vs "
                f"{_pct(other.rate or 0)}, 95% intervals apart)"
            )
            faster = speed[0] if speed else None
            if speed and faster is best:
                line += f", also {_ratio(speed[1])} faster"
            elif speed:
                line += f", but {_ratio(speed[1])} slower"
            return Recommendation(best.label, line, "better")
        same = f"same {measure} within the interval"
        quality = "same"
    else:
        same = f"no {measure} to compare"
        quality = "unknown"
    if speed:
        faster, ratio = speed
        return Recommendation(
            faster.label, f"{faster.label}: {same}, {_ratio(ratio)} faster", quality
        )
    lighter = _lighter(a, b)
    if lighter:
        model, saved = lighter
        return Recommendation(
            model.label, f"{model.label}: {same}, similar speed, {_pct(saved)} less memory", quality
        )
    return Recommendation(None, f"No clear winner: {same}, similar speed and memory", quality)


def _speed(a: Candidate, b: Candidate) -> tuple[Candidate, float] | None:
    """The clearly faster model and by how much (None: similar or unknown)."""
    if not a.decode_tps or not b.decode_tps:
        return None
    fast, slow = (a, b) if a.decode_tps >= b.decode_tps else (b, a)
    ratio = (fast.decode_tps or 0) / (slow.decode_tps or 1)
    return (fast, ratio) if ratio >= SPEED_MARGIN else None


def _lighter(a: Candidate, b: Candidate) -> tuple[Candidate, float] | None:
    """The model that needs clearly less peak memory and the share it saves."""
    if not a.peak_memory_bytes or not b.peak_memory_bytes:
        return None
    light, heavy = (a, b) if a.peak_memory_bytes <= b.peak_memory_bytes else (b, a)
    share = (light.peak_memory_bytes or 0) / (heavy.peak_memory_bytes or 1)
    return (light, 1 - share) if share <= MEMORY_MARGIN else None
