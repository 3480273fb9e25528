"""The loopback hub is faithful: the real ``huggingface_hub`` client works against it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

from tests.support.hub_fixtures import make_gguf
from tests.support.loopback_hub import LoopbackHub, Synthetic


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_hf_hub_download_model_info_tree_and_search(hub: LoopbackHub, tmp_path: Path) -> None:
    tiny = make_gguf()
    hub.add_repo("me/tiny-GGUF", {"tiny-Q4_K_M.gguf": tiny, "README.md": b"# hi"}, downloads=5)
    hub.add_repo("me/other-GGUF", {"o-Q8_0.gguf": make_gguf(file_type=7)}, downloads=50)
    api = HfApi(endpoint=hub.url)

    local = hf_hub_download(
        "me/tiny-GGUF", "tiny-Q4_K_M.gguf", cache_dir=tmp_path / "c", endpoint=hub.url
    )
    assert Path(local).read_bytes() == tiny

    info = api.model_info("me/tiny-GGUF", files_metadata=True)
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    assert sizes["tiny-Q4_K_M.gguf"] == len(tiny)
    lfs = {s.rfilename: s.lfs for s in info.siblings or []}
    assert lfs["tiny-Q4_K_M.gguf"] is not None
    assert lfs["tiny-Q4_K_M.gguf"].sha256 == _sha(tiny)

    tree = {f.path: f for f in api.list_repo_tree("me/tiny-GGUF", recursive=True)}
    assert tree["tiny-Q4_K_M.gguf"].lfs.sha256 == _sha(tiny)  # type: ignore[union-attr]
    paths = api.get_paths_info("me/tiny-GGUF", ["tiny-Q4_K_M.gguf"])
    assert paths[0].size == len(tiny)

    found = [m.id for m in api.list_models(search="GGUF", filter="gguf", sort="downloads")]
    assert found == ["me/other-GGUF", "me/tiny-GGUF"]


def test_ranges_faults_and_gated(hub: LoopbackHub, tmp_path: Path) -> None:
    import httpx2

    big = Synthetic(size=3 * 2**20 + 5, head=b"GGUF")
    hub.add_repo("me/big", {"big.gguf": big})
    hub.add_repo("me/locked", {"l.gguf": b"GGUF" + bytes(100)}, gated=True)
    url = f"{hub.url}/me/big/resolve/main/big.gguf"
    with httpx2.Client() as client:
        r = client.get(url, headers={"Range": "bytes=10-19"})
        assert r.status_code == 206
        assert r.headers["Content-Range"] == f"bytes 10-19/{big.size}"
        assert len(r.content) == 10
        hub.fault("me/big/big.gguf", "drop", at=2**20)
        with pytest.raises(httpx2.TransportError):
            client.get(url).read()
    assert hub.bytes_served["me/big/big.gguf"] == 10 + 2**20

    with pytest.raises(GatedRepoError):
        hf_hub_download("me/locked", "l.gguf", cache_dir=tmp_path / "c", endpoint=hub.url)
    ok = hf_hub_download(
        "me/locked", "l.gguf", cache_dir=tmp_path / "c", endpoint=hub.url, token=hub.token
    )
    assert Path(ok).stat().st_size == 104

    hub.fault("me/big", "status", status=500, times=None)
    with pytest.raises(HfHubHTTPError):
        HfApi(endpoint=hub.url).model_info("me/big")
