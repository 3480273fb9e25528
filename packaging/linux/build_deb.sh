#!/usr/bin/env bash
# Wrap a built bundle into a .deb (dpkg-deb from Debian; no network, no extra tools).
#
#   bash packaging/linux/build_deb.sh dist/spark-launcher 0.1.0 dist
#
# Layout: /opt/spark-launcher/ (the bundle), /usr/bin/spark-launcher (symlink), the desktop
# entry in /usr/share/applications and the icons in /usr/share/icons/hicolor. The bundle carries
# its own Qt, Python and xcb libraries, so the only dependency is the C library it was built
# against (see BUILD-INFO.txt).
set -euo pipefail
app="$(cd "$1" && pwd)"
version="$2"
out="$(cd "$3" && pwd)"
arch="$(dpkg --print-architecture)"
glibc="$(awk '/^min_glibc/ {print $2}' "$app/BUILD-INFO.txt")"
stage="$(mktemp -d)"
chmod 755 "$stage"
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage/DEBIAN" "$stage/opt" "$stage/usr/bin" "$stage/usr/share/applications" \
  "$stage/usr/share/icons/hicolor/scalable/apps"
cp -a "$app" "$stage/opt/spark-launcher"
rm -f "$stage/opt/spark-launcher/install.sh"      # the package manager installs this one
ln -s /opt/spark-launcher/spark-launcher "$stage/usr/bin/spark-launcher"
sed -e 's|^Exec=.*|Exec=/opt/spark-launcher/spark-launcher|' \
    -e 's|^TryExec=.*|TryExec=/opt/spark-launcher/spark-launcher|' \
    packaging/linux/spark-launcher.desktop > "$stage/usr/share/applications/spark-launcher.desktop"
cp -r resources/icons/hicolor/. "$stage/usr/share/icons/hicolor/"
cp resources/icons/spark-launcher.svg "$stage/usr/share/icons/hicolor/scalable/apps/"
size_kb="$(du -sk "$stage" | cut -f1)"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: spark-launcher
Version: $version
Architecture: $arch
Maintainer: Spark Launcher developers <spark-launcher@users.noreply.github.com>
Installed-Size: $size_kb
Depends: libc6 (>= ${glibc:-2.36})
Recommends: libegl1, libfontconfig1, libdbus-1-3
Section: utils
Priority: optional
Homepage: https://github.com/spark-launcher/spark-launcher
Description: find, download, run and compare local LLMs that fit this machine
 A desktop app and CLI for llama.cpp: a live memory gauge, recommendations computed
 from GGUF headers, resumable verified Hugging Face downloads, chat with speed figures
 and side-by-side comparison. Self-contained: carries its own Python and Qt.
CONTROL
cat > "$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
command -v update-desktop-database >/dev/null && update-desktop-database -q /usr/share/applications || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor || true
POSTINST
cp "$stage/DEBIAN/postinst" "$stage/DEBIAN/postrm"
chmod 755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/postrm"
deb="$out/spark-launcher_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
echo "deb: $deb ($(du -m "$deb" | cut -f1) MB)"
