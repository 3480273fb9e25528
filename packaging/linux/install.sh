#!/usr/bin/env bash
# Install (or remove) the Spark Launcher bundle for the current user; no root needed.
#
#   ./install.sh              install the bundle this script sits in (or dist/spark-launcher)
#   ./install.sh --uninstall  remove it again
#
# Where things go (XDG base directories):
#   bundle        ${SPARK_INSTALL_DIR:-$HOME/.local/opt/spark-launcher}
#   command       $HOME/.local/bin/spark-launcher (a symlink)
#   menu entry    ${XDG_DATA_HOME:-$HOME/.local/share}/applications/spark-launcher.desktop
#   icons         ${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/<size>/apps/spark-launcher.*
# The entry is installed with desktop-file-install (validates it) and indexed with
# update-desktop-database, so the app shows in the menu and opens on double-click.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
target="${SPARK_INSTALL_DIR:-$HOME/.local/opt/spark-launcher}"
bin_dir="$HOME/.local/bin"
apps="$data_home/applications"
icons="$data_home/icons/hicolor"

if [ -x "$here/spark-launcher" ] && [ -d "$here/_internal" ]; then
  src="$here"                                  # run from inside the bundle / tarball
else
  src="$(cd "$here/../.." && pwd)/dist/spark-launcher"   # run from the source tree
fi

uninstall() {
  rm -f "$apps/spark-launcher.desktop" "$bin_dir/spark-launcher"
  find "$icons" -path '*/apps/spark-launcher.*' -delete 2>/dev/null || true
  rm -rf "$target"
  command -v update-desktop-database >/dev/null && update-desktop-database -q "$apps" || true
  echo "Spark Launcher removed (your models, chats and settings are kept)."
}

if [ "${1:-}" = "--uninstall" ]; then uninstall; exit 0; fi
if [ ! -x "$src/spark-launcher" ]; then
  echo "error: no bundle at $src; build it first with 'make package'" >&2
  exit 1
fi

# Copy next to the target and swap it in with one rename, so a failed copy never leaves a
# half-installed app behind.
mkdir -p "$(dirname "$target")" "$bin_dir" "$apps"
staging="$target.installing.$$"
rm -rf "$staging"
if [ "$src" != "$target" ]; then
  cp -a "$src" "$staging"
  rm -rf "$target.old"
  [ -e "$target" ] && mv "$target" "$target.old"
  mv "$staging" "$target"
  rm -rf "$target.old"
fi
ln -sfn "$target/spark-launcher" "$bin_dir/spark-launcher"

icon_src="$target/share/icons/hicolor"
[ -d "$icon_src" ] || icon_src="$(cd "$here/../.." 2>/dev/null && pwd)/resources/icons/hicolor"
if [ -d "$icon_src" ]; then
  mkdir -p "$icons"
  cp -r "$icon_src/." "$icons/"
  mkdir -p "$icons/scalable/apps"
  svg="$(dirname "$icon_src")/spark-launcher.svg"
  [ -f "$svg" ] && cp "$svg" "$icons/scalable/apps/spark-launcher.svg"
  command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t -f "$icons" || true
fi

entry="$target/share/applications/spark-launcher.desktop"
[ -f "$entry" ] || entry="$here/spark-launcher.desktop"
if command -v desktop-file-install >/dev/null; then
  desktop-file-install --dir="$apps" \
    --set-key=Exec --set-value="$target/spark-launcher" \
    --set-key=TryExec --set-value="$target/spark-launcher" \
    "$entry"
else
  # desktop-file-utils is optional: the same result without validation.
  sed -e "s|^Exec=.*|Exec=$target/spark-launcher|" \
      -e "s|^TryExec=.*|TryExec=$target/spark-launcher|" "$entry" > "$apps/spark-launcher.desktop"
fi
command -v update-desktop-database >/dev/null && update-desktop-database -q "$apps" || true

echo "Spark Launcher installed in $target"
echo "  menu entry: $apps/spark-launcher.desktop"
case ":$PATH:" in
  *":$bin_dir:"*) echo "  command:    spark-launcher" ;;
  *) echo "  command:    $bin_dir/spark-launcher (add $bin_dir to PATH to type just spark-launcher)" ;;
esac
