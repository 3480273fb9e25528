"""The engine: one child process per loaded model, streaming chat with honest metrics.

``EngineClient`` (app side) starts a model host (``host.py``, a ``spawn`` child process owning
one llama.cpp model), talks to it over a small JSON protocol (``protocol.py``) and yields typed
events (``events.py``). Cancel is a shared flag polled between tokens; a host that dies becomes
a ``HostCrashed`` event and the client can load again. See ARCHITECTURE.md, "Engine".
"""

from launcher.engine.client import EngineClient
from launcher.engine.events import (
    PLAIN_COMPLETION,
    BenchResult,
    BufferSize,
    Embeddings,
    EngineParams,
    Event,
    HostCrashed,
    Loaded,
    LoadProgress,
    ReasoningToken,
    ReplyFinished,
    ReplyMetrics,
    Sampling,
    Token,
    TokenLogprob,
    ToolCall,
)

__all__ = [
    "PLAIN_COMPLETION",
    "BenchResult",
    "BufferSize",
    "Embeddings",
    "EngineClient",
    "EngineParams",
    "Event",
    "HostCrashed",
    "LoadProgress",
    "Loaded",
    "ReasoningToken",
    "ReplyFinished",
    "ReplyMetrics",
    "Sampling",
    "Token",
    "TokenLogprob",
    "ToolCall",
]
