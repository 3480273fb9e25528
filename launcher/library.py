"""The model library: our models folder plus models other tools already have on disk.

Models are found in place, never copied: our models folder (``Settings.models_path``), the
Hugging Face cache (``huggingface_hub.scan_cache_dir``), LM Studio's models folders, Ollama's
blob store (manifests name the GGUF blob of each model), llama.cpp's download cache and any
extra folders from the settings. Each :class:`LocalModel` says where it came from
(``source``) and whether the launcher owns its files (``owned``): deleting a model the
launcher does not own needs an explicit ``allow_foreign=True`` and says what it removed.

An index (atomic JSON in the data folder) caches each file's header summary (architecture,
parameters, quantisation, context length) keyed by path, size and mtime, and records which
files our downloader verified against the Hub's sha256. ``.part`` files and set-aside bad
downloads never end in ``.gguf`` and are never listed as models; a split model is listed only
when all of its shards are present. A download whose sha256 did not match is kept as
``<file>.sha256-mismatch-<time>`` (never deleted silently): :meth:`Library.set_aside_files`
lists those and :meth:`Library.delete_set_aside` removes one when the user confirms.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from launcher.errors import GGUFError, LauncherError
from launcher.fsutil import atomic_write_json, fsync_dir, read_json
from launcher.hub import check_repo_id, quant_of, safe_relative_path, split_info
from launcher.paths import AppPaths
from launcher.settings import Settings, load_settings

SOURCE_LIBRARY = "library"
SOURCE_IMPORTED = "imported"
SOURCE_HF_CACHE = "hf-cache"
SOURCE_LMSTUDIO = "lmstudio"
SOURCE_OLLAMA = "ollama"
SOURCE_LLAMACPP = "llama.cpp"
SOURCE_FOLDER = "folder"

SOURCE_NAMES = {
    SOURCE_LIBRARY: "Spark Launcher",
    SOURCE_IMPORTED: "imported file",
    SOURCE_HF_CACHE: "the Hugging Face cache",
    SOURCE_LMSTUDIO: "LM Studio",
    SOURCE_OLLAMA: "Ollama",
    SOURCE_LLAMACPP: "llama.cpp",
    SOURCE_FOLDER: "an extra models folder",
}
SET_ASIDE_MARK = ".sha256-mismatch-"  # <file>.sha256-mismatch-<unix time>
_OLLAMA_MODEL_MEDIA = "application/vnd.ollama.image.model"
_INDEX_VERSION = 1


@dataclass(frozen=True)
class LocalModel:
    """One model on disk (a split model is one model with several files)."""

    name: str
    path: Path  # the file to load (the first shard of a split model)
    files: tuple[Path, ...]
    size: int
    source: str
    owned: bool
    repo_id: str | None = None
    verified: bool = False
    sha256: str | None = None
    architecture: str | None = None
    parameters: int | None = None
    quant: str | None = None
    context_length: int | None = None
    error: str | None = None  # the header could not be read

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["files"] = [str(p) for p in self.files]
        d["source_name"] = SOURCE_NAMES.get(self.source, self.source)
        return d


@dataclass(frozen=True)
class DeleteResult:
    """What :meth:`Library.delete` did."""

    freed_bytes: int
    removed: tuple[Path, ...]
    message: str


@dataclass(frozen=True)
class SetAsideFile:
    """A download kept aside because its sha256 did not match the Hub's (never loaded)."""

    path: Path
    name: str  # the file it should have been
    size: int
    repo_id: str | None = None
    set_aside_at: int | None = None  # unix time, from the file name

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def set_aside_path(dest: Path, when: float) -> Path:
    """Where a download that failed verification is kept, beside its final path."""
    return dest.with_name(f"{dest.name}{SET_ASIDE_MARK}{int(when)}")


def parse_set_aside(path: Path) -> tuple[str, int] | None:
    """(the intended file name, the time it was set aside) for a set-aside file, else None."""
    name, mark, stamp = path.name.rpartition(SET_ASIDE_MARK)
    if not mark or not name or not stamp.isdigit():
        return None
    return name, int(stamp)


@dataclass(frozen=True)
class DiscoveryRoots:
    """Where other tools keep models (each may be missing)."""

    hf_cache: tuple[Path, ...] = ()
    lmstudio: tuple[Path, ...] = ()
    ollama: tuple[Path, ...] = ()
    llamacpp: tuple[Path, ...] = ()
    extra: tuple[Path, ...] = ()

    @classmethod
    def default(cls, settings: Settings | None = None) -> DiscoveryRoots:
        """The usual places on this machine, read from the environment now."""
        import platformdirs

        home = Path.home()
        if os.environ.get("HF_HUB_CACHE"):
            hf = Path(os.environ["HF_HUB_CACHE"])
        elif os.environ.get("HF_HOME"):
            hf = Path(os.environ["HF_HOME"]) / "hub"
        else:
            xdg = os.environ.get("XDG_CACHE_HOME")
            hf = (Path(xdg) if xdg else home / ".cache") / "huggingface" / "hub"
        ollama = [home / ".ollama" / "models"]
        if os.environ.get("OLLAMA_MODELS"):
            ollama.insert(0, Path(os.environ["OLLAMA_MODELS"]))
        if os.name == "posix":
            ollama.append(Path("/usr/share/ollama/.ollama/models"))
        llama = [Path(platformdirs.user_cache_dir("llama.cpp", appauthor=False))]
        if os.environ.get("LLAMA_CACHE"):
            llama.insert(0, Path(os.environ["LLAMA_CACHE"]))
        extra = tuple(Path(p).expanduser() for p in (settings.extra_model_dirs if settings else []))
        return cls(
            hf_cache=(hf,),
            lmstudio=(home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"),
            ollama=tuple(ollama),
            llamacpp=tuple(llama),
            extra=extra,
        )


@dataclass
class _Found:
    path: Path
    source: str
    name: str
    repo_id: str | None = None
    owned: bool = False
    files: list[Path] = field(default_factory=list)


def _is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"GGUF"
    except OSError:
        return False


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_summary(files: list[Path]) -> dict[str, Any]:
    """Header summary of a model (all shards): architecture, parameters, quant, context."""
    from launcher.gguf import read_header

    headers = [read_header(p) for p in files]
    first = headers[0]
    ft = first.get("general.file_type")
    quant = None
    if isinstance(ft, int):
        try:
            import gguf

            quant = gguf.LlamaFileType(ft).name.removeprefix("MOSTLY_")
        except (ValueError, ImportError):
            quant = None
    ctx = first.arch_key("context_length")
    return {
        "architecture": first.architecture,
        "parameters": sum(t.n_elements for h in headers for t in h.tensors),
        "quant": quant or quant_of(files[0].name),
        "context_length": int(ctx) if isinstance(ctx, int) else None,
        "name": first.get("general.name"),
    }


class Library:
    """Our models folder and the models other tools have; see the module docstring."""

    def __init__(
        self,
        paths: AppPaths | None = None,
        settings: Settings | None = None,
        roots: DiscoveryRoots | None = None,
    ) -> None:
        self.paths = paths or AppPaths.default()
        self.settings = settings if settings is not None else load_settings(self.paths)
        self.models_dir = self.settings.models_path(self.paths).expanduser().resolve()
        self.roots = roots if roots is not None else DiscoveryRoots.default(self.settings)
        self.index_file = self.paths.data_dir / "library.json"
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ index
    def _load_index(self) -> dict[str, Any]:
        data = read_json(self.index_file, None)
        if not isinstance(data, dict) or data.get("version") != _INDEX_VERSION:
            data = {"version": _INDEX_VERSION, "files": {}, "imported": []}
        data.setdefault("files", {})
        data.setdefault("imported", [])
        return data

    def _save_index(self, data: dict[str, Any]) -> None:
        atomic_write_json(self.index_file, data)

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def record_verified(
        self,
        path: Path,
        sha256: str | None,
        *,
        repo_id: str | None = None,
        revision: str | None = None,
    ) -> None:
        """Remember that ``path`` (now final) matched the Hub's ``sha256``."""
        stamp = self._stamp(path)
        if stamp is None:
            return
        with self._lock:
            data = self._load_index()
            entry = data["files"].get(str(path), {})
            if (entry.get("size"), entry.get("mtime_ns")) != stamp:
                entry = {}
            entry.update(
                size=stamp[0],
                mtime_ns=stamp[1],
                sha256=sha256,
                verified=sha256 is not None,
                repo_id=repo_id,
                revision=revision,
            )
            data["files"][str(path)] = entry
            self._save_index(data)

    def is_verified(self, path: Path, sha256: str) -> bool:
        """Whether ``path`` is unchanged since it was verified against ``sha256``."""
        stamp = self._stamp(path)
        entry = self._load_index()["files"].get(str(path))
        return bool(
            stamp
            and entry
            and entry.get("verified")
            and entry.get("sha256") == sha256
            and (entry.get("size"), entry.get("mtime_ns")) == stamp
        )

    # ------------------------------------------------------------------ layout
    def local_path(self, repo_id: str, path: str) -> Path:
        """Where a repo file goes in our models folder; never outside it (raises otherwise)."""
        check_repo_id(repo_id)
        rel = safe_relative_path(path)
        owner, name = repo_id.split("/")
        base = self.models_dir
        target = base.joinpath(owner, name, *rel.parts)
        # Belt and braces: resolve symlinked parents and check containment again.
        resolved = target.parent.resolve() / target.name
        if not resolved.is_relative_to(base):
            from launcher.errors import UnsafeFileName

            raise UnsafeFileName(
                f"{path!r} from {repo_id} would be written outside the models folder; "
                "it was not downloaded."
            )
        return target

    # ------------------------------------------------------------------ discovery
    def _ours(self) -> Iterator[_Found]:
        root = self.models_dir
        if not root.is_dir():
            return
        for p in sorted(root.rglob("*.gguf")):
            if not p.is_file():
                continue
            rel = p.relative_to(root)
            repo_id = "/".join(rel.parts[:2]) if len(rel.parts) >= 3 else None
            yield _Found(p, SOURCE_LIBRARY, p.name, repo_id=repo_id, owned=True)

    def _hf_cache(self) -> Iterator[_Found]:
        from huggingface_hub import scan_cache_dir

        for root in self.roots.hf_cache:
            if not root.is_dir():
                continue
            try:
                info = scan_cache_dir(root)
            except Exception:  # a broken cache must not break the library
                continue
            seen: set[Path] = set()
            for repo in info.repos:
                if repo.repo_type != "model":
                    continue
                for rev in repo.revisions:
                    for f in rev.files:
                        if not f.file_name.lower().endswith(".gguf"):
                            continue
                        if Path(f.blob_path) in seen:
                            continue
                        seen.add(Path(f.blob_path))
                        yield _Found(
                            Path(f.file_path), SOURCE_HF_CACHE, f.file_name, repo_id=repo.repo_id
                        )

    @staticmethod
    def _plain_folder(roots: Iterable[Path], source: str) -> Iterator[_Found]:
        for root in roots:
            if not root.is_dir():
                continue
            for p in sorted(root.rglob("*.gguf")):
                if p.is_file() and "mmproj" not in p.name.lower():
                    rel = p.relative_to(root)
                    repo = "/".join(rel.parts[:2]) if len(rel.parts) >= 3 else None
                    yield _Found(p, source, p.name, repo_id=repo)

    def _ollama(self) -> Iterator[_Found]:
        for root in self.roots.ollama:
            manifests = root / "manifests"
            if not manifests.is_dir():
                continue
            for mf in sorted(manifests.rglob("*")):
                if not mf.is_file():
                    continue
                data = read_json(mf, None)
                if not isinstance(data, dict):
                    continue
                layers = data.get("layers") or []
                digest = next(
                    (
                        layer.get("digest")
                        for layer in layers
                        if isinstance(layer, dict) and layer.get("mediaType") == _OLLAMA_MODEL_MEDIA
                    ),
                    None,
                )
                if not isinstance(digest, str) or not digest.startswith("sha256:"):
                    continue
                blob = root / "blobs" / digest.replace(":", "-")
                if not blob.is_file() or not _is_gguf(blob):
                    continue
                parts = mf.relative_to(manifests).parts
                if len(parts) >= 4 and parts[0] == "registry.ollama.ai" and parts[1] == "library":
                    name = f"{'/'.join(parts[2:-1])}:{parts[-1]}"
                else:
                    name = f"{'/'.join(parts[:-1])}:{parts[-1]}"
                yield _Found(blob, SOURCE_OLLAMA, name)

    def _imported(self, data: dict[str, Any]) -> Iterator[_Found]:
        for s in data.get("imported", []):
            p = Path(s)
            if p.is_file():
                yield _Found(p, SOURCE_IMPORTED, p.name)

    def scan(self, *, other_tools: bool | None = None) -> list[LocalModel]:
        """Every model found now (ours first), with header summaries from the index."""
        if other_tools is None:
            other_tools = self.settings.scan_other_tools
        with self._lock:
            data = self._load_index()
            found: list[_Found] = list(self._ours()) + list(self._imported(data))
            found += list(self._plain_folder(self.roots.extra, SOURCE_FOLDER))
            if other_tools:
                found += list(self._hf_cache())
                found += list(self._plain_folder(self.roots.lmstudio, SOURCE_LMSTUDIO))
                found += list(self._ollama())
                found += list(self._plain_folder(self.roots.llamacpp, SOURCE_LLAMACPP))
            models = []
            seen: set[Path] = set()
            changed = False
            for item in _group_splits(found):
                real = [_real(p) for p in item.files]
                if any(r in seen for r in real):
                    continue  # the same bytes reached through another tool's folder
                seen.update(real)
                model, dirty = self._describe(item, data)
                changed |= dirty
                models.append(model)
            if changed:
                with contextlib.suppress(OSError):
                    self._save_index(data)
            return models

    def _describe(self, item: _Found, data: dict[str, Any]) -> tuple[LocalModel, bool]:
        files = item.files
        key = str(files[0])
        entry = data["files"].get(key, {})
        stamps = [self._stamp(p) for p in files]
        stamp = stamps[0]
        dirty = False
        if (entry.get("size"), entry.get("mtime_ns")) != stamp or "header" not in entry:
            keep = entry if (entry.get("size"), entry.get("mtime_ns")) == stamp else {}
            entry = dict(keep)
            try:
                entry["header"] = read_summary(files)
                entry["error"] = None
            except (GGUFError, OSError) as exc:
                entry["header"] = None
                entry["error"] = str(exc)
            if stamp is not None:
                entry["size"], entry["mtime_ns"] = stamp
            data["files"][key] = entry
            dirty = True
        header = entry.get("header") or {}
        verified = all(
            bool(data["files"].get(str(p), {}).get("verified"))
            and (data["files"][str(p)].get("size"), data["files"][str(p)].get("mtime_ns"))
            == self._stamp(p)
            for p in files
        )
        name = item.name
        if item.source == SOURCE_LIBRARY and item.repo_id:
            name = f"{item.repo_id}/{files[0].name}"
        model = LocalModel(
            name=name,
            path=files[0],
            files=tuple(files),
            size=sum(s[0] for s in stamps if s),
            source=item.source,
            owned=item.owned,
            repo_id=item.repo_id or entry.get("repo_id"),
            verified=verified,
            sha256=entry.get("sha256") if len(files) == 1 else None,
            architecture=header.get("architecture"),
            parameters=header.get("parameters"),
            quant=header.get("quant") or quant_of(files[0].name),
            context_length=header.get("context_length"),
            error=entry.get("error"),
        )
        return model, dirty

    def find(self, name_or_path: str) -> LocalModel | None:
        """A model by path, name or file name (first match)."""
        for m in self.scan():
            if name_or_path in (str(m.path), m.name, m.path.name):
                return m
        return None

    # ------------------------------------------------------------------ set-aside downloads
    def set_aside_files(self) -> list[SetAsideFile]:
        """Downloads set aside after a sha256 mismatch, in our models folder (oldest first)."""
        root = self.models_dir
        if not root.is_dir():
            return []
        out = []
        for p in root.rglob(f"*{SET_ASIDE_MARK}*"):
            parsed = parse_set_aside(p)
            if parsed is None or p.is_symlink() or not p.is_file():
                continue
            rel = p.relative_to(root)
            repo_id = "/".join(rel.parts[:2]) if len(rel.parts) >= 3 else None
            out.append(SetAsideFile(p, parsed[0], _file_size(p), repo_id, parsed[1]))
        return sorted(out, key=lambda f: (f.set_aside_at or 0, str(f.path)))

    def delete_set_aside(self, path: str | os.PathLike[str]) -> DeleteResult:
        """Delete one set-aside download; only such files, only inside our models folder."""
        target = Path(path)
        with self._lock:
            match = next((f for f in self.set_aside_files() if f.path == target), None)
            if match is None:
                raise LauncherError(
                    f"{target.name} is not a set-aside download in {self.models_dir}; "
                    "nothing was deleted."
                )
            try:
                target.unlink()
            except FileNotFoundError:
                return DeleteResult(0, (), f"{target.name} was already gone.")
            except OSError as exc:
                raise LauncherError(
                    f"Could not delete {target}: {exc.strerror}. Check the file's permissions."
                ) from None
            _prune_empty(target.parent, self.models_dir)
        return DeleteResult(
            match.size,
            (target,),
            f"Deleted the copy of {match.name} that failed verification: "
            f"{match.size / 2**30:.2f} GB freed.",
        )

    # ------------------------------------------------------------------ import / delete
    def import_file(self, src: str | os.PathLike[str], *, copy: bool = False) -> LocalModel:
        """Add a ``.gguf`` from anywhere: registered in place, or copied into the models folder."""
        from launcher.gguf import read_header

        source = Path(src).expanduser().resolve()
        if not source.is_file():
            raise LauncherError(f"{source} does not exist; pick a .gguf file.")
        read_header(source)  # raises GGUFError with a clear message if it is not a GGUF
        with self._lock:
            if copy:
                dest = self.models_dir / "imported" / source.name
                if dest.exists():
                    raise LauncherError(
                        f"{dest.name} is already in the library; rename the file to import "
                        "another copy."
                    )
                need = source.stat().st_size
                free = shutil.disk_usage(_existing_parent(dest)).free
                if free < need:
                    from launcher.errors import NotEnoughDiskSpace

                    raise NotEnoughDiskSpace(
                        f"Copying {source.name} needs {need / 2**30:.1f} GB but only "
                        f"{free / 2**30:.1f} GB is free; import it in place instead."
                    )
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(dest.name + ".part")
                shutil.copyfile(source, tmp)
                os.replace(tmp, dest)
                fsync_dir(dest.parent)
                target = dest
            else:
                data = self._load_index()
                if str(source) not in data["imported"]:
                    data["imported"].append(str(source))
                    self._save_index(data)
                target = source
        for m in self.scan(other_tools=False):
            if m.path == target or target in m.files:
                return m
        raise LauncherError(f"{source.name} was imported but is not readable as a model.")

    def delete(self, model: LocalModel, *, allow_foreign: bool = False) -> DeleteResult:
        """Delete a model; other tools' files only with ``allow_foreign`` (and it says so)."""
        tool = SOURCE_NAMES.get(model.source, model.source)
        with self._lock:
            data = self._load_index()
            if model.source == SOURCE_IMPORTED:
                data["imported"] = [p for p in data["imported"] if Path(p) not in model.files]
                self._save_index(data)
                return DeleteResult(
                    0,
                    (),
                    f"Removed {model.name} from the library; the file itself was kept at "
                    f"{model.path}.",
                )
            if not model.owned:
                if model.source == SOURCE_OLLAMA:
                    raise LauncherError(
                        f"{model.name} belongs to Ollama; delete it with `ollama rm {model.name}` "
                        "so Ollama's own records stay right."
                    )
                if not allow_foreign:
                    raise LauncherError(
                        f"{model.name} belongs to {tool} ({model.path}). Spark Launcher does not "
                        f"delete other tools' files unless you confirm it; or delete it in {tool}."
                    )
            targets: list[Path] = []
            for p in model.files:
                targets.append(p)
                if p.is_symlink():  # HF cache: the snapshot entry points at the blob
                    targets.append(_real(p))
            freed = 0
            removed = []
            for t in targets:
                try:
                    size = 0 if t.is_symlink() else t.stat().st_size
                    t.unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise LauncherError(
                        f"Could not delete {t}: {exc.strerror}. Check the file's permissions."
                    ) from None
                freed += size
                removed.append(t)
                data["files"].pop(str(t), None)
            self._save_index(data)
            if model.owned:
                _prune_empty(model.path.parent, self.models_dir)
        where = "" if model.owned else f" (files of {tool})"
        return DeleteResult(
            freed,
            tuple(removed),
            f"Deleted {model.name}{where}: {freed / 2**30:.2f} GB freed.",
        )


def _real(p: Path) -> Path:
    try:
        return p.resolve()
    except OSError:
        return p


def _existing_parent(p: Path) -> Path:
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def _prune_empty(folder: Path, stop: Path) -> None:
    stop = stop.resolve()
    folder = folder.resolve()
    while folder != stop and folder.is_relative_to(stop):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _group_splits(found: list[_Found]) -> Iterator[_Found]:
    """Single files as they are; split shards as one item, only when every shard is there."""
    sets: dict[tuple[Path, str, int, str], dict[int, _Found]] = {}
    for f in found:
        info = split_info(f.path.name)
        if info is None:
            f.files = [f.path]
            yield f
            continue
        stem, index, count = info
        sets.setdefault((f.path.parent, stem, count, f.source), {})[index] = f
    for (_parent, stem, count, _source), shards in sets.items():
        if sorted(shards) != list(range(1, count + 1)):
            continue  # incomplete: not usable yet
        first = shards[1]
        first.files = [shards[i].path for i in range(1, count + 1)]
        first.name = (
            f"{stem}.gguf ({count} parts)" if first.source != SOURCE_LIBRARY else first.name
        )
        yield first


def models_as_json(models: Iterable[LocalModel]) -> str:
    """The library as JSON text (for ``spark-launcher models --json``)."""
    return json.dumps([m.to_json() for m in models], indent=2)
