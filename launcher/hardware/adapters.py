"""Small adapters through which the probe and the sampler read the machine.

Each adapter wraps one source (the OS and CPU, ``/proc/meminfo``, psutil, NVML, the llama.cpp
backend in a child process, per-process memory) and returns plain JSON-able readings, or
raises :class:`AdapterError` with a reason a user can read. The probe logic in
``launcher.hardware.probe`` only sees readings, so tests replay readings recorded on other
machines (:class:`ReplayAdapters`, files in ``tests/core/data/hardware/``) and
``python -m launcher.hardware.record`` records this machine's readings in that format.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

from launcher.errors import LauncherError
from launcher.hardware.cpufeatures import read_cpu_flags

# How long the child that asks llama.cpp/ggml about devices may take (CUDA start-up is slow
# on a cold driver; a wedged driver must not hang the app).
BACKEND_QUERY_TIMEOUT_S = 60.0

# NVML return code for "this device does not support the query" (GB10 memory queries).
NVML_ERROR_NOT_SUPPORTED = 3


class AdapterError(LauncherError):
    """One hardware source could not be read; the message says why (shown as "unknown")."""


class Source(Protocol):
    """Something that returns one reading (a JSON-able value) or raises AdapterError."""

    def read(self) -> Any: ...


class NvmlSourceProto(Protocol):
    def read(self) -> dict[str, Any]: ...

    def memory(self) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class ProcessSourceProto(Protocol):
    def memory(self, pid: int) -> dict[str, int]: ...


# --------------------------------------------------------------------------- arch helpers

_ARCH_ALIASES = {
    "amd64": "x86_64",
    "x86_64": "x86_64",
    "x64": "x86_64",
    "arm64": "arm64",
    "aarch64": "arm64",
    "armv8": "arm64",
    "i386": "x86",
    "i686": "x86",
    "x86": "x86",
}

# IMAGE_FILE_MACHINE_* values returned by IsWow64Process2.
_IMAGE_MACHINES = {0x8664: "x86_64", 0xAA64: "arm64", 0x014C: "x86", 0x01C4: "arm"}


def normalize_arch(name: str) -> str:
    """Map the many spellings of an architecture to "x86_64", "arm64", "x86"."""
    return _ARCH_ALIASES.get(name.strip().lower(), name.strip().lower() or "unknown")


def _is_wow64_process2() -> tuple[int, int] | None:
    """Raw (process machine, native machine) codes from IsWow64Process2, or None.

    ``platform.machine()`` and ``PROCESSOR_ARCHITEW6432`` cannot see x64 emulation on Arm
    (it is not WOW64), so the Win32 call is the only reliable test.
    """
    if sys.platform != "win32":
        return None
    try:
        k32 = ctypes.WinDLL("kernel32", use_last_error=True)
        fn = k32.IsWow64Process2
    except (OSError, AttributeError):  # Windows older than 10 1709
        return None
    fn.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_ushort),
        ctypes.POINTER(ctypes.c_ushort),
    ]
    fn.restype = ctypes.c_int
    k32.GetCurrentProcess.restype = ctypes.c_void_p
    proc, native = ctypes.c_ushort(0), ctypes.c_ushort(0)
    if not fn(k32.GetCurrentProcess(), ctypes.byref(proc), ctypes.byref(native)):
        return None
    return int(proc.value), int(native.value)


def decide_arch(
    system: str,
    machine: str,
    wow64: tuple[int, int] | None = None,
    proc_translated: int | None = None,
) -> tuple[str, str, str | None]:
    """(native arch, process arch, emulation) from what the OS reports.

    ``machine`` is ``platform.machine()`` (the process's view). On Windows ``wow64`` is the
    IsWow64Process2 pair: its process code is 0 (IMAGE_FILE_MACHINE_UNKNOWN) both for a
    native process and for x64 emulated on Arm, which is not WOW64, so ``machine`` names the
    process arch then. On macOS ``proc_translated == 1`` means Rosetta.
    """
    process_arch = normalize_arch(machine)
    native_arch = process_arch
    emulation = None
    if system == "Windows" and wow64 is not None:
        proc_code, native_code = wow64
        native_arch = _IMAGE_MACHINES.get(native_code, native_arch)
        process_arch = _IMAGE_MACHINES.get(proc_code) or process_arch
        if native_arch == "arm64" and process_arch in ("x86_64", "x86"):
            emulation = "prism"
    elif system == "Darwin" and proc_translated == 1:
        native_arch, emulation = "arm64", "rosetta"
    return native_arch, process_arch, emulation


def _sysctl(name: str) -> bytes | None:
    """Raw ``sysctlbyname`` value on macOS (None elsewhere or when the key is missing)."""
    if sys.platform != "darwin":
        return None
    try:
        libc = ctypes.CDLL("/usr/lib/libc.dylib")
        size = ctypes.c_size_t(0)
        key = name.encode()
        if libc.sysctlbyname(key, None, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
            return None
        buf = ctypes.create_string_buffer(size.value)
        if libc.sysctlbyname(key, buf, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
            return None
        return buf.raw[: size.value]
    except OSError:
        return None


def _sysctl_int(name: str) -> int | None:
    raw = _sysctl(name)
    return int.from_bytes(raw, sys.byteorder) if raw else None


# Arm cores by (implementer, part) from /proc/cpuinfo, which has no "model name" on Arm.
_ARM_PARTS = {
    (0x41, 0xD85): "Cortex-X925",
    (0x41, 0xD87): "Cortex-A725",
    (0x41, 0xD4F): "Neoverse-V2",
    (0x41, 0xD40): "Neoverse-V1",
    (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD8E): "Neoverse-N3",
    (0x41, 0xD0B): "Cortex-A76",
    (0x41, 0xD42): "Cortex-A78AE",
}


def _arm_core_names(cpuinfo: str) -> str | None:
    names: list[str] = []
    implementer = None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        try:
            if key == "CPU implementer":
                implementer = int(value, 16)
            elif key == "CPU part" and implementer is not None:
                name = _ARM_PARTS.get((implementer, int(value, 16)), f"Arm core {value}")
                if name not in names:
                    names.append(name)
        except ValueError:
            continue
    return " + ".join(names) if names else None


def _cpu_model() -> str:
    if sys.platform.startswith("linux"):
        try:
            text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        for key in ("model name", "Hardware", "Model", "cpu model"):
            for line in text.splitlines():
                if line.startswith(key) and ":" in line:
                    return line.split(":", 1)[1].strip()
        arm = _arm_core_names(text)
        if arm:
            return arm
    if sys.platform == "darwin":
        raw = _sysctl("machdep.cpu.brand_string")
        if raw:
            return raw.rstrip(b"\0").decode(errors="replace")
    if sys.platform == "win32":
        with contextlib.suppress(OSError):
            import winreg

            key = winreg.OpenKey(
                winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0"
            )
            return str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip()
    return platform.processor() or platform.machine() or "unknown CPU"


# --------------------------------------------------------------------------- live sources


class SystemSource:
    """OS, CPU model and counts, native and process architecture, emulation."""

    def read(self) -> dict[str, Any]:
        system = platform.system()
        native_arch, process_arch, emulation = decide_arch(
            system,
            platform.machine(),
            wow64=_is_wow64_process2() if system == "Windows" else None,
            proc_translated=_sysctl_int("sysctl.proc_translated") if system == "Darwin" else None,
        )
        if system == "Darwin":
            os_version = platform.mac_ver()[0]
        elif system == "Windows":
            os_version = platform.version()
        else:
            os_version = platform.release()
        return {
            "os": system,
            "os_version": os_version,
            "cpu_model": _cpu_model(),
            "cpu_cores": psutil.cpu_count(logical=False),
            "cpu_threads": psutil.cpu_count(logical=True),
            "cpu_arch": native_arch,
            "process_arch": process_arch,
            "emulation": emulation,
            "cpu_flags": sorted(flags) if (flags := read_cpu_flags()) is not None else None,
        }


class MeminfoSource:
    """The text of ``/proc/meminfo`` (Linux only)."""

    def __init__(self, path: str = "/proc/meminfo") -> None:
        self.path = path

    def read(self) -> str:
        try:
            with open(self.path, encoding="ascii", errors="replace") as fh:
                return fh.read()
        except OSError as exc:
            raise AdapterError(f"cannot read {self.path}: {exc.strerror or exc}") from exc


class VirtualMemorySource:
    """``psutil.virtual_memory()`` as a dict (total, available, free, cached, ...)."""

    def read(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in psutil.virtual_memory()._asdict().items()}
        except (OSError, RuntimeError) as exc:
            raise AdapterError(f"psutil could not read system memory: {exc}") from exc


def _nvml_error(exc: Exception) -> dict[str, Any]:
    return {"error": str(exc) or type(exc).__name__, "code": getattr(exc, "value", None)}


class NvmlSource:
    """NVIDIA driver readings through pynvml: devices, memory, per-process GPU memory.

    NVML is initialised on first use and kept open (the sampler reads it every second);
    ``close()`` shuts it down. A missing library or driver raises AdapterError once and is
    remembered, so a machine without NVIDIA pays nothing per sample.
    """

    def __init__(self) -> None:
        self._nvml: Any = None
        self._failed: str | None = None

    def _lib(self) -> Any:
        if self._failed:
            raise AdapterError(self._failed)
        if self._nvml is None:
            try:
                import pynvml

                pynvml.nvmlInit()
            except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ImportError
                self._failed = f"NVML is not available ({exc or type(exc).__name__})"
                raise AdapterError(self._failed) from exc
            self._nvml = pynvml
        return self._nvml

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None

    def _device_memory(self, nv: Any, handle: Any) -> dict[str, Any]:
        try:
            m = nv.nvmlDeviceGetMemoryInfo(handle)
            return {"total": int(m.total), "free": int(m.free), "used": int(m.used)}
        except nv.NVMLError as exc:
            return _nvml_error(exc)

    def _processes(self, nv: Any, handle: Any) -> list[dict[str, Any]]:
        try:
            procs = nv.nvmlDeviceGetComputeRunningProcesses(handle)
        except nv.NVMLError:
            return []
        return [
            {"pid": int(p.pid), "used_memory": p.usedGpuMemory and int(p.usedGpuMemory)}
            for p in procs
        ]

    def read(self) -> dict[str, Any]:
        nv = self._lib()
        try:
            driver = nv.nvmlSystemGetDriverVersion()
            count = nv.nvmlDeviceGetCount()
        except nv.NVMLError as exc:
            raise AdapterError(f"NVML failed: {exc}") from exc
        devices = []
        for i in range(count):
            try:
                h = nv.nvmlDeviceGetHandleByIndex(i)
                name = nv.nvmlDeviceGetName(h)
            except nv.NVMLError as exc:
                devices.append({"index": i, "name": None, **_nvml_error(exc)})
                continue
            try:
                major, minor = nv.nvmlDeviceGetCudaComputeCapability(h)
                cc: str | None = f"{major}.{minor}"
            except nv.NVMLError:
                cc = None
            devices.append(
                {
                    "index": i,
                    "name": name.decode() if isinstance(name, bytes) else str(name),
                    "memory": self._device_memory(nv, h),
                    "compute_capability": cc,
                    "processes": self._processes(nv, h),
                }
            )
        return {
            "driver": driver.decode() if isinstance(driver, bytes) else driver,
            "devices": devices,
        }

    def memory(self) -> list[dict[str, Any]]:
        """Per device: memory figures and per-process usage (the sampler's cheap subset)."""
        nv = self._lib()
        out = []
        try:
            for i in range(nv.nvmlDeviceGetCount()):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                out.append(
                    {
                        "index": i,
                        "memory": self._device_memory(nv, h),
                        "processes": self._processes(nv, h),
                    }
                )
        except nv.NVMLError as exc:
            raise AdapterError(f"NVML failed: {exc}") from exc
        return out


class BackendSource:
    """What the installed llama.cpp was built with and the devices ggml sees.

    Runs ``python -m launcher.hardware.backend_query`` in a short-lived child: asking ggml
    for device memory creates a CUDA context, which must never live in the app process.
    """

    def __init__(
        self,
        timeout: float = BACKEND_QUERY_TIMEOUT_S,
        python: str | None = None,
        use_spawn: bool | None = None,
    ) -> None:
        self.timeout = timeout
        self.python = python or sys.executable
        # In a frozen (PyInstaller) app sys.executable is the app itself, which cannot run
        # ``-m``; a multiprocessing spawn child re-enters the bundle instead.
        self.use_spawn = bool(getattr(sys, "frozen", False)) if use_spawn is None else use_spawn

    def read(self) -> dict[str, Any]:
        if self.use_spawn:
            return self._read_spawned()
        cmd = [self.python, "-m", "launcher.hardware.backend_query"]
        env = {
            **os.environ,
            "PYTHONPATH": _package_root() + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        try:
            out = subprocess.run(
                cmd, capture_output=True, text=True, timeout=self.timeout, env=env, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise AdapterError(
                f"the llama.cpp device query did not answer within {self.timeout:.0f} s "
                "(GPU driver hung?)"
            ) from exc
        except OSError as exc:
            raise AdapterError(f"could not start the llama.cpp device query: {exc}") from exc
        if out.returncode != 0:
            tail = (out.stderr or "").strip().splitlines()[-3:]
            raise AdapterError(
                f"the llama.cpp device query failed (exit {out.returncode}): " + " / ".join(tail)
            )
        try:
            data = json.loads(out.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError) as exc:
            raise AdapterError("the llama.cpp device query printed no JSON") from exc
        if not isinstance(data, dict):
            raise AdapterError("the llama.cpp device query printed an unexpected value")
        if data.get("error"):
            raise AdapterError(str(data["error"]))
        return data

    def _read_spawned(self) -> dict[str, Any]:
        from launcher.hardware.backend_query import query_in_spawned_child

        try:
            data = query_in_spawned_child(self.timeout)
        except OSError as exc:
            raise AdapterError(f"could not start the llama.cpp device query: {exc}") from exc
        if data is None:
            raise AdapterError(
                f"the llama.cpp device query gave no answer within {self.timeout:.0f} s "
                "(it crashed, or the GPU driver hung)"
            )
        if data.get("error"):
            raise AdapterError(str(data["error"]))
        return data


def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent.parent)


class ProcessSource:
    """Resident memory of one process (psutil; ``/proc/<pid>/statm`` on Linux, cheap).

    ``psutil.Process`` objects are kept per PID: they remember the start time, so a PID
    reused by another program reads as gone rather than as our model.
    """

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def memory(self, pid: int) -> dict[str, int]:
        try:
            proc = self._procs.get(pid)
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
            if not proc.is_running():
                raise psutil.NoSuchProcess(pid)
            info = proc.memory_info()
        except psutil.Error as exc:
            self._procs.pop(pid, None)
            raise AdapterError(f"process {pid} is gone or not readable") from exc
        # ``shared`` (Linux): file-backed and shmem pages, e.g. an mmap-ed GGUF. They are
        # also counted in the page cache, which the sampler must not count twice.
        return {"rss": int(info.rss), "shared": int(getattr(info, "shared", 0))}


# --------------------------------------------------------------------------- bundles


@dataclass
class Adapters:
    """The set of sources the probe and sampler read."""

    system: Source
    meminfo: Source
    virtual_memory: Source
    nvml: NvmlSourceProto
    backend: Source
    processes: ProcessSourceProto

    def close(self) -> None:
        self.nvml.close()


def live_adapters(backend_timeout: float = BACKEND_QUERY_TIMEOUT_S) -> Adapters:
    """Adapters reading this machine."""
    return Adapters(
        system=SystemSource(),
        meminfo=MeminfoSource(),
        virtual_memory=VirtualMemorySource(),
        nvml=NvmlSource(),
        backend=BackendSource(timeout=backend_timeout),
        processes=ProcessSource(),
    )


# --------------------------------------------------------------------------- replay


def _replayed(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"adapter_error"}:
        raise AdapterError(str(value["adapter_error"]))
    return value


@dataclass
class _Replay:
    value: Any

    def read(self) -> Any:
        return _replayed(self.value)


@dataclass
class _ReplayNvml:
    value: Any

    def read(self) -> dict[str, Any]:
        return _replayed(self.value)

    def memory(self) -> list[dict[str, Any]]:
        data = _replayed(self.value)
        return [
            {
                "index": d["index"],
                "memory": d.get("memory", {}),
                "processes": d.get("processes", []),
            }
            for d in data.get("devices", [])
        ]

    def close(self) -> None:
        pass


@dataclass
class _ReplayProcesses:
    table: dict[str, Any] = field(default_factory=dict)

    def memory(self, pid: int) -> dict[str, int]:
        value = self.table.get(str(pid))
        if value is None:
            raise AdapterError(f"process {pid} is gone or not readable")
        return dict(value)


class ReplayAdapters(Adapters):
    """Adapters that return readings recorded earlier (a dict as written by :func:`record`).

    A reading stored as ``{"adapter_error": "reason"}`` raises AdapterError with that reason.
    """

    def __init__(self, readings: dict[str, Any]) -> None:
        self.readings = readings
        super().__init__(
            system=_Replay(readings.get("system", {"adapter_error": "not recorded"})),
            meminfo=_Replay(readings.get("meminfo", {"adapter_error": "not recorded"})),
            virtual_memory=_Replay(
                readings.get("virtual_memory", {"adapter_error": "not recorded"})
            ),
            nvml=_ReplayNvml(readings.get("nvml", {"adapter_error": "not recorded"})),
            backend=_Replay(readings.get("backend", {"adapter_error": "not recorded"})),
            processes=_ReplayProcesses(readings.get("processes", {})),
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ReplayAdapters:
        with open(path, encoding="utf-8") as fh:
            return cls(json.load(fh))


def record(adapters: Adapters | None = None) -> dict[str, Any]:
    """This machine's readings in the replay format (errors kept as ``adapter_error``)."""
    own = adapters is None
    ad = adapters or live_adapters()
    out: dict[str, Any] = {}
    try:
        for key in ("system", "meminfo", "virtual_memory", "nvml", "backend"):
            try:
                out[key] = getattr(ad, key).read()
            except AdapterError as exc:
                out[key] = {"adapter_error": str(exc)}
    finally:
        if own:
            ad.close()
    return out
