#!/usr/bin/env bash
# The GPU checks (../shared/reference/gpu-checks.md) on a lent NVIDIA machine, in one call:
# build llama.cpp with CUDA from the carried llama-cpp-python sdist (shared libraries and
# llama-bench from one CMake run), put the sdist's own Python package on top of those
# libraries (LLAMA_CPP_LIB_PATH), then run bench/gpu_checks.py.
#
# Prepared here by tools/gpu_prepare.sh into .gpu/ (ignored): sdist.tar.gz (the sdist without
# its tokenizer test vocabularies and docs) and site/ (pure-Python packages missing there).
# There: bash tools/gpu_check.sh "$OUT" [SECONDS]. The build goes to .gpu-build/ (ignored,
# not carried), so a second call on a still-warm machine skips it.
set -u
OUT=${1:?usage: gpu_check.sh OUT_DIR [SECONDS]}
BUDGET=${2:-500}
T0=$(date +%s)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=/tmp/llama-src
BUILD=$ROOT/.gpu-build
LL=$SRC/llama_cpp_python-0.3.36
mkdir -p "$OUT" "$SRC" /tmp/site
[ -d "$LL" ] || tar xzf "$ROOT/.gpu/sdist.tar.gz" -C "$SRC"
# CPU flags fixed (not -march=native): the lent machine's CPU may have AMX (see #13), and
# with every layer on the GPU the CPU kernels barely run.
ARGS="-DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
-DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DLLAMA_BUILD_SERVER=OFF"
ARGS=${GPU_CHECK_CMAKE:-$ARGS}  # a CPU build here, to try the script before device time
if [ ! -x "$BUILD/bin/llama-bench" ]; then
    echo "building llama.cpp: $ARGS"
    # shellcheck disable=SC2086
    { cmake -S "$LL/vendor/llama.cpp" -B "$BUILD" -G Ninja $ARGS &&
      cmake --build "$BUILD" --target llama-bench llama-batched-bench llama -j "$(nproc)"; } >"$OUT/build.log" 2>&1 ||
        { tail -40 "$OUT/build.log"; exit 1; }
fi
BUILD_S=$(($(date +%s) - T0))
echo "build: ${BUILD_S} s"
LIB=$(dirname "$(find "$BUILD" -name 'libllama.so' | head -1)")
rm -rf /tmp/site/llama_cpp && cp -r "$LL/llama_cpp" /tmp/site/llama_cpp
export LLAMA_CPP_LIB_PATH=$LIB
export LD_LIBRARY_PATH=$LIB:$BUILD/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONPATH=/tmp/site:$ROOT/.gpu/site:$ROOT
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
cd "$ROOT" && ${GPU_CHECK_PYTHON:-python3} -m bench.gpu_checks --bench "$BUILD/bin/llama-bench" --out "$OUT" \
    --batched-bench "$BUILD/bin/llama-batched-bench" --budget-s $((BUDGET - BUILD_S)) \
    --build-s "$BUILD_S" --cmake-args "$(echo $ARGS)" \
    --shapes "${GPU_CHECK_SHAPES:-}"
