"""Memory plan and speed estimate for a GGUF model on a machine.

The estimator's input is a :class:`ModelSummary`, built from a GGUF header (exact bytes per
tensor and per layer) or from the compact dict the catalog stores. :func:`plan` places the
model on a :class:`~launcher.hardware.profile.MachineProfile` the way llama.cpp will: blocks
back to front on the GPU, the input embedding on the CPU, the output layer on the GPU only
with full offload, each layer's KV cache next to its layer; it sizes the KV cache with
llama.cpp's formulas (grouped-query heads, per-layer head counts, sliding-window layers, MLA,
recurrent state) and the compute buffers with a model fitted to llama.cpp's own reports.
The resulting :class:`MemoryPlan` also gives the exact ``Llama(...)`` arguments the engine
must use (:meth:`MemoryPlan.llama_params`), so the plan describes what really runs.

Formulas and sources: ``../shared/reference/memory-and-speed.md``; the dry run that makes a
plan exact lives in :mod:`launcher.dryrun`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

from launcher.errors import GGUFError
from launcher.hardware.profile import MachineProfile, MemoryPool

if TYPE_CHECKING:
    from launcher.calibration import CalibrationStore
    from launcher.gguf.reader import GGUFHeader, GGUFModel

MiB = 1 << 20
GiB = 1 << 30
#: More blocks than any real model has; a header claiming more is corrupt.
MAX_LAYERS = 4096

Verdict = Literal["full_gpu", "partial", "cpu", "no_fit"]
Basis = Literal["estimated", "calibrated", "measured"]

#: KV cache types the planner offers (name -> ggml type id, as llama-cpp-python's type_k/v).
KV_TYPES: dict[str, int] = {
    "f16": int(GGMLQuantizationType.F16),
    "bf16": int(GGMLQuantizationType.BF16),
    "f32": int(GGMLQuantizationType.F32),
    "q8_0": int(GGMLQuantizationType.Q8_0),
    "q5_1": int(GGMLQuantizationType.Q5_1),
    "q5_0": int(GGMLQuantizationType.Q5_0),
    "q4_1": int(GGMLQuantizationType.Q4_1),
    "q4_0": int(GGMLQuantizationType.Q4_0),
    "iq4_nl": int(GGMLQuantizationType.IQ4_NL),
}

#: Memory kept free per device (llama.cpp's ``--fit`` default margin is 1024 MiB).
HEADROOM_GPU = 1 * GiB
HEADROOM_RAM = 1 * GiB + 512 * MiB
#: Context cells are padded to this (llama.cpp pads n_ctx to 256).
CTX_PAD = 256

# Sliding-window layouts llama.cpp hard-codes per architecture: (pattern, default window,
# dense_first). is_swa(il) = il % n < n - 1 (dense last) or il % n != 0 (dense first).
_SWA_ARCHS: dict[str, tuple[int, int, bool]] = {
    "gemma2": (2, 4096, False),
    "gemma3": (6, 0, False),  # SWA only when gemma3.attention.sliding_window > 0
    "gpt-oss": (2, 128, False),
    "cohere2": (4, 4096, False),
    "llama4": (4, 8192, False),
}
_RECURRENT_ALL = {"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7"}
_HYBRID_BY_HEADS = {"granitehybrid", "jamba", "nemotron_h", "plamo2"}


def type_row_bytes(ggml_type: int, n: int) -> int:
    """Bytes of a row of ``n`` elements of a ggml type (``ggml_row_size``)."""
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    return n // block * size


def kv_type_id(kv_type: str) -> int:
    try:
        return KV_TYPES[kv_type.lower()]
    except KeyError:
        raise ValueError(
            f"Unknown KV cache type {kv_type!r}; use one of {', '.join(KV_TYPES)}."
        ) from None


def _pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


_LAYER_RE = re.compile(r"^blk\.(\d+)\.")
_EXPERT_RE = re.compile(r"_(?:exps|chexps)\.")
_SHARED_EXPERT_RE = re.compile(r"_shexp\.")


# ------------------------------------------------------------------------------------ model


@dataclass
class ModelSummary:
    """What the estimator needs to know about a model, from its header or the catalog."""

    architecture: str
    n_layers: int
    n_embd: int
    n_vocab: int
    context_length: int
    n_head: list[int]  # per layer
    n_head_kv: list[int]  # per layer; 0 marks a recurrent (non-attention) layer
    key_length: int
    value_length: int
    layer_bytes: list[int]  # weight bytes of each block blk.N
    input_bytes: int  # token embedding and other input tensors (always on the CPU)
    output_bytes: int  # output norm + output head (without the tied copy)
    tied_output: bool = False  # no output.weight: llama.cpp reuses token_embd as the head
    tied_output_bytes: int = 0  # bytes of that reused token_embd (a copy on the GPU)
    name: str = ""
    n_params: int = 0
    quant: str = ""
    file_size: int = 0
    n_ff: int = 0
    n_ff_exp: int = 0  # expert FFN width (MoE)
    sliding_window: int = 0
    swa_layers: list[bool] = field(default_factory=list)  # per layer: True = sliding window
    n_expert: int = 0
    n_expert_used: int = 0
    layer_expert_bytes: list[int] = field(default_factory=list)  # routed-expert bytes per layer
    kv_lora_rank: int = 0  # MLA (DeepSeek-style); 0 = ordinary attention
    recurrent_layers: list[bool] = field(default_factory=list)
    ssm_conv_kernel: int = 0
    ssm_inner_size: int = 0
    ssm_state_size: int = 0
    ssm_group_count: int = 0
    rwkv_head_size: int = 0
    token_shift_count: int = 0
    largest_tensor_bytes: int = 0
    exact: bool = False  # True: built from a real tensor table

    # ------------------------------------------------------------------ derived quantities
    @property
    def weights_bytes(self) -> int:
        return sum(self.layer_bytes) + self.input_bytes + self.output_bytes

    @property
    def key(self) -> str:
        """A stable identity for calibration records: name, quant and size."""
        return f"{self.name or self.architecture}|{self.quant}|{self.file_size}"

    def is_swa(self, il: int) -> bool:
        return bool(self.swa_layers) and il < len(self.swa_layers) and self.swa_layers[il]

    def is_recurrent(self, il: int) -> bool:
        return (
            bool(self.recurrent_layers)
            and il < len(self.recurrent_layers)
            and self.recurrent_layers[il]
        )

    def active_layer_bytes(self, il: int) -> int:
        """Bytes read per token in one layer (MoE: shared weights + the used experts)."""
        b = self.layer_bytes[il]
        if self.n_expert > 0 and self.layer_expert_bytes:
            e = self.layer_expert_bytes[il]
            return b - e + e * self.n_expert_used // self.n_expert
        return b

    @property
    def active_params(self) -> int:
        total = self.weights_bytes
        if total <= 0 or self.n_params <= 0:
            return self.n_params
        head = self.output_bytes + (self.tied_output_bytes if self.tied_output else 0)
        active = sum(self.active_layer_bytes(i) for i in range(self.n_layers)) + head
        return int(self.n_params * active / total)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_header(cls, model: GGUFModel | GGUFHeader) -> ModelSummary:
        """Exact summary from a GGUF header (or all shards of a split model).

        Raises :class:`GGUFError` when the metadata is not usable (wrong types, absurd
        sizes), so a hostile header never becomes a crash or a huge allocation.
        """
        try:
            return cls._from_header(model)
        except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
            raise GGUFError(
                f"The model's metadata cannot be used for planning ({exc}); the file is "
                "corrupt or of an unsupported kind."
            ) from exc

    @classmethod
    def _from_header(cls, model: GGUFModel | GGUFHeader) -> ModelSummary:
        md = model.metadata
        arch = str(md.get("general.architecture", "unknown"))

        def ak(name: str, default: Any = None) -> Any:
            return md.get(f"{arch}.{name}", default)

        n_layers = int(ak("block_count", 0) or 0)
        if not 0 <= n_layers <= MAX_LAYERS:
            raise ValueError(f"block_count {n_layers} is not a real layer count")
        n_embd = int(ak("embedding_length", 0) or 0)
        tokens = md.get("tokenizer.ggml.tokens")
        tensors = model.tensors
        by_name = {t.name: t for t in tensors}
        n_vocab = int(ak("vocab_size", 0) or (len(tokens) if isinstance(tokens, list) else 0))
        if not n_vocab and "token_embd.weight" in by_name:
            n_vocab = by_name["token_embd.weight"].shape[1]

        n_head = _per_layer(ak("attention.head_count", 0), n_layers)
        n_head_kv_raw = ak("attention.head_count_kv")
        n_head_kv = _per_layer(n_head_kv_raw, n_layers) if n_head_kv_raw is not None else n_head
        h0 = max(n_head) if n_head else 0
        key_length = int(ak("attention.key_length", 0) or (n_embd // h0 if h0 else 0))
        value_length = int(ak("attention.value_length", 0) or key_length)

        layer_bytes = [0] * n_layers
        expert_bytes = [0] * n_layers
        input_bytes = output_bytes = 0
        n_params = 0
        for t in tensors:
            n_params += t.n_elements
            m = _LAYER_RE.match(t.name)
            if m and int(m.group(1)) < n_layers:
                il = int(m.group(1))
                layer_bytes[il] += t.nbytes
                if _EXPERT_RE.search(t.name):
                    expert_bytes[il] += t.nbytes
            elif t.name.startswith(("output", "cls.", "rope_factors")):
                output_bytes += t.nbytes
            else:
                input_bytes += t.nbytes
        tied = "output.weight" not in by_name and "token_embd.weight" in by_name
        tied_bytes = by_name["token_embd.weight"].nbytes if tied else 0

        swa_window = int(ak("attention.sliding_window", 0) or 0)
        swa_layers = _swa_layers(arch, n_layers, swa_window, ak("attention.sliding_window_pattern"))
        if arch in _SWA_ARCHS and not swa_window and any(swa_layers):
            swa_window = _SWA_ARCHS[arch][1]
        recurrent = _recurrent_layers(arch, n_layers, n_head_kv_raw)

        n_expert = int(ak("expert_count", 0) or 0)
        file_type = md.get("general.file_type")
        try:
            quant = LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_") if file_type else ""
        except (ValueError, TypeError):
            quant = ""
        headers = getattr(model, "headers", [model])
        file_size = sum(max(h.file_size or 0, h.declared_size) for h in headers)
        return cls(
            architecture=arch,
            n_layers=n_layers,
            n_embd=n_embd,
            n_vocab=n_vocab,
            context_length=int(ak("context_length", 0) or 0),
            n_head=n_head,
            n_head_kv=n_head_kv,
            key_length=key_length,
            value_length=value_length,
            layer_bytes=layer_bytes,
            input_bytes=input_bytes,
            output_bytes=output_bytes,
            tied_output=tied,
            tied_output_bytes=tied_bytes,
            name=str(md.get("general.name", "") or ""),
            n_params=n_params,
            quant=quant,
            file_size=file_size,
            n_ff=_max_int(ak("feed_forward_length", 0)),
            n_ff_exp=int(ak("expert_feed_forward_length", 0) or 0),
            sliding_window=swa_window if any(swa_layers) else 0,
            swa_layers=swa_layers,
            n_expert=n_expert,
            n_expert_used=int(ak("expert_used_count", 0) or 0),
            layer_expert_bytes=expert_bytes if n_expert else [],
            kv_lora_rank=int(ak("attention.kv_lora_rank", 0) or 0),
            recurrent_layers=recurrent,
            ssm_conv_kernel=int(ak("ssm.conv_kernel", 0) or 0),
            ssm_inner_size=int(ak("ssm.inner_size", 0) or 0),
            ssm_state_size=int(ak("ssm.state_size", 0) or 0),
            ssm_group_count=int(ak("ssm.group_count", 0) or 0),
            rwkv_head_size=int(ak("wkv.head_size", 0) or 0),
            token_shift_count=int(ak("token_shift_count", 0) or 0),
            largest_tensor_bytes=max((t.nbytes for t in tensors), default=0),
            exact=True,
        )

    def to_json(self) -> dict[str, Any]:
        """Compact form for the catalog: per-layer lists collapse to a scalar when uniform."""
        d = dataclasses.asdict(self)
        for k in ("n_head", "n_head_kv", "layer_bytes", "layer_expert_bytes"):
            v = d[k]
            if v and all(x == v[0] for x in v):
                d[k] = v[0]
        for k in ("swa_layers", "recurrent_layers"):
            v = d[k]
            if not any(v):
                d[k] = []
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSummary:
        """Build from the compact dict (``to_json``, or a catalog entry).

        Accepts per-layer arrays or scalars, and ``layer_bytes_total`` + ``non_layer_bytes``
        instead of per-layer bytes. A missing ``swa_layers`` is derived from the architecture
        and ``sliding_window`` like llama.cpp does.
        """
        d = dict(data)
        n_layers = int(d["n_layers"])
        known = {f.name for f in dataclasses.fields(cls)}
        if "layer_bytes" not in d:
            total = int(d.get("layer_bytes_total", 0))
            d["layer_bytes"] = [total // n_layers] * n_layers if n_layers else []
            d.setdefault("input_bytes", int(d.get("non_layer_bytes", 0)))
            d.setdefault("output_bytes", 0)
        for k in ("n_head", "n_head_kv", "layer_bytes"):
            d[k] = _per_layer(d.get(k, 0), n_layers)
        if d.get("layer_expert_bytes") not in (None, [], 0):
            d["layer_expert_bytes"] = _per_layer(d["layer_expert_bytes"], n_layers)
        else:
            d["layer_expert_bytes"] = []
        if not d.get("swa_layers"):
            d["swa_layers"] = _swa_layers(
                d["architecture"],
                n_layers,
                int(d.get("sliding_window", 0) or 0),
                d.get("sliding_window_pattern"),
            )
        if not d.get("recurrent_layers"):
            d["recurrent_layers"] = _recurrent_layers(d["architecture"], n_layers, d["n_head_kv"])
        d.setdefault("value_length", d.get("key_length", 0))
        d.setdefault("input_bytes", 0)
        d.setdefault("output_bytes", 0)
        return cls(**{k: v for k, v in d.items() if k in known})


def _max_int(v: Any) -> int:
    if isinstance(v, list):
        return int(max(v, default=0))
    return int(v or 0)


def _per_layer(v: Any, n_layers: int) -> list[int]:
    if isinstance(v, list):
        vals = [int(x) for x in v]
        if len(vals) < n_layers:
            vals += [vals[-1] if vals else 0] * (n_layers - len(vals))
        return vals[:n_layers]
    return [int(v or 0)] * n_layers


def _swa_layers(arch: str, n_layers: int, window: int, pattern: Any) -> list[bool]:
    if isinstance(pattern, list) and pattern and all(isinstance(x, bool) for x in pattern):
        return [bool(pattern[i]) if i < len(pattern) else False for i in range(n_layers)]
    spec = _SWA_ARCHS.get(arch)
    if spec is None:
        return [False] * n_layers
    n, default_window, dense_first = spec
    if isinstance(pattern, int) and not isinstance(pattern, bool) and pattern > 0:
        n = pattern
    if arch == "gemma3" and window <= 0:
        return [False] * n_layers
    if window <= 0 and default_window <= 0:
        return [False] * n_layers
    if n <= 1:
        return [False] * n_layers
    if dense_first:
        return [il % n != 0 for il in range(n_layers)]
    return [il % n < n - 1 for il in range(n_layers)]


def _recurrent_layers(arch: str, n_layers: int, n_head_kv: Any) -> list[bool]:
    if arch in _RECURRENT_ALL:
        return [True] * n_layers
    if arch in _HYBRID_BY_HEADS and isinstance(n_head_kv, list):
        return [int(x) == 0 for x in _per_layer(n_head_kv, n_layers)]
    if arch in ("qwen3next", "qwen35", "qwen35moe"):  # Gated DeltaNet, full attention every 4th
        return [(il + 1) % 4 != 0 for il in range(n_layers)]
    return []


# ------------------------------------------------------------------------------------ plan


@dataclass
class DeviceUse:
    """Memory one device holds for the plan (bytes)."""

    weights: int = 0
    kv: int = 0
    compute: int = 0
    budget: int | None = None  # what this device may use after headroom (None: unknown)

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "total": self.total}


@dataclass
class SpeedEstimate:
    """Expected generation speed and how it was obtained."""

    decode_tokens_per_s: float
    prefill_tokens_per_s: float
    basis: Basis = "estimated"
    explanation: str = ""
    runs: int = 0  # measured runs the basis rests on (measured / calibrated)

    @property
    def basis_label(self) -> str:
        """The basis with what it rests on: "estimated", "calibrated from 5 runs"."""
        if self.basis == "estimated" or self.runs <= 0:
            return self.basis
        return f"{self.basis} from {self.runs} run{'s' if self.runs != 1 else ''}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class MemoryPlan:
    """Where a model's memory goes on a machine, the verdict, and the expected speed."""

    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    per_device: dict[str, DeviceUse]
    verdict: Verdict
    gpu_layers: int  # transformer blocks on the GPU (0..total_layers)
    total_layers: int
    max_context_full_gpu: int  # largest context that fits with full offload (0: none)
    context: int
    kv_type: str
    flash_attn: bool
    n_ubatch: int = 512
    n_batch: int = 512
    source: Literal["formula", "dry_run"] = "formula"
    speed: SpeedEstimate = field(default_factory=lambda: SpeedEstimate(0.0, 0.0))
    output_on_gpu: bool = False
    #: False on integrated CUDA (GB10) with full offload: mmap + a CUDA buffer in the same
    #: memory would hold the weights twice (Ollama passes --load-mode dio there for this).
    use_mmap: bool = True
    #: Largest context that fits with this plan's placement (CPU-only machines included).
    max_context: int = 0
    type_v: str = "f16"
    notes: list[str] = field(default_factory=list)
    #: llama.cpp RPC servers (``host:port``) the plan spans, and the layer split over the
    #: offload devices in llama.cpp's order (RPC first); empty for this machine alone.
    rpc_servers: tuple[str, ...] = ()
    tensor_split: tuple[float, ...] = ()

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.compute_bytes

    @property
    def n_gpu_layers(self) -> int:
        """llama.cpp's ``n_gpu_layers``: blocks on the GPU, +1 for the output layer."""
        return self.gpu_layers + (1 if self.output_on_gpu else 0)

    def llama_params(self) -> dict[str, Any]:
        """The exact ``llama_cpp.Llama(...)`` keyword arguments for this plan."""
        rpc = (
            {"rpc_servers": ",".join(self.rpc_servers), "tensor_split": list(self.tensor_split)}
            if self.rpc_servers
            else {}
        )
        return {
            "n_gpu_layers": self.n_gpu_layers,
            "n_ctx": self.context,
            "n_batch": self.n_batch,
            "n_ubatch": self.n_ubatch,
            "flash_attn": self.flash_attn,
            "type_k": kv_type_id(self.kv_type),
            "type_v": kv_type_id(self.type_v),
            "swa_full": False,
            "offload_kqv": True,
            "use_mmap": self.use_mmap,
            **rpc,
        }

    def calibration_settings(self) -> dict[str, Any]:
        """What :meth:`CalibrationStore.record` should store next to a measurement."""
        return {
            "ctx": self.context,
            "kv_type": self.kv_type,
            "flash_attn": self.flash_attn,
            "gpu_layers": self.gpu_layers,
            "n_ubatch": self.n_ubatch,
            "estimated_decode_tokens_per_s": self.speed.decode_tokens_per_s,
            "estimated_prefill_tokens_per_s": self.speed.prefill_tokens_per_s,
            "estimated_kv_bytes": self.kv_bytes,
            "estimated_compute_bytes": self.compute_bytes,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "weights_bytes": self.weights_bytes,
            "kv_bytes": self.kv_bytes,
            "compute_bytes": self.compute_bytes,
            "total_bytes": self.total_bytes,
            "per_device": {k: v.to_json() for k, v in self.per_device.items()},
            "verdict": self.verdict,
            "gpu_layers": self.gpu_layers,
            "total_layers": self.total_layers,
            "max_context_full_gpu": self.max_context_full_gpu,
            "max_context": self.max_context,
            "context": self.context,
            "kv_type": self.kv_type,
            "type_v": self.type_v,
            "flash_attn": self.flash_attn,
            "n_ubatch": self.n_ubatch,
            "source": self.source,
            "decode_tokens_per_s": self.speed.decode_tokens_per_s,
            "prefill_tokens_per_s": self.speed.prefill_tokens_per_s,
            "basis": self.speed.basis,
            "speed": self.speed.to_json(),
            "llama_params": self.llama_params(),
            "notes": list(self.notes),
            **({"rpc_servers": list(self.rpc_servers)} if self.rpc_servers else {}),
        }


# ------------------------------------------------------------------------------ KV and compute


def kv_cells(summary: ModelSummary, ctx: int, n_ubatch: int = 512) -> tuple[int, int]:
    """(cells of full-attention layers, cells of sliding-window layers) for ``ctx``."""
    n_ctx = _pad(max(1, ctx), CTX_PAD)
    if summary.sliding_window > 0:
        swa = min(n_ctx, _pad(summary.sliding_window + n_ubatch, CTX_PAD))
    else:
        swa = n_ctx
    return n_ctx, swa


def layer_kv_bytes(
    summary: ModelSummary,
    ctx: int,
    kv_type: str = "f16",
    flash_attn: bool = True,
    n_ubatch: int = 512,
    n_seq: int = 1,
) -> list[int]:
    """KV (or recurrent state) bytes per layer, per llama.cpp's cache layout."""
    tk = kv_type_id(kv_type)
    tv = tk if flash_attn else kv_type_id("f16")
    full, swa = kv_cells(summary, ctx, n_ubatch)
    out = []
    for il in range(summary.n_layers):
        if summary.is_recurrent(il):
            out.append(_recurrent_state_bytes(summary) * max(1, n_seq))
            continue
        hkv = summary.n_head_kv[il]
        if hkv <= 0:
            out.append(0)
            continue
        cells = swa if summary.is_swa(il) else full
        k = type_row_bytes(tk, summary.key_length * hkv)
        # MLA caches (kv_lora_rank > 0) store K only since llama.cpp PR #19067.
        v = 0 if summary.kv_lora_rank > 0 else type_row_bytes(tv, summary.value_length * hkv)
        out.append((k + v) * cells)
    return out


def _recurrent_state_bytes(s: ModelSummary) -> int:
    if s.rwkv_head_size:
        r = max(1, s.token_shift_count) * s.n_embd
        st = s.n_embd * s.rwkv_head_size
    else:
        r = max(0, s.ssm_conv_kernel - 1) * (
            s.ssm_inner_size + 2 * s.ssm_group_count * s.ssm_state_size
        )
        st = s.ssm_state_size * s.ssm_inner_size
    return (r + st) * 4


def compute_bytes_estimate(
    summary: ModelSummary,
    ctx: int,
    flash_attn: bool = True,
    n_ubatch: int = 512,
    where: Literal["all", "gpu_full", "gpu_partial", "cpu_with_gpu"] = "all",
) -> int:
    """Compute-buffer bytes, a model fitted to llama.cpp's reported buffer sizes.

    llama.cpp reuses one buffer for the whole graph, so the size is the largest live set:
    either the output phase (logits ``n_vocab x n_tokens`` f32 plus two ``n_embd`` rows)
    or one layer (attention scores without flash attention grow with the context; FFN and
    MoE activations).
    """
    n_tokens = min(_pad(max(1, ctx), CTX_PAD), n_ubatch)
    n_kv = _pad(max(1, ctx), CTX_PAD)
    f32 = 4
    output_phase = (summary.n_vocab + 2 * summary.n_embd) * n_tokens * f32
    n_head = max(summary.n_head, default=0)
    q_dim = n_head * summary.key_length
    kv_dim = max(summary.n_head_kv, default=0) * summary.key_length
    if flash_attn:  # Q/K/V rows, the attention output, and the f16 KQ mask
        attn = (2 * q_dim + 2 * summary.n_embd) * n_tokens * f32 + n_kv * n_tokens * 2
    else:  # the full KQ score matrix per head, its f32 mask, Q/K/V rows
        attn = n_kv * n_tokens * (n_head + 1) * f32
        attn += (3 * summary.n_embd + 2 * q_dim + 2 * kv_dim) * n_tokens * f32
    ff = summary.n_ff
    if summary.n_expert and summary.n_expert_used:
        ff = summary.n_ff_exp or ff
        ffn = (2 * ff * summary.n_expert_used + summary.n_expert + 2 * summary.n_embd) * n_tokens
        ffn *= f32
    else:
        ffn = (2 * ff + 2 * summary.n_embd) * n_tokens * f32
    # with flash attention the mask and attention rows are still live during the FFN;
    # without it the KQ matrix is freed before the FFN runs
    layer_phase = attn + ffn if flash_attn else max(attn, ffn)
    if where == "cpu_with_gpu":  # input embeddings on the host (get_rows) and small copies
        return 2 * summary.n_embd * n_tokens * f32
    if where == "gpu_partial":
        # the output layer stays on the CPU; op offload streams one weight at a time
        return layer_phase + summary.largest_tensor_bytes
    return max(output_phase, layer_phase)


# ------------------------------------------------------------------------------ placement


@dataclass
class _Budget:
    gpu_name: str | None
    gpu_pool: MemoryPool | None
    ram_pool: MemoryPool | None
    gpu_budget: int
    ram_budget: int
    shared: bool  # GPU and CPU draw from the same physical memory (unified)


def _pool_free(p: MemoryPool) -> int:
    return p.available if p.available is not None else p.total


def _budget(machine: MachineProfile) -> _Budget:
    gpus = machine.gpu_pools if machine.gpu_offload or machine.backend != "cpu" else ()
    gpu = gpus[0] if gpus else None
    ram = machine.ram_pool
    ram_budget = max(0, _pool_free(ram) - HEADROOM_RAM) if ram else 0
    if gpu is None:
        return _Budget(None, None, ram, 0, ram_budget, False)
    usable = gpu.gpu_usable if gpu.gpu_usable is not None else _pool_free(gpu)
    if gpu.available is not None:
        usable = min(usable, gpu.available)
    shared = gpu.kind == "unified" and (ram is None or ram.kind == "unified" or ram is gpu)
    name = gpu.device or "GPU0"
    return _Budget(name, gpu, ram, max(0, usable - HEADROOM_GPU), ram_budget, shared)


def _place(
    s: ModelSummary,
    kv_layers: Sequence[int],
    ngl: int,
    output_gpu: bool,
    ctx: int,
    flash_attn: bool,
    n_ubatch: int,
    gpu_name: str | None,
    compute_scale: float = 1.0,
) -> dict[str, DeviceUse]:
    """Memory per device with the last ``ngl`` blocks on the GPU (llama.cpp's placement)."""
    devices = _place_formula(s, kv_layers, ngl, output_gpu, ctx, flash_attn, n_ubatch, gpu_name)
    if compute_scale != 1.0:
        for d in devices.values():
            d.compute = round(d.compute * compute_scale)
    return devices


def _place_formula(
    s: ModelSummary,
    kv_layers: Sequence[int],
    ngl: int,
    output_gpu: bool,
    ctx: int,
    flash_attn: bool,
    n_ubatch: int,
    gpu_name: str | None,
) -> dict[str, DeviceUse]:
    cpu = DeviceUse()
    devices = {"CPU": cpu}
    first_gpu = s.n_layers - ngl
    cpu.weights += s.input_bytes
    if gpu_name is None or (ngl <= 0 and not output_gpu):
        cpu.weights += sum(s.layer_bytes) + s.output_bytes
        cpu.kv += sum(kv_layers)
        cpu.compute = compute_bytes_estimate(s, ctx, flash_attn, n_ubatch, "all")
        return devices
    gpu = DeviceUse()
    devices[gpu_name] = gpu
    for il in range(s.n_layers):
        dev = gpu if il >= first_gpu else cpu
        dev.weights += s.layer_bytes[il]
        dev.kv += kv_layers[il]
    if output_gpu:
        gpu.weights += s.output_bytes + (s.tied_output_bytes if s.tied_output else 0)
        gpu.compute = compute_bytes_estimate(s, ctx, flash_attn, n_ubatch, "gpu_full")
        cpu.compute = compute_bytes_estimate(s, ctx, flash_attn, n_ubatch, "cpu_with_gpu")
    else:
        cpu.weights += s.output_bytes
        gpu.compute = compute_bytes_estimate(s, ctx, flash_attn, n_ubatch, "gpu_partial")
        cpu.compute = compute_bytes_estimate(s, ctx, flash_attn, n_ubatch, "all")
    return devices


def _gpu_fits(devices: dict[str, DeviceUse], b: _Budget) -> bool:
    gpu = devices[b.gpu_name].total if b.gpu_name and b.gpu_name in devices else 0
    return gpu <= b.gpu_budget


def _fits(devices: dict[str, DeviceUse], b: _Budget) -> bool:
    cpu = devices["CPU"].total
    gpu = devices[b.gpu_name].total if b.gpu_name and b.gpu_name in devices else 0
    if b.shared:  # one physical memory: the GPU share is capped, and the sum must fit
        return gpu <= b.gpu_budget and cpu + gpu <= b.ram_budget
    return gpu <= b.gpu_budget and cpu <= b.ram_budget


def plan(
    summary: ModelSummary,
    machine: MachineProfile,
    ctx: int,
    kv_type: str = "f16",
    flash_attn: bool = True,
    n_ubatch: int = 512,
    gpu_layers: int | None = None,
    calibration: CalibrationStore | None = None,
) -> MemoryPlan:
    """Plan ``summary`` on ``machine`` at context ``ctx`` (formula estimate).

    ``gpu_layers`` forces the number of blocks on the GPU (``None``: as many as fit; a value
    above the block count also puts the output layer there, as llama.cpp's ``-ngl`` does).
    """
    s = summary
    kv_type = kv_type.lower()
    kv_type_id(kv_type)
    ctx = max(1, int(ctx))
    notes: list[str] = []
    if s.context_length and ctx > s.context_length:
        notes.append(f"Context capped at the model's own maximum, {s.context_length} tokens.")
        ctx = s.context_length
    n_ubatch = max(1, int(n_ubatch))
    type_v = kv_type if flash_attn else "f16"
    if not flash_attn and kv_type != "f16":
        notes.append("A quantized V cache needs flash attention; V stays f16.")
    kv_layers = layer_kv_bytes(s, ctx, kv_type, flash_attn, n_ubatch)
    b = _budget(machine)
    n = s.n_layers
    scale = 1.0
    if calibration is not None:
        from launcher.calibration import machine_key

        measured = calibration.memory_factor(machine_key(machine), s.key, "compute_bytes")
        if measured is not None and abs(measured - 1.0) > 0.02:
            scale = measured
            notes.append(f"Compute buffers x{scale:.2f}, from loads measured on this machine.")

    def place(ngl: int, out_gpu: bool) -> dict[str, DeviceUse]:
        return _place(s, kv_layers, ngl, out_gpu, ctx, flash_attn, n_ubatch, b.gpu_name, scale)

    if b.gpu_name is None:
        ngl, out_gpu = 0, False
        devices = place(0, False)
        verdict: Verdict = "cpu" if _fits(devices, b) else "no_fit"
    elif gpu_layers is not None:
        ngl, out_gpu = max(0, min(gpu_layers, n)), gpu_layers > n
        devices = place(ngl, out_gpu)
        if not _fits(devices, b):
            verdict = "no_fit"
        elif out_gpu:
            verdict = "full_gpu"
        else:
            verdict = "partial" if ngl > 0 else "cpu"
    else:
        devices = place(n, True)
        ngl, out_gpu = n, True
        if _fits(devices, b):
            verdict = "full_gpu"
        else:
            out_gpu = False
            # The GPU limit caps ngl from above and the RAM limit from below, so take the
            # most layers the GPU side holds (monotone in ngl), then check both sides there.
            lo, hi = 0, n
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if _gpu_fits(place(mid, False), b):
                    lo = mid
                else:
                    hi = mid - 1
            ngl = lo
            if ngl > 0:
                devices = place(ngl, False)
            else:  # nothing on the GPU: plan as llama.cpp runs a CPU-only model
                devices = _place(s, kv_layers, 0, False, ctx, flash_attn, n_ubatch, None, scale)
            fits = _fits(devices, b)
            verdict = ("partial" if ngl > 0 else "cpu") if fits else "no_fit"
    for name, d in devices.items():
        d.budget = b.ram_budget if name == "CPU" else b.gpu_budget
    result = MemoryPlan(
        weights_bytes=sum(d.weights for d in devices.values()),
        kv_bytes=sum(d.kv for d in devices.values()),
        compute_bytes=sum(d.compute for d in devices.values()),
        per_device=devices,
        verdict=verdict,
        gpu_layers=ngl,
        total_layers=n,
        max_context_full_gpu=0,
        context=ctx,
        kv_type=kv_type,
        flash_attn=flash_attn,
        n_ubatch=n_ubatch,
        n_batch=max(n_ubatch, 512),
        output_on_gpu=out_gpu,
        use_mmap=not (
            verdict == "full_gpu" and b.shared and device_class(machine) == "nvidia_unified"
        ),
        type_v=type_v,
        notes=notes,
    )
    result.max_context_full_gpu = max_context_full_gpu(
        s, machine, kv_type, flash_attn, n_ubatch, scale
    )
    result.max_context = max_context(s, machine, kv_type, flash_attn, n_ubatch, ngl, out_gpu, scale)
    result.speed = estimate_speed(s, machine, result, calibration=calibration)
    return result


def max_context_full_gpu(
    s: ModelSummary,
    machine: MachineProfile,
    kv_type: str,
    flash_attn: bool,
    n_ubatch: int,
    compute_scale: float = 1.0,
) -> int:
    """The largest context (a multiple of 256, up to the model's own) with full offload."""
    if _budget(machine).gpu_name is None:
        return 0
    return max_context(s, machine, kv_type, flash_attn, n_ubatch, s.n_layers, True, compute_scale)


def max_context(
    s: ModelSummary,
    machine: MachineProfile,
    kv_type: str,
    flash_attn: bool,
    n_ubatch: int,
    gpu_layers: int,
    output_on_gpu: bool,
    compute_scale: float = 1.0,
) -> int:
    """The largest context (a multiple of 256, up to the model's own) that fits with this
    placement (0: not even 256 tokens)."""
    b = _budget(machine)
    gpu_name = b.gpu_name if (gpu_layers > 0 or output_on_gpu) else None
    limit = s.context_length or 131072

    def fits(c: int) -> bool:
        kv = layer_kv_bytes(s, c, kv_type, flash_attn, n_ubatch)
        return _fits(
            _place(
                s, kv, gpu_layers, output_on_gpu, c, flash_attn, n_ubatch, gpu_name, compute_scale
            ),
            b,
        )

    if not fits(CTX_PAD):
        return 0
    if fits(limit):
        return limit
    lo, hi = 1, limit // CTX_PAD  # in units of CTX_PAD
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid * CTX_PAD):
            lo = mid
        else:
            hi = mid - 1
    return lo * CTX_PAD


# ------------------------------------------------------------------------------ speed

#: Decode efficiency (fraction of peak bandwidth) per device class, dense / MoE, from the
#: measured llama.cpp table in the reference (memory-and-speed.md §5).
EFFICIENCY: dict[str, tuple[float, float]] = {
    "nvidia_discrete": (0.65, 0.55),
    "nvidia_unified": (0.80, 0.65),
    "apple": (0.60, 0.55),
    "other_gpu": (0.55, 0.5),
    "cpu": (0.55, 0.5),
}
#: Peak FLOPS per GB/s of bandwidth per class (prefill is compute-bound), and the fraction
#: llama.cpp reaches. Calibrated on the DGX Spark pp2048 figures in the reference.
FLOPS_PER_BW: dict[str, float] = {
    "nvidia_discrete": 150e9,
    "nvidia_unified": 350e9,
    "apple": 70e9,
    "other_gpu": 60e9,
}
PREFILL_EFFICIENCY = 0.35
#: Effective quantized matmul throughput per core (AVX2/AVX-512 int8 dot products), fitted to
#: llama.cpp prompt processing on an EPYC (Gemma 3 270M: about 700 tokens/s on 2 cores).
CPU_FLOPS_PER_CORE = 400e9
#: Bandwidth one core can stream (decode on few cores is core-bound, not DRAM-bound).
CPU_BANDWIDTH_PER_CORE_GBPS = 15.0
DEFAULT_RAM_BANDWIDTH_GBPS = 50.0
DEFAULT_GPU_BANDWIDTH_GBPS = 300.0
#: Host-to-GPU copies during prompt processing with partial offload (PCIe 4.0 x16, real).
PCIE_BANDWIDTH_GBPS = 20.0
#: Fixed per-token cost (kernel launches, sampling, Python) that caps small models.
PER_TOKEN_OVERHEAD_S = 0.002
#: Fixed cost per prompt token (graph scheduling, sampling set-up), caps tiny models.
PREFILL_OVERHEAD_S = 2e-5
#: Depth at which decode speed is quoted (KV read per token grows with the conversation).
SPEED_DEPTH = 2048


def device_class(machine: MachineProfile) -> str:
    gpu = machine.gpus[0] if machine.gpus else None
    if machine.backend == "metal" or (gpu is not None and gpu.vendor == "apple"):
        return "apple"
    if gpu is not None and gpu.vendor == "nvidia":
        return "nvidia_unified" if gpu.unified else "nvidia_discrete"
    if gpu is not None:
        return "other_gpu"
    return "cpu"


def _bandwidth(machine: MachineProfile, pool: MemoryPool | None, gpu: bool) -> tuple[float, bool]:
    """(GB/s, known) for a pool."""
    if pool is not None and pool.bandwidth_gbps:
        return float(pool.bandwidth_gbps), True
    if gpu and machine.gpus and machine.gpus[0].bandwidth_gbps:
        return float(machine.gpus[0].bandwidth_gbps or 0), True
    return (DEFAULT_GPU_BANDWIDTH_GBPS if gpu else DEFAULT_RAM_BANDWIDTH_GBPS), False


def estimate_speed(
    s: ModelSummary,
    machine: MachineProfile,
    p: MemoryPlan,
    calibration: CalibrationStore | None = None,
) -> SpeedEstimate:
    """Decode and prefill tokens/s for a plan (roofline x measured efficiency)."""
    moe = s.n_expert > 0 and s.n_expert_used > 0
    cls = device_class(machine)
    b = _budget(machine)
    first_gpu = s.n_layers - p.gpu_layers
    depth = min(p.context, SPEED_DEPTH)
    kv_depth = layer_kv_bytes(s, depth, p.kv_type, p.flash_attn, p.n_ubatch)
    gpu_bytes = cpu_bytes = 0
    for il in range(s.n_layers):
        read = s.active_layer_bytes(il) + kv_depth[il]
        if il >= first_gpu and p.gpu_layers > 0 and p.verdict != "cpu":
            gpu_bytes += read
        else:
            cpu_bytes += read
    out_read = s.output_bytes + (s.tied_output_bytes if s.tied_output else 0)
    if p.output_on_gpu:
        gpu_bytes += out_read
    else:
        cpu_bytes += out_read
    eff_gpu = EFFICIENCY.get(cls, EFFICIENCY["other_gpu"])[1 if moe else 0]
    eff_cpu = EFFICIENCY["cpu"][1 if moe else 0]
    if cls in ("nvidia_unified", "apple"):
        eff_cpu = eff_gpu  # the CPU reads the same fast memory
    bw_gpu, gpu_known = _bandwidth(machine, b.gpu_pool, True)
    bw_ram, ram_known = _bandwidth(machine, b.ram_pool, False)
    if b.shared:
        bw_ram, ram_known = bw_gpu, gpu_known
    # a few CPU cores cannot pull the memory's full bandwidth (per-core streaming limit)
    bw_ram = min(bw_ram, CPU_BANDWIDTH_PER_CORE_GBPS * max(1, machine.cpu_cores))
    t = PER_TOKEN_OVERHEAD_S
    if gpu_bytes:
        t += gpu_bytes / (eff_gpu * bw_gpu * 1e9)
    if cpu_bytes:
        t += cpu_bytes / (eff_cpu * bw_ram * 1e9)
    decode = 1.0 / t
    active = max(1, s.active_params or int(s.weights_bytes / 0.6))
    if b.gpu_name and p.gpu_layers > 0:
        flops = FLOPS_PER_BW.get(cls, FLOPS_PER_BW["other_gpu"]) * bw_gpu
    else:
        flops = CPU_FLOPS_PER_CORE * max(1, machine.cpu_cores)
    prefill = 1.0 / (2 * active / (PREFILL_EFFICIENCY * flops) + PREFILL_OVERHEAD_S)
    if p.verdict == "partial":
        # llama.cpp's op offload streams the CPU-resident weights to the GPU once per ubatch
        # for prompt processing, so the prompt runs at GPU speed plus a PCIe transfer
        prefill = 1.0 / (
            1.0 / prefill + cpu_bytes / (PCIE_BANDWIDTH_GBPS * 1e9 * max(1, p.n_ubatch))
        )
    where = {"cpu": "CPU", "full_gpu": "GPU", "partial": "GPU+CPU", "no_fit": "-"}[p.verdict]
    assumed = (
        []
        if (gpu_known or not gpu_bytes) and (ram_known or not cpu_bytes)
        else ["bandwidth assumed (not reported by the machine profile)"]
    )
    moe_note = f"MoE: shared + {s.n_expert_used}/{s.n_expert} experts, " if moe else ""
    explanation = (
        f"{where}: reads {(gpu_bytes + cpu_bytes) / GiB:.2f} GiB per token "
        f"({moe_note}"
        f"KV at depth {depth}); "
        + (f"GPU {bw_gpu:.0f} GB/s x {eff_gpu:.2f}" if gpu_bytes else "")
        + ("; " if gpu_bytes and cpu_bytes else "")
        + (f"RAM {bw_ram:.0f} GB/s x {eff_cpu:.2f}" if cpu_bytes else "")
        + (f"; {assumed[0]}" if assumed else "")
    )
    est = SpeedEstimate(round(decode, 2), round(prefill, 1), "estimated", explanation)
    if p.verdict == "no_fit":
        est = SpeedEstimate(0.0, 0.0, "estimated", "does not fit in this machine's memory")
    if calibration is not None and p.verdict != "no_fit":
        from launcher.calibration import machine_key

        est = calibration.adjust(machine_key(machine), s.key, p, est)
    return est
