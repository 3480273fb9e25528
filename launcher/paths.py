"""Where Spark Launcher keeps its files (platformdirs), overridable for tests and portable use.

``SPARK_LAUNCHER_HOME`` puts everything (config, data, cache, models) under one folder; the
tests set it so they never touch the user's real folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "spark-launcher"


@dataclass(frozen=True)
class AppPaths:
    """The folders the app uses. Create them with :meth:`ensure`."""

    config_dir: Path
    data_dir: Path
    cache_dir: Path
    models_dir: Path

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.json"

    @property
    def chats_dir(self) -> Path:
        return self.data_dir / "chats"

    @property
    def calibration_file(self) -> Path:
        return self.data_dir / "calibration.json"

    @property
    def crashes_file(self) -> Path:
        return self.data_dir / "crashes.json"

    @property
    def comparisons_dir(self) -> Path:
        return self.data_dir / "comparisons"

    def ensure(self) -> AppPaths:
        for d in (self.config_dir, self.data_dir, self.cache_dir, self.models_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self

    @classmethod
    def default(cls) -> AppPaths:
        """Paths from ``SPARK_LAUNCHER_HOME`` if set, else the platform's user folders."""
        home = os.environ.get("SPARK_LAUNCHER_HOME")
        if home:
            root = Path(home)
            return cls(root / "config", root / "data", root / "cache", root / "models")
        data = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
        return cls(
            Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
            data,
            Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
            data / "models",
        )
