"""The engine's public data: load parameters, sampling settings, and the events a host streams.

Everything here is a frozen dataclass of plain values (str, int, float, bool, tuples, None),
so it can cross the process boundary as JSON (see ``protocol.py``), be shown by the UI and be
stored by calibration without any llama.cpp or Qt type leaking out.

Event stream of one reply (``EngineClient.chat`` / ``complete``)::

    Token(text) ... Token(text) ReplyFinished(metrics)      normal end, stop or cancel
    ReasoningToken(text) ... Token(text) ... ToolCall ... ReplyFinished(tool_calls=...)
    Token(text) ... HostCrashed(exit_code, ...)             the host process died
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from launcher.planning.ggml import KV_TYPES
from launcher.planning.types import MemoryPlan

if TYPE_CHECKING:
    from launcher.errors import HostCrashedError

StopReason = Literal["eos", "stop", "length", "context_full", "cancelled", "tool_calls"]
ToolChoice = str  # "auto" | "none" | "required" | the name of one tool

PLAIN_COMPLETION = "plain completion (model has no chat template)"
"""``ReplyMetrics.template`` when a model has no chat template and a transcript was completed."""


def _physical_cores() -> int:
    import psutil

    return max(1, psutil.cpu_count(logical=False) or psutil.cpu_count() or 1)


@dataclass(frozen=True)
class EngineParams:
    """Exactly how llama.cpp is asked to load a model; every field is passed explicitly.

    llama-cpp-python's defaults (no GPU offload, 512-token context, flash attention off) are
    wrong for this app, so nothing is left to them. ``n_threads=None`` means the number of
    physical cores. A ``MemoryPlan`` converts with :meth:`from_plan`.
    """

    n_ctx: int = 4096
    n_gpu_layers: int = 0  # -1: all layers
    flash_attn: bool | None = None  # None: llama.cpp decides (auto)
    type_k: str = "f16"
    type_v: str = "f16"
    swa_full: bool = False
    n_threads: int | None = None
    n_threads_batch: int | None = None
    n_batch: int = 512
    n_ubatch: int = 512
    use_mmap: bool = True
    use_mlock: bool = False
    offload_kqv: bool = True
    main_gpu: int = 0
    seed: int = 0xFFFFFFFF  # llama.cpp's "random"
    #: llama.cpp RPC servers, "host:port,host:port" (llama-cpp-python's ``rpc_servers``), and
    #: the layer split over the offload devices (RPC first); see ``launcher/rpc.py``.
    rpc_servers: str = ""
    tensor_split: tuple[float, ...] = ()
    #: llama.cpp's extra buffer types (weights repacked for faster CPU kernels; Intel AMX).
    #: None: on, except where the host finds the AMX crash (``hardware/cpufeatures.py``).
    use_extra_bufts: bool | None = None
    #: Slots: replies generated together in one batch (llama-server's ``--parallel``). The
    #: context is split between them, each slot gets ``n_ctx / n_parallel`` tokens, so the KV
    #: cache takes the same memory whatever the number.
    n_parallel: int = 1

    def resolved(self) -> EngineParams:
        """These params with ``None`` thread counts replaced by this machine's physical cores."""
        cores = _physical_cores()
        return dataclasses.replace(
            self,
            n_threads=self.n_threads or cores,
            n_threads_batch=self.n_threads_batch or self.n_threads or cores,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineParams:
        """Build from a dict of ``Llama(...)``-style keyword arguments; unknown keys are ignored.

        Accepts ggml enum integers as well as names for ``type_k``/``type_v``.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k in names}
        for key in ("type_k", "type_v"):
            value = kwargs.get(key)
            if value is None:
                kwargs.pop(key, None)
            elif isinstance(value, int):
                inverse = {v: k for k, v in KV_TYPES.items()}
                if value not in inverse:
                    raise ValueError(f"unsupported KV cache type {value}")
                kwargs[key] = inverse[value]
            else:
                kwargs[key] = str(value).lower()
        if kwargs.get("rpc_servers") is None:
            kwargs.pop("rpc_servers", None)
        elif not isinstance(kwargs["rpc_servers"], str):  # a list of "host:port"
            kwargs["rpc_servers"] = ",".join(str(x) for x in kwargs["rpc_servers"])
        kwargs["tensor_split"] = tuple(float(x) for x in kwargs.get("tensor_split") or ())
        params = cls(**kwargs)
        params.validate()
        return params

    @classmethod
    def from_plan(cls, plan: EngineParams | MemoryPlan | Mapping[str, Any]) -> EngineParams:
        """Convert a ``MemoryPlan`` (its ``llama_params()``) or a dict of ``Llama`` keywords."""
        if isinstance(plan, EngineParams):
            return plan
        if isinstance(plan, Mapping):
            return cls.from_dict(plan)
        if isinstance(plan, MemoryPlan):
            return cls.from_dict(plan.llama_params())
        raise TypeError(f"cannot use {type(plan).__name__} as engine parameters")

    def validate(self) -> None:
        """Raise ``ValueError`` for values llama.cpp would reject or misread."""
        if self.n_ctx < 16:
            raise ValueError(f"context size {self.n_ctx} is too small (at least 16 tokens)")
        if self.n_batch < 1 or self.n_ubatch < 1:
            raise ValueError("batch sizes must be positive")
        if not 1 <= self.n_parallel <= 256:
            raise ValueError(f"parallel slots must be 1 to 256, not {self.n_parallel}")
        if self.n_ctx // self.n_parallel < 16:
            raise ValueError(
                f"a context of {self.n_ctx} tokens split in {self.n_parallel} slots leaves "
                "too little for each (at least 16 tokens a slot)"
            )
        for key in (self.type_k, self.type_v):
            if key not in KV_TYPES:
                raise ValueError(f"unknown KV cache type {key!r}; use one of {sorted(KV_TYPES)}")


@dataclass(frozen=True)
class Sampling:
    """How a reply is generated: token choice, constraints, tools. ``temperature <= 0`` means
    greedy (deterministic).

    ``cache_prompt=False`` evaluates the whole prompt again (benchmarks measure prefill).
    Penalties, ``logit_bias`` (token id, bias) and grammars run in llama.cpp's own sampler
    chain. ``json_schema`` constrains the reply to JSON valid for it (``{}``: any JSON object,
    OpenAI's ``json_object``); ``grammar`` is llama.cpp GBNF text. ``tools`` are OpenAI
    function definitions (``{"name", "description", "parameters"}``) rendered through the
    model's chat template; ``tool_choice`` is ``auto``, ``none``, ``required`` or a tool's name
    (the last two enforced by a grammar). ``logprobs``: how many top alternatives to report per
    generated token (``0``: only the chosen token's log-probability; ``None``: none).
    ``template_kwargs`` are extra chat-template variables (``enable_thinking``, ...).
    """

    max_tokens: int = 512
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    seed: int | None = None
    stop: tuple[str, ...] = ()
    cache_prompt: bool = True  # reuse the KV of the prompt prefix shared with the last reply
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: int | None = None
    grammar: str | None = None
    json_schema: dict[str, Any] | None = None
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True
    template_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        d["logit_bias"] = [[int(t), float(b)] for t, b in self.logit_bias]
        d["tools"] = list(self.tools)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sampling:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if "stop" in kwargs:
            kwargs["stop"] = tuple(str(s) for s in kwargs["stop"] or ())
        if "logit_bias" in kwargs:
            kwargs["logit_bias"] = tuple((int(t), float(b)) for t, b in kwargs["logit_bias"] or ())
        if "tools" in kwargs:
            kwargs["tools"] = tuple(dict(t) for t in kwargs["tools"] or ())
        if kwargs.get("template_kwargs") is None:
            kwargs.pop("template_kwargs", None)
        return cls(**kwargs)

    @property
    def constrained(self) -> bool:
        """Whether a grammar shapes the reply (schema, GBNF, or a forced tool call)."""
        forced = bool(self.tools) and self.tool_choice not in ("auto", "none")
        return self.grammar is not None or self.json_schema is not None or forced


@dataclass(frozen=True)
class BufferSize:
    """One buffer llama.cpp reported allocating: ``kind`` is model, kv, compute or output."""

    device: str  # "CPU", "CPU_Mapped", "CUDA0", "Metal", ...
    kind: str
    bytes: int


@dataclass(frozen=True)
class LoadProgress:
    """Model loading progress, 0.0 to 1.0 (llama.cpp's own progress callback)."""

    fraction: float


@dataclass(frozen=True)
class Loaded:
    """A model that is loaded and ready, with what loading it measurably cost."""

    path: str
    pid: int
    load_s: float  # wall time of ``load()``: host start, file load, context creation
    buffers: tuple[BufferSize, ...]
    rss_bytes: int
    gpu_bytes: int | None  # NVML per-process GPU memory; None where unavailable
    n_ctx: int
    n_ctx_train: int
    n_params: int
    model_size_bytes: int
    description: str
    chat_template: str | None  # the GGUF's template; None: plain completion is used
    params: EngineParams
    system_info: str = ""
    #: Whether the load used llama.cpp's extra buffer types, and why (``cpufeatures``).
    extra_buffers: bool = True
    extra_buffers_reason: str = ""
    #: Parallel slots, and the context each one has (``n_ctx / n_parallel``; 0: not reported).
    n_parallel: int = 1
    n_ctx_slot: int = 0

    def buffer_total(self, kind: str | None = None, device: str | None = None) -> int:
        """Bytes of the reported buffers, optionally only one kind and/or one device."""
        return sum(
            b.bytes
            for b in self.buffers
            if (kind is None or b.kind == kind) and (device is None or b.device == device)
        )


@dataclass(frozen=True)
class ReplyMetrics:
    """Honest numbers for one reply, measured in the host around llama.cpp's calls."""

    ttft_s: float  # request sent to first token received, seen by the client
    prompt_tokens: int  # tokens evaluated for this reply
    prefill_s: float
    prefill_tokens_per_s: float
    generated_tokens: int
    decode_s: float  # first token to last token
    decode_tokens_per_s: float  # (generated_tokens - 1) / decode_s
    stop_reason: StopReason
    template: str  # "gguf chat template" or PLAIN_COMPLETION or "raw prompt"
    total_s: float = 0.0
    cached_tokens: int = 0  # prompt tokens reused from the previous reply's KV cache
    # Of decode_s, the time spent inside llama_decode: the rest is the engine's own per-token
    # work (sampling, detokenizing, streaming). 0.0 where not measured (remote servers).
    decode_llama_s: float = 0.0
    # "NAME (URL)" when a remote server generated the reply (``launcher.engine.remote``): every
    # number above was then measured on this side of the network, TTFT and prefill included.
    remote: str | None = None
    #: Of generated_tokens, those spent reasoning (``ReasoningToken`` text).
    reasoning_tokens: int = 0
    #: The stop string that ended the reply (``stop_reason`` "stop"), if one did.
    stop_sequence: str | None = None
    #: Of total_s, the time the request waited in the host for a free slot (parallel slots
    #: all busy); TTFT includes it.
    queued_s: float = 0.0


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's log-probability and the ``top`` alternatives (text, logprob)."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Token:
    """A piece of generated text: one token or more (UTF-8 bytes that span tokens, and fast
    replies, whose text the host batches to at most 20 pieces a second). ``logprobs`` has one
    entry per token in it when the request asked for them."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class ReasoningToken:
    """A piece of the model's reasoning (``<think>`` text, harmony's analysis channel): shown
    folded, never part of the answer."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """A call the model made, parsed from its own tool-call syntax. ``arguments`` is JSON text
    (OpenAI's shape); ``index`` is its position among this reply's calls."""

    id: str
    name: str
    arguments: str
    index: int = 0

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class ReplyFinished:
    """The reply ended (stop, end of sequence, length, cancel, tool calls); the model stays
    loaded. ``text`` is the answer only: reasoning and tool-call markup are in their fields."""

    text: str
    metrics: ReplyMetrics
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str = ""
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Embeddings:
    """One L2-normalised vector per input text, and the tokens they took."""

    vectors: tuple[tuple[float, ...], ...]
    prompt_tokens: int


@dataclass(frozen=True)
class HostCrashed:
    """The host process died; the client is usable again and can load a model.

    ``kind`` is the classified signature (``launcher/engine/crashes.py``: ``amx``,
    ``illegal_instruction``, ``gpu_oom``, ``segfault``...), ``stage`` when it died, ``repeats``
    how many times in a row this model died at this stage. From the second time on,
    ``safe_params`` are the load settings to try instead and ``safe_changes`` name each change.
    """

    exit_code: int | None
    last_log_lines: tuple[str, ...]
    likely_cause: str
    kind: str = "unknown"
    stage: Literal["load", "reply"] = "reply"
    repeats: int = 1
    model_path: str = ""
    safe_params: EngineParams | None = None
    safe_changes: tuple[str, ...] = ()

    def as_error(self) -> HostCrashedError:
        """This crash as an exception, for callers that prefer raising to an event."""
        from launcher.errors import HostCrashedError

        code = "" if self.exit_code is None else f" (exit code {self.exit_code})"
        return HostCrashedError(f"The model stopped unexpectedly{code}. {self.likely_cause}")


Event = Token | ReasoningToken | ToolCall | ReplyFinished | HostCrashed


@dataclass(frozen=True)
class BenchResult:
    """One ``spark-launcher bench`` run."""

    load_s: float
    ttft_s: float
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    generated_tokens: int
    prompt_tokens: int
    rss_bytes: int
    gpu_bytes: int | None
    buffers: tuple[BufferSize, ...] = field(default_factory=tuple)
