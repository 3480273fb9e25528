"""The "doctor": checks of this set-up that cost users speed or crashes, each with its fix.

``run_checks(profile, paths)`` returns ``Check`` dataclasses (status ``ok``/``warn``/
``fail``/``skip``) that the CLI prints and the UI can show as they are:

- x64 Python emulated on an Arm PC (Windows Prism, macOS Rosetta): slow, and no GPU;
- llama.cpp built without GPU support while an NVIDIA (or Apple) GPU is present;
- NVML missing while an NVIDIA GPU is present (no live VRAM or per-model GPU figures);
- the instruction sets llama.cpp's CPU kernels use, and the Intel AMX build that crashes;
- little free disk in the models folder;
- llama.cpp built without the RPC backend (needed only to use other machines' memory);
- on Linux, the X11 libraries Qt's window needs (a bare machine lacks some).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from launcher.hardware.cpufeatures import AMX_ISSUE
from launcher.hardware.profile import MachineProfile

Status = Literal["ok", "warn", "fail", "skip"]
GIB = 1 << 30

# A source build whose CPU kernels leave AMX out (tools/setup_llama.sh reads SPARK_LLAMA_AMX).
AMX_REBUILD = "rm -f .venv/.setup-stamp && SPARK_LLAMA_AMX=off make setup"
# Where nvcc usually is when it is not on PATH (DGX Spark, CUDA toolkit .deb/.run installs).
CUDA_REBUILD = (
    "rm -f .venv/.setup-stamp && PATH=/usr/local/cuda/bin:$PATH LLAMA_BACKEND=cuda make setup"
)

# Below these, the models folder is too small for a useful model (a 7-8B Q4 is ~5 GiB).
DISK_FAIL_BYTES = 5 * GIB
DISK_WARN_BYTES = 30 * GIB

# What Qt's "xcb" platform plugin loads (PySide6 bundles Qt itself but not these).
QT_X11_LIBS = (
    "libxcb-cursor.so.0",
    "libxcb-icccm.so.4",
    "libxcb-keysyms.so.1",
    "libxcb-image.so.0",
    "libxcb-render-util.so.0",
    "libxkbcommon-x11.so.0",
    "libxcb-shape.so.0",
    "libxcb-xkb.so.1",
    "libEGL.so.1",
    "libfontconfig.so.1",
)
QT_X11_APT = (
    "sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 "
    "libxcb-render-util0 libxkbcommon-x11-0 libxcb-shape0 libxcb-xkb1 libegl1 libfontconfig1"
)


def _frozen() -> bool:
    """True inside the installed (PyInstaller) app, where fixes are "install another build"."""
    return bool(getattr(sys, "frozen", False))


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, how it went, and what to do about it."""

    id: str  # "emulation", "gpu_backend", "nvml", "disk", "qt_libs"
    title: str
    status: Status
    detail: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_emulation(profile: MachineProfile) -> Check:
    title = "Python runs natively"
    if profile.emulation == "prism":
        return Check(
            "emulation",
            title,
            "fail",
            f"This Python is {profile.process_arch}, emulated on an {profile.cpu_arch} PC: "
            "llama.cpp runs several times slower and cannot use the GPU.",
            "Install the ARM64 build of Spark Launcher."
            if _frozen()
            else "Install the native ARM64 Python from python.org (the 'Windows installer "
            "(ARM64)'), then recreate the environment: delete .venv and run `make run` again.",
        )
    if profile.emulation == "rosetta":
        return Check(
            "emulation",
            title,
            "fail",
            "This Python is x86_64 running under Rosetta on Apple Silicon: no Metal, slow CPU.",
            "Install the Apple Silicon build of Spark Launcher."
            if _frozen()
            else "Install an arm64 Python (python.org universal2 installer, or Homebrew in "
            "/opt/homebrew), then delete .venv and run `make run` again.",
        )
    return Check("emulation", title, "ok", f"{profile.process_arch} Python on {profile.cpu_arch}.")


def check_gpu_backend(profile: MachineProfile) -> Check:
    title = "llama.cpp can use the GPU"
    nvidia = [g for g in profile.gpus if g.vendor == "nvidia"]
    apple = [g for g in profile.gpus if g.vendor == "apple"]
    if "backend" in profile.unknowns:
        return Check(
            "gpu_backend",
            title,
            "warn",
            f"Could not ask llama.cpp what it was built with: {profile.unknowns['backend']}",
            "Reinstall it: delete .venv and run `make run` (see the build output for errors).",
        )
    if nvidia and not profile.gpu_offload:
        return Check(
            "gpu_backend",
            title,
            "fail",
            f"{nvidia[0].name} is present, but the installed llama.cpp was built for the CPU "
            "only: models will run on the CPU, many times slower.",
            "Install the CUDA build of Spark Launcher."
            if _frozen()
            else f"Rebuild llama.cpp with CUDA (nvcc from the CUDA toolkit): `{CUDA_REBUILD}`.",
        )
    if apple and not profile.gpu_offload:
        return Check(
            "gpu_backend",
            title,
            "fail",
            "This Mac has a GPU, but the installed llama.cpp was built without Metal.",
            "Rebuild with Metal: `rm -rf .venv && LLAMA_BACKEND=metal make run`.",
        )
    if profile.gpu_offload:
        return Check("gpu_backend", title, "ok", f"Built with {profile.backend.upper()}.")
    return Check("gpu_backend", title, "ok", "No GPU found; the CPU build is the right one.")


def check_cpu(profile: MachineProfile) -> Check:
    """What llama.cpp's CPU backend was built to use; the AMX crash and how it is avoided."""
    title = "llama.cpp's CPU kernels"
    if not profile.system_info:
        return Check("cpu", title, "skip", "llama.cpp could not be asked what it was built with.")
    features = ", ".join(profile.cpu_features) or "no SIMD extensions reported"
    detail = f"{profile.cpu_model}: llama.cpp uses {features}."
    if profile.amx_risk:
        return Check(
            "cpu",
            title,
            "warn",
            f"{detail} Its Intel AMX kernels crash on this CPU ({AMX_ISSUE}), so every model "
            "is loaded without extra buffer types (no weight repacking): safe, slower prefill.",
            f"Rebuild llama.cpp without the AMX kernels to get repacking back: `{AMX_REBUILD}`.",
        )
    return Check("cpu", title, "ok", detail)


def check_nvml(profile: MachineProfile) -> Check:
    title = "NVIDIA management library (NVML)"
    reason = profile.unknowns.get("nvml")
    nvidia = [g for g in profile.gpus if g.vendor == "nvidia"]
    if reason and nvidia:
        return Check(
            "nvml",
            title,
            "warn",
            f"{reason}. The GPU works, but live VRAM figures and each model's GPU memory "
            "cannot be shown.",
            "Install the NVIDIA driver's NVML library (libnvidia-ml.so.1, e.g. "
            "`sudo apt-get install libnvidia-compute-580` matching your driver); on Windows, "
            "reinstall the NVIDIA driver.",
        )
    if reason:
        return Check("nvml", title, "skip", "No NVIDIA GPU found; NVML is not needed.")
    driver = next((g.driver for g in nvidia if g.driver), None)
    return Check("nvml", title, "ok", f"NVML works (driver {driver or 'unknown'}).")


def _existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path.cwd()


def check_disk(
    models_dir: Path,
    *,
    fail_below: int = DISK_FAIL_BYTES,
    warn_below: int = DISK_WARN_BYTES,
) -> Check:
    title = "Free disk space for models"
    where = _existing(models_dir)
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return Check("disk", title, "skip", f"Cannot read free space of {where}: {exc}")
    detail = f"{free / GIB:.1f} GiB free in {models_dir}."
    fix = (
        "Free space on that drive (delete models you no longer use), or choose a models folder "
        "on a bigger drive in Settings (models_dir)."
    )
    if free < fail_below:
        return Check("disk", title, "fail", detail + " Most models will not fit.", fix)
    if free < warn_below:
        return Check("disk", title, "warn", detail + " Only small models will fit.", fix)
    return Check("disk", title, "ok", detail)


def _ldconfig() -> str | None:
    for exe in ("ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"):
        try:
            out = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0:
            return out.stdout
    return None


def check_qt_libs(ldconfig_output: str | None = None, *, platform: str = sys.platform) -> Check:
    title = "System libraries for the app window"
    if not platform.startswith("linux"):
        return Check("qt_libs", title, "skip", "Only needed on Linux.")
    text = ldconfig_output if ldconfig_output is not None else _ldconfig()
    if text is None:
        return Check("qt_libs", title, "skip", "ldconfig is not available to check.")
    missing = [lib for lib in QT_X11_LIBS if lib not in text]
    if missing:
        return Check(
            "qt_libs",
            title,
            "warn",
            "The window cannot open on an X11 desktop without: " + ", ".join(missing) + ". "
            "The command line works without them.",
            f"On Debian/Ubuntu: `{QT_X11_APT}`.",
        )
    return Check("qt_libs", title, "ok", "All X11 libraries Qt needs are installed.")


def check_rpc(rpc_library: Path | bool | None = True) -> Check:
    """Is llama.cpp built with RPC (``libggml-rpc``)? ``True``: look at the installed one."""
    from launcher.hardware.backend_query import RPC_REBUILD_FIX as REBUILD_FIX
    from launcher.hardware.backend_query import rpc_library as find

    title = "llama.cpp RPC (other machines' memory)"
    lib = find() if rpc_library is True else rpc_library
    if lib:
        return Check("rpc", title, "ok", "Built with RPC: `--rpc HOST:PORT` can split a model.")
    return Check(
        "rpc",
        title,
        "skip",
        "llama.cpp built without RPC: a model cannot use the memory of another machine "
        "running rpc-server (only needed for models too big for this one).",
        "Install the RPC-enabled build of Spark Launcher." if _frozen() else REBUILD_FIX,
    )


def run_checks(
    profile: MachineProfile,
    models_dir: Path,
    *,
    qt_check: Callable[[], Check] = check_qt_libs,
    rpc_check: Callable[[], Check] = check_rpc,
    extra: Sequence[Check] = (),
) -> list[Check]:
    """Every check, in the order a user should read them; ``extra`` ones (from layers above
    this one, such as the engine's crash history) come last."""
    return [
        check_emulation(profile),
        check_gpu_backend(profile),
        check_cpu(profile),
        check_nvml(profile),
        check_disk(models_dir),
        qt_check(),
        rpc_check(),
        *extra,
    ]
