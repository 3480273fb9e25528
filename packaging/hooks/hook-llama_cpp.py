"""PyInstaller hook for llama-cpp-python: collect llama.cpp's shared libraries and runtimes.

No hook exists upstream or in pyinstaller-hooks-contrib, and llama_cpp loads its libraries with
ctypes from ``llama_cpp/lib`` (so PyInstaller's import analysis never sees them): a bundle
built without this hook fails with "Shared library with base name 'llama' not found".

* All platforms: every shared library in ``llama_cpp/lib``, kept under ``llama_cpp/lib`` where
  the loader looks. On Linux the wheel stores each library three times as real files
  (``libllama.so``, ``.so.0``, ``.so.0.5.0``; pip does not keep symlinks); the fully versioned
  name is never loaded by anything, so it is left out (the ``.so`` is what ctypes opens and the
  ``.so.0`` SONAME is what the others link against).
* macOS: Metal shader sources or libraries, if the build did not embed them.
* Windows: the OpenMP runtime ``vcomp140.dll`` (PyInstaller otherwise picks it up only by chance)
  and, for a CUDA build, the CUDA runtime DLLs next to ``ggml-cuda.dll`` (a user machine has no
  CUDA toolkit, and llama_cpp only adds ``%CUDA_PATH%\\bin`` to the DLL search path).
* The GPU driver itself (libcuda, nvcuda.dll, libnvidia-*) is never bundled: it must match the
  installed kernel driver; see ``packaging/cuda/README.md``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from PyInstaller.utils.hooks import collect_data_files, collect_dynamic_libs

_FULL_VERSION = re.compile(r"\.so\.\d+\.\d+(\.\d+)?$")

binaries = [
    (src, dest) for src, dest in collect_dynamic_libs("llama_cpp") if not _FULL_VERSION.search(src)
]
datas = collect_data_files("llama_cpp", includes=["**/*.metal", "**/*.metallib"])
hiddenimports = ["llama_cpp.llama_cpp", "llama_cpp.mtmd_cpp", "llama_cpp._ggml"]
excludedimports = ["llama_cpp.server"]

if sys.platform == "win32":
    system32 = Path(os.environ.get("SYSTEMROOT", r"C:\Windows")) / "System32"
    for dll in ("vcomp140.dll", "msvcp140.dll", "vcruntime140.dll", "vcruntime140_1.dll"):
        for folder in (Path(sys.base_prefix), system32):
            if (folder / dll).exists():
                binaries.append((str(folder / dll), "."))
                break
    has_cuda = any(Path(src).name.lower().startswith("ggml-cuda") for src, _ in binaries)
    cuda_bin = Path(os.environ.get("CUDA_PATH", "")) / "bin"
    if has_cuda and cuda_bin.is_dir():
        for pattern in ("cudart64_*.dll", "cublas64_*.dll", "cublasLt64_*.dll"):
            for dll in cuda_bin.glob(pattern):
                binaries.append((str(dll), "llama_cpp/lib"))
