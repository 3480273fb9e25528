"""Child process: ask the installed llama.cpp/ggml what it was built with and what it sees.

Run as ``python -m launcher.hardware.backend_query``; prints one JSON line::

    {"llama_cpp_version": "0.3.36", "supports_gpu_offload": true,
     "system_info": "CUDA : ARCHS = 1210 | ... CPU : NEON = 1 | ...",
     "devices": [{"name": "CUDA0", "description": "NVIDIA GB10", "type": "igpu",
                  "memory_free": 123, "memory_total": 456}, ...]}

Querying device memory creates a CUDA context (hundreds of MiB that only go away with the
process), so the app never does this in its own process. llama-cpp-python binds neither
``ggml_backend_dev_*`` function, so they are bound here with ctypes from the ggml library
it ships in ``llama_cpp/lib``.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

# enum ggml_backend_dev_type in ggml/include/ggml-backend.h
DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}

_LIB_NAMES = ("libggml.so", "libggml.dylib", "ggml.dll", "libggml.dll")


def _load_ggml(lib_dir: Path) -> ctypes.CDLL:
    for name in _LIB_NAMES:
        path = lib_dir / name
        if path.exists():
            return ctypes.CDLL(str(path))
    # Fall back on llama-cpp-python's own loader (it knows its platform's naming).
    from llama_cpp import _ggml

    return _ggml.libggml


def ggml_devices(lib: ctypes.CDLL) -> list[dict[str, Any]]:
    """Every ggml backend device with its type and the memory it reports."""
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_count.argtypes = []
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    for fn in (lib.ggml_backend_dev_name, lib.ggml_backend_dev_description):
        fn.restype = ctypes.c_char_p
        fn.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_memory.restype = None
    lib.ggml_backend_dev_memory.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.POINTER(ctypes.c_size_t),
    ]
    out = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        out.append(
            {
                "name": (lib.ggml_backend_dev_name(dev) or b"").decode(errors="replace"),
                "description": (lib.ggml_backend_dev_description(dev) or b"").decode(
                    errors="replace"
                ),
                "type": DEVICE_TYPES.get(lib.ggml_backend_dev_type(dev), "other"),
                "memory_free": int(free.value),
                "memory_total": int(total.value),
            }
        )
    return out


_LLAMA_NAMES = ("libllama.so", "libllama.dylib", "llama.dll", "libllama.dll")


def llama_lib_dir() -> Path | None:
    """``llama_cpp/lib`` found without importing llama_cpp (which pulls in numpy, jinja2...)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


#: What to do about a llama.cpp built without the RPC backend.
RPC_REBUILD_FIX = (
    "Rebuild llama-cpp-python with the RPC backend: "
    "`rm .venv/.setup-stamp && LLAMA_CMAKE_ARGS=-DGGML_RPC=on make setup`."
)
_RPC_LIB_NAMES = ("libggml-rpc.so", "libggml-rpc.dylib", "ggml-rpc.dll")


def rpc_library(lib_dir: Path | None = None) -> Path | None:
    """The installed llama.cpp's RPC backend library, or None when built without RPC."""
    lib_dir = lib_dir if lib_dir is not None else llama_lib_dir()
    if lib_dir is None:
        return None
    for name in _RPC_LIB_NAMES:
        if (lib_dir / name).exists():
            return lib_dir / name
    return None


def _direct_libllama(lib_dir: Path) -> ctypes.CDLL | None:
    if sys.platform == "win32" and lib_dir.is_dir():
        os.add_dll_directory(str(lib_dir))
    for name in _LLAMA_NAMES:
        if (lib_dir / name).exists():
            return ctypes.CDLL(str(lib_dir / name))
    return None


def query() -> dict[str, Any]:
    """The reading this child prints (errors as ``{"error": ...}``).

    libllama is loaded directly with ctypes (fast: no numpy import); if that fails (e.g. a
    Windows CUDA build whose DLL folders only llama-cpp-python knows), llama_cpp is imported.
    """
    try:
        version: str | None = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        version = None
    lib_dir = llama_lib_dir()
    llama: Any = None
    if lib_dir is not None:
        try:
            llama = _direct_libllama(lib_dir)
        except OSError:
            llama = None
    if llama is not None:
        llama.llama_supports_gpu_offload.restype = ctypes.c_bool
        llama.llama_supports_gpu_offload.argtypes = []
        llama.llama_print_system_info.restype = ctypes.c_char_p
        llama.llama_print_system_info.argtypes = []
    else:
        try:
            import llama_cpp
        except Exception as exc:  # ImportError, or OSError when the library won't load
            return {"error": f"llama-cpp-python cannot be loaded ({exc}); reinstall it"}
        llama = llama_cpp
        lib_dir = Path(llama_cpp.__file__).parent / "lib"
    out: dict[str, Any] = {
        "llama_cpp_version": version,
        "supports_gpu_offload": bool(llama.llama_supports_gpu_offload()),
        "system_info": (llama.llama_print_system_info() or b"").decode(errors="replace").strip(),
    }
    try:
        if lib_dir is None:
            raise OSError("llama_cpp/lib was not found")
        out["devices"] = ggml_devices(_load_ggml(lib_dir))
    except (OSError, AttributeError, ImportError) as exc:
        out["devices_error"] = f"the ggml device list is not available ({exc})"
    return out


def query_in_spawned_child(timeout: float) -> dict[str, Any] | None:
    """Run :func:`query` in a ``multiprocessing`` spawn child; None if it gave no answer.

    Used inside the PyInstaller bundle, where ``sys.executable -m`` is not available but
    spawn children re-enter the bundle (``freeze_support`` in its entry point).
    """
    from launcher.childproc import call_in_child

    value = call_in_child(query, (), name="backend-query", timeout=timeout).value
    return value if isinstance(value, dict) else None


def main() -> int:
    print(json.dumps(query()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
