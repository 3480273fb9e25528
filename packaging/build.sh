#!/usr/bin/env bash
# Build the installed app for this OS into dist/ (called by `make package`).
#
#   bash packaging/build.sh                  bundle + release archives (Linux: .tar.gz and .deb)
#   bash packaging/build.sh --bundle-only    just dist/spark-launcher/ (what the smoke test uses)
#
# Environment: PYTHON (default .venv/bin/python), SPARK_KEEP_WAYLAND=1 / SPARK_KEEP_GTK=1 (keep
# those Qt plugins), SPARK_DIST (default dist), SPARK_WORK (default build/pyinstaller).
# Prints the bundle size and the minimum glibc it needs, also written to BUILD-INFO.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
dist="${SPARK_DIST:-$root/dist}"
work="${SPARK_WORK:-$root/build/pyinstaller}"
archives=1
[ "${1:-}" = "--bundle-only" ] && archives=0

version="$("$python" -c 'import launcher; print(launcher.__version__)')"
os="$(uname -s | tr '[:upper:]' '[:lower:]')"
arch="$(uname -m)"
SECONDS=0

"$python" -m PyInstaller --noconfirm --log-level WARN \
  --distpath "$dist" --workpath "$work" packaging/spark-launcher.spec

case "$os" in
  linux)
    app="$dist/spark-launcher"
    internal="$app/_internal"
    # Strip only what is safe: libpython and the stdlib extensions. Never numpy.libs or other
    # auditwheel-patched libraries ("ELF load command address/offset not page-aligned").
    strip --strip-unneeded "$internal"/libpython3*.so* "$internal"/python3*/lib-dynload/*.so \
      2>/dev/null || true
    # PyInstaller adds top-level symlinks for Qt libraries before the spec prunes them; drop
    # the ones left dangling.
    find "$internal" -xtype l -delete
    # llama_cpp/lib: ctypes opens lib*.so, the libraries link each other by SONAME lib*.so.0;
    # the wheel has both as identical files, so make the .so a symlink (saves ~8 MB).
    for so in "$internal"/llama_cpp/lib/lib*.so; do
      [ -f "$so.0" ] && [ ! -L "$so" ] && cmp -s "$so" "$so.0" && ln -sfn "$(basename "$so").0" "$so"
    done
    # Qt's X11 plugin needs the xcb libraries a bare desktop lacks; PyInstaller copies them
    # only if this build machine has them.
    if ! ls "$internal"/libxcb-cursor.so.0* >/dev/null 2>&1; then
      echo "error: libxcb-cursor0 is not installed here, so the bundle would not open its" \
        "window on a bare desktop; run: sudo bash tools/check_qt_libs.sh --install" >&2
      exit 1
    fi
    # Desktop integration files travel inside the bundle, next to the install script.
    mkdir -p "$app/share/applications" "$app/share/icons"
    cp packaging/linux/spark-launcher.desktop "$app/share/applications/"
    cp -r resources/icons/hicolor "$app/share/icons/"
    cp resources/icons/spark-launcher.svg "$app/share/icons/"
    cp packaging/linux/install.sh "$app/install.sh"
    chmod +x "$app/install.sh"
    # Minimum glibc: the newest GLIBC_x.y symbol version any bundled ELF file asks for.
    glibc="$(find "$app" -type f \( -name '*.so*' -o -name spark-launcher \) -print0 \
      | xargs -0 objdump -T 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sort -uV | tail -1)"
    size_mb="$(du -sm "$app" | cut -f1)"
    printf 'spark-launcher %s %s-%s\nsize_mb %s\nmin_glibc %s\n' \
      "$version" "$os" "$arch" "$size_mb" "${glibc#GLIBC_}" > "$app/BUILD-INFO.txt"
    printf 'bundle: %s (%s MB, needs glibc >= %s) in %s s\n' "$app" "$size_mb" \
      "${glibc#GLIBC_}" "$SECONDS"
    if [ "$archives" = 1 ]; then
      tarball="$dist/spark-launcher-$version-linux-$arch.tar.gz"
      tar -C "$dist" -czf "$tarball" spark-launcher
      echo "tarball: $tarball ($(du -m "$tarball" | cut -f1) MB)"
      if command -v dpkg-deb >/dev/null; then
        bash packaging/linux/build_deb.sh "$app" "$version" "$dist"
      fi
    fi
    ;;
  darwin)
    echo "app: $dist/Spark Launcher.app; make the DMG with packaging/macos/make_dmg.sh"
    ;;
  *)
    echo "bundle: $dist/spark-launcher; build the installer with packaging/windows/*.iss"
    ;;
esac
