"""What the planner knows about a model (:class:`ModelSummary`), from a GGUF header or the
catalog's compact dict: exact bytes per layer, heads per layer, sliding-window and recurrent
layers, experts."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gguf.constants import LlamaFileType

from launcher.errors import GGUFError

if TYPE_CHECKING:
    from launcher.gguf.reader import GGUFHeader, GGUFModel

#: More blocks than any real model has; a header claiming more is corrupt.
MAX_LAYERS = 4096

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
