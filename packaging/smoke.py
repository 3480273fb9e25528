"""Helpers to build the bundle and drive it like a user would, for the smoke test and benchmark.

Used by ``tests/core/test_packaging_bundle.py`` and ``bench/package.py`` (loaded by file path:
``packaging`` is not a Python package, and must not be, since that name belongs to the PyPI
``packaging`` library). Nothing here imports Qt: the app runs as a separate process, on a
private Xvfb display, with a clean environment so the virtualenv cannot hide a missing library.

X11 handling is done with the X server's own tools (``xdotool``, ``xprop``, ``xwd``) plus one
ctypes call into libX11 to send ``WM_DELETE_WINDOW``, which is what a window manager's close
button does (no window manager runs under Xvfb, and Debian 12's xdotool cannot send it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("launcher", "ui", "packaging", "resources", "pyproject.toml")
NOT_IN_BUNDLE = {"smoke.py", "README.md"}  # changing these needs no rebuild


def newest_source_mtime(root: Path = ROOT) -> float:
    """The newest modification time among the files that go into the bundle."""
    newest = 0.0
    for name in SOURCES:
        path = root / name
        files = [path] if path.is_file() else path.rglob("*")
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts and f.name not in NOT_IN_BUNDLE:
                newest = max(newest, f.stat().st_mtime)
    # The virtualenv too: set-up, a rebuilt llama.cpp, or any package (un)installed (which
    # changes site-packages' directory entry).
    venv = root / ".venv"
    for marker in (
        venv / ".setup-stamp",
        venv / ".llama-backend",
        *venv.glob("lib/python*/site-packages"),
    ):
        if marker.exists():
            newest = max(newest, marker.stat().st_mtime)
    return newest


def build_bundle(dist: Path, work: Path, root: Path = ROOT, reuse: bool = True) -> Path:
    """Build ``dist/spark-launcher`` with ``packaging/build.sh --bundle-only``; return the folder.

    With ``reuse``, a bundle already built after the last source change is returned as is.
    """
    app = dist / "spark-launcher"
    info = app / "BUILD-INFO.txt"
    if reuse and info.exists() and info.stat().st_mtime > newest_source_mtime(root):
        return app
    env = {**os.environ, "SPARK_DIST": str(dist), "SPARK_WORK": str(work)}
    out = subprocess.run(
        ["bash", str(root / "packaging" / "build.sh"), "--bundle-only"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bundle build failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return app


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """A bare environment, as a desktop session would give a freshly installed app."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **extra}


def ensure_x_tools() -> str | None:
    """Make Xvfb and the X and desktop tools available (apt-get when root); say why not."""
    needed = {
        "Xvfb": "xvfb",
        "xdotool": "xdotool",
        "xprop": "x11-utils",
        "xwd": "x11-apps",
        "desktop-file-install": "desktop-file-utils",
        "gio": "libglib2.0-bin",
    }
    missing = sorted({pkg for tool, pkg in needed.items() if not shutil.which(tool)})
    if not missing:
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"needs {' '.join(missing)} (apt-get install -y {' '.join(missing)})"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", *missing]
    res = subprocess.run(install, capture_output=True, text=True, env=env)
    if res.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        res = subprocess.run(install, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return f"could not install {' '.join(missing)}: {res.stderr.strip()[-300:]}"
    return None


@contextmanager
def xvfb(width: int = 1280, height: int = 800) -> Iterator[str]:
    """Run a private Xvfb server; yield its DISPLAY (``:N``); stop it on exit.

    ``-noreset``: by default the server resets whenever its last client disconnects, and the
    app connecting during such a reset (while our polling tools come and go) fails with
    "could not connect to display".
    """
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24",
         "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as fh:
            number = fh.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        display = f":{number}"
        # Wait until the server answers a real request before starting any client.
        deadline = time.monotonic() + 20
        while subprocess.run(
            ["xprop", "-display", display, "-root", "-len", "0", "_XKB_RULES_NAMES"],
            capture_output=True,
        ).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Xvfb on {display} does not accept connections")
            time.sleep(0.05)
        yield display
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _x(display: str, *cmd: str) -> str:
    env = {**os.environ, "DISPLAY": display}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30).stdout


def wait_for_window(
    display: str, title: str, timeout: float = 60.0, alive: subprocess.Popen[bytes] | None = None
) -> int:
    """Wait until a visible top-level window named ``title`` is mapped; return its X id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = _x(display, "xdotool", "search", "--onlyvisible", "--name", f"^{title}$").split()
        if ids:
            return int(ids[0])
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(f"the app exited with code {alive.returncode} before its window")
        time.sleep(0.02)
    raise TimeoutError(f"no window named {title!r} within {timeout:.0f} s")


def window_property(display: str, window: int, name: str) -> str:
    """The value part of ``xprop -id WINDOW NAME`` (e.g. ``"spark-launcher", "Spark Launcher"``)."""
    line = _x(display, "xprop", "-id", str(window), name).strip()
    return line.split("=", 1)[1].strip() if "=" in line else ""


def screenshot(display: str, out_png: Path, window: int | None = None) -> None:
    """Save the screen (or one window) as PNG, via ``xwd`` and :func:`xwd_to_png`."""
    target = ["-id", str(window)] if window else ["-root"]
    xwd = subprocess.run(
        ["xwd", *target, "-silent"],
        capture_output=True,
        env={**os.environ, "DISPLAY": display},
        timeout=30,
        check=True,
    ).stdout
    out_png.write_bytes(xwd_to_png(xwd))


def xwd_to_png(data: bytes) -> bytes:
    """Convert a 24/32-bit TrueColor XWD dump (what Xvfb gives) to PNG bytes.

    Hand-written (struct + zlib) so screenshots need neither ImageMagick nor Pillow.
    """
    import struct
    import zlib

    fields = struct.unpack(">25I", data[:100])
    header_size, width, height = fields[0], fields[4], fields[5]
    byte_order, bits_per_pixel, bytes_per_line = fields[7], fields[11], fields[12]
    red_mask, ncolors = fields[14], fields[19]
    if bits_per_pixel != 32:
        raise ValueError(f"only 32 bits per pixel XWD is supported (got {bits_per_pixel})")
    # Byte offsets of R, G, B inside one 4-byte pixel.
    lsb = byte_order == 0
    order = (2, 1, 0) if red_mask == 0xFF0000 else (0, 1, 2)
    if not lsb:
        order = tuple(3 - i for i in order)
    start = header_size + 12 * ncolors
    raw = bytearray()
    for y in range(height):
        row = data[start + y * bytes_per_line : start + y * bytes_per_line + 4 * width]
        rgb = bytearray(3 * width)
        rgb[0::3], rgb[1::3], rgb[2::3] = row[order[0] :: 4], row[order[1] :: 4], row[order[2] :: 4]
        raw += b"\x00" + rgb

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(raw), 6))
        + chunk(b"IEND", b"")
    )


class _XClientMessageEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("message_type", ctypes.c_ulong),
        ("format", ctypes.c_int),
        ("data", ctypes.c_long * 5),
    ]


class _XEvent(ctypes.Union):
    _fields_ = [("xclient", _XClientMessageEvent), ("pad", ctypes.c_long * 24)]


def close_window(display: str, window: int) -> None:
    """Ask the window to close, as a title bar's close button does (``WM_DELETE_WINDOW``)."""
    name = ctypes.util.find_library("X11")
    if not name:
        raise RuntimeError("libX11 is not installed")
    x11 = ctypes.CDLL(name)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [
        ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.POINTER(_XEvent)
    ]  # fmt: skip
    x11.XFlush.argtypes = [ctypes.c_void_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    dpy = x11.XOpenDisplay(display.encode())
    if not dpy:
        raise RuntimeError(f"cannot open display {display}")
    try:
        event = _XEvent()
        event.xclient.type = 33  # ClientMessage
        event.xclient.window = window
        event.xclient.message_type = x11.XInternAtom(dpy, b"WM_PROTOCOLS", 0)
        event.xclient.format = 32
        event.xclient.data[0] = x11.XInternAtom(dpy, b"WM_DELETE_WINDOW", 0)
        event.xclient.data[1] = 0  # CurrentTime
        x11.XSendEvent(dpy, window, 0, 0, ctypes.byref(event))
        x11.XFlush(dpy)
    finally:
        x11.XCloseDisplay(dpy)


def installed_app_screenshot(out_png: Path, settle_s: float = 4.0) -> Path:
    """Install the bundle for a throwaway user, start it from its menu entry with ``gio launch``
    (what a double-click does), screenshot the window, close it; return the PNG path."""
    import tempfile

    import psutil

    why = ensure_x_tools()
    if why:
        raise RuntimeError(why)
    cache = ROOT / ".cache" / "packaging"
    app = build_bundle(cache / "dist", cache / "work")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = clean_env(home)
        subprocess.run(["bash", str(app / "install.sh")], env=env, check=True, timeout=300)
        entry = home / ".local" / "share" / "applications" / "spark-launcher.desktop"
        with xvfb(1400, 900) as display:
            gio_env = {**env, "DISPLAY": display, "XDG_DATA_HOME": str(home / ".local" / "share")}
            subprocess.run(["gio", "launch", str(entry)], env=gio_env, check=True, timeout=60)
            window = wait_for_window(display, "Spark Launcher")
            proc = psutil.Process(int(window_property(display, window, "_NET_WM_PID")))
            try:
                time.sleep(settle_s)  # let the first views fill in (probe, catalog)
                screenshot(display, out_png, window)
                close_window(display, window)
                proc.wait(60)
            finally:
                if proc.is_running():
                    proc.kill()
    return out_png


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["screenshot"] or len(sys.argv) != 3:
        print("usage: python packaging/smoke.py screenshot OUT.png", file=sys.stderr)
        sys.exit(2)
    print(installed_app_screenshot(Path(sys.argv[2])))
