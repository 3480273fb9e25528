"""Run one function in a short-lived ``spawn`` child process and take back its one answer.

llama.cpp and ggml can abort the whole process (a failed ``GGML_ASSERT``, an RPC handshake
that goes wrong) and a CUDA query creates a context the caller must not keep: the dry run,
the RPC device query and the backend probe therefore each ask a child. ``spawn`` rather than
``sys.executable -m`` because it also works inside the PyInstaller bundle (its entry point
calls ``freeze_support``). The child's stderr goes to a file, so an abort can be reported
with its last lines.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ChildAnswer:
    """What came back: ``value`` is None when the child sent nothing (crash or time-out)."""

    value: Any
    timed_out: bool
    exitcode: int | None
    stderr_tail: tuple[str, ...]


def call_in_child(
    target: Callable[..., Any],
    args: tuple[Any, ...],
    *,
    name: str,
    timeout: float,
    tail_lines: int = 3,
) -> ChildAnswer:
    """Call ``target(*args)`` in a spawned child; wait up to ``timeout`` s for its return value.

    ``target`` must be a module-level function (spawn imports it by name) returning something
    picklable. The child is always ended before this returns.
    """
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix=f"spark-{name}-") as tmp:
        err_path = Path(tmp) / "stderr.txt"
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child_main, args=(target, args, child, str(err_path)), name=name)
        proc.start()
        child.close()
        value: Any = None
        timed_out = False
        try:
            if parent.poll(timeout):
                value = parent.recv()
            else:
                timed_out = True
        except (EOFError, OSError):
            value = None
        finally:
            parent.close()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        try:
            lines = err_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        tail = tuple(lines[-tail_lines:]) if tail_lines > 0 else ()
        return ChildAnswer(value, timed_out, proc.exitcode, tail)


def _child_main(
    target: Callable[..., Any], args: tuple[Any, ...], conn: Any, err_path: str
) -> None:  # pragma: no cover - runs in the child
    fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        conn.send(target(*args))
    finally:
        conn.close()
