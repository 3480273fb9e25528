"""Downloads set aside after a sha256 mismatch: the library lists them (never as models) and
deletes one only on request, only such files, only inside the models folder."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from launcher.downloads import RetryPolicy, download_choice
from launcher.errors import ChecksumMismatch, LauncherError
from launcher.hub import list_gguf_files
from launcher.library import DiscoveryRoots, Library, parse_set_aside, set_aside_path
from tests.support.hub_fixtures import make_gguf
from tests.support.loopback_hub import LoopbackHub

REPO = "me/setaside-GGUF"
NAME = "setaside-Q4_K_M.gguf"
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=4)


@pytest.fixture
def lib(app_home: Path) -> Library:
    return Library(roots=DiscoveryRoots())


def test_a_corrupt_download_is_listed_as_set_aside_and_can_be_deleted(
    hub: LoopbackHub, lib: Library
) -> None:
    data = make_gguf(name="setaside") + random.Random(3).randbytes(1_500_000)
    hub.add_repo(REPO, {NAME: data})
    hub.fault(f"{REPO}/{NAME}", "corrupt", at=100_000)
    choice = list_gguf_files(REPO).choose(filename=NAME)
    with pytest.raises(ChecksumMismatch, match="failed verification"):
        list(download_choice(choice, lib, policy=FAST, disk_margin=0))

    [bad] = lib.set_aside_files()
    assert (bad.name, bad.size, bad.repo_id) == (NAME, len(data), REPO)
    assert bad.path.parent == lib.local_path(REPO, NAME).parent
    assert lib.scan(other_tools=False) == []  # never offered as a model

    result = lib.delete_set_aside(bad.path)
    assert result.freed_bytes == len(data) and result.removed == (bad.path,)
    assert "failed verification" in result.message and NAME in result.message
    assert not bad.path.exists() and lib.set_aside_files() == []
    assert not (lib.models_dir / "me").exists()  # emptied folders are pruned


def test_only_set_aside_files_inside_the_models_folder_are_deleted(
    lib: Library, tmp_path: Path
) -> None:
    folder = lib.models_dir / "org" / "repo"
    folder.mkdir(parents=True)
    model = folder / "m-Q4_K_M.gguf"
    model.write_bytes(make_gguf(name="m"))
    odd = folder / "m-Q4_K_M.gguf.sha256-mismatch-soon"  # not a time: not ours to touch
    odd.write_bytes(b"x")
    outside = set_aside_path(tmp_path / "x.gguf", 1_700_000_000)
    outside.write_bytes(b"x" * 10)
    kept = set_aside_path(model, 1_700_000_000)
    kept.write_bytes(b"y" * 2048)

    assert [f.path for f in lib.set_aside_files()] == [kept]
    for path in (model, odd, outside):
        with pytest.raises(LauncherError, match="nothing was deleted"):
            lib.delete_set_aside(path)
        assert path.exists()
    assert lib.delete_set_aside(kept).freed_bytes == 2048
    assert model.exists() and [m.path for m in lib.scan(other_tools=False)] == [model]


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("a.gguf.sha256-mismatch-1700000000", ("a.gguf", 1_700_000_000)),
        ("a.gguf.sha256-mismatch-", None),
        ("a.gguf.sha256-mismatch-12x", None),
        (".sha256-mismatch-12", None),
        ("a.gguf", None),
    ],
)
def test_set_aside_names(name: str, parsed: tuple[str, int] | None) -> None:
    assert parse_set_aside(Path(name)) == parsed
