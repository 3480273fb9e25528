"""Helpers shared by the benchmarks: timing, statistics, machine description, tables."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"


LLAMA_CPP_PYTHON_VERSION = "0.3.36"  # keep in step with constraints.txt


def llama_tools_bin() -> Path:
    """Where ``tools/build_llama_tools.sh`` puts llama.cpp's own executables (per user, cached
    across clones): ``$SPARK_LLAMA_TOOLS/bin`` or ``~/.cache/spark-launcher/llama-tools-V/bin``."""
    root = os.environ.get("SPARK_LLAMA_TOOLS")
    if not root:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(cache) / "spark-launcher" / f"llama-tools-{LLAMA_CPP_PYTHON_VERSION}")
    return Path(root) / "bin"


def machine_line() -> str:
    """One line describing where the numbers were taken."""
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = psutil.virtual_memory().total / 2**30
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, {cpu}, "
        f"{os.cpu_count()} logical CPUs, {ram:.1f} GiB RAM, Python {platform.python_version()}"
    )


def timed(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> list[float]:
    """Run ``fn`` ``warmup + repeat`` times; return the ``repeat`` wall times in seconds."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median(xs: Iterable[float]) -> float:
    return float(statistics.median(list(xs)))


def percentile(xs: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by nearest rank."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return float(s[k])


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table."""

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run a Python snippet in a fresh interpreter (cold-start measurements); return stdout."""
    full_env = {**os.environ, **(env or {})}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {out.stderr[-2000:]}")
    return out.stdout
