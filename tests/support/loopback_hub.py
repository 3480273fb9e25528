"""A faithful, fault-injecting Hugging Face Hub on 127.0.0.1 for tests and benchmarks.

It serves what ``huggingface_hub`` (2.4) and our own downloader call: model search
(``GET /api/models``), model info (``/api/models/{repo}[/revision/{rev}]``), the file tree
(``/api/models/{repo}/tree/{rev}[/{path}]``), ``POST .../paths-info/{rev}`` and
``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` with the headers ``hf_hub_download`` requires
(``X-Repo-Commit``, ``ETag``/``X-Linked-Etag``, ``Content-Length``/``X-Linked-Size``), ``Range``
→ 206 and ``Accept-Ranges``. No ``X-Xet-*`` headers are sent, so clients use plain HTTP.

Repos are registered in Python::

    hub = LoopbackHub().start()
    hub.add_repo("me/tiny", files={"tiny-Q4_K_M.gguf": path_or_bytes_or_Synthetic})
    hub.fault("me/tiny/tiny-Q4_K_M.gguf", "drop", at=1_000_000)
    os.environ["HF_ENDPOINT"] = hub.url

Content may be bytes, a file path (a sparse file costs no disk) or :class:`Synthetic` (a
generated pattern of any size: a "40 GB" file costs nothing). Faults are injected per path
(``"owner/name"`` matches every request about the repo, ``"owner/name/file"`` one file):
``drop`` (connection closed at byte N), ``slow`` (bytes/s throttle or a delay before the
response), ``status`` (401/403/404/429/500… with ``Retry-After`` and Hub error codes),
``corrupt`` (one byte flipped: the served body no longer matches its sha256), ``truncate``
(a short body sent with a matching, lying ``Content-Length``). ``bytes_served`` counts body
bytes per file and ``requests`` logs every request (without the token).

Stdlib ``http.server`` is used on purpose: a real socket server with no extra dependency,
so the client stacks under test (httpx2 inside huggingface_hub, our downloader) are real.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_TOKEN = "hf_LoopbackSecretToken0123456789abcdef"
_CHUNK = 1 << 20
# Hashing the same big file for every test would dominate the suite: cache by identity.
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class Synthetic:
    """Generated content of ``size`` bytes: ``head`` then a non-repeating-looking pattern.

    ``fill="pattern"`` repeats a pseudo-random block whose length (1 MiB + 7) is not a power of
    two, so a resume at a wrong offset changes the sha256; ``fill="zeros"`` pads with zeros.
    ``sha256`` may be given to skip hashing a huge file (it is then served as-is, right or not).
    """

    size: int
    head: bytes = b""
    fill: str = "pattern"
    seed: int = 1
    sha256: str | None = None


class _Source:
    """Random-access bytes of one served file."""

    def __init__(self, content: bytes | str | os.PathLike[str] | Synthetic) -> None:
        self.path: Path | None = None
        self.data: bytes | None = None
        self.synthetic: Synthetic | None = None
        self._block = b""
        if isinstance(content, bytes | bytearray):
            self.data = bytes(content)
            self.size = len(self.data)
        elif isinstance(content, Synthetic):
            self.synthetic = content
            self.size = content.size
            if content.fill == "pattern":
                self._block = random.Random(content.seed).randbytes(_CHUNK + 7)
        else:
            self.path = Path(content)
            self.size = self.path.stat().st_size

    def read(self, offset: int, n: int) -> bytes:
        n = max(0, min(n, self.size - offset))
        if n == 0:
            return b""
        if self.data is not None:
            return self.data[offset : offset + n]
        if self.path is not None:
            with open(self.path, "rb") as fh:
                fh.seek(offset)
                return fh.read(n)
        assert self.synthetic is not None
        head = self.synthetic.head
        out = bytearray()
        if offset < len(head):
            out += head[offset : offset + n]
        pos = offset + len(out)
        end = offset + n
        while pos < end:
            if not self._block:
                out += bytes(end - pos)
                break
            k = pos % len(self._block)
            take = min(end - pos, len(self._block) - k)
            out += self._block[k : k + take]
            pos += take
        return bytes(out)

    def sha256(self) -> str:
        if self.synthetic is not None and self.synthetic.sha256:
            return self.synthetic.sha256
        key = None
        if self.path is not None:
            st = self.path.stat()
            key = (str(self.path.resolve()), st.st_size, st.st_mtime_ns)
        elif self.synthetic is not None:
            key = (repr(self.synthetic), 0, 0)
        if key is not None and key in _SHA_CACHE:
            return _SHA_CACHE[key]
        h = hashlib.sha256()
        pos = 0
        while pos < self.size:
            block = self.read(pos, 8 * _CHUNK)
            h.update(block)
            pos += len(block)
        if key is not None:
            _SHA_CACHE[key] = h.hexdigest()
        return h.hexdigest()


@dataclass
class HubFile:
    """One file of a repo as the Hub describes it."""

    path: str
    source: _Source
    sha256: str
    lfs: bool

    @property
    def size(self) -> int:
        return self.source.size

    @property
    def git_oid(self) -> str:
        # A stable stand-in for the git blob id (the pointer file's sha1 on the real Hub).
        return hashlib.sha1(f"{self.path}:{self.sha256}".encode()).hexdigest()

    def tree_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "type": "file",
            "oid": self.git_oid,
            "size": self.size,
            "path": self.path,
        }
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": 134}
        return entry


@dataclass
class HubRepo:
    """A model repo: files, flags and the numbers search sorts by."""

    repo_id: str
    files: dict[str, HubFile]
    sha: str
    gated: bool | str = False
    private: bool = False
    downloads: int = 0
    likes: int = 0
    tags: list[str] = field(default_factory=list)
    created_at: str = "2025-01-01T00:00:00.000Z"
    last_modified: str = "2025-01-01T00:00:00.000Z"
    gguf: dict[str, Any] | None = None

    def summary(self, *, with_siblings: bool = False, blobs: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "_id": hashlib.md5(self.repo_id.encode()).hexdigest()[:24],
            "id": self.repo_id,
            "modelId": self.repo_id,
            "author": self.repo_id.split("/")[0],
            "sha": self.sha,
            "private": self.private,
            "gated": self.gated,
            "disabled": False,
            "downloads": self.downloads,
            "likes": self.likes,
            "tags": list(self.tags),
            "library_name": "gguf" if "gguf" in self.tags else None,
            "createdAt": self.created_at,
            "lastModified": self.last_modified,
        }
        if self.gguf is not None:
            out["gguf"] = self.gguf
        if with_siblings:
            sibs = []
            for f in self.files.values():
                s: dict[str, Any] = {"rfilename": f.path}
                if blobs:
                    s["size"] = f.size
                    s["blobId"] = f.git_oid
                    if f.lfs:
                        s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
                sibs.append(s)
            out["siblings"] = sibs
        return out


@dataclass
class Fault:
    """A fault injected into requests whose path matches ``path``."""

    path: str
    kind: str
    at: int | None = None
    status: int = 500
    retry_after: float | None = None
    rate: float | None = None
    delay: float = 0.0
    error_code: str | None = None
    method: str | None = None
    times: int | None = 1
    fired: int = 0

    def matches(self, key: str, method: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.method is not None and self.method != method:
            return False
        return key == self.path or key.startswith(self.path.rstrip("/") + "/")


@dataclass
class RequestRecord:
    """One request seen by the hub (the token itself is never stored)."""

    method: str
    path: str
    range: str | None
    authorized: bool
    had_auth_header: bool
    status: int = 0


_FILE_KINDS = {"drop", "slow", "corrupt", "truncate"}
_KINDS = _FILE_KINDS | {"status"}


class LoopbackHub:
    """The server. Start it with :meth:`start` (or as a context manager), stop with :meth:`stop`."""

    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self.repos: dict[str, HubRepo] = {}
        self.faults: list[Fault] = []
        self.bytes_served: Counter[str] = Counter()
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None, "start() the hub first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LoopbackHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        server = _Server(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="loopback-hub",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LoopbackHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ content
    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | str | os.PathLike[str] | Synthetic],
        *,
        gated: bool | str = False,
        private: bool = False,
        downloads: int = 0,
        likes: int = 0,
        tags: Iterable[str] = ("gguf",),
        created_at: str | None = None,
        last_modified: str | None = None,
        gguf: dict[str, Any] | None = None,
        lfs: bool = True,
    ) -> HubRepo:
        """Register (or replace) a repo. ``gated=True`` means ``"manual"`` like the Hub."""
        hub_files = {}
        for name, content in files.items():
            src = _Source(content)
            hub_files[name] = HubFile(name, src, src.sha256(), lfs=lfs)
        sha = hashlib.sha1(
            (repo_id + "".join(f"{f.path}{f.sha256}" for f in hub_files.values())).encode()
        ).hexdigest()
        repo = HubRepo(
            repo_id,
            hub_files,
            sha,
            gated="manual" if gated is True else gated,
            private=private,
            downloads=downloads,
            likes=likes,
            tags=list(tags),
            gguf=gguf,
        )
        if created_at:
            repo.created_at = _iso(created_at)
        if last_modified:
            repo.last_modified = _iso(last_modified)
        with self._lock:
            self.repos[repo_id] = repo
        return repo

    def file(self, repo_id: str, path: str) -> HubFile:
        return self.repos[repo_id].files[path]

    def fault(self, path: str, kind: str, **kwargs: Any) -> Fault:
        """Inject a fault for requests about ``path`` (``owner/name`` or ``owner/name/file``).

        Kinds and their arguments: ``drop`` (``at``: absolute byte offset where the connection
        is closed), ``slow`` (``rate`` bytes/s and/or ``delay`` seconds), ``status`` (``status``,
        ``retry_after``, ``error_code``), ``corrupt`` (``at``: the flipped byte, default the
        middle), ``truncate`` (``at``: the body stops there with a matching Content-Length).
        ``times`` (default 1; ``None`` = forever) bounds how many requests it hits; ``method``
        limits it to ``"GET"``/``"HEAD"``/``"POST"`` (file faults default to ``"GET"``).
        """
        if kind not in _KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(_KINDS)}")
        if kind in _FILE_KINDS:
            kwargs.setdefault("method", "GET")
        f = Fault(path.strip("/"), kind, **kwargs)
        with self._lock:
            self.faults.append(f)
        return f

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_served.clear()
            self.requests.clear()

    def _take_fault(self, key: str, method: str, kinds: set[str]) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.kind in kinds and f.matches(key, method):
                    f.fired += 1
                    return f
        return None


def _iso(date: str) -> str:
    """The Hub's timestamp format (``2025-01-01`` becomes ``2025-01-01T00:00:00.000Z``)."""
    return date if "T" in date else f"{date}T00:00:00.000Z"


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that vanish mid-request (killed downloads, dropped connections) are normal here.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


_RE_REVISION = re.compile(r"^(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>.+)$")
_RE_TREE = re.compile(r"^(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_RE_PATHS_INFO = re.compile(r"^(?P<repo>[^/]+/[^/]+)/paths-info/(?P<rev>[^/]+)$")
_RE_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_RE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


class _Handler(BaseHTTPRequestHandler):
    hub: LoopbackHub
    protocol_version = "HTTP/1.1"
    server_version = "LoopbackHub/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read hub.requests instead

    # ------------------------------------------------------------------ plumbing
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        parsed = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parsed.path)
        query = urllib.parse.parse_qs(parsed.query)
        auth = self.headers.get("Authorization", "")
        record = RequestRecord(
            method,
            path,
            self.headers.get("Range"),
            authorized=auth == f"Bearer {hub.token}",
            had_auth_header=bool(auth),
        )
        with hub._lock:
            hub.requests.append(record)
        body = b""
        if method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        key = self._fault_key(path)
        try:
            fault = hub._take_fault(key, method, {"status"}) if key else None
            if fault is not None:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                raise _HubError(
                    fault.status,
                    fault.error_code,
                    f"injected error {fault.status}",
                    **headers,
                )
            slow = hub._take_fault(key, method, {"slow"}) if key else None
            if slow is not None and slow.delay:
                time.sleep(slow.delay)
            if path.startswith("/api/models"):
                self._api(method, path[len("/api/models") :].strip("/"), query, body, record)
            elif m := _RE_RESOLVE.match(path):
                self._resolve(method, m["repo"], m["rev"], m["path"], record, slow, key)
            else:
                raise _HubError(404, None, f"no route for {path}")
        except _HubError as err:
            record.status = err.status
            self._send_error(err, method)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    @staticmethod
    def _fault_key(path: str) -> str:
        if path.startswith("/api/models/"):
            rest = path[len("/api/models/") :]
            parts = rest.split("/")
            return "/".join(parts[:2])
        if m := _RE_RESOLVE.match(path):
            return f"{m['repo']}/{m['path']}"
        return path.strip("/")

    def _send_error(self, err: _HubError, method: str) -> None:
        payload = json.dumps({"error": err.message}).encode()
        self.send_response(err.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Error-Message", err.message)
        if err.code:
            self.send_header("X-Error-Code", err.code)
        for k, v in err.headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(payload)

    def _send_json(self, obj: Any, method: str, record: RequestRecord) -> None:
        payload = json.dumps(obj).encode()
        record.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(payload)

    def _repo(self, repo_id: str, record: RequestRecord, *, content: bool) -> HubRepo:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and not record.authorized):
            raise _HubError(
                401 if not record.authorized else 404,
                "RepoNotFound",
                "Repository not found",
            )
        if content and repo.gated and not record.authorized:
            if record.had_auth_header:
                raise _HubError(
                    403,
                    "GatedRepo",
                    f"Access to model {repo_id} is restricted and you are not in the authorized "
                    "list. Visit the repo page to ask for access.",
                )
            raise _HubError(
                401,
                "GatedRepo",
                f"Access to model {repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
            )
        return repo

    @staticmethod
    def _check_rev(repo: HubRepo, rev: str) -> None:
        rev = urllib.parse.unquote(rev)
        if rev not in ("main", repo.sha):
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")

    # ------------------------------------------------------------------ API
    def _api(
        self,
        method: str,
        rest: str,
        query: dict[str, list[str]],
        body: bytes,
        record: RequestRecord,
    ) -> None:
        if rest == "" and method in ("GET", "HEAD"):
            self._send_json(self._search(query, record), method, record)
            return
        if m := _RE_PATHS_INFO.match(rest):
            if method != "POST":
                raise _HubError(405, None, "use POST")
            repo = self._repo(m["repo"], record, content=False)
            self._check_rev(repo, m["rev"])
            form = urllib.parse.parse_qs(body.decode("utf-8"))
            wanted = form.get("paths", [])
            self._send_json(self._entries(repo, wanted), method, record)
            return
        if m := _RE_TREE.match(rest):
            repo = self._repo(m["repo"], record, content=False)
            self._check_rev(repo, m["rev"])
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            self._send_json(self._tree(repo, m["path"] or "", recursive), method, record)
            return
        m = _RE_REVISION.match(rest)
        repo_id, rev = (m["repo"], m["rev"]) if m else (rest, "main")
        if repo_id.count("/") != 1:
            raise _HubError(404, "RepoNotFound", "Repository not found")
        repo = self._repo(repo_id, record, content=False)
        self._check_rev(repo, rev)
        blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
        expand = query.get("expand", [])
        info = repo.summary(with_siblings=not expand or "siblings" in expand, blobs=blobs)
        if expand:
            keep = set(expand) | {"id", "_id", "modelId"}
            info = {k: v for k, v in info.items() if k in keep}
        self._send_json(info, method, record)

    def _search(self, query: dict[str, list[str]], record: RequestRecord) -> list[dict[str, Any]]:
        repos = [r for r in self.hub.repos.values() if not r.private or record.authorized]
        text = (query.get("search") or [""])[0].lower()
        if text:
            repos = [r for r in repos if text in r.repo_id.lower()]
        for flt in query.get("filter", []):
            repos = [r for r in repos if flt in r.tags]
        for author in query.get("author", []):
            repos = [r for r in repos if r.repo_id.split("/")[0] == author]
        sort = (query.get("sort") or [""])[0]
        keys = {
            "downloads": lambda r: r.downloads,
            "likes": lambda r: r.likes,
            "lastModified": lambda r: r.last_modified,
            "last_modified": lambda r: r.last_modified,
            "createdAt": lambda r: r.created_at,
            "created_at": lambda r: r.created_at,
            "trendingScore": lambda r: r.downloads,
        }
        if sort in keys:
            repos.sort(key=keys[sort], reverse=True)
        limit = (query.get("limit") or [""])[0]
        if limit.isdigit():
            repos = repos[: int(limit)]
        expand = query.get("expand", [])
        full = (query.get("full") or [""])[0].lower() in ("1", "true")
        out = []
        for r in repos:
            info = r.summary(with_siblings=full or "siblings" in expand)
            if expand:
                keep = set(expand) | {"id", "_id", "modelId"}
                info = {k: v for k, v in info.items() if k in keep}
            out.append(info)
        return out

    @staticmethod
    def _folders(repo: HubRepo) -> set[str]:
        folders = set()
        for p in repo.files:
            parts = p.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                folders.add("/".join(parts[:i]))
        return folders

    def _tree(self, repo: HubRepo, base: str, recursive: bool) -> list[dict[str, Any]]:
        base = base.strip("/")
        prefix = base + "/" if base else ""
        out: list[dict[str, Any]] = []
        for folder in sorted(self._folders(repo)):
            if folder.startswith(prefix) and (recursive or "/" not in folder[len(prefix) :]):
                out.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": folder})
        for f in repo.files.values():
            if f.path.startswith(prefix) and (recursive or "/" not in f.path[len(prefix) :]):
                out.append(f.tree_entry())
        if base and not out and base not in repo.files:
            raise _HubError(404, "EntryNotFound", f"{base} does not exist on main")
        return out

    def _entries(self, repo: HubRepo, wanted: list[str]) -> list[dict[str, Any]]:
        folders = self._folders(repo)
        out: list[dict[str, Any]] = []
        for p in wanted:
            p = p.strip("/")
            if p in repo.files:
                out.append(repo.files[p].tree_entry())
            elif p in folders:
                out.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": p})
        return out

    # ------------------------------------------------------------------ files
    def _resolve(
        self,
        method: str,
        repo_id: str,
        rev: str,
        path: str,
        record: RequestRecord,
        slow: Fault | None,
        key: str,
    ) -> None:
        hub = self.hub
        repo = self._repo(repo_id, record, content=True)
        self._check_rev(repo, rev)
        f = repo.files.get(path)
        if f is None:
            raise _HubError(
                404, "EntryNotFound", f"{path} does not exist on main", X_Repo_Commit=repo.sha
            )
        size = f.size
        start, end = 0, size - 1
        status = 200
        rng = self.headers.get("Range")
        if rng:
            m = _RE_RANGE.match(rng.strip())
            if not m or (not m[1] and not m[2]):
                raise _HubError(416, None, f"bad range {rng}")
            if m[1]:
                start = int(m[1])
                end = min(int(m[2]), size - 1) if m[2] else size - 1
            else:
                start = max(0, size - int(m[2]))
            if start >= size or start > end:
                raise _HubError(
                    416, None, "Requested Range Not Satisfiable", Content_Range=f"bytes */{size}"
                )
            status = 206
        stop = end + 1  # exclusive
        truncate = drop = corrupt = None
        if method == "GET":
            truncate = hub._take_fault(key, method, {"truncate"})
            drop = hub._take_fault(key, method, {"drop"})
            corrupt = hub._take_fault(key, method, {"corrupt"})
        if truncate is not None:
            stop = max(start, min(stop, truncate.at if truncate.at is not None else size // 2))
        record.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(stop - start))
        self.send_header("Accept-Ranges", "bytes")
        etag = f'"{f.sha256}"' if f.lfs else f'"{f.git_oid}"'
        self.send_header("ETag", etag)
        if f.lfs:
            self.send_header("X-Linked-Etag", etag)
            self.send_header("X-Linked-Size", str(size))
        self.send_header("X-Repo-Commit", repo.sha)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if method == "HEAD":
            return
        drop_at = drop.at if drop is not None and drop.at is not None else None
        if drop is not None and drop_at is None:
            drop_at = start + (stop - start) // 2
        flip = None
        if corrupt is not None:
            flip = corrupt.at if corrupt.at is not None else size // 2
        rate = slow.rate if slow is not None else None
        pos = start
        chunk = _CHUNK if rate is None else max(1024, min(_CHUNK, int(rate / 20)))
        t0 = time.monotonic()
        sent = 0
        while pos < stop:
            n = min(chunk, stop - pos)
            if drop_at is not None:
                n = min(n, drop_at - pos)
                if n <= 0:
                    self._abort()
                    return
            data = f.source.read(pos, n)
            if flip is not None and pos <= flip < pos + len(data):
                b = bytearray(data)
                b[flip - pos] ^= 0xFF
                data = bytes(b)
            self.wfile.write(data)
            pos += len(data)
            sent += len(data)
            with hub._lock:
                hub.bytes_served[f"{repo_id}/{path}"] += len(data)
            if rate:
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        if drop_at is not None and drop_at <= pos and pos < end + 1:
            self._abort()

    def _abort(self) -> None:
        """Close the connection mid-body, like a network drop."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
