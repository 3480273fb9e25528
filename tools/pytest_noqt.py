"""Run pytest with Qt made unimportable: proves the core and its tests need no PySide6.

Usage: ``python tools/pytest_noqt.py [pytest args]``. Any import of PySide6, shiboken6 or the
``ui`` package raises ImportError, as on a machine without Qt. pytest-qt is disabled; its ini
keys are registered here so ``--strict-config`` stays on.
"""

from __future__ import annotations

import importlib.abc
import sys

BLOCKED = ("PySide6", "shiboken6", "ui", "pytestqt")


class _QtBlocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(f"{fullname} is blocked: the core must not need Qt")
        return None


class _QtIniKeys:
    """Registers pytest-qt's ini keys so the shared config parses without the plugin."""

    @staticmethod
    def pytest_addoption(parser):  # type: ignore[no-untyped-def]
        for key in ("qt_api", "qt_log_level_fail", "qt_default_raising", "qt_log_ignore"):
            parser.addini(key, "registered by tools/pytest_noqt.py (pytest-qt disabled)")


def main() -> int:
    sys.meta_path.insert(0, _QtBlocker())
    import pytest

    return int(pytest.main(["-p", "no:pytest-qt", *sys.argv[1:]], plugins=[_QtIniKeys()]))


if __name__ == "__main__":
    sys.exit(main())
