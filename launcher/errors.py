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
    """llama.cpp could not load a model.

    ``crash``: the engine's ``HostCrashed`` event when the model host died while loading (its
    diagnosis, and safe settings to try when it keeps happening); ``None`` otherwise.
    """

    def __init__(self, message: str, crash: object | None = None) -> None:
        super().__init__(message)
        self.crash = crash


class NotEnoughMemory(LauncherError):
    """The requested plan does not fit in this machine's memory."""


class DownloadError(LauncherError):
    """A download failed; partial data is kept for resume unless the message says otherwise."""


class HubError(LauncherError):
    """The Hugging Face Hub (or the mirror in HF_ENDPOINT) refused or failed a request."""


class HubAccessError(HubError):
    """401/403: a gated or private repo, or a missing or refused Hugging Face token."""


class HubNotFoundError(HubError):
    """404: the repo, revision or file does not exist (or is private and hidden)."""


class NotEnoughDiskSpace(DownloadError):
    """The models folder's disk has too little free space (before or during a download)."""


class ChecksumMismatch(DownloadError):
    """A downloaded file's sha256 differs from the Hub's; the bad file was set aside."""


class DownloadCancelled(DownloadError):
    """The user cancelled or paused a download; partial data is kept for resume."""


class UnsafeFileName(DownloadError):
    """A repo listed a file name that would write outside the models folder."""


class MachineSpecError(LauncherError):
    """A ``--machine`` value could not be understood."""


class EngineError(LauncherError):
    """The model engine refused a request (no model loaded, prompt too long, bad message)."""


class HostCrashedError(EngineError):
    """A model host process died; the message says how and what to try next."""


class ServerError(LauncherError):
    """The local API server cannot start as asked (unsafe address without a key, port taken)."""


class ModelBusyError(EngineError):
    """Too many requests are waiting for one model; ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelUnavailableError(EngineError):
    """The model was unloaded (or its host stopped) while a request waited for its turn."""


class RpcError(LauncherError):
    """A llama.cpp RPC server cannot be used (bad address, not answering, no RPC build)."""


class RemoteConfigError(LauncherError):
    """A remote server cannot be saved or found as asked (bad name or URL, unknown name)."""


class RemoteEngineError(EngineError):
    """A remote OpenAI-compatible server failed a request (unreachable, gone mid-reply, refused)."""


class RemoteAuthError(RemoteEngineError):
    """A remote server refused the API key (HTTP 401/403)."""


class ToolError(LauncherError):
    """An MCP server or a tool call failed (``launcher/tools``); secrets are never in the text."""


class McpConfigError(ToolError):
    """An MCP server cannot be saved, imported or found as asked (bad name, bad mcp.json)."""


class McpServerError(ToolError):
    """An MCP server could not start, stopped answering, or died; the message says which."""


class ToolTimeoutError(ToolError):
    """A tool (or a server's start) took longer than its time limit; the server was told."""


class ToolCancelledError(ToolError):
    """The user stopped a tool call (Esc, Ctrl-C) before it finished."""
