"""Hugging Face Hub access: search GGUF repos, list their files as download choices, tokens.

Built on ``huggingface_hub`` (``HfApi``, ``hf_hub_url``). Two things are done by hand on
purpose:

- The endpoint and the token are read at *call* time (``HF_ENDPOINT``, ``HF_TOKEN``,
  ``HF_TOKEN_PATH``/``HF_HOME``), because ``huggingface_hub`` freezes them in ``constants`` when
  it is imported; reading them late makes mirrors and tokens set later (tests, settings) work.
- Errors are mapped to :class:`~launcher.errors.HubError` subclasses whose messages say what
  to do, and every message goes through :func:`redact`, so a token never reaches a log, an
  error dialog or a crash report.

A repo's GGUF files are grouped into :class:`ModelChoice` values: one per quantisation, a split
set (``-00001-of-00003.gguf``) being one choice. File names that could escape the models folder
(``../x.gguf``, absolute paths, control characters) are left out and reported in ``skipped``.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from launcher.errors import (
    HubAccessError,
    HubError,
    HubNotFoundError,
    LauncherError,
    UnsafeFileName,
)
from launcher.fsutil import atomic_write_text

DEFAULT_ENDPOINT = "https://huggingface.co"
SortKey = Literal["downloads", "likes", "recent"]
_SORTS: dict[str, str] = {"downloads": "downloads", "likes": "likes", "recent": "last_modified"}

# Quantisation labels as they appear in GGUF file names (llama.cpp's and common uploaders').
_QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])("
    r"UD-)?("
    r"IQ[1-4]_(?:XXS|XS|S|M|NL)|"
    r"Q[2-8]_K(?:_(?:XL|S|M|L))?|"
    r"Q[4-8]_[01]|"
    r"Q4_0_[48]_[48]|"
    r"TQ[12]_0|MXFP4(?:_MOE)?|BF16|F16|F32|FP16|FP8"
    r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_SPLIT_RE = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_REPO_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{20,}")  # real tokens: hf_ + 34; not hf_hub_…


# ---------------------------------------------------------------------- endpoint and token
def hub_endpoint() -> str:
    """The Hub's base URL: ``HF_ENDPOINT`` (a mirror) if set now, else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def token_path() -> Path:
    """Where ``hf auth login`` keeps the token (``HF_TOKEN_PATH``, else ``$HF_HOME/token``)."""
    explicit = os.environ.get("HF_TOKEN_PATH")
    if explicit:
        return Path(os.path.expandvars(os.path.expanduser(explicit)))
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface",
    )
    return Path(os.path.expandvars(os.path.expanduser(home))) / "token"


def get_token() -> str | None:
    """The user's Hugging Face token: ``HF_TOKEN`` if set, else the one ``hf auth login`` saved."""
    env = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if env and env.strip():
        return env.strip()
    try:
        text = token_path().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def save_token(token: str) -> Path:
    """Store ``token`` where ``hf auth login`` stores it (owner-only permissions); return the path.

    Written directly rather than through ``huggingface_hub.login`` because that one validates
    the token online first; the app checks access when it is used instead.
    """
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise HubAccessError("That does not look like a Hugging Face token; paste it again.")
    path = token_path()
    atomic_write_text(path, token)
    try:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    except OSError:
        pass
    return path


def redact(text: str, token: str | None = None) -> str:
    """``text`` with any Hugging Face token (the given one, the stored one, ``hf_…``) masked."""
    secrets = {t for t in (token, _safe_get_token()) if t and len(t) >= 4}
    for secret in secrets:
        text = text.replace(secret, "hf_***")
    return _TOKEN_RE.sub("hf_***", text)


def _safe_get_token() -> str | None:
    try:
        return get_token()
    except Exception:  # redaction must never fail
        return None


def hf_api(token: str | None) -> Any:
    """An ``HfApi`` on the configured endpoint (read now, not at huggingface_hub's import,
    so a mirror set later counts) with ``token``, or anonymous."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_endpoint(), token=token if token else False)


def resolve_url(repo_id: str, path: str, revision: str = "main") -> str:
    """The ``resolve`` URL of a file on the configured endpoint."""
    from huggingface_hub import hf_hub_url

    return str(hf_hub_url(repo_id, path, revision=revision, endpoint=hub_endpoint()))


def repo_page(repo_id: str) -> str:
    """The repo's web page on the configured endpoint (where the user accepts a licence)."""
    return f"{hub_endpoint()}/{repo_id}"


# ---------------------------------------------------------------------- errors
def error_for_status(
    status: int,
    repo_id: str,
    *,
    filename: str | None = None,
    error_code: str | None = None,
    server_message: str | None = None,
    token: str | None = None,
) -> HubError:
    """The error a user should see for an HTTP status from the Hub (message redacted)."""
    what = f"{repo_id}/{filename}" if filename else repo_id
    page = repo_page(repo_id)
    gated = error_code == "GatedRepo" or (server_message or "").lower().find("gated") >= 0
    if status in (401, 403) and (gated or "restricted" in (server_message or "").lower()):
        if not token:
            msg = (
                f"{repo_id} is a gated model: open {page}, log in and accept its terms, then add "
                "your Hugging Face token (Settings → Hugging Face token, or `hf auth login`) and "
                "try again."
            )
        else:
            msg = (
                f"Your Hugging Face account has no access to {repo_id} yet: open {page} and "
                "accept its terms (approval can take a while), and check that your token has "
                "read access."
            )
        return HubAccessError(redact(msg, token))
    if status == 401:
        if token:
            msg = (
                f"The Hub refused your Hugging Face token for {what}: it may be expired or "
                "lack read access, or the repo is private to someone else. Create a new token "
                "at https://huggingface.co/settings/tokens and add it again."
            )
        else:
            msg = (
                f"{repo_id} was not found or is private: check the name, and for a private "
                "repo add your Hugging Face token (Settings → Hugging Face token, or "
                "`hf auth login`)."
            )
            if error_code == "RepoNotFound":
                return HubNotFoundError(redact(msg, token))
        return HubAccessError(redact(msg, token))
    if status == 403:
        return HubAccessError(
            redact(
                f"The Hub refused access to {what} (HTTP 403). Check that your Hugging Face "
                f"token has read access and that you were granted access at {page}.",
                token,
            )
        )
    if status == 404:
        if error_code == "RevisionNotFound":
            msg = f"{repo_id} has no such revision; use 'main' or a valid commit."
        elif error_code == "EntryNotFound" or filename:
            msg = f"{what} does not exist on the Hub: pick another file from the repo's list."
        else:
            msg = f"{repo_id} was not found on the Hub: check the name (owner/name)."
        return HubNotFoundError(redact(msg, token))
    if status == 429:
        return HubError(
            "The Hub is rate-limiting requests (HTTP 429): wait a minute and try again, or add a "
            "Hugging Face token to get a higher limit."
        )
    if status >= 500:
        return HubError(
            f"The Hub ({hub_endpoint()}) failed with HTTP {status}: it may be down; try again in "
            "a few minutes."
        )
    return HubError(redact(f"The Hub answered HTTP {status} for {what}.", token))


def _convert(
    exc: BaseException, repo_id: str, token: str | None, filename: str | None = None
) -> HubError:
    """Map an exception from ``huggingface_hub``/``httpx2`` to a :class:`HubError`."""
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        headers = response.headers
        return error_for_status(
            int(response.status_code),
            repo_id,
            filename=filename,
            error_code=headers.get("X-Error-Code"),
            server_message=headers.get("X-Error-Message"),
            token=token,
        )
    return HubError(
        redact(
            f"Could not reach the Hub at {hub_endpoint()} ({type(exc).__name__}): check your "
            "network connection, proxy, or the HF_ENDPOINT mirror setting.",
            token,
        )
    )


def _network_errors() -> tuple[type[BaseException], ...]:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    return (HfHubHTTPError, httpx2.HTTPError, OSError)


# ---------------------------------------------------------------------- search
@dataclass(frozen=True)
class RepoSummary:
    """One search result."""

    repo_id: str
    downloads: int
    likes: int
    last_modified: str | None
    gated: bool
    private: bool
    tags: tuple[str, ...] = ()


def search_models(
    query: str, *, sort: SortKey = "downloads", limit: int = 30, token: str | None = None
) -> list[RepoSummary]:
    """GGUF repos matching ``query``, most downloaded / liked / recently updated first."""
    if sort not in _SORTS:
        raise HubError(f"Unknown sort {sort!r}: use one of {', '.join(_SORTS)}.")
    token = token if token is not None else get_token()
    api = hf_api(token)
    try:
        models = list(
            api.list_models(
                search=query or None,
                filter="gguf",
                sort=_SORTS[sort],
                limit=limit,
                expand=["downloads", "likes", "lastModified", "gated", "private", "tags"],
            )
        )
    except _network_errors() as exc:
        raise _convert(exc, "search", token) from None
    out = []
    for m in models:
        out.append(
            RepoSummary(
                repo_id=m.id,
                downloads=int(m.downloads or 0),
                likes=int(m.likes or 0),
                last_modified=m.last_modified.isoformat() if m.last_modified else None,
                gated=bool(m.gated),
                private=bool(m.private),
                tags=tuple(m.tags or ()),
            )
        )
    return out


# ---------------------------------------------------------------------- files
@dataclass(frozen=True)
class RemoteFile:
    """One file of a repo at a fixed commit, with the sha256 the Hub stores for it."""

    repo_id: str
    path: str
    size: int
    sha256: str | None
    revision: str

    @property
    def url(self) -> str:
        """The ``resolve`` URL on the configured endpoint."""
        return resolve_url(self.repo_id, self.path, self.revision)

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class ModelChoice:
    """What a user picks: one quantisation of a model, one file or a whole split set."""

    repo_id: str
    revision: str
    label: str
    quant: str | None
    files: tuple[RemoteFile, ...]

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def is_split(self) -> bool:
        return len(self.files) > 1

    @property
    def first_file(self) -> RemoteFile:
        return self.files[0]


@dataclass(frozen=True)
class RepoFiles:
    """A repo's GGUF download choices and what was left out."""

    repo_id: str
    revision: str
    gated: bool
    private: bool
    choices: tuple[ModelChoice, ...]
    skipped: tuple[str, ...] = field(default=())  # unsafe names, incomplete split sets

    def choose(self, quant: str | None = None, filename: str | None = None) -> ModelChoice:
        """The choice for ``--quant Q4_K_M`` or ``--file NAME``; the only one if there is one."""
        if filename:
            for c in self.choices:
                if any(f.path == filename or f.name == filename for f in c.files):
                    return c
            raise HubNotFoundError(
                f"{self.repo_id} has no GGUF file named {filename!r}. Available: "
                + ", ".join(f.path for c in self.choices for f in c.files[:1])
            )
        if quant:
            wanted = quant.upper()
            hits = [c for c in self.choices if (c.quant or "").upper() == wanted]
            if not hits:
                hits = [c for c in self.choices if wanted in c.label.upper()]
            if len(hits) == 1:
                return hits[0]
            if hits:
                raise HubError(
                    f"{self.repo_id} has several {quant} files: "
                    + ", ".join(c.label for c in hits)
                    + ". Pick one with --file."
                )
            raise HubNotFoundError(
                f"{self.repo_id} has no {quant} file. Available: {self.labels()}."
            )
        if len(self.choices) == 1:
            return self.choices[0]
        if not self.choices:
            raise HubNotFoundError(f"{self.repo_id} has no GGUF files to download.")
        raise HubError(
            f"{self.repo_id} has {len(self.choices)} GGUF choices ({self.labels()}); pick one "
            "with --quant or --file."
        )

    def labels(self) -> str:
        return ", ".join(c.label for c in self.choices) or "none"


def quant_of(filename: str) -> str | None:
    """The quantisation label in a GGUF file name (``Q4_K_M``, ``IQ2_XS``, ``BF16``…), if any."""
    name = PurePosixPath(filename).name
    matches = list(_QUANT_RE.finditer(name))
    if not matches:
        return None
    m = matches[-1]
    return ((m.group(1) or "") + m.group(2)).upper()


def split_info(filename: str) -> tuple[str, int, int] | None:
    """``(stem, index, count)`` for a split-set shard name, else None."""
    m = _SPLIT_RE.match(filename)
    if not m:
        return None
    return m["stem"], int(m["index"]), int(m["count"])


def safe_relative_path(path: str) -> PurePosixPath:
    """``path`` as a relative path that stays inside its folder, or raise UnsafeFileName.

    Rejects absolute paths, drive letters, backslashes, ``.``/``..`` (also after Unicode
    NFKC folding, so ``．．`` counts), empty parts, control/format characters and characters
    Windows cannot store. Hand-written: no library covers "a name a remote server chose".
    """

    def bad(why: str) -> UnsafeFileName:
        return UnsafeFileName(
            f"The repo lists a file named {path!r}, which {why}; it was not downloaded. "
            "Report the repo to its owner."
        )

    if not path or len(path) > 1024:
        raise bad("is empty or too long")
    if "\\" in path or path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise bad("is an absolute or Windows path")
    parts = path.split("/")
    for part in parts:
        folded = unicodedata.normalize("NFKC", part)
        if part in ("", ".", "..") or folded in ("", ".", "..") or folded.strip(". ") == "":
            raise bad("climbs out of the folder")
        if "/" in folded or "\\" in folded:
            raise bad("hides a path separator")
        if any(unicodedata.category(ch).startswith("C") for ch in part):
            raise bad("contains control characters")
        if any(ch in '<>:"|?*' for ch in part) or part.endswith((" ", ".")):
            raise bad("cannot be stored on every system")
        if len(part.encode("utf-8")) > 255:
            raise bad("has a part that is too long")
    return PurePosixPath(*parts)


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a plain ``owner/name``; raise HubNotFoundError otherwise."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_REPO_PART_RE.match(p) and ".." not in p for p in parts):
        raise HubNotFoundError(
            f"{repo_id!r} is not a Hugging Face repo name; use the form owner/name."
        )
    return repo_id


def group_choices(
    repo_id: str, revision: str, files: Iterable[RemoteFile]
) -> tuple[list[ModelChoice], list[str]]:
    """Group GGUF files into choices (split sets as one); return (choices, skipped names)."""
    skipped: list[str] = []
    singles: list[RemoteFile] = []
    sets: dict[tuple[str, int], dict[int, RemoteFile]] = {}
    for f in files:
        if not f.path.lower().endswith(".gguf"):
            continue
        try:
            safe_relative_path(f.path)
        except LauncherError:
            skipped.append(f.path)
            continue
        info = split_info(f.path)
        if info is None:
            singles.append(f)
        else:
            stem, index, count = info
            sets.setdefault((stem, count), {})[index] = f
    choices: list[ModelChoice] = []
    for f in singles:
        choices.append(
            ModelChoice(repo_id, revision, quant_of(f.path) or f.name, quant_of(f.path), (f,))
        )
    for (stem, count), shards in sets.items():
        if sorted(shards) != list(range(1, count + 1)):
            skipped.extend(s.path for s in shards.values())
            continue
        ordered = tuple(shards[i] for i in range(1, count + 1))
        q = quant_of(stem + ".gguf")
        label = f"{q or PurePosixPath(stem).name} ({count} parts)"
        choices.append(ModelChoice(repo_id, revision, label, q, ordered))
    choices.sort(key=lambda c: (c.total_size, c.label))
    return choices, skipped


def list_gguf_files(
    repo_id: str, *, revision: str | None = None, token: str | None = None
) -> RepoFiles:
    """A repo's GGUF files with sizes and sha256, grouped into choices, pinned to one commit."""
    check_repo_id(repo_id)
    token = token if token is not None else get_token()
    api = hf_api(token)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    except _network_errors() as exc:
        raise _convert(exc, repo_id, token) from None
    commit = info.sha or revision or "main"
    files = []
    for s in info.siblings or []:
        size = s.lfs.size if s.lfs is not None else s.size
        files.append(
            RemoteFile(
                repo_id=repo_id,
                path=s.rfilename,
                size=int(size or 0),
                sha256=s.lfs.sha256 if s.lfs is not None else None,
                revision=commit,
            )
        )
    choices, skipped = group_choices(repo_id, commit, files)
    return RepoFiles(
        repo_id=repo_id,
        revision=commit,
        gated=bool(info.gated),
        private=bool(info.private),
        choices=tuple(choices),
        skipped=tuple(skipped),
    )


def check_access(remote: RemoteFile, token: str | None = None) -> None:
    """HEAD the file's URL: raise HubAccessError (gated/private/token) or HubNotFoundError."""
    from huggingface_hub.utils import build_hf_headers, get_session

    token = token if token is not None else get_token()
    headers = build_hf_headers(token=token if token else False)
    headers["Accept-Encoding"] = "identity"
    try:
        r = get_session().head(remote.url, headers=headers, follow_redirects=True, timeout=30)
    except _network_errors() as exc:
        raise _convert(exc, remote.repo_id, token, remote.path) from None
    if r.status_code >= 400:
        raise error_for_status(
            r.status_code,
            remote.repo_id,
            filename=remote.path,
            error_code=r.headers.get("X-Error-Code"),
            server_message=r.headers.get("X-Error-Message"),
            token=token,
        )
