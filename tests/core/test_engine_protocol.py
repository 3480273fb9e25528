"""Engine pieces that need no model: the wire protocol, log parsing, stop strings, params."""

from __future__ import annotations

import json

import psutil
import pytest

from launcher.engine import EngineParams, Sampling
from launcher.engine.host import _split_stop, transcript
from launcher.engine.logparse import load_failure_message, parse_buffers
from launcher.engine.protocol import decode, encode
from launcher.errors import EngineError
from launcher.planning import MemoryPlan

# Captured from llama-cpp-python 0.3.36 (CPU) loading Gemma 3 270M, plus CUDA lines.
GEMMA_CPU_LOG = [
    "load_tensors:   CPU_Mapped model buffer size =   235.16 MiB",
    "load_tensors:   CPU_REPACK model buffer size =    12.66 MiB",
    "llama_context:        CPU  output buffer size =     1.00 MiB",
    "llama_kv_cache:        CPU KV buffer size =     6.00 MiB",
    "llama_kv_cache:        CPU KV buffer size =    15.00 MiB",
    "sched_reserve:        CPU compute buffer size =   514.50 MiB",
]
CUDA_LOG = [
    "load_tensors:        CUDA0 model buffer size =  4403.49 MiB",
    "load_tensors:   CPU_Mapped model buffer size =   281.81 MiB",
    "llama_kv_cache:      CUDA0 KV buffer size =  1024.00 MiB",
    "sched_reserve:      CUDA0 compute buffer size =   560.00 MiB",
    "sched_reserve:  CUDA_Host compute buffer size =    24.01 MiB",
]


def test_buffer_sizes_are_read_per_device_and_kind() -> None:
    buffers = {(b.device, b.kind): b.bytes for b in parse_buffers(GEMMA_CPU_LOG)}
    assert buffers[("CPU_Mapped", "model")] == round(235.16 * 2**20)
    assert buffers[("CPU", "kv")] == 21 * 2**20  # both sliding-window caches add up
    assert buffers[("CPU", "compute")] == round(514.50 * 2**20)
    assert buffers[("CPU", "output")] == 2**20
    cuda = {(b.device, b.kind): b.bytes for b in parse_buffers(CUDA_LOG)}
    assert cuda[("CUDA0", "model")] == round(4403.49 * 2**20)
    assert cuda[("CUDA0", "kv")] == 1024 * 2**20
    assert cuda[("CUDA_Host", "compute")] == round(24.01 * 2**20)


@pytest.mark.parametrize(
    ("line", "expect"),
    [
        ("gguf_init_from_reader: invalid magic characters: 'hell', expected 'GGUF'", "not a GGUF"),
        (
            "llama_model_load: error loading model: tensor 'token_embd.weight' data is not "
            "within the file bounds, model is corrupted or incomplete",
            "incomplete",
        ),
        ("gguf_init_from_reader: failed to read header", "damaged"),
        ("llama_model_load: error loading model: unknown model architecture: 'zzz'", "'zzz'"),
        (
            "ggml_aligned_malloc: insufficient memory (attempted to allocate 292968.75 MB)\n"
            "alloc_tensor_range: failed to allocate CPU buffer of size 307200000000",
            "not enough memory",
        ),
    ],
)
def test_load_failures_say_what_to_do(line: str, expect: str) -> None:
    msg = load_failure_message("/models/x.gguf", line.split("\n"))
    assert "x.gguf" in msg
    assert expect in msg
    assert any(w in msg for w in ("Download", "download", "Lower", "Update"))


def test_protocol_round_trip_and_rejects_malformed_messages() -> None:
    data = encode("token", text="héllo", logprobs=[])
    assert decode(data) == {"type": "token", "text": "héllo", "logprobs": []}
    call = {"index": 0, "id": "call_1", "name": "add", "arguments": "{}"}
    assert decode(encode("tool_call", **call)) == {"type": "tool_call", **call}
    bad = [
        b"\x80\x81",  # not UTF-8
        b"[1, 2]",  # not an object
        json.dumps({"type": "exec", "code": "x"}).encode(),  # unknown type
        json.dumps({"type": "token"}).encode(),  # missing field
        json.dumps({"type": "token", "text": 5, "logprobs": []}).encode(),  # wrong type
        json.dumps(
            {"type": "tool_call", "index": 0, "id": "c", "name": 3, "arguments": ""}
        ).encode(),  # a call whose name is not text
        json.dumps({"type": "progress", "fraction": True}).encode(),  # bool is not a number
        json.dumps(
            {"type": "finished", "text": "", "metrics": {"stop_reason": "eos"}}
        ).encode(),  # incomplete metrics
    ]
    for raw in bad:
        with pytest.raises(EngineError):
            decode(raw)


def test_stop_strings_are_held_back_until_decided() -> None:
    stops = ["\nUser:"]
    assert _split_stop("Paris.", stops) == ("Paris.", "", None)
    assert _split_stop("Paris.\nUs", stops) == ("Paris.", "\nUs", None)
    assert _split_stop("Paris.\nUser: hi", stops) == ("Paris.", "", "\nUser:")
    assert _split_stop("Paris.\nUsual", stops) == ("Paris.\nUsual", "", None)
    assert _split_stop("abc", []) == ("abc", "", None)


def test_transcript_for_models_without_a_template() -> None:
    text = transcript(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Capital of France?"},
        ]
    )
    assert text == "Be brief.\n\nUser: Hi\nAssistant: Hello.\nUser: Capital of France?\nAssistant:"


def _plan() -> MemoryPlan:
    """A plan with 98 blocks and the output layer on the GPU, q8_0 KV, 256-token ubatches."""
    return MemoryPlan(
        weights_bytes=1, kv_bytes=1, compute_bytes=1, per_device={}, verdict="full_gpu",
        gpu_layers=98, total_layers=98, max_context_full_gpu=8192, context=8192,
        kv_type="q8_0", type_v="q8_0", flash_attn=True, n_ubatch=256, output_on_gpu=True,
    )  # fmt: skip


def test_params_convert_from_a_memory_plan_and_resolve_threads() -> None:
    p = EngineParams.from_plan(_plan())
    assert (p.n_gpu_layers, p.n_ctx, p.type_k, p.type_v, p.flash_attn, p.n_ubatch) == (
        99,
        8192,
        "q8_0",
        "q8_0",
        True,
        256,
    )
    r = p.resolved()
    assert r.n_threads == psutil.cpu_count(logical=False)  # physical cores, never a default
    assert EngineParams.from_dict(r.to_dict()) == r
    with pytest.raises(ValueError, match="KV cache type"):
        EngineParams.from_dict({"type_k": "q9_9"})
    s = Sampling(max_tokens=3, stop=("x",))
    assert Sampling.from_dict(json.loads(json.dumps(s.to_dict()))) == s
