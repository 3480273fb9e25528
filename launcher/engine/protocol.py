"""The wire protocol between ``EngineClient`` (app process) and a model host (child process).

Messages are JSON objects sent as bytes over a ``multiprocessing`` pipe (``send_bytes`` /
``recv_bytes``), never pickles: the app only ever decodes plain JSON from the child and checks
every field's type against the schema below before using it. Cancel does not travel on the
pipe: it is a shared ``multiprocessing.Event`` the host polls between tokens, so it works
while the client thread is blocked reading.

Client to host::

    load      {path, params}                      -> progress*, then loaded | load_failed
    generate  {rid, mode: chat|complete, messages | prompt, sampling}
                                                  -> token*, then finished | error
    cancel    {rid}                               -> that reply ends (finished, cancelled)
    embed     {texts}                             -> embeddings | error
    shutdown  {}                                  -> the host frees the model and exits

Several replies may be generated at once (parallel slots): ``generate`` carries a request id
(``rid``) that every message of its reply repeats (``token``, ``reasoning``, ``tool_call``,
``finished``, ``error``); messages without one (0) answer ``load`` and ``embed``.

Host to client::

    system       {system_info, extra_buffers, reason}    (first, before the file is read)
    progress     {fraction}
    loaded       {n_ctx, n_ctx_train, n_params, model_size_bytes, description, chat_template,
                  load_s, buffers: [{device, kind, bytes}], system_info, extra_buffers,
                  extra_buffers_reason, n_parallel?, n_ctx_slot?}
    load_failed  {message, log}
    token        {text, logprobs: [[token, logprob, [[alt, logprob], ...]], ...]}
    reasoning    {text}
    tool_call    {index, id, name, arguments}
    finished     {text, metrics: {...ReplyMetrics fields except ttft_s}, tool_calls: [...],
                  reasoning, logprobs}
    error        {message}
"""

from __future__ import annotations

import json
from typing import Any

from launcher.errors import EngineError

# type -> {field: allowed python types}; None in a tuple means the field may be null.
_SCHEMA: dict[str, dict[str, tuple[type | None, ...]]] = {
    # client -> host
    "load": {"path": (str,), "params": (dict,)},
    "generate": {
        "mode": (str,),
        "messages": (list, None),
        "prompt": (str, None),
        "sampling": (dict,),
    },
    "shutdown": {},
    "cancel": {"rid": (int,)},
    "embed": {"texts": (list,)},
    # host -> client
    "system": {"system_info": (str,), "extra_buffers": (bool,), "reason": (str,)},
    "progress": {"fraction": (float, int)},
    "loaded": {
        "n_ctx": (int,),
        "n_ctx_train": (int,),
        "n_params": (int,),
        "model_size_bytes": (int,),
        "description": (str,),
        "chat_template": (str, None),
        "load_s": (float, int),
        "buffers": (list,),
        "system_info": (str,),
        "extra_buffers": (bool,),
        "extra_buffers_reason": (str,),
    },
    "load_failed": {"message": (str,), "log": (list,)},
    "token": {"text": (str,), "logprobs": (list,)},
    "reasoning": {"text": (str,)},
    "tool_call": {"index": (int,), "id": (str,), "name": (str,), "arguments": (str,)},
    "finished": {
        "text": (str,),
        "metrics": (dict,),
        "tool_calls": (list,),
        "reasoning": (str,),
        "logprobs": (list,),
    },
    "error": {"message": (str,)},
    "embeddings": {"vectors": (list,), "prompt_tokens": (int,)},
}

_METRICS_SCHEMA: dict[str, tuple[type | None, ...]] = {
    "prompt_tokens": (int,),
    "prefill_s": (float, int),
    "prefill_tokens_per_s": (float, int),
    "generated_tokens": (int,),
    "decode_s": (float, int),
    "decode_tokens_per_s": (float, int),
    "decode_llama_s": (float, int),
    "stop_reason": (str,),
    "template": (str,),
    "total_s": (float, int),
    "cached_tokens": (int,),
    "reasoning_tokens": (int,),
    "stop_sequence": (str, None),
}

# Fields a message may leave out (older hosts, control replies): type -> {field: types}.
_OPTIONAL: dict[str, dict[str, tuple[type | None, ...]]] = {
    "generate": {"rid": (int,)},
    "token": {"rid": (int,)},
    "reasoning": {"rid": (int,)},
    "tool_call": {"rid": (int,)},
    "finished": {"rid": (int,)},
    "error": {"rid": (int,)},
    "loaded": {"n_parallel": (int,), "n_ctx_slot": (int,)},
}
_OPTIONAL_METRICS: dict[str, tuple[type | None, ...]] = {"queued_s": (float, int)}

STOP_REASONS = ("eos", "stop", "length", "context_full", "cancelled", "tool_calls")


def encode(msg_type: str, **fields: Any) -> bytes:
    """One message as UTF-8 JSON bytes (validated like a received one, to catch bugs early)."""
    msg = {"type": msg_type, **fields}
    validate(msg)
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode(data: bytes) -> dict[str, Any]:
    """Parse and validate one message; raise ``EngineError`` for anything malformed."""
    try:
        msg = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError(f"The model host sent an unreadable message ({exc}).") from exc
    validate(msg)
    return msg


def validate(msg: Any) -> None:
    """Check a message against the schema: known type, every field present with a right type."""
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise EngineError("The model host sent a message without a type.")
    schema = _SCHEMA.get(msg["type"])
    if schema is None:
        raise EngineError(f"The model host sent an unknown message type {msg['type']!r}.")
    for name, types in schema.items():
        if name not in msg:
            raise EngineError(f"Message {msg['type']!r} lacks field {name!r}.")
        _check(msg["type"], name, msg[name], types)
    for name, types in _OPTIONAL.get(msg["type"], {}).items():
        if name in msg:
            _check(msg["type"], name, msg[name], types)
    if msg["type"] == "finished":
        metrics = msg["metrics"]
        for name, mtypes in _METRICS_SCHEMA.items():
            if name not in metrics:
                raise EngineError(f"Reply metrics lack field {name!r}.")
            _check("finished", name, metrics[name], mtypes)
        for name, mtypes in _OPTIONAL_METRICS.items():
            if name in metrics:
                _check("finished", name, metrics[name], mtypes)
        if metrics["stop_reason"] not in STOP_REASONS:
            raise EngineError(f"Unknown stop reason {metrics['stop_reason']!r}.")
        for call in msg["tool_calls"]:
            validate({"type": "tool_call", **call} if isinstance(call, dict) else None)
    if msg["type"] == "loaded":
        for b in msg["buffers"]:
            if not (
                isinstance(b, dict)
                and isinstance(b.get("device"), str)
                and isinstance(b.get("kind"), str)
                and isinstance(b.get("bytes"), int)
            ):
                raise EngineError("Malformed buffer entry in 'loaded'.")
    if msg["type"] == "load_failed" and not all(isinstance(x, str) for x in msg["log"]):
        raise EngineError("Malformed log in 'load_failed'.")


def _check(msg_type: str, name: str, value: Any, types: tuple[type | None, ...]) -> None:
    if value is None:
        if None in types:
            return
    elif isinstance(value, bool) and bool not in types:
        pass  # bool is an int subclass; never accept it for a numeric field
    elif any(t is not None and isinstance(value, t) for t in types):
        return
    raise EngineError(f"Message {msg_type!r} has a bad {name!r}: {type(value).__name__}.")
