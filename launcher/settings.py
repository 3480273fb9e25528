"""User settings, stored as JSON and written atomically.

Unknown keys in the file are kept (a newer version's settings survive a downgrade); a corrupt
file is set aside and defaults are used, never a crash.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.fsutil import atomic_write_json, read_json
from launcher.paths import AppPaths


@dataclass
class Settings:
    """Everything the user can set. Defaults are what a new user should get."""

    models_dir: str | None = None  # None: AppPaths.models_dir
    default_context: int = 8192
    kv_cache_type: str = "f16"
    flash_attention: bool = True
    max_parallel_downloads: int = 1
    extra_model_dirs: list[str] = field(default_factory=list)
    scan_other_tools: bool = True
    system_prompt: str = "You are a helpful assistant."
    sampling_preset: str = "balanced"
    theme: str = "system"
    record_api_traffic: bool = False  # the local API appends chat requests to api-traffic.jsonl
    #: Local API: replies a model generates at once (its host's parallel slots; the context
    #: is split between them), and minutes after which an unused model is unloaded (0: never).
    api_parallel_slots: int = 1
    idle_unload_minutes: int = 0
    _extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def models_path(self, paths: AppPaths) -> Path:
        return Path(self.models_dir) if self.models_dir else paths.models_dir

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in dataclasses.asdict(self).items() if k != "_extra"}
        return {**self._extra, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        known = {f.name for f in dataclasses.fields(cls) if f.name != "_extra"}
        defaults = cls()
        kwargs: dict[str, Any] = {}
        for name in known:
            if name in data and isinstance(data[name], type(getattr(defaults, name)) | None):
                kwargs[name] = data[name]
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**kwargs, _extra=extra)


def load_settings(paths: AppPaths) -> Settings:
    """Read the settings file; missing or corrupt gives defaults (a corrupt file is kept aside)."""
    f = paths.settings_file
    if not f.exists():
        return Settings()
    data = read_json(f)
    if not isinstance(data, dict):
        try:
            os.replace(f, f.with_name(f"settings.corrupt-{int(time.time())}.json"))
        except OSError:
            pass
        return Settings()
    return Settings.from_json(data)


def save_settings(paths: AppPaths, settings: Settings) -> None:
    """Write the settings file atomically."""
    atomic_write_json(paths.settings_file, settings.to_json())
