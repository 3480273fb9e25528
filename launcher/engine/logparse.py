"""Reading llama.cpp's log: buffer sizes per device, and why a load failed or a host died.

llama.cpp reports what it allocated only as log lines (its per-device breakdown API is C++
only), so parsing them is the one fragile interface here; it is kept in this module and tested
on captured lines. Lines look like::

    load_tensors:   CPU_Mapped model buffer size =   235.16 MiB
    llama_kv_cache:        CPU KV buffer size =    12.00 MiB
    llama_context:        CPU  output buffer size =     1.00 MiB
    sched_reserve:      CUDA0 compute buffer size =   316.75 MiB
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from launcher.engine.events import BufferSize

_BUFFER = re.compile(
    # RPC buffers are named "RPC<device on the server>[host:port]"
    r"(?P<device>[A-Za-z][\w.-]*(?:\[[^\]\s]*\])?)"
    r"\s+(?P<kind>model|KV|compute|output|RS)\s+buffer size\s*=\s*"
    r"(?P<size>[\d.]+)\s*(?P<unit>[KMG]i?B|B)"
)
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "KB": 1000, "MB": 10**6}
_KINDS = {"model": "model", "KV": "kv", "compute": "compute", "output": "output", "RS": "rs"}


def parse_buffers(lines: Iterable[str]) -> tuple[BufferSize, ...]:
    """Buffer sizes from llama.cpp log lines, summed per (device, kind), in first-seen order.

    Two KV lines on one device (sliding-window models have two caches) add up.
    """
    totals: dict[tuple[str, str], int] = {}
    for line in lines:
        m = _BUFFER.search(line)
        if not m:
            continue
        size = round(float(m["size"]) * _UNITS.get(m["unit"], 1 << 20))
        key = (m["device"], _KINDS[m["kind"]])
        totals[key] = totals.get(key, 0) + size
    return tuple(BufferSize(device=d, kind=k, bytes=b) for (d, k), b in totals.items())


def load_failure_message(path: str, log: Sequence[str]) -> str:
    """A message for a failed load that says what went wrong and what to do."""
    text = "\n".join(log).lower()
    name = path.rsplit("/", 1)[-1]
    if "unknown model architecture" in text:
        arch = re.search(r"unknown model architecture:\s*'([^']+)'", "\n".join(log))
        which = f" ({arch.group(1)!r})" if arch else ""
        return (
            f"{name} uses a model architecture{which} that this llama.cpp build does not "
            "support. Update Spark Launcher (or llama-cpp-python) or pick another model."
        )
    if "failed to read magic" in text or "invalid magic" in text or "not a gguf" in text:
        return f"{name} is not a GGUF model file. Download the model's .gguf file and load that."
    if "data is not within the file bounds" in text or "unexpectedly reached end of file" in text:
        return (
            f"{name} is incomplete: the file ends before the model's data does. Delete it and "
            "download it again (downloads resume where they stopped)."
        )
    if "failed to read header" in text or "failed to read" in text or "failed to seek" in text:
        return (
            f"{name} is damaged: llama.cpp could not read its GGUF header. Delete it and "
            "download it again."
        )
    if _looks_oom(text):
        return (
            f"There is not enough memory to load {name} with these settings. Lower the context "
            "size or the GPU layers, close other models or apps, or pick a smaller quantization."
        )
    if "failed to create context" in text or "failed to initialize the context" in text:
        return (
            f"llama.cpp could not create a context for {name}. Lower the context size "
            "or batch size and try again."
        )
    return (
        f"llama.cpp could not load {name}; the file may be corrupt or unsupported. "
        "Download it again, or try another model. Last log line: "
        f"{(log[-1].strip() if log else 'none')}"
    )


def _looks_oom(text: str) -> bool:
    return any(
        s in text
        for s in (
            "out of memory",
            "cudamalloc failed",
            "failed to allocate",
            "unable to allocate",
            "cannot allocate memory",
            "not enough memory",
        )
    )
