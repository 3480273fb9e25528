"""Hub access: search and sorting, GGUF choices by quantisation and split set, gated/private
repos, tokens stored like ``hf auth login``, and ``HF_ENDPOINT`` read at call time."""

from __future__ import annotations

import io
import json
import stat
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from launcher.cli import main as cli_main
from launcher.errors import HubAccessError, HubError, HubNotFoundError
from launcher.hub import (
    check_access,
    get_token,
    list_gguf_files,
    quant_of,
    redact,
    save_token,
    search_models,
)
from tests.support.hub_fixtures import make_gguf
from tests.support.loopback_hub import LoopbackHub


@pytest.fixture
def populated(hub: LoopbackHub) -> LoopbackHub:
    g = make_gguf()
    hub.add_repo(
        "a/Llama-GGUF", {"x-Q4_K_M.gguf": g}, downloads=10, likes=90, last_modified="2025-03-01"
    )
    hub.add_repo(
        "b/Qwen-GGUF", {"x-Q4_K_M.gguf": g}, downloads=99, likes=5, last_modified="2025-01-01"
    )
    hub.add_repo(
        "c/Mistral-GGUF", {"x-Q4_K_M.gguf": g}, downloads=50, likes=1, last_modified="2025-06-01"
    )
    hub.add_repo("d/not-a-gguf", {"model.safetensors": b"x"}, downloads=1000, tags=["safetensors"])
    return hub


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("downloads", ["b/Qwen-GGUF", "c/Mistral-GGUF", "a/Llama-GGUF"]),
        ("likes", ["a/Llama-GGUF", "b/Qwen-GGUF", "c/Mistral-GGUF"]),
        ("recent", ["c/Mistral-GGUF", "a/Llama-GGUF", "b/Qwen-GGUF"]),
    ],
)
def test_search_finds_gguf_repos_sorted(
    populated: LoopbackHub, sort: str, order: list[str]
) -> None:
    found = search_models("GGUF", sort=sort)  # type: ignore[arg-type]
    assert [r.repo_id for r in found] == order
    assert [r.repo_id for r in search_models("qwen")] == ["b/Qwen-GGUF"]
    assert len(search_models("", limit=2)) == 2


def test_search_command_json(populated: LoopbackHub) -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli_main(["search", "gguf", "--sort", "likes", "--json"]) == 0
    rows = json.loads(out.getvalue())
    assert rows[0]["repo_id"] == "a/Llama-GGUF" and rows[0]["likes"] == 90


def test_repo_files_grouped_by_quant_with_split_sets_as_one_choice(hub: LoopbackHub) -> None:
    files = {
        "M-Q4_K_M.gguf": make_gguf(pad_to=4000),
        "M-Q8_0.gguf": make_gguf(pad_to=8000),
        "M-UD-IQ2_XXS.gguf": make_gguf(pad_to=2000),
        "Q6_K/M-Q6_K-00001-of-00002.gguf": make_gguf(split=(0, 2), pad_to=3000),
        "Q6_K/M-Q6_K-00002-of-00002.gguf": make_gguf(split=(1, 2), pad_to=3000),
        "broken-Q2_K-00001-of-00003.gguf": make_gguf(),  # parts 2 and 3 missing
        "README.md": b"# readme",
    }
    hub.add_repo("me/M-GGUF", files)
    listing = list_gguf_files("me/M-GGUF")
    labels = {c.label: c for c in listing.choices}
    assert set(labels) == {"Q4_K_M", "Q8_0", "UD-IQ2_XXS", "Q6_K (2 parts)"}
    split = labels["Q6_K (2 parts)"]
    assert split.is_split and split.total_size == 6000 and split.quant == "Q6_K"
    assert [f.path for f in split.files] == [
        "Q6_K/M-Q6_K-00001-of-00002.gguf",
        "Q6_K/M-Q6_K-00002-of-00002.gguf",
    ]
    q8 = listing.choose(quant="q8_0")
    assert q8.first_file.size == 8000
    assert q8.first_file.sha256 == hub.file("me/M-GGUF", "M-Q8_0.gguf").sha256
    assert q8.revision == hub.repos["me/M-GGUF"].sha  # pinned to the commit listed
    assert listing.choose(filename="M-Q4_K_M.gguf").label == "Q4_K_M"
    assert listing.skipped == ("broken-Q2_K-00001-of-00003.gguf",)
    with pytest.raises(HubNotFoundError, match="Available: UD-IQ2_XXS"):
        listing.choose(quant="Q3_K_S")
    with pytest.raises(HubError, match="pick one with --quant"):
        listing.choose()


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("Qwen3-8B-Q4_K_M.gguf", "Q4_K_M"),
        ("gemma-3-27b-it-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"),
        ("model.IQ3_XXS.gguf", "IQ3_XXS"),
        ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
        ("Llama-3.1-8B-Instruct-bf16.gguf", "BF16"),
        ("phi-4-q8_0.gguf", "Q8_0"),
        ("no-quant-here.gguf", None),
    ],
)
def test_quant_labels_from_file_names(name: str, quant: str | None) -> None:
    assert quant_of(name) == quant


def test_gated_and_private_repos_explain_what_to_do(hub: LoopbackHub) -> None:
    hub.add_repo("org/gated-GGUF", {"g-Q4_K_M.gguf": make_gguf()}, gated=True)
    hub.add_repo("org/private-GGUF", {"p-Q4_K_M.gguf": make_gguf()}, private=True)
    listing = list_gguf_files("org/gated-GGUF")  # the file list of a gated repo is public
    assert listing.gated
    remote = listing.choose().first_file
    with pytest.raises(HubAccessError, match="accept its terms") as err:
        check_access(remote, token="")
    assert "hf auth login" in str(err.value)
    check_access(remote, token=hub.token)
    with pytest.raises(HubNotFoundError, match="private"):
        list_gguf_files("org/private-GGUF", token="")
    assert list_gguf_files("org/private-GGUF", token=hub.token).private


def test_token_is_stored_like_hf_auth_login_and_env_wins(
    app_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_TOKEN_PATH", raising=False)
    assert get_token() is None
    path = save_token("hf_StoredToken000000000000000")
    assert path == tmp_path / "hf-home" / "token"  # HF_HOME from app_home
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert get_token() == "hf_StoredToken000000000000000"
    monkeypatch.setenv("HF_TOKEN", "hf_EnvToken1111111111111111")
    assert get_token() == "hf_EnvToken1111111111111111"
    assert redact("Bearer hf_EnvToken1111111111111111 and hf_Other2222222222222222222222") == (
        "Bearer hf_*** and hf_***"
    )
    with pytest.raises(HubAccessError):
        save_token("not a token")


def test_hf_endpoint_is_read_at_call_time(
    hub: LoopbackHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo("me/E-GGUF", {"e-Q4_K_M.gguf": make_gguf()})
    remote = list_gguf_files("me/E-GGUF").choose()
    assert remote.first_file.url.startswith(hub.url + "/me/E-GGUF/resolve/")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(HubError, match=r"Could not reach the Hub at http://127\.0\.0\.1:9"):
        list_gguf_files("me/E-GGUF")
