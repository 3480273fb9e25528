"""The planner's results: memory per device, the verdict, the speed estimate."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from launcher.planning.ggml import kv_type_id

Verdict = Literal["full_gpu", "partial", "cpu", "no_fit"]
Basis = Literal["estimated", "calibrated", "measured"]


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
