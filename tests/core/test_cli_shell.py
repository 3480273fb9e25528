"""The CLI shell: version, help, and that every command module registers cleanly."""

from __future__ import annotations

import subprocess
import sys

import launcher
from launcher.cli import build_parser, main


def test_version_is_printed(capsys) -> None:
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert launcher.__version__ in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_parser_builds_with_every_command() -> None:
    parser = build_parser()
    assert parser.prog == "spark-launcher"


def test_module_entry_point_runs_without_qt() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "launcher", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert "spark-launcher" in out.stdout
