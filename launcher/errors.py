"""The core's error hierarchy.

Every error a user can see is one of these types; its message says what happened and what
to do next. The UI shows the message, it does not invent one.
"""

from __future__ import annotations


class LauncherError(Exception):
    """Base of every error the core reports to a user."""


class GGUFError(LauncherError):
    """A GGUF file or header could not be read (corrupt, truncated, hostile, unsupported)."""


class ModelLoadError(LauncherError):
    """llama.cpp could not load a model."""


class NotEnoughMemory(LauncherError):
    """The requested plan does not fit in this machine's memory."""


class DownloadError(LauncherError):
    """A download failed; partial data is kept for resume unless the message says otherwise."""


class HubError(LauncherError):
    """The Hugging Face Hub (or the mirror in HF_ENDPOINT) refused or failed a request."""


class MachineSpecError(LauncherError):
    """A ``--machine`` value could not be understood."""
