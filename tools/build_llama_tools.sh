#!/usr/bin/env bash
# Build llama.cpp's own tools (llama-server, rpc-server, ...) from the llama.cpp source vendored
# in the llama-cpp-python sdist the engine runs, so tests talk to the exact same llama.cpp.
#
#   tools/build_llama_tools.sh TARGET...      e.g. tools/build_llama_tools.sh llama-server rpc-server
#
# Executables land in ~/.cache/spark-launcher/llama-tools-<version>/bin/ (SPARK_LLAMA_TOOLS to
# move it) and each target is built once per user, so a fresh clone or a CI run on the same
# machine finds them (bench/common.py: llama_tools_bin()). One CMake
# build folder serves every target (server and RPC backend both on), so a second target only
# compiles its own files. Two builds started at once are safe: they take turns on a lock file.
# Environment: PYTHON (for `pip download`, default .venv/bin/python), CMAKE_BUILD_PARALLEL_LEVEL
# (jobs, default 2), SPARK_LLAMA_TOOLS_CMAKE_ARGS (extra CMake flags, e.g. -DGGML_CUDA=ON;
# default -DGGML_NATIVE=ON). Prints the path of each executable, one a line.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 TARGET... (e.g. llama-server rpc-server)" >&2
    exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="0.3.36"  # keep in step with llama-cpp-python in constraints.txt
TOOLS="${SPARK_LLAMA_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/spark-launcher/llama-tools-$VERSION}"
BIN="$TOOLS/bin"
BUILD="$TOOLS/build"
SRC="$TOOLS/llama_cpp_python-$VERSION/vendor/llama.cpp"
SDIST_DIR="$ROOT/.cache/sdist"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
JOBS="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
EXTRA="${SPARK_LLAMA_TOOLS_CMAKE_ARGS:--DGGML_NATIVE=ON}"

missing=()
for target in "$@"; do
    [ -x "$BIN/$target" ] || missing+=("$target")
done
if [ "${#missing[@]}" -eq 0 ]; then
    for target in "$@"; do echo "$BIN/$target"; done
    exit 0
fi

mkdir -p "$TOOLS" "$BIN"
# One build at a time (the RPC and the remote-engine tests may both ask); the lock is released
# by the OS when this shell exits, however it exits.
exec 9>"$TOOLS/build.lock"
if ! flock -n 9; then
    echo "another llama.cpp tools build is running; waiting for it..." >&2
    flock 9
fi

if [ ! -f "$SRC/CMakeLists.txt" ]; then
    sdist=""
    # The throughput benchmark may already have downloaded the same sdist.
    for candidate in "${XDG_CACHE_HOME:-$HOME/.cache}/spark-launcher/sdist/llama_cpp_python-$VERSION.tar.gz" \
        "$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz" \
        "$ROOT/.cache/llama-bench/llama_cpp_python-$VERSION.tar.gz"; do
        if [ -f "$candidate" ]; then sdist="$candidate"; break; fi
    done
    if [ -z "$sdist" ]; then
        mkdir -p "$SDIST_DIR"
        # --no-binary for this package only: ":all:" would also build pip's build
        # dependencies from source just to read their metadata.
        "$PYTHON" -m pip download -q --no-deps --no-binary llama-cpp-python \
            "llama-cpp-python==$VERSION" -d "$SDIST_DIR"
        sdist="$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz"
    fi
    tmp="$(mktemp -d "$TOOLS/unpack.XXXXXX")"
    tar -xzf "$sdist" -C "$tmp" "llama_cpp_python-$VERSION/vendor/llama.cpp"
    rm -rf "$TOOLS/llama_cpp_python-$VERSION"
    mv "$tmp/llama_cpp_python-$VERSION" "$TOOLS/"
    rmdir "$tmp"
fi

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    # No web UI (it would need npm or a download), no curl, static libraries so the
    # executables run from anywhere; the RPC backend is on for rpc-server and --rpc.
    # shellcheck disable=SC2086
    cmake -S "$SRC" -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        -DGGML_RPC=ON $EXTRA >&2
fi
# llama.cpp names the RPC server's CMake target (and file) ggml-rpc-server; rpc-server is the
# name its README uses, so both are accepted.
cmake_target() { if [ "$1" = rpc-server ]; then echo ggml-rpc-server; else echo "$1"; fi; }
cmake_targets=()
for target in "${missing[@]}"; do cmake_targets+=("$(cmake_target "$target")"); done
cmake --build "$BUILD" --target "${cmake_targets[@]}" -j "$JOBS" >&2

for target in "${missing[@]}"; do
    # Copy then rename, so a reader never sees a half-written executable.
    cp "$BUILD/bin/$(cmake_target "$target")" "$BIN/.$target.tmp"
    mv -f "$BIN/.$target.tmp" "$BIN/$target"
done
for target in "$@"; do echo "$BIN/$target"; done
