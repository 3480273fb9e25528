"""``spark-launcher compare MODEL_A MODEL_B ...``: two or more models side by side.

``--plan-only`` prints the residency plan (all loaded together, or one after another, and
why) without loading anything; it accepts catalog ids and reference machines, so
``compare qwen3-32b:Q4_K_M llama-3.3-70b:Q4_K_M --machine dgx-spark --ctx 32768 --plan-only``
answers "32B + 70B on a DGX Spark" from any computer. Without it, the models run over
``--prompt`` or ``--suite``, replies stream to the terminal, and the result is saved and
printed as a table (or as Markdown / JSON). ``--suite`` takes a bundled suite's name,
``humaneval`` (the 164 HumanEval problems, pass@1 with greedy decoding; ``--limit N`` runs the
first N), a suite file (``.jsonl``, one prompt per line, see README) or the user's own work:
``chats`` (saved conversations, each user turn in context), ``api-log`` (recorded local API
requests, replayed) or ``folder:PATH`` (one prompt per document, ``--template``). ``--judge
MODEL`` has a third model grade A against B blind, in both orders, after the run. The result is
saved after every answer; Ctrl-C stops, and ``--resume ID`` (or ``--resume`` for the latest)
finishes it later without asking the finished answers again. The JSON uses ``bench
--json``'s names for speeds (``decode_tokens_per_s``, ``prefill_tokens_per_s``, ``ttft_s``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from launcher.compare import (
    CompareRequest,
    ComparisonJob,
    ModelFailed,
    ModelLoading,
    ModelReady,
    ModelUnloaded,
    Planned,
    Progress,
    RunDone,
    RunStarted,
    RunToken,
    SessionDone,
)
from launcher.compare_results import CompareError, ComparisonResult, unfinished_comparisons
from launcher.compare_suites import suite_names
from launcher.compare_workloads import WORKLOADS
from launcher.engine.events import Sampling


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare models side by side on a prompt or a prompt suite",
        description="Compare two or more models (GGUF paths or catalog ids like "
        "qwen3-32b:Q4_K_M) on one prompt or a prompt suite, with the same sampling and seed.",
    )
    p.add_argument("models", nargs="*", metavar="MODEL", help="GGUF path or catalog id")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--prompt", help="one prompt to send to every model")
    what.add_argument(
        "--suite",
        metavar="NAME|FILE",
        help=f"a prompt suite: {', '.join(suite_names())}, a .jsonl suite file, or your own "
        f"work: {', '.join(WORKLOADS)}",
    )
    p.add_argument(
        "--template",
        metavar="TEXT",
        help="with --suite folder:PATH: the prompt for each document, with {text} (and {name})",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="ID",
        help="finish a stopped comparison (its id, or the latest one when no id is given)",
    )
    p.add_argument("--limit", type=int, metavar="N", help="only the first N prompts of the suite")
    p.add_argument(
        "--judge",
        metavar="MODEL",
        help="a third model that grades the two replies blind, in both orders (GGUF path, "
        "catalog id or remote:NAME/MODEL)",
    )
    p.add_argument("--ctx", type=int, default=4096, help="context size (default 4096)")
    p.add_argument("--machine", help="plan for a reference machine, probe file or inline spec")
    p.add_argument("--plan-only", action="store_true", help="print the residency plan only")
    res = p.add_mutually_exclusive_group()
    res.add_argument(
        "--resident",
        action="store_const",
        const="resident",
        dest="force",
        help="keep all models loaded together",
    )
    res.add_argument(
        "--sequential",
        action="store_const",
        const="sequential",
        dest="force",
        help="load, answer and unload one model after another",
    )
    p.add_argument(
        "--at-once",
        action="store_true",
        help="generate with all models at the same time (speeds then share memory "
        "bandwidth and are not comparable)",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        help="longest reply (default 256; a suite's own limits apply unless this is given)",
    )
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--kv-type", default="f16")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON")
    out.add_argument("--markdown", action="store_true", help="print a Markdown report")
    p.set_defaults(func=handler, force=None)


def handler(args: argparse.Namespace) -> int:
    from launcher.compare_models import prepare

    if args.resume:
        if args.models or args.prompt or args.suite:
            raise CompareError("--resume takes the models and prompts it was started with")
        return _run(args, *_resume_job(args.resume))
    if len(args.models) < 2:
        raise CompareError("compare needs at least two models (paths or catalog ids)")
    if args.template and not (args.suite or "").startswith("folder:"):
        raise CompareError("--template is for a folder of documents (--suite folder:PATH)")
    request = CompareRequest(
        models=tuple(args.models),
        prompt=args.prompt,
        suite=args.suite,
        ctx=args.ctx,
        machine=args.machine,
        force=args.force,
        concurrent=args.at_once,
        sampling=Sampling(max_tokens=args.max_tokens or 256, temperature=args.temperature),
        seed=args.seed,
        kv_type=args.kv_type,
        limit=args.limit,
        max_tokens_cap=args.max_tokens,
        template=args.template,
    )
    if args.limit is not None and not args.suite:
        raise CompareError("--limit needs a prompt suite (--suite)")
    if args.judge and len(args.models) != 2:
        raise CompareError("--judge compares exactly two models")
    if args.plan_only:
        prepared = prepare(request)
        plan = prepared.residency
        if args.json:
            payload = {
                "machine": prepared.machine_name,
                "ctx": prepared.ctx,
                "residency": plan.to_json(),
                "models": [
                    {
                        "label": m.label,
                        "source": m.source,
                        "path": None if m.path is None else str(m.path),
                        "plan": None if m.plan is None else m.plan.to_json(),
                    }
                    for m in prepared.models
                ],
            }
            print(json.dumps(payload, indent=2))
        elif args.markdown:
            print(f"## Residency plan on {prepared.machine_name}\n")
            print(f"**{plan.mode}**: {plan.reason}\n")
            for line in plan.describe().splitlines()[1:]:
                print(f"- {line.strip()}")
        else:
            print(f"Machine: {prepared.machine_name}, context {prepared.ctx}")
            print(plan.describe())
        return 1 if plan.mode == "impossible" else 0

    request.prompt_suite()  # a missing prompt is reported before anything loads
    return _run(args, request, ComparisonJob(request))


def _resume_job(which: str) -> tuple[CompareRequest, ComparisonJob]:
    """The job that finishes the stopped comparison ``which`` (an id, or ``latest``)."""
    stopped = unfinished_comparisons()
    if which != "latest":
        stopped = [(p, r) for p, r in stopped if r.id == which or p.stem == which]
    if not stopped:
        what = "no stopped comparison" if which == "latest" else f"no stopped comparison {which}"
        raise CompareError(f"there is {what} to resume (finished ones are complete)")
    _path, saved = stopped[0]
    job = ComparisonJob.resuming(saved)
    return job.request, job


def _run(args: argparse.Namespace, request: CompareRequest, job: ComparisonJob) -> int:
    quiet = args.json or args.markdown
    result: ComparisonResult | None = None
    saved = None
    complete = True
    if args.judge and len(request.models) != 2:
        raise CompareError("--judge compares exactly two models")
    events = job.run()
    try:
        for ev in events:
            if isinstance(ev, SessionDone):
                result, saved, complete = ev.result, ev.saved_to, ev.complete
            elif not quiet:
                _print_event(ev)
    except KeyboardInterrupt:
        job.cancel()
        events.close()  # ends the model hosts now (the session's cleanup)
        session = job.session
        if session is not None:
            done, total = session.result.progress()
            print(
                f"\nStopped: {done} of {total} answers are saved. Finish it later with: "
                f"spark-launcher compare --resume {session.result.id}",
                file=sys.stderr,
            )
        return 130
    assert result is not None
    if not complete:
        done, total = result.progress()
        print(
            f"Stopped: {done} of {total} answers are saved; resume with "
            f"spark-launcher compare --resume {result.id}",
            file=sys.stderr,
        )
    if args.judge and complete:
        _run_judge(args, request, result, quiet)
        if saved:
            result.save(to=saved)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    elif args.markdown:
        print(result.to_markdown())
    else:
        print()
        _print_summary(result)
        rec = result.recommendation()
        if rec is not None:
            print(f"\nRecommendation: {rec.text}")
        if saved:
            print(f"\nSaved to {saved}")
    return 0 if all(r.ok for r in result.runs) else 1


def _run_judge(
    args: argparse.Namespace, request: CompareRequest, result: ComparisonResult, quiet: bool
) -> None:
    """Grade the finished comparison with the ``--judge`` model (loaded after the others)."""
    from launcher.compare_judge import Judged, JudgeStarted, judge_comparison
    from launcher.compare_models import load_judge, prepare_judge
    from launcher.machines import resolve_machine

    judge = prepare_judge(args.judge, request.ctx, request.kv_type, None,
                          resolve_machine(request.machine))  # fmt: skip
    if not quiet:
        print(f"\n[{judge.label}] loading…", flush=True)
    for ev in judge_comparison(result, lambda: load_judge(judge), judge.label):
        if quiet:
            continue
        if isinstance(ev, JudgeStarted):
            print(f"[{judge.label}] {ev.prompt_id}: ", end="", flush=True)
        elif isinstance(ev, Judged):
            v = ev.verdict
            if v.error:
                print(f"error: {v.error}")
            elif v.winner:
                print(f"{v.winner} (in both orders)")
            else:
                print(f"tie ({v.a_first or 'no verdict'} / {v.b_first or 'no verdict'})")


def _print_event(ev: object) -> None:
    if isinstance(ev, Planned):
        print(f"Residency: {ev.residency.mode} — {ev.residency.reason}")
        if ev.residency.warning:
            print(f"Warning: {ev.residency.warning}")
    elif isinstance(ev, ModelLoading):
        print(f"[{ev.label}] loading…", flush=True)
    elif isinstance(ev, ModelReady):
        print(f"[{ev.label}] loaded in {ev.load_s:.1f} s", flush=True)
    elif isinstance(ev, ModelUnloaded):
        print(f"[{ev.label}] unloaded in {ev.unload_s:.1f} s", flush=True)
    elif isinstance(ev, RunStarted):
        print(f"\n[{ev.label}] {ev.prompt_id}: ", end="", flush=True)
    elif isinstance(ev, RunToken):
        sys.stdout.write(ev.text)
        sys.stdout.flush()
    elif isinstance(ev, RunDone):
        r = ev.result
        if r.ok:
            check = "" if r.check_passed is None else (" ✔" if r.check_passed else " ✘")
            print(f"\n  ({r.decode_tps or 0:.1f} tok/s, TTFT {r.ttft_s or 0:.2f} s){check}")
    elif isinstance(ev, ModelFailed):
        print(f"\n[{ev.label}] error: {ev.message}", file=sys.stderr)
    elif isinstance(ev, Progress) and ev.total > 1:
        left = f", about {_duration(ev.eta_s)} left" if ev.eta_s and ev.done < ev.total else ""
        print(f"  [{ev.done}/{ev.total} answers{left}]", flush=True)


def _duration(seconds: float) -> str:
    """ "45 s", "12 min", "2 h 05 min"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60:02d} min"


def _print_summary(result: ComparisonResult) -> None:
    rows: list[tuple[str, ...]] = [
        ("Model", "Decode tok/s", "est.", "Prefill tok/s", "TTFT s", "Accuracy", "Errors")
    ]
    if result.judge:
        rows[0] += ("Judge wins",)
    for s in result.summary():
        acc = "–"
        if s.accuracy is not None:
            acc = f"{s.accuracy * 100:.0f}% of {s.checked}"
            if s.accuracy_low is not None and s.accuracy_high is not None:
                acc += f" ({s.accuracy_low * 100:.0f}–{s.accuracy_high * 100:.0f}%)"
        judge = (str(s.judge_wins),) if result.judge else ()
        rows.append(
            (
                s.label,
                _f(s.mean_decode_tps),
                _f(s.est_decode_tps),
                _f(s.mean_prefill_tps),
                _f(s.mean_ttft_s, 2),
                acc,
                str(s.errors),
                *judge,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _f(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}f}"
