#!/usr/bin/env bash
# Build and install llama-cpp-python for this machine into the given Python's environment.
#   LLAMA_BACKEND=auto|cpu|cuda|metal   (auto: metal on macOS, cuda when an NVIDIA GPU and
#                                        nvcc are present, cpu otherwise)
#   LLAMA_CMAKE_ARGS="..."              extra CMake arguments (e.g. -DGGML_RPC=on)
#   CUDA_ARCHITECTURES="90;120"         CUDA targets (default: native GPU)
#   SPARK_LLAMA_AMX=auto|off|on         Intel AMX kernels (auto: off on a CPU that has AMX,
#                                        where they crash: llama.cpp issue 20824; the build is
#                                        then this CPU's instruction sets less AMX)
# The built wheel is cached per backend/version/Python/arch under the user's cache folder,
# so a second clone or a CI run on the same machine does not rebuild (about 4 minutes).
# `setup_llama.sh --print-plan` prints the backend, the reasons and the CMake arguments, and
# builds nothing (SPARK_CPUINFO names another /proc/cpuinfo, for tests).
set -euo pipefail
if [ "${1:-}" = --print-plan ]; then PLAN_ONLY=1; PY=${2:-python3}; else PLAN_ONLY=0; PY=${1:?usage: setup_llama.sh PYTHON | --print-plan [PYTHON]}; fi
VERSION=$(sed -n 's/^llama-cpp-python==//p' "$(dirname "$0")/../constraints.txt")
[ -n "$VERSION" ] || { echo "llama-cpp-python is not pinned in constraints.txt" >&2; exit 1; }
BACKEND=${LLAMA_BACKEND:-auto}
WHY="LLAMA_BACKEND=$BACKEND was asked for"
if [ "$BACKEND" = auto ]; then
  # nvcc is often not on PATH where the CUDA toolkit is installed (DGX Spark, .deb and .run
  # installs put it in /usr/local/cuda/bin): look there too rather than build for the CPU.
  NVCC=$(command -v nvcc 2>/dev/null || true)
  for d in ${CUDA_HOME:+$CUDA_HOME/bin} /usr/local/cuda/bin; do
    [ -z "$NVCC" ] && [ -x "$d/nvcc" ] && NVCC="$d/nvcc"
  done
  if [ "$(uname -s)" = Darwin ]; then BACKEND=metal; WHY="macOS: Metal"
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    if [ -n "$NVCC" ]; then
      BACKEND=cuda; WHY="an NVIDIA GPU and the CUDA compiler ($NVCC)"
      case ":$PATH:" in *":$(dirname "$NVCC"):"*) ;; *) export PATH="$(dirname "$NVCC"):$PATH" ;; esac
    else
      BACKEND=cpu
      WHY="an NVIDIA GPU but no CUDA compiler (nvcc not on PATH nor in /usr/local/cuda/bin): install the CUDA toolkit for a GPU build; this build runs on the CPU only"
    fi
  else BACKEND=cpu; WHY="no NVIDIA GPU found"; fi
fi
case "$BACKEND" in
  cpu) CMAKE="-DGGML_NATIVE=ON" ;;
  cuda) CMAKE="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-native}" ;;
  metal) CMAKE="-DGGML_METAL=on" ;;
  *) echo "LLAMA_BACKEND must be auto, cpu, cuda or metal (got '$BACKEND')" >&2; exit 2 ;;
esac
# Intel AMX: a native build on an AMX CPU compiles llama.cpp's AMX kernels, which crash on
# the first token (llama.cpp issue 20824). Build for this CPU's instruction sets without them,
# which keeps the CPU backend's weight repacking (BENCHMARKS.md: extra buffer types).
AMX=${SPARK_LLAMA_AMX:-auto}
CPUINFO=${SPARK_CPUINFO:-/proc/cpuinfo}
FLAGS=" $(grep -m1 '^flags' "$CPUINFO" 2>/dev/null | cut -d: -f2) "
if [ "$AMX" = auto ]; then
  case "$FLAGS" in *" amx_int8 "*|*" amx_tile "*) AMX=off ;; *) AMX=on ;; esac
fi
if [ "$AMX" = off ] && [ "$BACKEND" != metal ]; then
  ISA="-DGGML_NATIVE=OFF"
  for pair in sse4_2:SSE42 f16c:F16C fma:FMA bmi2:BMI2 avx:AVX avx2:AVX2 avx_vnni:AVX_VNNI \
              avx512f:AVX512 avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
    case "$FLAGS" in *" ${pair%%:*} "*) ISA="$ISA -DGGML_${pair#*:}=ON" ;; *) ISA="$ISA -DGGML_${pair#*:}=OFF" ;; esac
  done
  ISA="$ISA -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  CMAKE="${CMAKE/-DGGML_NATIVE=ON/$ISA}"
  [ "$CMAKE" = "${CMAKE/-DGGML_NATIVE=OFF/}" ] && CMAKE="$CMAKE $ISA"
  WHY="$WHY; this CPU's instruction sets without the Intel AMX kernels (llama.cpp issue 20824)"
fi
CMAKE="$CMAKE ${LLAMA_CMAKE_ARGS:-}"  # exactly so: the wheel cache's tag is a checksum of it
if [ "$PLAN_ONLY" = 1 ]; then
  printf 'backend=%s\nwhy=%s\ncmake=%s\n' "$BACKEND" "$WHY" "$CMAKE"
  exit 0
fi
echo "llama.cpp backend: $BACKEND ($WHY)"
TAG="$BACKEND-$VERSION-$("$PY" -c 'import sys,platform;print(f"py{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')-$(echo "$CMAKE" | cksum | cut -d' ' -f1)"
MARKER="$("$PY" -c 'import sys;print(sys.prefix)')/.llama-backend"
if [ -f "$MARKER" ] && [ "$(head -n1 "$MARKER")" = "$TAG" ] && "$PY" -c 'import llama_cpp' 2>/dev/null; then
  exit 0
fi
CACHE="${SPARK_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spark-launcher/wheels}/$TAG"
# The sdist is kept (not only the wheel): its vendored llama.cpp has the chat templates and
# tool-call formats the tests read, and tools/build_llama_tools.sh builds llama-server from it.
SDIST_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/spark-launcher/sdist"
SDIST="$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz"
fetch_sdist() {
  mkdir -p "$SDIST_DIR"
  "$PY" -m pip download -q --no-deps --no-binary llama-cpp-python -d "$SDIST_DIR.tmp" "llama-cpp-python==$VERSION" &&
    mv "$SDIST_DIR.tmp/llama_cpp_python-$VERSION.tar.gz" "$SDIST" && rm -rf "$SDIST_DIR.tmp"
}
if ! ls "$CACHE"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  [ -f "$SDIST" ] || fetch_sdist
  echo "Building llama-cpp-python $VERSION for $BACKEND (a few minutes, once)..."
  mkdir -p "$CACHE.tmp"
  CMAKE_ARGS="$CMAKE" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)} \
    "$PY" -m pip wheel --no-cache-dir --no-deps -w "$CACHE.tmp" "$SDIST"
  rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
fi
[ -f "$SDIST" ] || fetch_sdist || echo "note: the llama-cpp-python sdist could not be kept (template tests will skip)" >&2
"$PY" -m pip install -q --force-reinstall --no-deps "$CACHE"/llama_cpp_python-*.whl
printf '%s\nbackend=%s\ncmake=%s\n' "$TAG" "$BACKEND" "$CMAKE" > "$MARKER"
echo "llama-cpp-python $VERSION installed ($BACKEND)"
