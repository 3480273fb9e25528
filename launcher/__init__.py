"""Spark Launcher core: plain Python (no Qt), usable from the CLI, the app and tests.

Sub-packages and modules are listed in ARCHITECTURE.md. Nothing here imports PySide6 or
``ui``; an import-linter contract in ``pyproject.toml`` enforces it.
"""

__version__ = "0.1.0"
