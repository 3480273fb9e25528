"""``spark-launcher download`` and ``models``: choices, verified download, resume on re-run."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from launcher.cli import main as cli_main
from launcher.downloads import part_paths
from launcher.library import DiscoveryRoots, Library
from tests.support.hub_fixtures import make_gguf
from tests.support.loopback_hub import LoopbackHub


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_download_command_lists_choices_downloads_and_resumes(
    hub: LoopbackHub, app_home: Path
) -> None:
    q4, q8 = make_gguf(pad_to=1_500_000), make_gguf(file_type=7, pad_to=2_500_000)
    hub.add_repo("me/cli-GGUF", {"m-Q4_K_M.gguf": q4, "m-Q8_0.gguf": q8})
    code, out, _ = _cli("download", "me/cli-GGUF")
    assert code == 2 and "Q4_K_M" in out and "Q8_0" in out and "--quant" in out

    hub.fault("me/cli-GGUF/m-Q8_0.gguf", "drop", at=1_000_000, times=None)  # stuck there
    code, _, err = _cli("download", "me/cli-GGUF", "--quant", "q8_0", "--retries", "1")
    assert code == 1 and "run the download again to resume" in err
    lib = Library(roots=DiscoveryRoots())
    part, _ = part_paths(lib.local_path("me/cli-GGUF", "m-Q8_0.gguf"))
    assert part.stat().st_size == 1_000_000

    hub.clear_faults()
    hub.reset_counters()
    code, out, _ = _cli("download", "hf://me/cli-GGUF/m-Q8_0.gguf", "--json")
    assert code == 0
    [f] = json.loads(out)["files"]
    assert Path(f["path"]).read_bytes() == q8 and not f["already_present"]
    assert hub.bytes_served["me/cli-GGUF/m-Q8_0.gguf"] == len(q8) - 1_000_000

    code, out, _ = _cli("download", "me/cli-GGUF", "--file", "m-Q8_0.gguf", "--json")
    assert code == 0 and json.loads(out)["files"][0]["already_present"]

    code, out, _ = _cli("models", "--no-other-tools", "--json")
    [row] = json.loads(out)
    assert row["repo_id"] == "me/cli-GGUF" and row["verified"] and row["quant"] == "Q8_0"
    code, out, _ = _cli("models", "delete", row["name"])
    assert code == 0 and "freed" in out
    assert json.loads(_cli("models", "--no-other-tools", "--json")[1]) == []
