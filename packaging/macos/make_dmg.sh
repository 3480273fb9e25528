#!/usr/bin/env bash
# macOS: build "Spark Launcher.app" (Metal build of llama.cpp) and wrap it in a DMG.
#   bash packaging/macos/make_dmg.sh            # on an Apple Silicon Mac, from the repo root
# Steps and signing notes: packaging/macos/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python="${PYTHON:-.venv/bin/python}"
version="$("$python" -c 'import launcher; print(launcher.__version__)')"
arch="$(uname -m)"

# 1. llama-cpp-python with Metal (the default on Apple Silicon; forced here to be explicit).
#    The Metal shaders are embedded in libggml-metal (GGML_METAL_EMBED_LIBRARY, default on).
if ! "$python" -c 'import llama_cpp, sys; sys.exit(0 if "Metal" in llama_cpp.llama_print_system_info().decode() or "MTL" in llama_cpp.llama_print_system_info().decode() else 1)' 2>/dev/null; then
  CMAKE_ARGS="-DGGML_METAL=on -DCMAKE_OSX_ARCHITECTURES=$arch" \
    "$python" -m pip install --no-binary llama-cpp-python --force-reinstall --no-deps "llama-cpp-python==0.3.36"
fi

# 2. The icon set: .icns from the PNG sizes (iconutil ships with macOS).
iconset="$(mktemp -d)/spark-launcher.iconset"
mkdir -p "$iconset"
for s in 16 32 128 256 512; do
  cp "resources/icons/hicolor/${s}x${s}/apps/spark-launcher.png" "$iconset/icon_${s}x${s}.png"
done
for s in 16 128 256; do
  d=$((s * 2)); cp "resources/icons/hicolor/${d}x${d}/apps/spark-launcher.png" "$iconset/icon_${s}x${s}@2x.png"
done
cp resources/icons/hicolor/64x64/apps/spark-launcher.png "$iconset/icon_32x32@2x.png"
iconutil -c icns "$iconset" -o resources/icons/spark-launcher.icns

# 3. The .app (the spec's BUNDLE step on macOS).
SPARK_VERSION="$version" "$python" -m PyInstaller --noconfirm --log-level WARN packaging/spark-launcher.spec
app="dist/Spark Launcher.app"
"$app/Contents/MacOS/spark-launcher-cli" --version

# 4. Optional signing and notarization (needs a Developer ID; unsigned apps need right-click > Open).
if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  codesign --deep --force --options runtime --timestamp --sign "$CODESIGN_IDENTITY" "$app"
fi

# 5. The DMG: the app plus a link to /Applications, compressed (hdiutil ships with macOS).
stage="$(mktemp -d)"
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
dmg="dist/SparkLauncher-$version-macos-$arch.dmg"
rm -f "$dmg"
hdiutil create -volname "Spark Launcher" -srcfolder "$stage" -ov -format UDZO "$dmg"
if [ -n "${NOTARY_PROFILE:-}" ]; then
  xcrun notarytool submit "$dmg" --keychain-profile "$NOTARY_PROFILE" --wait
  xcrun stapler staple "$dmg"
fi
echo "dmg: $dmg"
