"""``catalog refresh`` against the loopback Hub: exact sizes and headers, stored atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.catalog import Catalog, refresh, refreshed_path
from launcher.cli import main
from launcher.errors import HubError
from launcher.gguf import read_header
from launcher.paths import AppPaths
from tests.support.gguf_builders import TINY_QWEN3, build_model
from tests.support.loopback_hub import LoopbackHub, Synthetic

GiB = 1 << 30


def _serve_qwen3_8b(hub: LoopbackHub, tmp_path: Path) -> int:
    """Serve Qwen/Qwen3-8B-GGUF: a real (tiny) qwen3 header as its Q4_K_M, sizes for the rest."""
    header_file = build_model(tmp_path / "q.gguf", header_only=True, quant="Q8_0", **TINY_QWEN3)
    h = read_header(header_file)
    head = header_file.read_bytes()[: h.data_offset]
    hub.add_repo(
        "Qwen/Qwen3-8B-GGUF",
        {
            "Qwen3-8B-Q4_K_M.gguf": Synthetic(
                h.declared_size, head=head, fill="zeros", sha256="ab" * 32
            ),
            "Qwen3-8B-Q5_K_M.gguf": Synthetic(5_851_114_272, fill="zeros", sha256="cd" * 32),
            # Q8_0 deliberately absent: the refresh reports it and keeps the bundled figure
        },
    )
    return h.declared_size


def test_refresh_updates_sizes_and_keeps_other_repos(
    hub: LoopbackHub, tmp_path: Path, app_home: Path
) -> None:
    paths = AppPaths.default()
    before = Catalog.load(paths)
    q4_size = _serve_qwen3_8b(hub, tmp_path)
    report = refresh(paths=paths)
    assert report.repos_checked == 1
    assert report.files_updated == 2
    assert "Qwen/Qwen3-8B-GGUF/Qwen3-8B-Q8_0.gguf" in report.missing
    assert any(f.startswith("Qwen/Qwen3-32B-GGUF:") for f in report.failed)  # not on this hub
    assert refreshed_path(paths).is_file()

    after = Catalog.load(paths)
    q4 = after.get("qwen3-8b").quant("Q4_K_M")
    q5 = after.get("qwen3-8b").quant("Q5_K_M")
    assert q4 is not None and q5 is not None
    assert q4.size_bytes == q4_size and q4.sha256 == ("ab" * 32,)
    assert q5.size_bytes == 5_851_114_272 and q5.size_status == "verified"
    assert "Hugging Face Hub" in q5.size_source
    assert after.refreshed is not None
    # untouched entries keep their bundled figures
    assert after.get("qwen3-32b") == before.get("qwen3-32b")
    # requests went to HF_ENDPOINT (the loopback hub), through launcher.hub
    assert any(r.path.startswith("/api/models/Qwen/Qwen3-8B-GGUF") for r in hub.requests)


def test_refresh_with_an_explicit_api_asks_only_for_the_catalog_files(
    hub: LoopbackHub, tmp_path: Path, app_home: Path
) -> None:
    from huggingface_hub import HfApi

    _serve_qwen3_8b(hub, tmp_path)
    report = refresh(api=HfApi(endpoint=hub.url), paths=AppPaths.default())
    assert report.files_updated == 2
    assert any("paths-info" in r.path for r in hub.requests)


def test_refresh_with_headers_makes_plans_exact(
    hub: LoopbackHub, tmp_path: Path, app_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _serve_qwen3_8b(hub, tmp_path)
    assert main(["catalog", "refresh", "--headers", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["headers_read"] == 1  # Q4_K_M has a real header...
    assert any("Qwen3-8B-Q5_K_M.gguf: header:" in f for f in report["failed"])  # ...Q5 is zeros
    cat = Catalog.load(AppPaths.default())
    cand = next(c for c in cat.candidates() if c.key == "qwen3-8b:Q4_K_M")
    assert cand.summary_is_exact
    assert cand.summary.n_layers == TINY_QWEN3["n_layers"]  # the header wins over config.json
    # a later sizes-only refresh of the same file keeps the header summary
    refresh(paths=AppPaths.default())
    again = Catalog.load(AppPaths.default())
    assert next(c for c in again.candidates() if c.key == "qwen3-8b:Q4_K_M").summary_is_exact


def test_refresh_with_no_repo_reachable_changes_nothing(hub: LoopbackHub, app_home: Path) -> None:
    # the loopback hub holds no repos: every paths-info request fails
    paths = AppPaths.default()
    with pytest.raises(HubError, match="bundled catalog is still used"):
        refresh(paths=paths)
    assert not refreshed_path(paths).exists()
    assert Catalog.load(paths).get("qwen3-8b").quants
