"""A judge for open-ended answers: a third model grades A against B, blind and twice.

The judge sees the question and two answers labelled only "Answer 1" and "Answer 2" (never the
models' names), once in each order. Models that judge tend to prefer a position (usually the
first); asking twice with the order swapped cancels that: a winner counts only when both
orders pick the same model, and a split verdict is a tie. The judge's verdicts sit next to the
user's own blind votes with their agreement rate, so the user can see whether to trust it.

:func:`parse_verdict`, :func:`combine` and :func:`agreement` are pure; :class:`JudgeRun` drives
any engine (a local model host, a remote server) over a finished :class:`ComparisonResult`.
"""

from __future__ import annotations

import contextlib
import copy
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from launcher.compare_results import ComparisonResult, JudgeVerdict
from launcher.engine.events import HostCrashed, ReplyFinished, Sampling
from launcher.errors import LauncherError

Position = Literal["first", "second", "tie"]

SYSTEM = (
    "You are an impartial judge. Compare two answers to the user's question and decide which "
    "is better: more correct, more helpful, clearer. Ignore the order in which they appear "
    "and their length. Reply with one short sentence of reasoning, then the verdict on its "
    'own line: "[[1]]" if Answer 1 is better, "[[2]]" if Answer 2 is better, or "[[tie]]".'
)
JUDGE_SAMPLING = Sampling(temperature=0.0, max_tokens=200)

_VERDICT = re.compile(r"\[\[\s*(1|2|tie|a|b)\s*\]\]", re.IGNORECASE)
_LOOSE = re.compile(r"\b(?:answer\s*)?(1|2|tie)\b\W*$", re.IGNORECASE)


def judge_messages(question: str, first: str, second: str) -> list[dict[str, str]]:
    """The judge's conversation for one order of the two answers."""
    body = (
        f"[Question]\n{question.strip()}\n\n"
        f"[Answer 1]\n{first.strip() or '(empty)'}\n\n"
        f"[Answer 2]\n{second.strip() or '(empty)'}\n\n"
        "Which answer is better? End with [[1]], [[2]] or [[tie]]."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": body}]


def parse_verdict(text: str) -> Position | None:
    """``first``, ``second`` or ``tie`` from a judge's reply (its last ``[[...]]`` mark, or a
    bare "1"/"2"/"tie" at the very end); None when it gave no verdict."""
    marks = _VERDICT.findall(text)
    token = marks[-1].lower() if marks else None
    if token is None:
        loose = _LOOSE.search(text.strip())
        token = loose.group(1).lower() if loose else None
    positions: dict[str, Position] = {
        "1": "first", "a": "first", "2": "second", "b": "second", "tie": "tie"
    }  # fmt: skip
    return positions.get(token or "")


def combine(
    a: str, b: str, a_first: Position | None, b_first: Position | None
) -> tuple[str | None, bool]:
    """The winner (a label, or None for a tie) of two judgements and whether they agreed.

    ``a_first`` is the verdict with ``a``'s answer shown first, ``b_first`` with ``b``'s first.
    Only a winner picked in both orders wins; a split, a tie or a missing verdict is a tie.
    """

    def winner(pos: Position | None, first: str, second: str) -> str | None:
        return {"first": first, "second": second}.get(pos or "")

    w1, w2 = winner(a_first, a, b), winner(b_first, b, a)
    consistent = a_first is not None and b_first is not None and w1 == w2
    return (w1 if consistent else None), consistent


@dataclass(frozen=True)
class Agreement:
    """How often the judge agreed with the user's blind votes."""

    agreed: int
    compared: int

    @property
    def rate(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    def describe(self) -> str:
        if not self.compared:
            return "no prompt has both a vote and a verdict yet"
        return (
            f"the judge agreed with your votes on {self.agreed} of {self.compared} prompts "
            f"({self.agreed / self.compared * 100:.0f}%)"
        )


def agreement(result: ComparisonResult) -> Agreement:
    """Agreement of ``result``'s judge verdicts with its user votes (a tie matches a tie)."""
    verdicts = {v.prompt_id: v for v in result.judge_verdicts}
    agreed = compared = 0
    for vote in result.votes:
        verdict = verdicts.get(vote.prompt_id)
        if verdict is None or verdict.error:
            continue
        compared += 1
        agreed += vote.winner == verdict.winner
    return Agreement(agreed, compared)


# ---------------------------------------------------------------------------- running


@dataclass(frozen=True)
class JudgeStarted:
    prompt_id: str


@dataclass(frozen=True)
class Judged:
    verdict: JudgeVerdict


class JudgeRun:
    """Grade every prompt of a finished comparison of two models with a judge engine.

    ``client`` is an engine that is already loaded (anything with ``chat`` and ``cancel``).
    Iterate :meth:`run`; each prompt yields :class:`JudgeStarted` then :class:`Judged`, and the
    verdict is stored in ``result.judge_verdicts``. A prompt whose two replies are not both
    there (an error) is skipped.
    """

    def __init__(
        self,
        result: ComparisonResult,
        client: Any,
        judge_label: str,
        sampling: Sampling = JUDGE_SAMPLING,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        if len(result.labels) != 2:
            raise LauncherError("the judge compares exactly two models")
        self.result = result
        self.client = client
        self.sampling = sampling
        self.cancelled = cancelled
        result.judge = judge_label

    def run(self) -> Iterator[JudgeStarted | Judged]:
        a, b = self.result.labels
        for prompt in self.result.prompts:
            if self.cancelled():
                return
            pid = prompt["id"]
            ra, rb = self.result.run_for(a, pid), self.result.run_for(b, pid)
            if ra is None or rb is None or not ra.ok or not rb.ok:
                continue
            yield JudgeStarted(pid)
            verdict = self._judge(pid, prompt["text"], a, ra.reply, b, rb.reply)
            self.result.judge_verdicts = [
                v for v in self.result.judge_verdicts if v.prompt_id != pid
            ] + [verdict]
            yield Judged(verdict)

    def _judge(
        self, pid: str, question: str, a: str, reply_a: str, b: str, reply_b: str
    ) -> JudgeVerdict:
        raw: list[str] = []
        try:
            for first, second in ((reply_a, reply_b), (reply_b, reply_a)):
                raw.append(self._ask(judge_messages(question, first, second)))
        except LauncherError as exc:
            return JudgeVerdict(pid, None, None, None, False, list(raw), str(exc))
        a_first, b_first = parse_verdict(raw[0]), parse_verdict(raw[1])
        winner, consistent = combine(a, b, a_first, b_first)
        return JudgeVerdict(pid, winner, a_first, b_first, consistent, raw)

    def _ask(self, messages: list[dict[str, str]]) -> str:
        text = None
        for ev in self.client.chat(messages, self.sampling):
            if isinstance(ev, ReplyFinished):
                text = ev.text
            elif isinstance(ev, HostCrashed):
                raise ev.as_error()
        if text is None:
            raise LauncherError("the judge gave no reply")
        return text


def judge_comparison(
    result: ComparisonResult,
    load: Callable[[], Any],
    judge_label: str,
    sampling: Sampling = JUDGE_SAMPLING,
) -> Iterator[JudgeStarted | Judged]:
    """Load the judge with ``load()`` (returns a loaded client), grade, then close it."""
    client = load()
    try:
        yield from JudgeRun(result, client, judge_label, sampling).run()
    finally:
        for name in ("unload", "close"):
            fn = getattr(client, name, None)
            if callable(fn):
                with contextlib.suppress(Exception):
                    fn()


@dataclass(frozen=True)
class JudgeLoading:
    label: str


@dataclass(frozen=True)
class JudgeDone:
    """The last event of a :class:`JudgeJob`: the comparison with the judge's verdicts."""

    result: ComparisonResult


class JudgeJob:
    """Load a judge model (``spec``: a GGUF path, catalog id or ``remote:NAME/MODEL``), grade a
    finished two-model comparison blind in both orders, and close the judge: what the Compare
    view's worker iterates, like a ``ComparisonJob``. It grades a copy of ``result``;
    :class:`Judged` events carry each verdict and :class:`JudgeDone` the graded copy.
    ``cancel()`` is a flag read between prompts, and stops the judge's reply at once."""

    def __init__(
        self,
        result: ComparisonResult,
        spec: str,
        ctx: int = 4096,
        kv_type: str = "f16",
        paths: Any = None,
        machine: Any = None,
    ) -> None:
        if len(result.labels) != 2:
            raise LauncherError("the judge compares exactly two models")
        self.result = copy.deepcopy(result)
        self.spec = spec
        self.ctx = ctx
        self.kv_type = kv_type
        self.paths = paths
        self.machine = machine
        self._cancel = threading.Event()
        self._client: Any = None

    def cancel(self) -> None:
        self._cancel.set()
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                client.cancel()

    def run(self) -> Iterator[JudgeLoading | JudgeStarted | Judged | JudgeDone]:
        from launcher.compare_models import load_judge, prepare_judge

        judge = prepare_judge(self.spec, self.ctx, self.kv_type, self.paths, self.machine)
        yield JudgeLoading(judge.label)
        if self._cancel.is_set():
            return
        self._client = load_judge(judge, self.paths)
        try:
            yield from JudgeRun(
                self.result, self._client, judge.label, cancelled=self._cancel.is_set
            ).run()
        finally:
            client, self._client = self._client, None
            for name in ("unload", "close"):
                fn = getattr(client, name, None)
                if callable(fn):
                    with contextlib.suppress(Exception):
                        fn()
        yield JudgeDone(self.result)


def verdict_counts(verdicts: Sequence[JudgeVerdict], labels: Sequence[str]) -> dict[str, int]:
    """Wins per model and ties (``"tie"``) over the verdicts without errors."""
    counts = {label: 0 for label in labels} | {"tie": 0}
    for v in verdicts:
        if not v.error:
            counts[v.winner or "tie"] += 1
    return counts


__all__ = [
    "Agreement",
    "JudgeDone",
    "JudgeJob",
    "JudgeLoading",
    "JudgeRun",
    "JudgeStarted",
    "Judged",
    "agreement",
    "combine",
    "judge_comparison",
    "judge_messages",
    "parse_verdict",
    "verdict_counts",
]
