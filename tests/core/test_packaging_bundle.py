"""Smoke test of the installed app: build the PyInstaller bundle, then use it as a user would.

Everything runs the bundled ``spark-launcher`` executable in a clean environment (only PATH,
HOME, LANG and DISPLAY or QT_QPA_PLATFORM, like ``env -i``), so the virtualenv cannot hide a
library the bundle forgot. The bundle is built once per session into ``.cache/packaging`` and
reused while no source file is newer. Linux only (the other OSes build on their own machines).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
DESKTOP = ROOT / "packaging" / "linux" / "spark-launcher.desktop"
TITLE = "Spark Launcher"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="the Linux bundle is tested on Linux"),
]


def _load_smoke() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "spark_packaging_smoke", ROOT / "packaging" / "smoke.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


smoke = _load_smoke()


@pytest.fixture(scope="module")
def bundle() -> Path:
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("PyInstaller is not installed (pip install -e '.[test]')")
    cache = ROOT / ".cache" / "packaging"
    return smoke.build_bundle(cache / "dist", cache / "work")


@pytest.fixture(scope="module")
def exe(bundle: Path) -> Path:
    return bundle / "spark-launcher"


@pytest.fixture(scope="module")
def x_tools() -> None:
    why = smoke.ensure_x_tools()
    if why:
        pytest.skip(f"no X server for the window test: {why}")


def _run(
    exe: Path, *args: str, home: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = smoke.clean_env(home, QT_QPA_PLATFORM="offscreen")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=env, cwd=home, timeout=timeout
    )


def test_bundle_is_self_contained_and_trimmed(bundle: Path) -> None:
    info = dict(line.split(" ", 1) for line in (bundle / "BUILD-INFO.txt").read_text().splitlines())
    internal = bundle / "_internal"
    # llama.cpp's libraries are where llama_cpp's ctypes loader looks for them.
    assert (internal / "llama_cpp" / "lib" / "libllama.so").exists()
    # Qt's X11 plugin and the xcb libraries a bare desktop lacks travel with the app.
    assert (internal / "PySide6" / "Qt" / "plugins" / "platforms" / "libqxcb.so").exists()
    assert list(internal.glob("libxcb-cursor.so*")), "libxcb-cursor must be bundled"
    # Trimmed: no Qt translations, no QML/Quick, no unused platform plugins.
    assert not (internal / "PySide6" / "Qt" / "translations").exists()
    assert not list(internal.rglob("libQt6Quick.so*"))
    assert not (internal / "PySide6" / "Qt" / "plugins" / "platforms" / "libqvnc.so").exists()
    assert int(info["size_mb"]) < 260, f"bundle grew to {info['size_mb']} MB"
    dangling = [p for p in bundle.rglob("*") if p.is_symlink() and not p.exists()]
    assert not dangling, f"broken links in the bundle: {dangling[:5]}"
    assert info["min_glibc"].startswith("2.")


def test_bundle_answers_version_in_clean_env(exe: Path, tmp_path: Path) -> None:
    out = _run(exe, "--version", home=tmp_path)
    assert out.returncode == 0, out.stderr
    import launcher

    assert out.stdout.strip() == f"spark-launcher {launcher.__version__}"


def test_bundle_probe_json(exe: Path, tmp_path: Path) -> None:
    commands = _run(exe, "--help", home=tmp_path).stdout
    if " probe" not in commands and "{probe" not in commands and ",probe" not in commands:
        pytest.skip("this build has no probe command yet")
    out = _run(exe, "probe", "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    profile = json.loads(out.stdout)
    assert profile, "probe --json printed an empty document"


def test_bundle_runs_gemma_in_a_model_host(exe: Path, tmp_path: Path, gemma_path: Path) -> None:
    # The real engine: EngineClient starts a spawn model-host process, which must re-enter
    # the frozen executable and find llama.cpp's libraries inside the bundle.
    out = _run(exe, "--self-test", str(gemma_path), "--tokens", "8", home=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["frozen"], result
    assert result["tokens"] == 8
    assert "France" in result["text"]


def test_bundle_bench_command_measures_gemma(exe: Path, tmp_path: Path, gemma_path: Path) -> None:
    # The public CLI path a user would run: discovered command, model host, real numbers.
    out = _run(
        exe, "bench", str(gemma_path), "--tokens", "8", "--ctx", "512", "--json", home=tmp_path
    )
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["generated_tokens"] == 8
    assert result["decode_tokens_per_s"] > 0 and result["ttft_s"] > 0


def test_bundle_opens_a_real_window_and_closes_it(exe: Path, tmp_path: Path, x_tools: None) -> None:
    wm_class = next(
        line.split("=", 1)[1] for line in DESKTOP.read_text().splitlines()
        if line.startswith("StartupWMClass=")
    )  # fmt: skip
    with smoke.xvfb() as display:
        env = smoke.clean_env(tmp_path, DISPLAY=display)
        proc = subprocess.Popen(
            [str(exe)], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            window = smoke.wait_for_window(display, TITLE, alive=proc)
            # The menu entry groups the window under its icon only if WM_CLASS matches.
            assert f'"{wm_class}"' in smoke.window_property(display, window, "WM_CLASS")
            smoke.close_window(display, window)
            rc = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            if proc.stdout:
                proc.stdout.close()
    assert rc == 0, output


def test_desktop_entry_is_valid() -> None:
    smoke.ensure_x_tools()
    if not shutil.which("desktop-file-validate"):
        pytest.skip("desktop-file-validate missing (apt-get install -y desktop-file-utils)")
    out = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout


def test_installed_app_opens_from_its_desktop_entry(
    bundle: Path, tmp_path: Path, x_tools: None
) -> None:
    if not shutil.which("gio"):
        pytest.skip("gio missing (apt-get install -y libglib2.0-bin)")
    home = tmp_path / "home"
    home.mkdir()
    env = smoke.clean_env(home)
    out = subprocess.run(
        ["bash", str(bundle / "install.sh")], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    entry = home / ".local" / "share" / "applications" / "spark-launcher.desktop"
    installed = home / ".local" / "opt" / "spark-launcher" / "spark-launcher"
    assert f"Exec={installed}" in entry.read_text()
    assert (home / ".local/share/icons/hicolor/256x256/apps/spark-launcher.png").exists()
    assert (home / ".local" / "bin" / "spark-launcher").resolve() == installed

    with smoke.xvfb() as display:
        gio_env = {**env, "DISPLAY": display, "XDG_DATA_HOME": str(home / ".local" / "share")}
        subprocess.run(["gio", "launch", str(entry)], env=gio_env, check=True, timeout=60)
        window = smoke.wait_for_window(display, TITLE)
        pid = int(smoke.window_property(display, window, "_NET_WM_PID"))
        app = psutil.Process(pid)
        try:
            assert Path(app.exe()) == installed
            smoke.close_window(display, window)
            app.wait(60)  # not our child (gio started it): the exit code is not ours to read
            assert not app.is_running()
        finally:
            if app.is_running():
                app.kill()

    out = subprocess.run(
        ["bash", str(bundle / "install.sh"), "--uninstall"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0 and not entry.exists() and not installed.exists()
