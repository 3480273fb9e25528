"""A bounded GGUF header parser: metadata and tensor table from any byte source.

Written by hand rather than with ``gguf.GGUFReader`` because that reader needs the whole file
as a local memmap; here the source may be a remote file read by HTTP Range, and the reader
must stop as soon as the tensor table is complete. Quant block sizes come from the ``gguf``
package (``GGML_QUANT_SIZES``) so the byte counts stay the library's.

Every count and length is checked against hard limits and against the bytes the source can
still deliver, so hostile input gives a :class:`~launcher.errors.GGUFError`, never a hang, a
crash or an unbounded allocation.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from launcher.errors import GGUFError
from launcher.gguf.sources import ByteSource, FileSource

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32

#: Hard limits (far above any real model, far below anything that could exhaust memory).
MAX_HEADER_BYTES = 256 << 20
MAX_KV = 1 << 16
MAX_TENSORS = 1 << 20
MAX_STRING = 64 << 20
MAX_ARRAY = 1 << 26
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NESTING = 3
MAX_ELEMENTS = 1 << 50

# GGUF value types -> (struct code, size)
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("B", 1),
    1: ("b", 1),
    2: ("H", 2),
    3: ("h", 2),
    4: ("I", 4),
    5: ("i", 4),
    6: ("f", 4),
    7: ("?", 1),
    10: ("Q", 8),
    11: ("q", 8),
    12: ("d", 8),
}
_STRING = 8
_ARRAY = 9


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table. ``offset`` is relative to the data section."""

    name: str
    shape: tuple[int, ...]  # ggml order: ne[0] first (the row length)
    ggml_type: int
    offset: int
    nbytes: int

    @property
    def type_name(self) -> str:
        try:
            return GGMLQuantizationType(self.ggml_type).name
        except ValueError:
            return str(self.ggml_type)

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class GGUFHeader:
    """The parsed header of one GGUF file (or one shard of a split model)."""

    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo]
    data_offset: int
    file_size: int | None  # bytes the source really has (None when unknown)
    header_bytes: int  # end of the tensor table (before padding to the alignment)
    source_name: str = ""
    value_types: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def alignment(self) -> int:
        return int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def declared_size(self) -> int:
        """The size the file must have to hold all its tensor data."""
        end = max((t.offset + t.nbytes for t in self.tensors), default=0)
        return self.data_offset + end

    @property
    def is_complete(self) -> bool:
        """Whether the file holds all its tensor data (False for header-only files)."""
        return self.file_size is not None and self.file_size >= self.declared_size

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def arch_key(self, name: str, default: Any = None) -> Any:
        """``{architecture}.{name}`` from the metadata."""
        return self.metadata.get(f"{self.architecture}.{name}", default)


class _Cursor:
    """Sequential reads over a source's growing prefix, fetched on demand."""

    def __init__(self, source: ByteSource, max_bytes: int) -> None:
        self.source = source
        self.buf = bytearray()
        self.pos = 0
        self.max_bytes = max_bytes
        self.size = source.size
        self._eof = False

    def remaining(self) -> int | None:
        """Bytes left in the source after the cursor, when its size is known."""
        if self.size is None:
            return None
        return max(0, self.size - self.pos)

    def need(self, n: int, what: str) -> None:
        end = self.pos + n
        if end <= len(self.buf):
            return
        if end > self.max_bytes:
            raise GGUFError(
                f"{self.source.name}: the GGUF header is larger than {self.max_bytes >> 20} MiB "
                f"(while reading {what}); the file is corrupt or not a model file."
            )
        while len(self.buf) < end and not self._eof:
            want = max(end - len(self.buf), len(self.buf), self.source.suggested_chunk())
            want = min(want, self.max_bytes - len(self.buf))
            chunk = self.source.read(len(self.buf), want)
            if self.source.size is not None:
                self.size = self.source.size
            if not chunk:
                self._eof = True
                break
            self.buf += chunk
            if len(chunk) < want:
                self._eof = True
        if end > len(self.buf):
            raise GGUFError(
                f"{self.source.name}: the file ends in the middle of its header (while reading "
                f"{what}); it is truncated or still downloading."
            )

    def scalar(self, code: str, size: int, what: str) -> Any:
        self.need(size, what)
        (v,) = struct.unpack_from("<" + code, self.buf, self.pos)
        self.pos += size
        return v

    def u32(self, what: str) -> int:
        return int(self.scalar("I", 4, what))

    def u64(self, what: str) -> int:
        return int(self.scalar("Q", 8, what))

    def check_count(self, n: int, min_item: int, limit: int, what: str) -> None:
        if n > limit:
            raise GGUFError(
                f"{self.source.name}: {what} count {n} is beyond any real model (limit {limit}); "
                "the file is corrupt."
            )
        rem = self.remaining()
        if rem is not None and n * min_item > rem:
            raise GGUFError(
                f"{self.source.name}: {what} count {n} needs more bytes than the file has; "
                "the file is truncated or corrupt."
            )

    def string(self, what: str) -> str:
        n = self.u64(what)
        self.check_count(n, 1, MAX_STRING, f"{what} length")
        self.need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def _strings(self, n: int, what: str) -> list[str]:
        """``n`` strings; the hot loop of a header (vocabularies of 100k-260k tokens)."""
        out: list[str] = []
        append = out.append
        unpack = struct.unpack_from
        buf, pos = self.buf, self.pos
        for _ in range(n):
            if pos + 8 > len(buf):
                self.pos = pos
                self.need(8, what)
                buf = self.buf
            (length,) = unpack("<Q", buf, pos)
            if length > MAX_STRING:
                self.pos = pos
                self.check_count(length, 1, MAX_STRING, f"{what} length")
            end = pos + 8 + length
            if end > len(buf):
                self.pos = pos + 8
                self.check_count(length, 1, MAX_STRING, f"{what} length")
                self.need(length, what)
                buf = self.buf
            append(buf[pos + 8 : end].decode("utf-8", errors="replace"))
            pos = end
        self.pos = pos
        return out

    def array(self, what: str, depth: int) -> list[Any]:
        if depth > MAX_NESTING:
            raise GGUFError(f"{self.source.name}: {what} nests arrays too deeply; corrupt file.")
        item_type = self.u32(what)
        n = self.u64(what)
        if item_type in _SCALARS:
            code, size = _SCALARS[item_type]
            self.check_count(n, size, MAX_ARRAY, f"{what} array")
            self.need(n * size, what)
            values = list(struct.unpack_from(f"<{n}{code}", self.buf, self.pos))
            self.pos += n * size
            return values
        if item_type == _STRING:
            self.check_count(n, 8, MAX_ARRAY, f"{what} array")
            return self._strings(n, what)
        if item_type == _ARRAY:
            self.check_count(n, 12, MAX_ARRAY, f"{what} array")
            return [self.array(what, depth + 1) for _ in range(n)]
        raise GGUFError(f"{self.source.name}: {what} has unknown array type {item_type}.")

    def value(self, vtype: int, what: str) -> Any:
        if vtype in _SCALARS:
            code, size = _SCALARS[vtype]
            return self.scalar(code, size, what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY:
            return self.array(what, 1)
        raise GGUFError(f"{self.source.name}: {what} has unknown value type {vtype}.")


def _as_source(source: ByteSource | str | os.PathLike[str]) -> ByteSource:
    if isinstance(source, (str, os.PathLike)):
        return FileSource(source)
    return source


def read_header(
    source: ByteSource | str | os.PathLike[str], max_bytes: int = MAX_HEADER_BYTES
) -> GGUFHeader:
    """Parse a GGUF header (metadata and tensor table) from a path or a byte source.

    Reads only the header. Raises :class:`GGUFError` on anything that is not a sound GGUF.
    """
    src = _as_source(source)
    cur = _Cursor(src, max_bytes)
    cur.need(4, "the magic number")
    if bytes(cur.buf[:4]) != GGUF_MAGIC:
        raise GGUFError(
            f"{src.name} is not a GGUF model file (it does not start with 'GGUF'). "
            "Pick a .gguf file."
        )
    cur.pos = 4
    version = cur.u32("the version")
    if version not in SUPPORTED_VERSIONS:
        if version and version & 0xFFFF == 0:
            raise GGUFError(f"{src.name} is a big-endian GGUF; only little-endian is supported.")
        raise GGUFError(
            f"{src.name} is GGUF version {version}; supported versions are 2 and 3. "
            "Use a newer conversion of this model."
        )
    n_tensors = cur.u64("the tensor count")
    n_kv = cur.u64("the metadata count")
    cur.check_count(n_kv, 13, MAX_KV, "metadata")
    cur.check_count(n_tensors, 24, MAX_TENSORS, "tensor")

    metadata: dict[str, Any] = {}
    value_types: dict[str, int] = {}
    for i in range(n_kv):
        key = cur.string(f"metadata key #{i}")
        vtype = cur.u32(f"the type of {key!r}")
        metadata[key] = cur.value(vtype, repr(key))
        value_types[key] = vtype

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if (
        not isinstance(alignment, int)
        or isinstance(alignment, bool)
        or alignment <= 0
        or alignment & (alignment - 1)
        or alignment > 1 << 20
    ):
        raise GGUFError(f"{src.name}: general.alignment {alignment!r} is not a power of two.")

    tensors: list[TensorInfo] = []
    seen: set[str] = set()
    for i in range(n_tensors):
        name = cur.string(f"tensor name #{i}")
        n_dims = cur.u32(f"the dimension count of {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise GGUFError(f"{src.name}: tensor {name!r} has {n_dims} dimensions; corrupt file.")
        shape = tuple(cur.u64(f"the shape of {name!r}") for _ in range(n_dims))
        ggml_type = cur.u32(f"the type of {name!r}")
        offset = cur.u64(f"the offset of {name!r}")
        n_el = 1
        for d in shape:
            n_el *= d
        if n_el > MAX_ELEMENTS:
            raise GGUFError(f"{src.name}: tensor {name!r} has an absurd shape {shape}.")
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        except (ValueError, KeyError):
            raise GGUFError(
                f"{src.name}: tensor {name!r} has ggml type {ggml_type}, unknown to this "
                "version; update Spark Launcher or pick another quantization."
            ) from None
        if shape[0] % block:
            raise GGUFError(
                f"{src.name}: tensor {name!r} row length {shape[0]} is not a multiple of its "
                f"block size {block}; corrupt file."
            )
        if offset % alignment:
            raise GGUFError(f"{src.name}: tensor {name!r} data offset is misaligned.")
        if name in seen:
            raise GGUFError(f"{src.name}: tensor {name!r} appears twice; corrupt file.")
        seen.add(name)
        tensors.append(TensorInfo(name, shape, ggml_type, offset, n_el // block * type_size))

    header_end = cur.pos
    data_offset = (header_end + alignment - 1) // alignment * alignment
    return GGUFHeader(
        version=version,
        metadata=metadata,
        tensors=tensors,
        data_offset=data_offset,
        file_size=cur.size,
        header_bytes=header_end,
        source_name=src.name,
        value_types=value_types,
    )


# ------------------------------------------------------------------------------ split models

_SPLIT_RE = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


def split_names(name: str) -> list[str]:
    """All shard names of a split model given any one of them (or ``[name]`` if not split)."""
    base = name.rsplit("/", 1)
    leaf = base[-1]
    m = _SPLIT_RE.match(leaf)
    if not m:
        return [name]
    count = int(m.group("count"))
    prefix = (base[0] + "/") if len(base) == 2 else ""
    return [f"{prefix}{m.group('stem')}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


@dataclass
class GGUFModel:
    """A model as one or more GGUF headers (shards of a split model), read as one."""

    headers: list[GGUFHeader]

    @property
    def metadata(self) -> dict[str, Any]:
        return self.headers[0].metadata

    @property
    def architecture(self) -> str:
        return self.headers[0].architecture

    @property
    def tensors(self) -> list[TensorInfo]:
        return [t for h in self.headers for t in h.tensors]

    @property
    def file_size(self) -> int:
        """Total size of all shards as declared by their tensor tables."""
        return sum(max(h.file_size or 0, h.declared_size) for h in self.headers)

    @property
    def tensor_bytes(self) -> int:
        return sum(h.tensor_bytes for h in self.headers)

    @property
    def header_bytes(self) -> int:
        return sum(h.data_offset for h in self.headers)

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def arch_key(self, name: str, default: Any = None) -> Any:
        return self.headers[0].arch_key(name, default)


def read_model(
    sources: ByteSource | str | os.PathLike[str] | list[ByteSource | str | os.PathLike[str]],
) -> GGUFModel:
    """Read a model from one source, or a split model from all its shards, as one model.

    Given one local path of a split model (``...-00001-of-00005.gguf``), the sibling shards
    are found next to it. The shards' ``split.*`` keys are checked for consistency.
    """
    if isinstance(sources, list):
        items = list(sources)
    elif isinstance(sources, (str, os.PathLike)):
        names = split_names(str(sources))
        items = [Path(n) for n in names]
    else:
        items = [sources]
    headers = [read_header(s) for s in items]
    if not headers:
        raise GGUFError("No GGUF file given.")
    first = headers[0]
    count = first.get("split.count")
    if isinstance(count, int) and count > 1 and len(headers) == 1:
        raise GGUFError(
            f"{first.source_name} is part {int(first.get('split.no', 0)) + 1} of a model split "
            f"in {count} files; give the first part with the others next to it."
        )
    if count is not None and len(headers) > 1:
        if count != len(headers):
            raise GGUFError(
                f"{first.source_name} says the model has {count} parts but {len(headers)} were "
                "given; download all parts of the model."
            )
        declared = first.get("split.tensors.count")
        total = sum(len(h.tensors) for h in headers)
        if isinstance(declared, int) and declared != total:
            raise GGUFError(
                f"The parts of {first.source_name} hold {total} tensors, not the {declared} "
                "they declare; a part is missing or from another model."
            )
    names = [t.name for h in headers for t in h.tensors]
    if len(set(names)) != len(names):
        raise GGUFError("The same tensor appears in two parts; the parts are from different files.")
    return GGUFModel(headers)
