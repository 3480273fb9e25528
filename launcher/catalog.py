"""The model catalog: popular GGUF models, their quant files and what the planner needs offline.

The bundled ``resources/catalog.json`` makes recommendations work without a network. Each
model carries its Hugging Face repo and files per quant, its uses, its capabilities (``tools``:
native tool calling in its chat template; ``reasoning``: a thinking mode; ``vision``: image
input, with the model's mmproj file), an editorial quality score and its architecture numbers
(from the model's config.json). Every size is marked
``verified`` (with its source) or ``estimated`` (with the formula).

:func:`refresh` asks the Hub (``HF_ENDPOINT`` and the user's token honoured) for the exact
file sizes and sha256 of every catalog file and writes them, atomically, to
``catalog.json`` in the user's data folder. :meth:`Catalog.load` merges that file over the
bundled one, so a refresh survives app updates and a failed refresh changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher import hub
from launcher.errors import HubError, LauncherError
from launcher.fsutil import atomic_write_json, read_json
from launcher.paths import AppPaths
from launcher.planning import ModelSummary

if TYPE_CHECKING:
    from launcher.gguf import GGUFModel

BUNDLED_CATALOG = Path(__file__).resolve().parent.parent / "resources" / "catalog.json"
USES = ("assistant", "reasoning", "coding", "private-work", "agents")
SIZE_STATUSES = ("verified", "estimated")
#: What a model can do beyond plain chat; ``capabilities_source`` in the catalog says where
#: each model's list comes from (its model card or chat template).
CAPABILITIES = ("tools", "reasoning", "vision")


class CatalogError(LauncherError):
    """The catalog file is missing or malformed."""


@dataclass(frozen=True)
class QuantFile:
    """One quantisation of a catalog model: where it lives on the Hub and how big it is."""

    quant: str  # "Q4_K_M", "Q8_0", "MXFP4"
    repo: str  # "Qwen/Qwen3-32B-GGUF"
    files: tuple[str, ...]  # one path, or every shard of a split model in order
    size_bytes: int  # all shards together
    size_status: str  # "verified" | "estimated"
    size_source: str
    sha256: tuple[str, ...] = ()  # per file, once refreshed from the Hub
    summary: dict[str, Any] | None = None  # exact ModelSummary.to_json() from the file's header

    @property
    def uri(self) -> str:
        """``hf://owner/repo/file.gguf`` of the first (or only) file."""
        return f"hf://{self.repo}/{self.files[0]}"


@dataclass(frozen=True)
class CatalogModel:
    """A model family member (e.g. Qwen3 32B) with its quant files."""

    id: str
    name: str
    family: str
    publisher: str
    license: str
    params: int
    uses: tuple[str, ...]
    quality: int  # 0-100, editorial (see the catalog's ``quality_source``)
    quality_by_use: dict[str, int]
    tier: str
    arch: dict[str, Any]  # ModelSummary.to_json() field names (n_layers, n_head_kv, ...)
    quants: tuple[QuantFile, ...]
    active_params: int | None = None  # MoE: parameters read per token
    notes: str = ""
    capabilities: tuple[str, ...] = ()  # of CAPABILITIES
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_moe(self) -> bool:
        return int(self.arch.get("n_expert") or 0) > 0

    def can(self, *capabilities: str) -> bool:
        """Whether the model has every one of ``capabilities`` ("tools", ...)."""
        return all(c in self.capabilities for c in capabilities)

    def quality_for(self, use: str | None) -> int:
        """The quality score for a use (falls back to the overall score)."""
        if use is None:
            return self.quality
        return self.quality_by_use.get(use, self.quality)

    def quant(self, name: str) -> QuantFile | None:
        for q in self.quants:
            if q.quant.lower() == name.lower():
                return q
        return None


@dataclass(frozen=True)
class Candidate:
    """A model in a given quant: what ``recommend`` ranks and what the UI offers to download."""

    model: CatalogModel
    quant: QuantFile

    @property
    def key(self) -> str:
        """Stable id, e.g. ``qwen3-32b:Q4_K_M``."""
        return f"{self.model.id}:{self.quant.quant}"

    @property
    def label(self) -> str:
        return f"{self.model.name} {self.quant.quant}"

    @property
    def summary(self) -> ModelSummary:
        """The estimator's input for this file, offline (see :func:`summary_for`)."""
        return summary_for(self.model, self.quant)

    @property
    def summary_is_exact(self) -> bool:
        """True when the summary comes from the file's own GGUF header (a refresh)."""
        return self.quant.summary is not None


# Bits per weight of the token embedding and of the output head in common quant mixes
# (llama.cpp's quantize keeps these tensors at a higher type: Q4_K_M -> Q4_K embeddings and a
# Q6_K head). Used only to split an estimated file size into input / blocks / output.
_EDGE_BPW: dict[str, tuple[float, float]] = {
    "Q4_K_M": (4.5, 6.5625),
    "Q5_K_M": (5.5, 6.5625),
    "Q6_K": (6.5625, 6.5625),
    "Q8_0": (8.5, 8.5),
    "MXFP4": (8.5, 8.5),
}


def summary_for(model: CatalogModel, quant: QuantFile) -> ModelSummary:
    """The estimator's input for one catalog file, offline.

    After ``catalog refresh --headers`` the file's own header summary is used (exact).
    Otherwise the architecture comes from the model's config.json values in the catalog and
    the byte split is estimated: the token embedding and output head from ``n_vocab x n_embd``
    at the quant's usual types, the rest spread evenly over the blocks, and for MoE models the
    routed experts' share of each block from the expert and attention shapes.
    """
    if quant.summary is not None:
        return ModelSummary.from_json(quant.summary)
    a = model.arch
    n_layers = int(a["n_layers"])
    n_embd = int(a["n_embd"])
    n_vocab = int(a["n_vocab"])
    emb_bpw, out_bpw = _EDGE_BPW.get(quant.quant.upper(), (8.5, 8.5))
    embd_bytes = int(n_vocab * n_embd * emb_bpw / 8)
    tied = bool(a.get("tied_output"))
    head_bytes = int(n_vocab * n_embd * out_bpw / 8)
    output_bytes = 4 * n_embd + (0 if tied else head_bytes)  # output norm (f32) + head
    blocks = max(quant.size_bytes - embd_bytes - output_bytes, n_layers)
    layer = blocks // n_layers
    d: dict[str, Any] = {k: v for k, v in a.items() if k not in ("status", "source")}
    n_expert = int(a.get("n_expert") or 0)
    # per-layer lists (hybrid models: 0 KV heads on recurrent / FFN-only blocks) -> the widest
    n_head, n_kv = _widest(a["n_head"]), _widest(a["n_head_kv"])
    hd_k, hd_v = int(a["key_length"]), int(a.get("value_length") or a["key_length"])
    expert_tensor = 0
    if n_expert:
        ff_exp = int(a.get("n_ff_exp") or a.get("n_ff") or 0)
        expert_params = 3 * n_expert * n_embd * ff_exp
        attn_params = n_embd * (n_head * hd_k + n_kv * (hd_k + hd_v)) + n_head * hd_v * n_embd
        router_params = n_embd * n_expert
        share = expert_params / (expert_params + attn_params + router_params)
        d["layer_expert_bytes"] = int(layer * share)
        expert_tensor = int(layer * share / 3)
    else:
        expert_tensor = int(layer * 3 / 8)  # the largest FFN matrix of a dense block, roughly
    d.update(
        layer_bytes=layer,
        input_bytes=embd_bytes,
        output_bytes=output_bytes,
        tied_output=tied,
        tied_output_bytes=embd_bytes if tied else 0,
        name=model.name,
        n_params=model.params,
        quant=quant.quant,
        file_size=quant.size_bytes,
        largest_tensor_bytes=max(embd_bytes, head_bytes, expert_tensor),
        exact=False,
    )
    return ModelSummary.from_json(d)


def _widest(value: Any) -> int:
    return int(max(value)) if isinstance(value, list) and value else int(value or 0)


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CatalogError(f"catalog: {what} must be a non-negative integer, not {value!r}")
    return value


def _parse_quant(model_id: str, d: dict[str, Any]) -> QuantFile:
    files = d.get("files")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise CatalogError(
            f"catalog: {model_id} {d.get('quant')}: 'files' must list the GGUF files"
        )
    status = d.get("size_status")
    if status not in SIZE_STATUSES:
        raise CatalogError(
            f"catalog: {model_id} {d.get('quant')}: size_status must be one of {SIZE_STATUSES}"
        )
    return QuantFile(
        quant=str(d["quant"]),
        repo=str(d["repo"]),
        files=tuple(files),
        size_bytes=_as_int(d.get("size_bytes"), f"{model_id} size_bytes"),
        size_status=str(status),
        size_source=str(d.get("size_source") or ""),
        sha256=tuple(d.get("sha256") or ()),
        summary=d.get("summary") if isinstance(d.get("summary"), dict) else None,
    )


def _parse_model(d: dict[str, Any]) -> CatalogModel:
    try:
        mid = str(d["id"])
        quality = d.get("quality") or {}
        return CatalogModel(
            id=mid,
            name=str(d["name"]),
            family=str(d.get("family", "")),
            publisher=str(d.get("publisher", "")),
            license=str(d.get("license", "")),
            params=_as_int(d.get("params"), f"{mid} params"),
            uses=tuple(d.get("uses") or ()),
            quality=int(quality.get("score", 0)),
            quality_by_use={str(k): int(v) for k, v in (quality.get("by_use") or {}).items()},
            tier=str(quality.get("tier", "")),
            arch=dict(d.get("summary") or {}),
            quants=tuple(_parse_quant(mid, q) for q in d.get("quants") or ()),
            active_params=d.get("active_params"),
            notes=str(d.get("notes", "")),
            capabilities=_parse_capabilities(mid, d.get("capabilities")),
            raw=d,
        )
    except KeyError as exc:
        raise CatalogError(f"catalog: a model entry lacks {exc}") from exc


def _parse_capabilities(model_id: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(v in CAPABILITIES for v in value):
        raise CatalogError(
            f"catalog: {model_id} capabilities must be a list of {', '.join(CAPABILITIES)}, "
            f"not {value!r}"
        )
    return tuple(value)


def _merge(bundled: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Overlay refreshed per-file facts (sizes, sha256, arch) onto the bundled catalog."""
    out = json.loads(json.dumps(bundled))  # deep copy
    by_id = {m["id"]: m for m in out.get("models", [])}
    for mid, patch in (override.get("models") or {}).items():
        model = by_id.get(mid)
        if model is None or not isinstance(patch, dict):
            continue  # a model dropped from the bundle stays dropped
        if isinstance(patch.get("summary"), dict):
            model["summary"] = {**model.get("summary", {}), **patch["summary"]}
        for qname, qpatch in (patch.get("quants") or {}).items():
            for q in model.get("quants", []):
                # only take a refresh made for the same files (the bundle may have moved on)
                if (
                    q["quant"] == qname
                    and isinstance(qpatch, dict)
                    and qpatch.get("files", q["files"]) == q["files"]
                ):
                    q.update({k: v for k, v in qpatch.items() if k != "files"})
    out["refreshed"] = override.get("refreshed")
    return out


@dataclass(frozen=True)
class Catalog:
    """The catalog as loaded: bundled data with the user's last refresh merged over it."""

    models: tuple[CatalogModel, ...]
    uses: dict[str, str]
    quality_source: str = ""
    refreshed: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Catalog:
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise CatalogError("catalog: expected an object with a 'models' list")
        return cls(
            models=tuple(_parse_model(m) for m in data["models"]),
            uses=dict(data.get("uses") or {}),
            quality_source=str(data.get("quality_source", "")),
            refreshed=data.get("refreshed"),
        )

    @classmethod
    def load(cls, paths: AppPaths | None = None, bundled: Path = BUNDLED_CATALOG) -> Catalog:
        """The bundled catalog, with the user's refreshed sizes merged over it when present."""
        try:
            base = json.loads(bundled.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CatalogError(
                f"cannot read the bundled catalog {bundled}: {exc}; reinstall Spark Launcher"
            ) from exc
        paths = paths or AppPaths.default()
        override = read_json(refreshed_path(paths), default=None)
        if isinstance(override, dict):
            base = _merge(base, override)
        return cls.from_json(base)

    def __iter__(self) -> Iterator[CatalogModel]:
        return iter(self.models)

    def get(self, model_id: str) -> CatalogModel:
        for m in self.models:
            if m.id == model_id:
                return m
        raise CatalogError(
            f"no model {model_id!r} in the catalog; `spark-launcher catalog list` shows them"
        )

    def candidates(
        self,
        use: str | None = None,
        quants: Iterable[str] | None = None,
        max_size_bytes: int | None = None,
        capabilities: Iterable[str] = (),
    ) -> list[Candidate]:
        """Every (model, quant file) pair, optionally for one use, some quants, a size cap,
        and only models with all of ``capabilities`` (e.g. ``["tools"]`` for agents)."""
        if use is not None and use not in self.uses:
            raise CatalogError(f"unknown use {use!r}; choose one of: {', '.join(self.uses)}")
        needed = tuple(capabilities)
        for c in needed:
            if c not in CAPABILITIES:
                raise CatalogError(
                    f"unknown capability {c!r}; choose from: {', '.join(CAPABILITIES)}"
                )
        wanted = {q.lower() for q in quants} if quants is not None else None
        out = []
        for m in self.models:
            if use is not None and use not in m.uses:
                continue
            if not m.can(*needed):
                continue
            for q in m.quants:
                if wanted is not None and q.quant.lower() not in wanted:
                    continue
                if max_size_bytes is not None and q.size_bytes > max_size_bytes:
                    continue
                out.append(Candidate(m, q))
        return out

    def find_file(self, repo: str, filename: str) -> Candidate | None:
        """The catalog entry for a Hub file (any shard of it), if the catalog knows it."""
        for m in self.models:
            for q in m.quants:
                if q.repo == repo and filename in q.files:
                    return Candidate(m, q)
        return None


def refreshed_path(paths: AppPaths) -> Path:
    """Where :func:`refresh` writes the Hub's figures (the user's data folder)."""
    return paths.data_dir / "catalog.json"


@dataclass
class RefreshReport:
    """What a refresh changed."""

    repos_checked: int = 0
    files_updated: int = 0
    sizes_changed: list[str] = field(default_factory=list)  # "model:quant old -> new"
    missing: list[str] = field(default_factory=list)  # "repo/file" the Hub does not have
    failed: list[str] = field(default_factory=list)  # "repo: reason"
    headers_read: int = 0  # files whose GGUF header was read (``headers=True``)
    path: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_remote_model(
    repo: str, files: Iterable[str], revision: str = "main"
) -> tuple[GGUFModel, list[Any]]:
    """Read the GGUF header(s) of a Hub file (every shard) by HTTP Range; no tensor data.

    Returns the model and its byte sources (each keeps the fetched header prefix in
    ``.prefix`` and the byte count in ``.inner.bytes_read``).
    """
    from launcher.gguf import HTTPRangeSource, read_model

    token = hub.get_token()
    sources = [
        PrefixCache(HTTPRangeSource(hub.resolve_url(repo, f, revision), token=token or None))
        for f in files
    ]
    return read_model(list[Any](sources)), sources


class PrefixCache:
    """A byte source wrapper that keeps the bytes read from the start of the file.

    The header reader reads forward in growing chunks; keeping that prefix lets a caller
    save the header (as a sparse file for the dry run) without fetching it twice.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "")
        self.prefix = bytearray()

    @property
    def size(self) -> int | None:
        size = self.inner.size
        return None if size is None else int(size)

    def suggested_chunk(self) -> int:
        return int(self.inner.suggested_chunk())

    def read(self, offset: int, length: int) -> bytes:
        end = offset + length
        if end <= len(self.prefix):
            return bytes(self.prefix[offset:end])
        if offset <= len(self.prefix):
            have = len(self.prefix)
            self.prefix += self.inner.read(have, end - have)
            return bytes(self.prefix[offset:end])
        return bytes(self.inner.read(offset, length))


def _lookup_files(repo: str, wanted: list[str], api: Any | None) -> dict[str, tuple[int, str]]:
    """path -> (size, sha256 or "") for a repo's files, from the Hub.

    Without an explicit ``api`` this goes through :mod:`launcher.hub` (one ``model_info``
    request with file metadata, the app's token and its user-facing errors); with one, a
    single ``paths-info`` request for just the wanted files.
    """
    if api is None:
        listing = hub.list_gguf_files(repo)
        return {f.path: (int(f.size), f.sha256 or "") for c in listing.choices for f in c.files}
    out = {}
    for i in api.get_paths_info(repo, wanted, repo_type="model"):
        if getattr(i, "size", None) is None:
            continue  # a folder
        lfs = getattr(i, "lfs", None)
        out[i.path] = (int(i.size), (lfs.sha256 if lfs is not None else "") or "")
    return out


def refresh(
    api: Any | None = None,
    paths: AppPaths | None = None,
    cancel: threading.Event | None = None,
    bundled: Path = BUNDLED_CATALOG,
    headers: bool = False,
) -> RefreshReport:
    """Fetch exact sizes and sha256 of every catalog file from the Hub; store them atomically.

    ``api`` is an ``huggingface_hub.HfApi`` (default: :mod:`launcher.hub`, i.e.
    ``HF_ENDPOINT`` and the user's token). One request per repo. With ``headers=True``
    each file's GGUF header is also read by HTTP Range (a few MB per file, no tensor data)
    and its exact :class:`ModelSummary` stored, so later plans use the real tensor table.
    Repos that fail are reported and keep their previous figures; if every repo fails,
    :class:`HubError` says so and nothing is written.
    """
    paths = paths or AppPaths.default()
    hf = api
    base = Catalog.from_json(json.loads(bundled.read_text(encoding="utf-8")))
    old = read_json(refreshed_path(paths), default=None)
    override: dict[str, Any] = old if isinstance(old, dict) else {}
    override.setdefault("models", {})
    report = RefreshReport(path=str(refreshed_path(paths)))
    current = Catalog.load(paths, bundled)

    by_repo: dict[str, list[tuple[CatalogModel, QuantFile]]] = {}
    for m in base.models:
        for q in m.quants:
            by_repo.setdefault(q.repo, []).append((m, q))
    for repo, entries in by_repo.items():
        if cancel is not None and cancel.is_set():
            break
        wanted = [f for _, q in entries for f in q.files]
        try:
            found = _lookup_files(repo, wanted, hf)
        except Exception as exc:  # network, auth, 404: keep going with the other repos
            report.failed.append(f"{repo}: {type(exc).__name__}: {exc}")
            continue
        report.repos_checked += 1
        for m, q in entries:
            missing = [f for f in q.files if f not in found]
            if missing:
                report.missing += [f"{repo}/{f}" for f in missing]
                continue
            size = sum(found[f][0] for f in q.files)
            shas = tuple(found[f][1] for f in q.files)
            prev = current.get(m.id).quant(q.quant)
            if prev is not None and prev.size_bytes != size:
                report.sizes_changed.append(f"{m.id}:{q.quant} {prev.size_bytes} -> {size}")
            quants = override["models"].setdefault(m.id, {}).setdefault("quants", {})
            entry: dict[str, Any] = {
                "files": list(q.files),
                "size_bytes": size,
                "size_status": "verified",
                "size_source": f"Hugging Face Hub file size ({repo}), refreshed "
                f"{dt.date.today().isoformat()}",
                "sha256": list(shas) if all(shas) else [],
            }
            old_entry = quants.get(q.quant) or {}
            if old_entry.get("summary") and old_entry.get("size_bytes") == size:
                entry["summary"] = old_entry["summary"]  # same file: its header still holds
            if headers and not (cancel is not None and cancel.is_set()):
                try:
                    model, _ = read_remote_model(repo, q.files)
                    entry["summary"] = ModelSummary.from_header(model).to_json()
                    report.headers_read += 1
                except LauncherError as exc:
                    report.failed.append(f"{repo}/{q.files[0]}: header: {exc}")
            quants[q.quant] = entry
            report.files_updated += len(q.files)
    if report.repos_checked == 0 and report.failed:
        raise HubError(
            "could not reach the Hugging Face Hub for any catalog repo "
            f"({report.failed[0]}); check the network or HF_ENDPOINT and try again. "
            "The bundled catalog is still used."
        )
    override["refreshed"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    atomic_write_json(refreshed_path(paths), override)
    return report
