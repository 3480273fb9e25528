"""Which machine to plan for: this one, a reference machine, a saved probe, or an inline spec.

Every command that takes ``--machine`` goes through :func:`resolve_machine`:

- ``None``: this machine, from ``launcher.hardware.probe()`` (or, if the probe is not
  available, a minimal CPU-and-RAM profile from psutil, with the gap noted in ``unknowns``);
- a path to a JSON file written by ``spark-launcher probe --json``;
- a reference machine name from ``resources/machines/`` (``dgx-spark``, ``rtx-4090-64gb``, ...);
- an inline spec: ``unified=128GiB[,bw=273]`` or ``vram=24GiB,ram=64GiB[,bw=1008][,ram_bw=90]``
  (``ram=16GiB`` alone is a CPU-only machine).

Anything else raises :class:`~launcher.errors.MachineSpecError` naming what is accepted.
"""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path
from typing import Any

import psutil

from launcher.errors import MachineSpecError
from launcher.hardware.profile import GPUInfo, MachineProfile, MemoryPool

MACHINES_DIR = Path(__file__).resolve().parent.parent / "resources" / "machines"

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
    "t": 10**12,
    "tb": 10**12,
    "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")
_INLINE_KEYS = ("unified", "vram", "ram", "bw", "ram_bw", "name")
# Typical figures used when an inline spec leaves them out, so speed estimates stay possible.
# They are marked in the profile's ``unknowns`` so a reader can tell them from real data.
_DEFAULT_RAM_BW = 89.6  # dual-channel DDR5-5600 peak, GB/s
_DEFAULT_UNIFIED_BW = 273.0  # GB10 (DGX Spark), GB/s
_DEFAULT_VRAM_BW = 1008.0  # RTX 4090, GB/s


def parse_size(text: str) -> int:
    """``"128GiB"``, ``"24 GB"``, ``"512MiB"`` or plain bytes -> bytes.

    Binary (GiB) and decimal (GB) units are both accepted, case-insensitively; a bare
    number is bytes.
    """
    m = _SIZE_RE.match(text)
    if not m or m.group(2).lower() not in _UNITS:
        raise MachineSpecError(
            f"cannot read the size {text!r}: "
            "write a number with a unit, e.g. 128GiB, 24GB or 512MiB"
        )
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if value <= 0:
        raise MachineSpecError(f"the size {text!r} must be larger than zero")
    return int(value)


def reference_names() -> list[str]:
    """Names of the bundled reference machines (file stems in ``resources/machines``)."""
    if not MACHINES_DIR.is_dir():
        return []
    return sorted(p.stem for p in MACHINES_DIR.glob("*.json"))


def load_reference(name: str) -> MachineProfile:
    """A bundled reference machine by name; :class:`MachineSpecError` if there is none."""
    path = MACHINES_DIR / f"{name}.json"
    if name not in reference_names():
        raise MachineSpecError(
            f"unknown machine {name!r}; reference machines: {', '.join(reference_names())}"
        )
    return _profile_from_file(path)


def reference_machines() -> dict[str, MachineProfile]:
    """Every bundled reference machine, by name."""
    return {name: load_reference(name) for name in reference_names()}


def _profile_from_file(path: Path) -> MachineProfile:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MachineSpecError(
            f"cannot read the machine file {path}: {exc}. "
            "Give a file written by `spark-launcher probe --json`."
        ) from exc
    if isinstance(data, dict) and isinstance(data.get("profile"), dict):
        data = data["profile"]  # tolerate a wrapper object around the profile
    try:
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        profile = MachineProfile.from_json(data)
    except (TypeError, ValueError, KeyError) as exc:
        raise MachineSpecError(
            f"{path} is not a machine profile ({exc}). "
            "Give a file written by `spark-launcher probe --json`."
        ) from exc
    if not profile.pools:
        raise MachineSpecError(
            f"{path} describes no memory pools; re-run `spark-launcher probe --json`"
        )
    return profile


def parse_inline(spec: str) -> MachineProfile:
    """An inline spec (``unified=128GiB``, ``vram=24GiB,ram=64GiB,bw=1008``) as a profile.

    ``bw`` is the GPU's (or the unified pool's) bandwidth in GB/s; ``ram_bw`` the system
    RAM's. Missing bandwidths get typical figures, recorded in ``unknowns``.
    """
    fields: dict[str, str] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in _INLINE_KEYS:
            raise MachineSpecError(
                f"cannot read {part.strip()!r} in the machine spec {spec!r}: use key=value pairs "
                f"from {', '.join(_INLINE_KEYS)}, e.g. unified=128GiB or vram=24GiB,ram=64GiB"
            )
        if key in fields:
            raise MachineSpecError(f"{key!r} appears twice in the machine spec {spec!r}")
        fields[key] = value.strip()

    def bandwidth(key: str) -> float | None:
        if key not in fields:
            return None
        try:
            bw = float(fields[key].lower().removesuffix("gb/s").strip())
        except ValueError:
            bw = -1.0
        if bw <= 0:
            raise MachineSpecError(
                f"{key}={fields[key]!r} is not a bandwidth: give GB/s as a number, e.g. {key}=273"
            )
        return bw

    bw, ram_bw = bandwidth("bw"), bandwidth("ram_bw")
    unknowns: dict[str, str] = {"ram_available": "inline spec: planned as an idle system"}
    name = fields.get("name") or f"inline: {spec}"
    cpu = _cpu_info()
    if "unified" in fields:
        if "vram" in fields or "ram" in fields:
            raise MachineSpecError(
                "a unified-memory spec has no separate vram or ram: use unified=128GiB alone, "
                "or vram=24GiB,ram=64GiB for a discrete GPU"
            )
        total = parse_size(fields["unified"])
        if bw is None:
            bw = _DEFAULT_UNIFIED_BW
            unknowns["bandwidth_gbps"] = f"not given (bw=); {bw:g} GB/s assumed"
        pool = MemoryPool(
            name="Unified memory",
            kind="unified",
            total=total,
            available=None,
            gpu_usable=total,
            device="GPU0",
            bandwidth_gbps=bw,
        )
        gpu = GPUInfo(
            index=0, name="GPU (inline spec)", vendor="other", unified=True, bandwidth_gbps=bw
        )
        return MachineProfile(
            **cpu,
            ram_total=total,
            ram_available=None,
            pools=(pool,),
            gpus=(gpu,),
            backend="cuda",
            gpu_offload=True,
            name=name,
            unknowns=unknowns,
        )
    if "ram" not in fields:
        raise MachineSpecError(
            f"the machine spec {spec!r} needs ram= (and vram= for a GPU), or unified= alone, "
            "e.g. vram=24GiB,ram=64GiB or unified=128GiB"
        )
    ram = parse_size(fields["ram"])
    if ram_bw is None:
        ram_bw = _DEFAULT_RAM_BW
        unknowns["ram_bandwidth"] = f"not given (ram_bw=); {ram_bw:g} GB/s assumed"
    ram_pool = MemoryPool(
        name="System RAM",
        kind="ram",
        total=ram,
        available=None,
        device="CPU",
        bandwidth_gbps=ram_bw,
    )
    if "vram" not in fields:
        if bw is not None:
            raise MachineSpecError("bw= is the GPU's bandwidth; a CPU-only spec takes ram_bw=")
        return MachineProfile(
            **cpu,
            ram_total=ram,
            ram_available=None,
            pools=(ram_pool,),
            name=name,
            unknowns=unknowns,
        )
    vram = parse_size(fields["vram"])
    if bw is None:
        bw = _DEFAULT_VRAM_BW
        unknowns["bandwidth_gbps"] = f"not given (bw=); {bw:g} GB/s assumed"
    vram_pool = MemoryPool(
        name="VRAM",
        kind="vram",
        total=vram,
        available=None,
        gpu_usable=vram,
        device="CUDA0",
        bandwidth_gbps=bw,
    )
    gpu = GPUInfo(
        index=0,
        name="GPU (inline spec)",
        vendor="other",
        unified=False,
        memory_total=vram,
        bandwidth_gbps=bw,
    )
    return MachineProfile(
        **cpu,
        ram_total=ram,
        ram_available=None,
        pools=(vram_pool, ram_pool),
        gpus=(gpu,),
        backend="cuda",
        gpu_offload=True,
        name=name,
        unknowns=unknowns,
    )


def _cpu_info() -> dict[str, Any]:
    """This machine's CPU facts, used to fill the CPU fields of an inline spec."""
    arch = platform.machine().lower()
    arch = {"amd64": "x86_64", "aarch64": "arm64"}.get(arch, arch)
    threads = os.cpu_count() or 1
    return {
        "os": platform.system(),
        "cpu_model": platform.processor() or arch,
        "cpu_cores": psutil.cpu_count(logical=False) or threads,
        "cpu_threads": threads,
        "cpu_arch": arch,
        "process_arch": arch,
    }


def _fallback_probe(reason: str) -> MachineProfile:
    """This machine as psutil sees it (CPU and RAM only), when the real probe is missing."""
    vm = psutil.virtual_memory()
    pool = MemoryPool(
        name="System RAM",
        kind="ram",
        total=int(vm.total),
        available=int(vm.available),
        device="CPU",
        notes=("GPU not probed: " + reason,),
    )
    return MachineProfile(
        **_cpu_info(),
        ram_total=int(vm.total),
        ram_available=int(vm.available),
        pools=(pool,),
        unknowns={"gpus": reason},
    )


def probe_this_machine() -> MachineProfile:
    """``launcher.hardware.probe()``, or a CPU/RAM-only profile if it is not available."""
    try:
        from launcher.hardware import probe
    except ImportError:  # the probe module is not part of this build (yet)
        return _fallback_probe("the hardware probe is not available in this build")
    result = probe()
    if isinstance(result, MachineProfile):
        return result
    # Some probe versions return a report object carrying the profile.
    inner = getattr(result, "profile", None)
    if isinstance(inner, MachineProfile):
        return inner
    return _fallback_probe("the hardware probe returned no machine profile")


def resolve_machine(spec: str | None) -> MachineProfile:
    """The machine a ``--machine`` value names (see the module docstring for the forms)."""
    if spec is None or not spec.strip():
        return probe_this_machine()
    spec = spec.strip()
    if "=" in spec:
        return parse_inline(spec)
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".json" or os.sep in spec or path.is_file():
        if not path.is_file():
            raise MachineSpecError(
                f"no machine file at {path}: save one with `spark-launcher probe --json > FILE`, "
                f"or name a reference machine ({', '.join(reference_names())})"
            )
        return _profile_from_file(path)
    name = spec.lower()
    if name in reference_names():
        return load_reference(name)
    raise MachineSpecError(
        f"unknown machine {spec!r}: give a reference machine ({', '.join(reference_names())}), "
        "a file from `spark-launcher probe --json`, or an inline spec such as unified=128GiB "
        "or vram=24GiB,ram=64GiB"
    )
