"""The library finds models other tools already have, in place, and deletes/imports safely.

Fake LM Studio, Ollama, llama.cpp and Hugging Face cache folders are built in the test (the HF
cache by the real ``hf_hub_download`` against the loopback hub, so its layout is the real one).
"""

from __future__ import annotations

import hashlib
import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download

from launcher.cli import main as cli_main
from launcher.errors import GGUFError, LauncherError
from launcher.library import (
    SOURCE_HF_CACHE,
    SOURCE_IMPORTED,
    SOURCE_LIBRARY,
    SOURCE_LLAMACPP,
    SOURCE_LMSTUDIO,
    SOURCE_OLLAMA,
    DiscoveryRoots,
    Library,
)
from tests.support.hub_fixtures import make_gguf
from tests.support.loopback_hub import LoopbackHub


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def other_tools(
    hub: LoopbackHub, app_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    """A home folder where LM Studio, Ollama, llama.cpp and the HF cache each hold a model."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    monkeypatch.delenv("LLAMA_CACHE", raising=False)
    hf_home = home / ".cache" / "huggingface"
    monkeypatch.setenv("HF_HOME", str(hf_home))

    hub.add_repo("bartowski/Qwen-GGUF", {"Qwen-Q5_K_M.gguf": make_gguf("qwen2", file_type=17)})
    hf = hf_hub_download(
        "bartowski/Qwen-GGUF", "Qwen-Q5_K_M.gguf", cache_dir=hf_home / "hub", endpoint=hub.url
    )
    lms = _write(
        home / ".lmstudio/models/lmstudio-community/Phi-GGUF/Phi-Q8_0.gguf",
        make_gguf("phi3", file_type=7, context=8192),
    )
    _write(home / ".lmstudio/models/lmstudio-community/Phi-GGUF/mmproj-Phi-F16.gguf", make_gguf())
    # An incomplete split set (1 of 2) must not be offered.
    _write(
        home / ".cache/lm-studio/models/x/Big-GGUF/Big-Q4_K_M-00001-of-00002.gguf",
        make_gguf(split=(0, 2)),
    )
    blob_data = make_gguf("gemma3", file_type=15, context=32768)
    digest = hashlib.sha256(blob_data).hexdigest()
    ollama = home / ".ollama/models"
    blob = _write(ollama / f"blobs/sha256-{digest}", blob_data)
    _write(ollama / "blobs/sha256-abc", b"{}")  # a config blob, not a model
    manifest = {
        "schemaVersion": 2,
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}"},
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:abc"},
        ],
    }
    _write(
        ollama / "manifests/registry.ollama.ai/library/gemma3/270m",
        json.dumps(manifest).encode(),
    )
    llama = _write(
        home / ".cache/llama.cpp/ggml-org_tiny-GGUF_tiny-Q4_0.gguf", make_gguf(file_type=2)
    )
    return {"hf": Path(hf), "lmstudio": lms, "ollama": blob, "llama.cpp": llama, "home": home}


def test_finds_every_tools_models_in_place(other_tools: dict[str, Path]) -> None:
    lib = Library()  # default roots, read from HOME/HF_HOME now
    models = {m.source: m for m in lib.scan()}
    assert set(models) == {SOURCE_HF_CACHE, SOURCE_LMSTUDIO, SOURCE_OLLAMA, SOURCE_LLAMACPP}
    hf = models[SOURCE_HF_CACHE]
    assert hf.path == other_tools["hf"] and hf.repo_id == "bartowski/Qwen-GGUF"
    assert (hf.architecture, hf.quant) == ("qwen2", "Q5_K_M")
    lms = models[SOURCE_LMSTUDIO]
    assert lms.path == other_tools["lmstudio"] and lms.quant == "Q8_0"
    assert lms.context_length == 8192 and lms.repo_id == "lmstudio-community/Phi-GGUF"
    ol = models[SOURCE_OLLAMA]
    assert ol.name == "gemma3:270m" and ol.path == other_tools["ollama"]
    assert ol.architecture == "gemma3"
    assert models[SOURCE_LLAMACPP].quant == "Q4_0"
    assert all(not m.owned and m.size > 0 for m in models.values())
    # Nothing was copied into our folder.
    assert not lib.models_dir.exists() or not any(lib.models_dir.rglob("*.gguf"))
    # The scan settings can switch other tools off.
    assert lib.scan(other_tools=False) == []


def test_delete_never_touches_other_tools_files_without_saying_so(
    other_tools: dict[str, Path],
) -> None:
    lib = Library()
    models = {m.source: m for m in lib.scan()}
    lms = models[SOURCE_LMSTUDIO]
    with pytest.raises(LauncherError, match="belongs to LM Studio"):
        lib.delete(lms)
    assert lms.path.exists()
    with pytest.raises(LauncherError, match="ollama rm gemma3:270m"):
        lib.delete(models[SOURCE_OLLAMA], allow_foreign=True)
    res = lib.delete(lms, allow_foreign=True)
    assert res.freed_bytes == lms.size and not lms.path.exists()
    assert "LM Studio" in res.message
    hf = models[SOURCE_HF_CACHE]
    blob = hf.path.resolve()
    res = lib.delete(hf, allow_foreign=True)
    assert not blob.exists() and res.freed_bytes == hf.size


def test_import_in_place_or_by_copy_and_delete_ours(app_home: Path, tmp_path: Path) -> None:
    lib = Library(roots=DiscoveryRoots())
    src = _write(tmp_path / "downloads/My-Model-Q6_K.gguf", make_gguf("llama", file_type=18))
    not_gguf = _write(tmp_path / "downloads/notes.gguf", b"hello")
    with pytest.raises(GGUFError):
        lib.import_file(not_gguf)
    m = lib.import_file(src)
    assert m.source == SOURCE_IMPORTED and m.path == src and m.quant == "Q6_K"
    res = lib.delete(m)
    assert res.freed_bytes == 0 and src.exists() and "kept" in res.message
    assert lib.scan() == []

    copied = lib.import_file(src, copy=True)
    assert copied.source == SOURCE_LIBRARY and copied.owned
    assert copied.path.is_relative_to(lib.models_dir) and src.exists()
    res = lib.delete(copied)
    assert res.freed_bytes == src.stat().st_size and not copied.path.exists()
    assert "freed" in res.message


def test_models_command_lists_where_each_model_lives(other_tools: dict[str, Path]) -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli_main(["models", "--json"]) == 0
    rows = json.loads(out.getvalue())
    assert {r["source"] for r in rows} == {"hf-cache", "lmstudio", "ollama", "llama.cpp"}
    assert all(Path(r["path"]).exists() for r in rows)
    assert {r["source_name"] for r in rows} >= {"LM Studio", "Ollama"}
