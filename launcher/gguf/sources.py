"""Byte sources for the GGUF header reader: a local file and an HTTP Range source.

A source gives random access to the first bytes of a GGUF file. The reader asks for growing
prefixes, so a source only ever delivers the header (metadata and tensor table), never the
tensor data. ``bytes_read`` counts what was really read or fetched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

from launcher.errors import GGUFError, HubError

#: First chunk fetched over HTTP; grows by doubling (tokenizer arrays make headers several MB).
HTTP_FIRST_CHUNK = 4 << 20
#: Local files are read in chunks of this size.
FILE_CHUNK = 1 << 20


@runtime_checkable
class ByteSource(Protocol):
    """Random access to a GGUF file's bytes."""

    name: str
    bytes_read: int

    @property
    def size(self) -> int | None:
        """The total size of the file in bytes, when known."""

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer only at the end of the file)."""

    def suggested_chunk(self) -> int:
        """How many bytes to ask for at least when the reader needs more."""


class FileSource:
    """A local GGUF file. Only what the reader asks for is read (the header, not the data)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self.bytes_read = 0
        try:
            self._size = self.path.stat().st_size
        except OSError as exc:
            raise GGUFError(
                f"Cannot open {self.path}: {exc.strerror or exc}. Check the path."
            ) from exc

    @property
    def size(self) -> int | None:
        return self._size

    def suggested_chunk(self) -> int:
        return FILE_CHUNK

    def read(self, offset: int, length: int) -> bytes:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(max(0, length))
        except OSError as exc:
            raise GGUFError(f"Cannot read {self.path}: {exc.strerror or exc}.") from exc
        self.bytes_read += len(data)
        return data


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class HTTPRangeSource:
    """A remote GGUF (a Hugging Face ``resolve`` URL) read with HTTP Range requests.

    Uses ``huggingface_hub``'s shared HTTP client and headers, so ``HF_ENDPOINT``, the token
    and the library's retry policy apply. The total size comes from ``Content-Range``.
    """

    def __init__(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        first_chunk: int = HTTP_FIRST_CHUNK,
        token: str | bool | None = None,
    ) -> None:
        self.url = url
        self.name = url
        self.bytes_read = 0
        self.requests = 0
        self._headers = dict(headers or {})
        self._token = token
        self._size: int | None = None
        self._first_chunk = max(1024, first_chunk)

    @property
    def size(self) -> int | None:
        return self._size

    def suggested_chunk(self) -> int:
        return self._first_chunk

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        if self._size is not None and offset >= self._size:
            return b""
        from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_stream_backoff

        headers = build_hf_headers(token=self._token, headers=self._headers)
        headers["Range"] = f"bytes={offset}-{offset + length - 1}"
        chunks: list[bytes] = []
        got = 0
        try:
            # Streamed so that a server ignoring Range (200 with the whole file) costs only
            # the bytes we keep, not a multi-GB download.
            with http_stream_backoff(
                "GET", self.url, headers=headers, max_retries=2, follow_redirects=True
            ) as response:
                hf_raise_for_status(response)
                self.requests += 1
                status = response.status_code
                if status == 206:
                    m = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                    if m and m.group(3) != "*":
                        self._size = int(m.group(3))
                    skip = 0
                else:
                    total = response.headers.get("Content-Length")
                    if total and total.isdigit():
                        self._size = int(total)
                    skip = offset
                for chunk in response.iter_bytes():
                    self.bytes_read += len(chunk)
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk = chunk[cut:]
                        skip -= cut
                    chunks.append(chunk)
                    got += len(chunk)
                    if got >= length:
                        break
        except HubError:
            raise
        except Exception as exc:  # httpx / HfHubHTTPError: report one clear error
            raise HubError(
                f"Could not read the header of {self.url}: {exc}. "
                "Check the network, the repository name and your Hugging Face token."
            ) from exc
        return b"".join(chunks)[:length]
