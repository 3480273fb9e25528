"""What the CPU can do, what llama.cpp's CPU backend was built to use, and when that is unsafe.

Two readings, both cheap and both plain data:

- ``llama_print_system_info()``: llama.cpp's own report, one section per backend
  (``CUDA : ARCHS = 1210 | ... | CPU : SSE3 = 1 | AVX2 = 1 | AMX_INT8 = 1 | REPACK = 1 |``).
  The CPU section lists the instruction sets the CPU backend was *compiled* for (with
  ``GGML_NATIVE`` that is this CPU's), which is what a user reporting a problem should paste.
- The CPU's own flags (``/proc/cpuinfo``), which say what the processor can run.

The one combination known to crash is Intel AMX: a CPU backend compiled with the AMX kernels
(``AMX_INT8 = 1``; ``-march=native`` on a Sapphire Rapids or newer Xeon does that) on a CPU
that has AMX repacks quantized weights into an "AMX" extra buffer at load, and
``ggml_backend_amx_mul_mat`` then dies with SIGSEGV on the first ``llama_decode``
(llama.cpp issue 20824, closed stale without a fix; Ollama issue 17006). Loading with
``use_extra_bufts = false`` avoids that buffer, so :func:`decide_extra_buffers` turns extra
buffer types off exactly there and nowhere else (see BENCHMARKS.md for what they are worth
where they are safe).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# The instruction-set names llama.cpp's CPU backend reports that matter for speed or crashes,
# in the order a person reads them (x86 first, then Arm).
REPORTED = (
    "AVX",
    "AVX2",
    "AVX_VNNI",
    "FMA",
    "F16C",
    "AVX512",
    "AVX512_VNNI",
    "AVX512_BF16",
    "AMX_INT8",
    "NEON",
    "DOTPROD",
    "MATMUL_INT8",
    "SVE",
    "SME",
    "REPACK",
    "KLEIDIAI",
    "OPENMP",
)

# /proc/cpuinfo flags that mean the processor itself has AMX tiles.
AMX_FLAGS = frozenset({"amx_int8", "amx_tile", "amx_bf16"})

AMX_ISSUE = "llama.cpp issue 20824"


def parse_system_info(text: str) -> dict[str, dict[str, str]]:
    """``llama_print_system_info()`` as ``{backend: {feature: value}}``.

    Sections start with ``NAME :``; entries are ``KEY = VALUE`` separated by ``|``. Text that
    does not fit the pattern is skipped (older builds print a flatter list, all under CPU).
    """
    out: dict[str, dict[str, str]] = {}
    current = "CPU"
    for raw in text.split("|"):
        piece = raw.strip()
        head, colon, rest = piece.partition(":")
        if colon and "=" not in head:  # "CPU : SSE3 = 1" opens the CPU section
            current = head.strip()
            out.setdefault(current, {})
            piece = rest.strip()
        key, eq, value = piece.partition("=")
        if eq and key.strip():
            out.setdefault(current, {})[key.strip()] = value.strip()
    return out


def llama_cpu_features(system_info: str) -> tuple[str, ...]:
    """The instruction sets llama.cpp's CPU backend uses, from :data:`REPORTED`."""
    cpu = parse_system_info(system_info).get("CPU", {})
    return tuple(name for name in REPORTED if cpu.get(name, "0") not in ("0", ""))


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """Flags of the first processor in ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def read_cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str] | None:
    """This CPU's flags, or ``None`` where the OS does not list them (macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flags = parse_cpu_flags(text)
    return flags or None


def amx_risk(system_info: str, cpu_flags: Iterable[str] | None) -> str | None:
    """Why extra buffer types would crash here, or ``None`` when they are safe.

    Unsafe when the CPU backend was compiled with the AMX kernels *and* the CPU has AMX (ggml
    registers the AMX buffer type only when both hold). Where the CPU's flags cannot be read,
    a build that has AMX compiled in is taken to run on an AMX CPU: native builds only enable
    it on one.
    """
    cpu = parse_system_info(system_info).get("CPU", {})
    if cpu.get("AMX_INT8", "0") in ("0", ""):
        return None
    if cpu_flags is not None and not (AMX_FLAGS & set(cpu_flags)):
        return None
    return (
        "llama.cpp's CPU backend was built with Intel AMX kernels (AMX_INT8 = 1) and this CPU "
        f"has AMX; those kernels crash on the first token ({AMX_ISSUE})"
    )


@dataclass(frozen=True)
class ExtraBuffers:
    """Whether a load uses llama.cpp's extra buffer types (weight repacking), and why."""

    use: bool
    reason: str


def decide_extra_buffers(
    requested: bool | None, system_info: str, cpu_flags: Iterable[str] | None
) -> ExtraBuffers:
    """``requested`` (True/False) wins; ``None`` means on, except where :func:`amx_risk`."""
    if requested is not None:
        return ExtraBuffers(requested, "set in the load settings")
    risk = amx_risk(system_info, cpu_flags)
    if risk:
        return ExtraBuffers(False, f"off: {risk}")
    return ExtraBuffers(True, "on (llama.cpp's default)")
