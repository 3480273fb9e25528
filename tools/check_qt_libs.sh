#!/usr/bin/env bash
# Say exactly which system libraries Qt's X11 platform plugin still needs on this Linux
# desktop (a bare machine lacks them; the bundled app carries its own). Prints nothing when
# all are present or when not on Linux. The tests run offscreen and do not need them.
# With --install (root + apt-get) it installs them; set-up runs it that way.
[ "$(uname -s)" = Linux ] || exit 0
missing=()
for lib in libxcb-cursor.so.0 libxcb-icccm.so.4 libxcb-keysyms.so.1 libxcb-image.so.0 \
           libxcb-render-util.so.0 libxkbcommon-x11.so.0 libxcb-shape.so.0 libxcb-xkb.so.1 \
           libEGL.so.1 libfontconfig.so.1; do
  ldconfig -p 2>/dev/null | grep -q "$lib" || missing+=("$lib")
done
[ ${#missing[@]} -eq 0 ] && exit 0
# --install: as root on Debian/Ubuntu, install them instead of only saying what is missing.
if [ "${1:-}" = --install ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libxcb-cursor0 libxcb-icccm4 \
    libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxkbcommon-x11-0 libxcb-shape0 \
    libegl1 libfontconfig1 >/dev/null && exit 0
fi
echo "note: to open the window on this desktop, Qt needs: ${missing[*]}"
echo "      on Debian/Ubuntu: sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxkbcommon-x11-0 libxcb-shape0 libegl1 libfontconfig1"
exit 1
