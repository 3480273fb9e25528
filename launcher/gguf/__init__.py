"""GGUF header reading from any byte source (local file, HTTP Range), bounded and fuzz-safe.

Public API: :func:`read_header`, :func:`read_model`, :class:`GGUFHeader`, :class:`GGUFModel`,
:class:`TensorInfo`, and the sources :class:`FileSource` and :class:`HTTPRangeSource`.
"""

from launcher.errors import GGUFError
from launcher.gguf.reader import (
    GGUFHeader,
    GGUFModel,
    TensorInfo,
    read_header,
    read_model,
    split_names,
)
from launcher.gguf.sources import ByteSource, FileSource, HTTPRangeSource

__all__ = [
    "ByteSource",
    "FileSource",
    "GGUFError",
    "GGUFHeader",
    "GGUFModel",
    "HTTPRangeSource",
    "TensorInfo",
    "read_header",
    "read_model",
    "split_names",
]
