"""Results of a comparison: per model × prompt figures, blind votes, summary, storage, export.

A :class:`ComparisonResult` is plain data. It is saved atomically as JSON in
``AppPaths.comparisons_dir`` (one file per comparison) and exported as Markdown, CSV or JSON.
Every measured figure sits next to the estimate it was checked against, so a reader sees at
once whether the planner was right on this machine.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import random
import statistics
import string
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from launcher.compare_stats import Candidate, Recommendation, recommend, wilson_interval
from launcher.compare_suites import accuracy
from launcher.errors import LauncherError
from launcher.fsutil import atomic_write_json, atomic_write_text, read_json
from launcher.paths import AppPaths

VoteChoice = Literal["A", "B", "C", "D", "tie"]
GB = 1e9


class CompareError(LauncherError):
    """A comparison could not be set up, run, voted on or saved."""


@dataclass
class ModelEntry:
    """One model of a comparison as recorded in its result (what ran, and what was expected)."""

    label: str  # short unique name shown in panes and tables
    source: str  # path or catalog id the user gave
    path: str | None = None  # local file that was loaded (None for plan-only catalog ids)
    weights_bytes: int | None = None
    kv_bytes: int | None = None
    total_bytes: int | None = None  # estimated memory when loaded
    est_decode_tps: float | None = None  # estimated decode speed on this machine
    est_prefill_tps: float | None = None
    load_s: float | None = None  # measured load time (last load)
    unload_s: float | None = None
    loads: int = 0


@dataclass
class RunResult:
    """One model's answer to one prompt: figures next to the estimates they are checked against."""

    model: str
    prompt_id: str
    reply: str = ""
    ttft_s: float | None = None
    prefill_tps: float | None = None
    decode_tps: float | None = None
    total_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    peak_memory_bytes: int | None = None
    est_decode_tps: float | None = None
    est_memory_bytes: int | None = None
    check_passed: bool | None = None
    stop_reason: str | None = None
    error: str | None = None
    est_prefill_tps: float | None = None
    #: Each check's outcome (``{"kind", "passed", "detail"}``), and the tool calls made.
    checks: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def finished(self) -> bool:
        """Answered to the end (not stopped half-way, no error): a resume does not redo it."""
        return self.error is None and self.stop_reason != "cancelled"


@dataclass
class Vote:
    """A blind vote on one prompt: the letters shown, the choice, and who it was for."""

    prompt_id: str
    letters: dict[str, str]  # "A" -> model label, as shown to the voter
    choice: str  # "A", "B", ... or "tie"
    winner: str | None  # model label, None for a tie
    when: str = ""


@dataclass
class JudgeVerdict:
    """A judge model's grade of one prompt: the winner (None: tie) and its two readings.

    ``a_first`` is its verdict ("first", "second", "tie" or None: none given) with the first
    model's answer shown first, ``b_first`` with the order swapped; ``consistent`` says both
    picked the same winner. ``raw`` keeps the judge's two replies.
    """

    prompt_id: str
    winner: str | None
    a_first: str | None
    b_first: str | None
    consistent: bool
    raw: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class ModelSummary:
    """Per-model aggregate over the prompts of a comparison (the suite table)."""

    label: str
    prompts: int
    errors: int
    mean_ttft_s: float | None
    mean_prefill_tps: float | None
    mean_decode_tps: float | None
    total_s: float | None
    peak_memory_bytes: int | None
    est_decode_tps: float | None
    accuracy: float | None  # share of checked prompts passed, None if none checked
    checked: int
    wins: int
    ties: int
    votes: int
    #: 95% Wilson interval of ``accuracy`` (None when nothing was checked).
    accuracy_low: float | None = None
    accuracy_high: float | None = None
    judge_wins: int = 0  # prompts the judge gave this model (both orders agreeing)

    @property
    def vote_score(self) -> float | None:
        """Share of votes won, counting a tie as half; None before any vote."""
        if not self.votes:
            return None
        return (self.wins + 0.5 * self.ties) / self.votes


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class ComparisonResult:
    """Everything a comparison produced; what the UI shows, what is saved and exported."""

    models: list[ModelEntry]
    prompts: list[dict[str, Any]]  # SuitePrompt.to_json() of each prompt run
    suite: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    residency: dict[str, Any] = field(default_factory=dict)  # ResidencyPlan.to_json()
    concurrent: bool = False  # models generated at the same time (speed figures not fair)
    blind: bool = False
    blind_letters: dict[str, dict[str, str]] = field(default_factory=dict)  # prompt -> A -> label
    runs: list[RunResult] = field(default_factory=list)
    votes: list[Vote] = field(default_factory=list)
    machine: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created: str = field(default_factory=_now)
    finished: str | None = None
    judge: str | None = None  # the judge model's label, when one graded the replies
    judge_verdicts: list[JudgeVerdict] = field(default_factory=list)
    #: The ``CompareRequest`` it was started with (JSON): what ``--resume`` runs again.
    request: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ lookups
    @property
    def complete(self) -> bool:
        """Every answer is in (``finished`` is set); False for a stopped or crashed run."""
        return self.finished is not None

    def progress(self) -> tuple[int, int]:
        """(answers finished, answers in all) — models × prompts."""
        done = sum(1 for r in self.runs if r.finished)
        return done, len(self.models) * len(self.prompts)

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.models]

    def model(self, label: str) -> ModelEntry:
        for m in self.models:
            if m.label == label:
                return m
        raise KeyError(label)

    def run_for(self, label: str, prompt_id: str) -> RunResult | None:
        for r in self.runs:
            if r.model == label and r.prompt_id == prompt_id:
                return r
        return None

    # ------------------------------------------------------------------ blind mode
    def assign_blind_letters(self, rng: random.Random | None = None) -> None:
        """Shuffle the models behind letters A, B, ... independently for every prompt."""
        rng = rng or random.Random()
        self.blind = True
        self.blind_letters = {}
        for p in self.prompts:
            order = list(self.labels)
            rng.shuffle(order)
            self.blind_letters[p["id"]] = dict(zip(string.ascii_uppercase, order, strict=False))

    def letters_for(self, prompt_id: str) -> dict[str, str]:
        """Letter -> model label for a prompt (identity order when not blind)."""
        if prompt_id in self.blind_letters:
            return dict(self.blind_letters[prompt_id])
        return dict(zip(string.ascii_uppercase, self.labels, strict=False))

    def vote(self, prompt_id: str, choice: str) -> Vote:
        """Record a vote ("A", "B", ... or "tie") for a prompt; a new vote replaces the old one."""
        letters = self.letters_for(prompt_id)
        choice = choice if choice == "tie" else choice.upper()
        if choice != "tie" and choice not in letters:
            raise CompareError(f"vote {choice!r} is not one of {', '.join(letters)} or 'tie'")
        if all(p["id"] != prompt_id for p in self.prompts):
            raise CompareError(f"no prompt {prompt_id!r} in this comparison")
        v = Vote(prompt_id, letters, choice, None if choice == "tie" else letters[choice], _now())
        self.votes = [x for x in self.votes if x.prompt_id != prompt_id] + [v]
        return v

    def voted(self, prompt_id: str) -> Vote | None:
        for v in self.votes:
            if v.prompt_id == prompt_id:
                return v
        return None

    # ------------------------------------------------------------------ summary
    def summary(self) -> list[ModelSummary]:
        """One row per model: mean speeds, accuracy on checked prompts, votes won."""
        rows = []
        for m in self.models:
            runs = [r for r in self.runs if r.model == m.label]
            ok = [r for r in runs if r.ok]
            checks = [r.check_passed for r in ok]
            checks += [False for r in runs if not r.ok and self._has_check(r.prompt_id)]
            votes_for = [v for v in self.votes if m.label in v.letters.values()]
            peaks = [r.peak_memory_bytes for r in ok if r.peak_memory_bytes is not None]
            graded = [c for c in checks if c is not None]
            low, high = wilson_interval(sum(graded), len(graded)) if graded else (None, None)
            totals = [r.total_s for r in ok if r.total_s is not None]
            rows.append(
                ModelSummary(
                    label=m.label,
                    prompts=len(runs),
                    errors=len(runs) - len(ok),
                    mean_ttft_s=_mean([r.ttft_s for r in ok]),
                    mean_prefill_tps=_mean([r.prefill_tps for r in ok]),
                    mean_decode_tps=_mean([r.decode_tps for r in ok]),
                    total_s=sum(totals) if totals else None,
                    peak_memory_bytes=max(peaks) if peaks else None,
                    est_decode_tps=m.est_decode_tps,
                    accuracy=accuracy(checks),
                    checked=sum(1 for c in checks if c is not None),
                    wins=sum(1 for v in votes_for if v.winner == m.label),
                    ties=sum(1 for v in votes_for if v.winner is None),
                    votes=len(votes_for),
                    accuracy_low=low,
                    accuracy_high=high,
                    judge_wins=sum(
                        1 for v in self.judge_verdicts if v.winner == m.label and not v.error
                    ),
                )
            )
        return rows

    def recommendation(self) -> Recommendation | None:
        """The one-line recommendation between two models (None for more than two, or before
        anything ran): pass rate when prompts were checked, else the judge's win rate."""
        if len(self.models) != 2 or not self.runs:
            return None
        rows = self.summary()
        if any(s.checked for s in rows):
            cands = [
                Candidate(
                    s.label,
                    None if s.accuracy is None else s.accuracy * s.checked,
                    s.checked,
                    s.mean_decode_tps,
                    s.peak_memory_bytes,
                )
                for s in rows
            ]
            return recommend(cands[0], cands[1], "pass rate")
        judged = [v for v in self.judge_verdicts if not v.error]
        cands = [
            Candidate(
                s.label,
                (s.judge_wins + 0.5 * sum(1 for v in judged if v.winner is None))
                if judged
                else None,
                len(judged),
                s.mean_decode_tps,
                s.peak_memory_bytes,
            )
            for s in rows
        ]
        return recommend(cands[0], cands[1], "judge win rate")

    def _has_check(self, prompt_id: str) -> bool:
        return any(
            p["id"] == prompt_id and (p.get("check") or p.get("checks")) for p in self.prompts
        )

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        """The saved, exported and ``compare --json`` form; speeds and token counts use
        ``bench --json``'s names (``decode_tokens_per_s``, ``generated_tokens``, ...)."""
        data = dataclasses.asdict(self)
        for key in ("runs", "models"):
            data[key] = [_renamed(item, JSON_NAMES) for item in data[key]]
        data["summary"] = [_renamed(dataclasses.asdict(s), JSON_NAMES) for s in self.summary()]
        rec = self.recommendation()
        data["recommendation"] = None if rec is None else rec.text
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ComparisonResult:
        d = dict(data)
        d.pop("summary", None)
        d.pop("recommendation", None)
        back = {v: k for k, v in JSON_NAMES.items()}
        d["models"] = [ModelEntry(**_renamed(m, back)) for m in d.get("models", [])]
        d["runs"] = [RunResult(**_renamed(r, back)) for r in d.get("runs", [])]
        d["votes"] = [Vote(**v) for v in d.get("votes", [])]
        d["judge_verdicts"] = [JudgeVerdict(**v) for v in d.get("judge_verdicts", [])]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    # ------------------------------------------------------------------ storage
    def save(self, paths: AppPaths | None = None, to: Path | None = None) -> Path:
        """Write this result atomically to ``comparisons_dir/<id>.json`` (or ``to``)."""
        target = to or (paths or AppPaths.default()).comparisons_dir / f"{self.id}.json"
        atomic_write_json(target, self.to_json())
        return target

    @classmethod
    def load(cls, path: Path) -> ComparisonResult:
        data = read_json(path)
        if not isinstance(data, dict):
            raise CompareError(f"{path} is not a saved comparison (unreadable or not JSON)")
        try:
            return cls.from_json(data)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise CompareError(
                f"{path} is not a comparison saved by this version of Spark Launcher ({exc})"
            ) from exc

    def export(self, path: Path, fmt: str | None = None) -> Path:
        """Export as ``md``, ``csv`` or ``json`` (from the suffix when ``fmt`` is None)."""
        fmt = (fmt or path.suffix.lstrip(".") or "md").lower()
        if fmt in ("md", "markdown"):
            atomic_write_text(path, self.to_markdown())
        elif fmt == "csv":
            atomic_write_text(path, self.to_csv())
        elif fmt == "json":
            atomic_write_json(path, self.to_json())
        else:
            raise CompareError(f"cannot export as {fmt!r}: use .md, .csv or .json")
        return path

    # ------------------------------------------------------------------ CSV
    CSV_FIELDS = (
        "model",
        "prompt_id",
        "ttft_s",
        "prefill_tps",
        "decode_tps",
        "total_s",
        "prompt_tokens",
        "completion_tokens",
        "peak_memory_bytes",
        "est_decode_tps",
        "est_prefill_tps",
        "est_memory_bytes",
        "check_passed",
        "vote",
        "error",
        "reply",
    )

    def to_csv(self) -> str:
        """One row per model × prompt, with the vote that prompt got (win/tie/loss)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for r in self.runs:
            row = {k: getattr(r, k, None) for k in self.CSV_FIELDS if hasattr(r, k)}
            v = self.voted(r.prompt_id)
            row["vote"] = (
                ""
                if v is None
                else ("tie" if v.winner is None else ("win" if v.winner == r.model else "loss"))
            )
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in self.CSV_FIELDS})
        return buf.getvalue()

    # ------------------------------------------------------------------ Markdown
    def to_markdown(self) -> str:
        """A readable report: residency decision, summary table, then each prompt's replies."""
        lines = [f"# Comparison: {' vs '.join(self.labels)}", ""]
        lines.append(f"- Date: {self.created}")
        if self.machine:
            lines.append(f"- Machine: {self.machine}")
        if self.suite:
            lines.append(f"- Prompt suite: {self.suite} ({len(self.prompts)} prompts)")
        if self.residency.get("reason"):
            lines.append(f"- Residency: {self.residency['reason']}")
        samp = ", ".join(f"{k}={v}" for k, v in self.sampling.items())
        lines.append(f"- Sampling: {samp or 'defaults'}, seed {self.seed}")
        lines.append(
            "- Generation: "
            + (
                "all models at once (speeds share memory bandwidth, not comparable)"
                if self.concurrent
                else "one model at a time (fair speed figures)"
            )
        )
        if self.blind:
            lines.append("- Blind mode: replies were shown as A/B in random order before voting")
        lines += ["", "## Summary", ""]
        lines.append(
            "| Model | Decode tok/s (est.) | Prefill tok/s | TTFT s | Total s | Peak memory GB "
            "| Accuracy | Votes (won/tie/total) | Errors |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for s in self.summary():
            lines.append(
                f"| {s.label} | {_f(s.mean_decode_tps)} ({_f(s.est_decode_tps)}) "
                f"| {_f(s.mean_prefill_tps)} | {_f(s.mean_ttft_s, 2)} | {_f(s.total_s)} "
                f"| {_f(None if s.peak_memory_bytes is None else s.peak_memory_bytes / GB, 2)} "
                f"| {_pct(s.accuracy, s.checked)}{_interval(s)} | {s.wins}/{s.ties}/{s.votes} "
                f"| {s.errors} |"
            )
        lines.append("")
        rec = self.recommendation()
        if rec is not None:
            lines += [f"**Recommendation:** {rec.text}", ""]
        if self.judge:
            judged = [v for v in self.judge_verdicts if not v.error]
            split = sum(1 for v in judged if not v.consistent)
            wins = ", ".join(f"{s.label} {s.judge_wins}" for s in self.summary())
            lines += [
                f"Judge {self.judge} (blind, both orders): {wins}, "
                f"ties {len(judged) - sum(s.judge_wins for s in self.summary())} "
                f"({split} split verdicts counted as ties)",
                "",
            ]
        for p in self.prompts:
            lines += [f"## Prompt `{p['id']}`", "", _quote(p["text"]), ""]
            v = self.voted(p["id"])
            if v:
                lines += [f"Vote: {'tie' if v.winner is None else v.winner}", ""]
            jv = next((j for j in self.judge_verdicts if j.prompt_id == p["id"]), None)
            if jv is not None:
                said = jv.error or ("tie" if jv.winner is None else jv.winner)
                lines += [f"Judge: {said}", ""]
            for label in self.labels:
                r = self.run_for(label, p["id"])
                if r is None:
                    continue
                check = (
                    ""
                    if r.check_passed is None
                    else (" ✔ check passed" if r.check_passed else " ✘ check failed")
                )
                lines.append(f"### {label}{check}")
                lines.append("")
                failed = [c for c in r.checks if not c.get("passed")]
                if failed:
                    lines += [f"- ✘ {c['kind']}: {c.get('detail') or 'failed'}" for c in failed]
                    lines.append("")
                if r.error:
                    lines += [f"**Error:** {r.error}", ""]
                else:
                    peak = r.peak_memory_bytes
                    est_mem = r.est_memory_bytes
                    lines.append(
                        f"TTFT {_f(r.ttft_s, 2)} s · prefill {_f(r.prefill_tps)} tok/s "
                        f"(estimate {_f(r.est_prefill_tps, 0)}) · decode {_f(r.decode_tps)} "
                        f"tok/s (estimate {_f(r.est_decode_tps)}) · "
                        f"{r.completion_tokens or 0} tokens in {_f(r.total_s, 2)} s · peak memory "
                        f"{_f(None if peak is None else peak / GB, 2)} GB (estimate "
                        f"{_f(None if est_mem is None else est_mem / GB, 2)})"
                    )
                    lines += ["", _quote(r.reply), ""]
        return "\n".join(lines).rstrip() + "\n"


JSON_NAMES = {
    "prefill_tps": "prefill_tokens_per_s",
    "decode_tps": "decode_tokens_per_s",
    "completion_tokens": "generated_tokens",
    "est_decode_tps": "est_decode_tokens_per_s",
    "est_prefill_tps": "est_prefill_tokens_per_s",
    "mean_decode_tps": "mean_decode_tokens_per_s",
    "mean_prefill_tps": "mean_prefill_tokens_per_s",
}
"""Field names in JSON -> the names ``bench --json`` uses; files saved before still load."""


def _renamed(data: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {names.get(k, k): v for k, v in data.items()}


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None, checked: int) -> str:
    return "–" if value is None else f"{value * 100:.0f}% of {checked}"


def _interval(s: ModelSummary) -> str:
    if s.accuracy_low is None or s.accuracy_high is None:
        return ""
    return f" (95%: {s.accuracy_low * 100:.0f}–{s.accuracy_high * 100:.0f}%)"


def _quote(text: str) -> str:
    body = text if len(text) <= 4000 else text[:4000] + " …"
    return "\n".join("> " + line for line in body.splitlines()) or "> "


def unfinished_comparisons(paths: AppPaths | None = None) -> list[tuple[Path, ComparisonResult]]:
    """Saved comparisons that were stopped before the end and can be resumed, newest first."""
    out = []
    for path in saved_comparisons(paths):
        try:
            result = ComparisonResult.load(path)
        except CompareError:
            continue
        if not result.complete and result.request:
            out.append((path, result))
    return out


def saved_comparisons(paths: AppPaths | None = None) -> list[Path]:
    """Saved comparison files, newest first."""
    paths = paths or AppPaths.default()
    if not paths.comparisons_dir.is_dir():
        return []
    files = list(paths.comparisons_dir.glob("*.json"))
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


def dumps(result: ComparisonResult) -> str:
    """JSON text of a result (what ``--json`` prints)."""
    return json.dumps(result.to_json(), indent=2, ensure_ascii=False)
