"""Small HTTP helpers shared by the downloader and the remote engine."""

from __future__ import annotations

import contextlib
import socket
from typing import Any


def shutdown_socket(response: Any) -> None:
    """Shut an httpx response's socket down so a thread blocked reading it wakes at once.

    Closing the response would wait for that read, and ``close()`` alone does not wake
    ``recv``; httpcore exposes the socket as the ``network_stream`` extension. Best effort:
    a response without one (or an already closed socket) is left alone.
    """
    with contextlib.suppress(Exception):
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
