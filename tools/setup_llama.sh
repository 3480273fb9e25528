#!/usr/bin/env bash
# Build and install llama-cpp-python for this machine into the given Python's environment.
#   LLAMA_BACKEND=auto|cpu|cuda|metal   (auto: metal on macOS, cuda when an NVIDIA GPU and
#                                        nvcc are present, cpu otherwise)
#   LLAMA_CMAKE_ARGS="..."              extra CMake arguments (e.g. -DGGML_RPC=on)
#   CUDA_ARCHITECTURES="90;120"         CUDA targets (default: native GPU)
# The built wheel is cached per backend/version/Python/arch under the user's cache folder,
# so a second clone or a CI run on the same machine does not rebuild (about 4 minutes).
set -euo pipefail
PY=${1:?usage: setup_llama.sh PYTHON}
VERSION=$(sed -n 's/^llama-cpp-python==//p' "$(dirname "$0")/../constraints.txt")
[ -n "$VERSION" ] || { echo "llama-cpp-python is not pinned in constraints.txt" >&2; exit 1; }
BACKEND=${LLAMA_BACKEND:-auto}
if [ "$BACKEND" = auto ]; then
  if [ "$(uname -s)" = Darwin ]; then BACKEND=metal
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && command -v nvcc >/dev/null 2>&1; then BACKEND=cuda
  else BACKEND=cpu; fi
fi
case "$BACKEND" in
  cpu) CMAKE="-DGGML_NATIVE=ON" ;;
  cuda) CMAKE="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-native}" ;;
  metal) CMAKE="-DGGML_METAL=on" ;;
  *) echo "LLAMA_BACKEND must be auto, cpu, cuda or metal (got '$BACKEND')" >&2; exit 2 ;;
esac
CMAKE="$CMAKE ${LLAMA_CMAKE_ARGS:-}"
TAG="$BACKEND-$VERSION-$("$PY" -c 'import sys,platform;print(f"py{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')-$(echo "$CMAKE" | cksum | cut -d' ' -f1)"
MARKER="$("$PY" -c 'import sys;print(sys.prefix)')/.llama-backend"
if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$TAG" ] && "$PY" -c 'import llama_cpp' 2>/dev/null; then
  exit 0
fi
CACHE="${SPARK_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spark-launcher/wheels}/$TAG"
if ! ls "$CACHE"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "Building llama-cpp-python $VERSION for $BACKEND (a few minutes, once)..."
  mkdir -p "$CACHE.tmp"
  CMAKE_ARGS="$CMAKE" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)} \
    "$PY" -m pip wheel --no-cache-dir --no-deps --no-binary llama-cpp-python -w "$CACHE.tmp" "llama-cpp-python==$VERSION"
  rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
fi
"$PY" -m pip install -q --force-reinstall --no-deps "$CACHE"/llama_cpp_python-*.whl
echo "$TAG" > "$MARKER"
echo "llama-cpp-python $VERSION installed ($BACKEND)"
