#!/usr/bin/env bash
# Build the CUDA flavour of the Linux bundle (x86_64 desktops with RTX 40/50, H100/H200, or
# aarch64 DGX Spark / GB10). Needs the CUDA toolkit (nvcc) 12.9+; 13.x recommended.
#
#   bash packaging/cuda/build_cuda.sh            # from the repo root, after make setup
#
# CUDA_ARCHITECTURES (default "89;90;120;121"): 89 = Ada (RTX 40), 90 = Hopper (H100/H200),
# 120 = Blackwell desktop (RTX 50), 121 = GB10 (DGX Spark) / N1X (RTX Spark). Each one adds
# device code and build time (about 2-4 min per architecture on 16 cores).
# The CPU side is built portable (x86-64-v3: AVX2/FMA/F16C, Haswell and later; armv8.2 with
# dotprod on aarch64), not -march=native, because the bundle runs on other machines.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python="${PYTHON:-.venv/bin/python}"
command -v nvcc >/dev/null || { echo "error: nvcc not found; install the CUDA toolkit and put its bin/ on PATH" >&2; exit 1; }
cuda_home="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"

case "$(uname -m)" in
  x86_64) cpu_flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" ;;
  aarch64) cpu_flags="-DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16" ;;
  *) cpu_flags="-DGGML_NATIVE=OFF" ;;
esac

LLAMA_BACKEND=cuda \
CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES:-89;90;120;121}" \
LLAMA_CMAKE_ARGS="$cpu_flags ${LLAMA_CMAKE_ARGS:-}" \
  bash tools/setup_llama.sh "$python"

# PyInstaller follows libggml-cuda.so's DT_NEEDED entries and copies the CUDA runtime it finds
# (libcudart.so.*, libcublas.so.*, libcublasLt.so.*) into the bundle; make sure it finds the
# toolkit's copies. The spec refuses the driver's own libraries (libcuda.so.1, libnvidia-*):
# those must come from the installed driver, which must be new enough for the toolkit used.
export LD_LIBRARY_PATH="$cuda_home/lib64:$cuda_home/targets/$(uname -m)-linux/lib:${LD_LIBRARY_PATH:-}"
bash packaging/build.sh "$@"

internal=dist/spark-launcher/_internal
missing=0
for lib in libcudart.so libcublas.so libcublasLt.so; do
  ls "$internal"/"$lib".* >/dev/null 2>&1 || { echo "error: $lib.* is not in the bundle" >&2; missing=1; }
done
if ls "$internal"/libcuda.so* >/dev/null 2>&1; then
  echo "error: the driver library libcuda.so was bundled; it must come from the system" >&2; missing=1
fi
[ "$missing" = 0 ] && echo "CUDA bundle OK: $(du -sm dist/spark-launcher | cut -f1) MB (the CUDA runtime is most of it)"
exit "$missing"
