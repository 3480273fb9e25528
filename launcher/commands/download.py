"""``spark-launcher download REPO [--quant Q4_K_M | --file NAME] [--json]``: fetch a model.

The file (or every part of a split model) is downloaded into the models folder, verified
against the Hub's sha256 and listed by ``spark-launcher models``. Interrupted? Run the same
command again: it resumes. Without ``--quant``/``--file`` on a repo with several choices, the
choices are listed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from launcher.downloads import (
    DownloadFinished,
    DownloadProgress,
    DownloadRetrying,
    FileVerified,
    RetryPolicy,
    download_choice,
)
from launcher.errors import HubError
from launcher.hub import list_gguf_files
from launcher.library import Library


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "download", help="download a GGUF model from the Hugging Face Hub", description=__doc__
    )
    p.add_argument("repo", help="owner/name of the repo (hf://owner/name also works)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quant", help="the quantisation to fetch, e.g. Q4_K_M")
    g.add_argument("--file", help="the exact file name to fetch")
    p.add_argument("--revision", help="a branch or commit (default: main)")
    p.add_argument(
        "--retries",
        type=int,
        default=RetryPolicy.max_attempts,
        help="retries in a row without progress before giving up (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=handler)


def _bar(ev: DownloadProgress) -> str:
    frac = ev.bytes_done / ev.total if ev.total else 1.0
    filled = int(frac * 30)
    eta = f"{ev.eta:5.0f}s" if ev.eta is not None else "    ?"
    return (
        f"\r[{'#' * filled}{'.' * (30 - filled)}] {frac * 100:5.1f}% "
        f"{ev.bytes_done / 2**20:8.1f}/{ev.total / 2**20:.1f} MB "
        f"{ev.speed / 2**20:6.1f} MB/s ETA {eta}"
    )


def handler(args: argparse.Namespace) -> int:
    repo = args.repo.removeprefix("hf://").strip("/")
    filename = args.file
    if filename is None and repo.count("/") >= 2:  # owner/name/file.gguf
        owner, name, rest = repo.split("/", 2)
        repo, filename = f"{owner}/{name}", rest
    files = list_gguf_files(repo, revision=args.revision)
    try:
        choice = files.choose(quant=args.quant, filename=filename)
    except HubError:
        if args.quant or filename or not files.choices:
            raise
        if args.json:
            print(json.dumps({"repo": repo, "choices": [_choice_json(c) for c in files.choices]}))
        else:
            print(f"{repo} has several GGUF choices; pick one with --quant or --file:")
            for c in files.choices:
                print(f"  {c.label:<28} {_size(c.total_size):>10}  {c.first_file.path}")
        return 2
    library = Library()
    tty = sys.stderr.isatty() and not args.json
    if not args.json:
        print(f"Downloading {choice.label} from {repo} ({_size(choice.total_size)})")
    result: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        policy = RetryPolicy(max_attempts=max(0, args.retries))
        for ev in download_choice(choice, library, policy=policy):
            if isinstance(ev, DownloadProgress) and tty:
                print(_bar(ev), end="", file=sys.stderr, flush=True)
            elif isinstance(ev, DownloadRetrying) and not args.json:
                print(
                    f"\n{ev.file}: {ev.reason}; retrying in {ev.delay:.0f} s (try {ev.attempt})",
                    file=sys.stderr,
                )
            elif isinstance(ev, FileVerified):
                result.append(
                    {
                        "file": ev.file,
                        "path": str(ev.path),
                        "sha256": ev.sha256,
                        "already_present": ev.already_present,
                    }
                )
            elif isinstance(ev, DownloadFinished) and tty:
                print(file=sys.stderr)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the partial download is kept; run the same command to resume",
            file=sys.stderr,
        )
        return 130
    if args.json:
        out = {"repo": repo, "choice": _choice_json(choice), "files": result}
        print(json.dumps(out, indent=2))
    else:
        secs = time.monotonic() - t0
        for r in result:
            state = "already there" if r["already_present"] else "verified"
            print(f"{state}: {r['path']}")
        print(f"Done in {secs:.0f} s. Run it with: spark-launcher models")
    return 0


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


def _choice_json(c: Any) -> dict[str, Any]:
    return {
        "label": c.label,
        "quant": c.quant,
        "size": c.total_size,
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in c.files],
    }
