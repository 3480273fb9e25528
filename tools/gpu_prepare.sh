#!/usr/bin/env bash
# Prepare .gpu/ (ignored) for tools/gpu_check.sh on a lent GPU machine, which has no network
# and lacks a few of our pure-Python dependencies:
#   .gpu/sdist.tar.gz  the llama-cpp-python sdist (kept by set-up) without its .git, tokenizer
#                      test vocabularies, docs and examples: about 12 MB instead of 76
#   .gpu/site/         gguf, diskcache and platformdirs copied from .venv (pure Python)
# Then, with the device tool: carry [".gpu"], command: bash tools/gpu_check.sh "$OUT" 500
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VERSION=0.3.36
SDIST=${SDIST:-$HOME/.cache/spark-launcher/sdist/llama_cpp_python-$VERSION.tar.gz}
cd "$ROOT"
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >>.git/info/exclude
grep -qx "/.gpu-build/" .git/info/exclude || echo "/.gpu-build/" >>.git/info/exclude
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar xzf "$SDIST" -C "$tmp"
src=$tmp/llama_cpp_python-$VERSION
rm -rf "$src/.git" "$src/vendor/llama.cpp/models" "$src/vendor/llama.cpp/docs" \
    "$src/vendor/llama.cpp/benches" "$src/examples" "$src/docker"
mkdir -p .gpu
tar czf .gpu/sdist.tar.gz -C "$tmp" "llama_cpp_python-$VERSION"
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -rf .gpu/site && mkdir -p .gpu/site
for pkg in gguf diskcache platformdirs; do cp -r "$site/$pkg" .gpu/site/; done
find .gpu/site -name __pycache__ -prune -exec rm -rf {} +
du -sh .gpu
