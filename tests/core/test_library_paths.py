"""Whatever name a repo lists, the library's path for it stays inside the models folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher.errors import LauncherError
from launcher.library import DiscoveryRoots, Library
from launcher.paths import AppPaths
from launcher.settings import Settings

_PARTS = st.sampled_from(
    ["..", ".", "", "a", "ok.gguf", "．．", "/", "\\", "C:", "~", " ", "\u202e"]
)
_NAMES = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(_PARTS, st.text(max_size=8)), max_size=6).map("/".join),
)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    root = tmp_path_factory.mktemp("lib")
    paths = AppPaths(root / "c", root / "d", root / "k", root / "models")
    return Library(paths, Settings(), DiscoveryRoots())


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(repo=st.sampled_from(["me/x", "a/b", "../x", "me/..", "x", "a/b/c"]), name=_NAMES)
def test_local_path_never_leaves_the_models_folder(library: Library, repo: str, name: str) -> None:
    try:
        path = library.local_path(repo, name)
    except LauncherError:
        return
    base = library.models_dir
    assert path.is_relative_to(base)
    assert Path(str(path)).resolve().is_relative_to(base.resolve())
    assert ".." not in path.relative_to(base).parts
