"""Render the app icon's PNG sizes from ``resources/icons/spark-launcher.svg``.

Run with the project's virtualenv: ``python packaging/render_icons.py``. It writes
``resources/icons/hicolor/<N>x<N>/apps/spark-launcher.png`` (the freedesktop icon-theme
layout, so the install script can copy the tree as is) and ``spark-launcher.ico`` for Windows
installers. Uses QtSvg from PySide6-Essentials, offscreen, so it runs headless.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "icons" / "spark-launcher.svg"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication([sys.argv[0]])  # noqa: F841 - QPainter on images needs one
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        print(f"error: cannot read {SVG}", file=sys.stderr)
        return 1
    images = {}
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(painter)
        painter.end()
        out = ROOT / "resources" / "icons" / "hicolor" / f"{size}x{size}" / "apps"
        out.mkdir(parents=True, exist_ok=True)
        image.save(str(out / "spark-launcher.png"))
        images[size] = image
    # Qt writes .ico only through an optional plugin, so assemble it by hand: an ICONDIR
    # header plus one PNG-compressed entry per size (valid since Windows Vista).
    _write_ico(ROOT / "resources" / "icons" / "spark-launcher.ico", images)
    print(f"rendered {len(SIZES)} PNG sizes and spark-launcher.ico from {SVG.name}")
    return 0


def _write_ico(path: Path, images: dict) -> None:  # type: ignore[type-arg]
    import struct

    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    blobs = []
    for size in ICO_SIZES:
        data = QByteArray()
        buf = QBuffer(data)
        buf.open(QIODevice.OpenModeFlag.WriteOnly)
        images[size].save(buf, "PNG")
        buf.close()
        blobs.append((size, bytes(data.data())))
    header = struct.pack("<HHH", 0, 1, len(blobs))
    offset = 6 + 16 * len(blobs)
    entries = b""
    for size, blob in blobs:
        dim = 0 if size >= 256 else size
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(blob), offset)
        offset += len(blob)
    path.write_bytes(header + entries + b"".join(b for _, b in blobs))


if __name__ == "__main__":
    sys.exit(main())
