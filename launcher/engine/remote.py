"""``RemoteEngineClient``: chat with a model on any OpenAI-compatible server, like a local one.

llama.cpp's ``llama-server``, vLLM, Ollama, LM Studio and another Spark Launcher all speak the
OpenAI HTTP API (``GET /v1/models``, ``POST /v1/chat/completions`` with server-sent events).
This client has the surface of :class:`launcher.engine.EngineClient` (``load``, ``chat``,
``complete``, ``cancel``, ``unload``, the same ``Token`` ... ``ReplyFinished`` events), so the
chat view, the CLI and comparisons use it unchanged. Nothing runs on this machine: ``load``
only checks that the server lists the model, and ``unload`` closes the connections.

Metrics are measured here, on our side of the network, and labelled ``remote``: TTFT is the
request to the first content chunk (network and the server's queue included), decode tokens/s
is (tokens - 1) over first-to-last chunk, token counts come from the server's ``usage`` (asked
for with ``stream_options.include_usage``) or, where a server sends none, from the chunks.

Talks HTTP with ``httpx2`` (already a dependency through ``huggingface_hub``) rather than the
``openai`` package: the SSE framing is a few lines, and cancel needs the response's socket,
which the ``openai`` client hides. ``cancel()`` from another thread shuts that socket down, so
a reply stops at once even while the server is still evaluating the prompt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from launcher.engine.api import Engine, Message
from launcher.engine.client import EngineClient, plain_message
from launcher.engine.events import (
    EngineParams,
    Event,
    Loaded,
    LoadProgress,
    ReasoningToken,
    ReplyFinished,
    ReplyMetrics,
    Sampling,
    StopReason,
    Token,
    TokenLogprob,
    ToolCall,
)
from launcher.errors import (
    EngineError,
    ModelBusyError,
    ModelLoadError,
    RemoteAuthError,
    RemoteEngineError,
)
from launcher.httpio import shutdown_socket
from launcher.paths import AppPaths
from launcher.remotes import Remote, RemoteStore, is_remote_spec, make_spec, parse_spec, redact_key

if TYPE_CHECKING:
    from launcher.planning import MemoryPlan

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 600.0
"""Longest silence while a reply streams: a big prompt on a slow server may take minutes before
its first token, and a server that goes away closes the connection long before this."""

_FINISH: dict[str, StopReason] = {
    "stop": "eos",
    "eos": "eos",
    "length": "length",
    "content_filter": "stop",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}


def list_models(remote: Remote, timeout: float = CONNECT_TIMEOUT_S) -> list[dict[str, Any]]:
    """The models ``remote`` serves (``GET /v1/models``), each the server's JSON object.

    Raises ``RemoteAuthError`` for a refused key and ``RemoteEngineError`` when the server
    cannot be reached or does not answer like an OpenAI-compatible one.
    """
    import httpx2

    url = f"{remote.base_url}/models"
    try:
        with httpx2.Client(timeout=httpx2.Timeout(timeout)) as http:
            response = http.get(url, headers=remote.headers())
    except httpx2.HTTPError as exc:
        raise _transport_error(remote, exc, "listing its models") from None
    if response.status_code != 200:
        raise _status_error(remote, response.status_code, response.text, response.headers)
    try:
        data = response.json()["data"]
        models = [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
    except (ValueError, KeyError, TypeError):
        raise RemoteEngineError(
            f"{remote.name} ({remote.base_url}) did not answer GET /models with an "
            "OpenAI-style model list. Is the URL the server's API root (usually ending in /v1)?"
        ) from None
    return models


class RemoteEngineClient:
    """One model on one remote server, driven like an ``EngineClient``.

    ``remote``: the server; without it, ``load("remote:NAME/MODEL")`` finds NAME among the
    saved remotes (:class:`launcher.remotes.RemoteStore` of ``paths``). Driven from one thread;
    :meth:`cancel` and :meth:`unload` may come from any thread.
    """

    def __init__(
        self,
        remote: Remote | None = None,
        *,
        paths: AppPaths | None = None,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.remote = remote
        self._paths = paths
        self._read_timeout = read_timeout_s
        self._http: Any = None
        self._model: str | None = None
        self._lock = threading.Lock()  # guards the response being read, for cancel()
        self._response: Any = None
        self._cancelled = threading.Event()
        self._active: Generator[Event, None, None] | None = None
        self._active_thread: int | None = None
        self.loaded: Loaded | None = None
        self.last_crash = None  # the EngineClient surface; a remote has no host to crash
        # The server's own timings of the last reply, where it sends them (llama-server's
        # "timings": prompt_ms, predicted_per_second...): to check our measurements against.
        self.last_server_timings: dict[str, Any] | None = None

    # ------------------------------------------------------------------ state
    @property
    def pid(self) -> int | None:
        return None  # nothing runs on this machine

    @property
    def is_loaded(self) -> bool:
        return self.loaded is not None

    @property
    def label(self) -> str:
        """``NAME (URL)``: what the metrics name as the remote."""
        if self.remote is None:
            return "remote"
        return f"{self.remote.name} ({self.remote.base_url})"

    def memory(self) -> tuple[int, int | None]:
        """(0, None): the model's memory is on the server, not here."""
        return 0, None

    def __enter__(self) -> RemoteEngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unload()

    # ------------------------------------------------------------------ load / unload
    def load(
        self,
        model: str | os.PathLike[str],
        params: EngineParams | MemoryPlan | Mapping[str, Any] | None = None,
        on_progress: Callable[[LoadProgress], None] | None = None,
        *,
        plan: MemoryPlan | None = None,
    ) -> Loaded:
        """Check that the server lists ``model`` (``remote:NAME/MODEL``, or the model id when
        this client was given its ``remote``); ``params``/``plan`` are ignored (the server
        decides how it runs its models). Raises ``ModelLoadError`` when it is not listed,
        ``RemoteAuthError``/``RemoteEngineError`` when the server refuses or cannot be reached.
        """
        spec = os.fspath(model)
        if is_remote_spec(spec):
            name, model_id = parse_spec(spec)
            if self.remote is None or self.remote.name != name:
                self.remote = RemoteStore(self._paths).get(name)
        elif self.remote is None:
            raise ModelLoadError(
                f"{spec!r} is not a remote model: write remote:NAME/MODEL "
                "(`spark-launcher remote list` shows the saved servers)."
            )
        else:
            model_id = spec
        remote = self.remote
        assert remote is not None
        self.unload()
        t0 = time.perf_counter()
        models = list_models(remote)
        entry = next((m for m in models if m["id"] == model_id), None)
        if entry is None:
            served = ", ".join(m["id"] for m in models[:10]) or "no models"
            raise ModelLoadError(
                f"{remote.name} ({remote.base_url}) does not serve {model_id!r}; it serves: "
                f"{served}. Load it on the server, or pick one of these."
            )
        if on_progress is not None:
            on_progress(LoadProgress(1.0))
        import httpx2

        self._http = httpx2.Client(
            timeout=httpx2.Timeout(CONNECT_TIMEOUT_S, read=self._read_timeout)
        )
        self._model = model_id
        raw_meta = entry.get("meta")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        n_ctx = _int(meta.get("n_ctx") or entry.get("max_model_len") or meta.get("n_ctx_train"))
        self.loaded = Loaded(
            path=make_spec(remote.name, model_id),
            pid=0,
            load_s=time.perf_counter() - t0,
            buffers=(),
            rss_bytes=0,
            gpu_bytes=None,
            n_ctx=n_ctx,
            n_ctx_train=_int(meta.get("n_ctx_train")) or n_ctx,
            n_params=_int(meta.get("n_params")),
            model_size_bytes=_int(meta.get("size")),
            description=f"{model_id} on {remote.name} ({remote.base_url})",
            chat_template="(the server's own)",
            params=EngineParams(),
            system_info=f"remote: {remote.base_url}",
        )
        return self.loaded

    def unload(self) -> None:
        """Forget the model and close the connections (the server keeps running)."""
        self.cancel()
        http, self._http = self._http, None
        if http is not None:
            with contextlib.suppress(Exception):
                http.close()
        self.loaded = None
        self._model = None

    close = unload

    # ------------------------------------------------------------------ generation
    def chat(
        self, messages: Sequence[Message], sampling: Sampling | None = None
    ) -> Iterator[Event]:
        """Stream a reply to ``messages`` with the server's chat template (events as
        ``EngineClient.chat``). Raises ``RemoteEngineError`` (with what to do) when the server
        refuses, cannot be reached or goes away mid-reply."""
        plain = [plain_message(m) for m in messages]
        return self._stream("/chat/completions", {"messages": plain}, sampling)

    def complete(self, prompt: str, sampling: Sampling | None = None) -> Iterator[Event]:
        """Stream a raw completion of ``prompt`` (``POST /v1/completions``)."""
        return self._stream("/completions", {"prompt": prompt}, sampling)

    def cancel(self) -> None:
        """Stop the reply being streamed, from any thread; returns at once.

        The stream ends with a ``ReplyFinished`` whose stop reason is ``"cancelled"``; no
        ``Token`` is yielded after this returns. Closing the connection is how an OpenAI
        server is told to stop generating.
        """
        self._cancelled.set()
        with self._lock:
            response = self._response
        if response is not None:
            shutdown_socket(response)

    def _stream(
        self, path: str, body: dict[str, Any], sampling: Sampling | None
    ) -> Iterator[Event]:
        previous = self._active
        if previous is not None and self._active_thread == threading.get_ident():
            previous.close()
        stream = self._generate(path, body, sampling or Sampling())
        self._active = stream
        return stream

    def _generate(
        self, path: str, body: dict[str, Any], sampling: Sampling
    ) -> Generator[Event, None, None]:
        import httpx2

        http, remote = self._http, self.remote
        if http is None or remote is None or self._model is None:
            raise EngineError("No model is loaded: load a model first.")
        self._active_thread = threading.get_ident()
        self._cancelled.clear()
        self.last_server_timings = None
        request = {
            "model": self._model,
            **body,
            **_sampling_fields(sampling),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        pieces: list[str] = []
        reasoning: list[str] = []
        all_logprobs: list[TokenLogprob] = []
        calls = _ToolCallDeltas()
        usage: dict[str, Any] = {}
        finish: str | None = None
        t0 = time.perf_counter()
        t_first: float | None = None
        t_last = t0
        t_finish: float | None = None  # when the server said the reply is complete
        chunks = 0
        try:
            with _post_stream(http, remote.base_url + path, request, remote.headers()) as response:
                with self._lock:
                    self._response = response
                if self._cancelled.is_set():
                    shutdown_socket(response)
                if response.status_code != 200:
                    response.read()
                    raise _status_error(
                        remote, response.status_code, response.text, response.headers
                    )
                for data in _sse_data(response.iter_lines()):
                    if self._cancelled.is_set():
                        break
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise RemoteEngineError(
                            f"{self.label} sent a reply this app cannot read "
                            f"(not JSON: {data[:80]!r})."
                        ) from None
                    if not isinstance(chunk, dict):
                        continue
                    if "error" in chunk:
                        raise RemoteEngineError(
                            f"{self.label} stopped the reply: {_error_text(chunk)}"
                        )
                    if isinstance(chunk.get("usage"), dict):
                        usage = chunk["usage"]
                    if isinstance(chunk.get("timings"), dict):
                        self.last_server_timings = chunk["timings"]
                    for choice in chunk.get("choices") or ():
                        text = _choice_text(choice)
                        if choice.get("finish_reason"):
                            finish = str(choice["finish_reason"])
                            t_finish = time.perf_counter()
                        delta = choice.get("delta") if isinstance(choice, dict) else None
                        thought = (
                            delta.get("reasoning_content") if isinstance(delta, dict) else None
                        )
                        if isinstance(delta, dict) and delta.get("tool_calls"):
                            calls.add(delta["tool_calls"])
                            t_first = t_first or time.perf_counter()
                        lps = _logprobs(choice)
                        all_logprobs.extend(lps)
                        if not text and not thought:
                            continue
                        if self._cancelled.is_set():
                            break
                        now = time.perf_counter()
                        if t_first is None:
                            t_first = now
                        t_last = now
                        chunks += 1
                        if isinstance(thought, str) and thought:
                            reasoning.append(thought)
                            yield ReasoningToken(thought)
                        if text:
                            pieces.append(text)
                            yield Token(text, logprobs=lps)
        except httpx2.HTTPError as exc:
            if not self._cancelled.is_set():
                raise _transport_error(remote, exc, "streaming a reply", len(pieces)) from None
        finally:
            with self._lock:
                self._response = None
            self._active_thread = None
        total = time.perf_counter() - t0
        cancelled = self._cancelled.is_set()
        if not cancelled and finish is None and not usage:
            raise RemoteEngineError(
                f"{self.label} ended the reply without finishing it ({len(pieces)} pieces "
                "received). Check the server's log; it may have stopped or run out of memory."
            )
        generated = _int(usage.get("completion_tokens")) or chunks
        prompt_tokens = _int(usage.get("prompt_tokens"))
        ttft = (t_first - t0) if t_first is not None else total
        # Up to the finish chunk, not the last text: a server holds back the tokens of a
        # partly matched stop string, yet usage counts them, and they were generated by then.
        t_end = t_finish if t_finish is not None and usage and not cancelled else t_last
        decode_s = t_end - t_first if t_first is not None else 0.0
        stop: StopReason = "cancelled" if cancelled else _FINISH.get(finish or "", "stop")
        metrics = ReplyMetrics(
            ttft_s=ttft,
            prompt_tokens=prompt_tokens,
            prefill_s=ttft,
            prefill_tokens_per_s=prompt_tokens / ttft if prompt_tokens and ttft > 0 else 0.0,
            generated_tokens=generated,
            decode_s=decode_s,
            decode_tokens_per_s=(generated - 1) / decode_s if generated > 1 and decode_s else 0.0,
            stop_reason=stop,
            template="the remote server's chat template" if "messages" in body else "raw prompt",
            total_s=total,
            cached_tokens=_int((usage.get("prompt_tokens_details") or {}).get("cached_tokens")),
            remote=self.label,
        )
        tool_calls = () if cancelled else calls.result()
        yield from tool_calls
        yield ReplyFinished(
            text="".join(pieces),
            metrics=metrics,
            tool_calls=tool_calls,
            reasoning="".join(reasoning),
            logprobs=tuple(all_logprobs),
        )


# ---------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _post_stream(
    http: Any, url: str, request: dict[str, Any], headers: dict[str, str]
) -> Iterator[Any]:
    """POST a streaming request. A server that rejects ``stream_options`` (older OpenAI-style
    servers answer 400/422 naming it) is asked again without it; token counts then come from
    the streamed chunks."""
    with http.stream("POST", url, json=request, headers=headers) as response:
        if response.status_code not in (400, 422) or "stream_options" not in request:
            yield response
            return
        response.read()
        if "stream_options" not in response.text:
            yield response
            return
    plain = {k: v for k, v in request.items() if k != "stream_options"}
    with http.stream("POST", url, json=plain, headers=headers) as response:
        yield response


def _sampling_fields(s: Sampling) -> dict[str, Any]:
    """The OpenAI request fields for ``s``. Only standard fields where OpenAI has them (it
    rejects unknown ones such as top_k and min_p; greedy, temperature 0, is standard), and a
    field only when it is set, so plain chats stay plain for any server. ``grammar`` and
    ``chat_template_kwargs`` are llama-server's (and this app's) own: sent only when asked."""
    out: dict[str, Any] = {"max_tokens": s.max_tokens, "temperature": max(0.0, s.temperature)}
    if s.temperature > 0:
        out["top_p"] = s.top_p
    if s.seed is not None:
        out["seed"] = s.seed
    if s.stop:
        out["stop"] = list(s.stop)
    if s.tools:
        out["tools"] = [{"type": "function", "function": dict(t)} for t in s.tools]
        out["tool_choice"] = (
            s.tool_choice
            if s.tool_choice in ("auto", "none", "required")
            else {"type": "function", "function": {"name": s.tool_choice}}
        )
        out["parallel_tool_calls"] = s.parallel_tool_calls
    if s.json_schema is not None:
        out["response_format"] = (
            {"type": "json_schema", "json_schema": {"name": "reply", "schema": s.json_schema}}
            if s.json_schema
            else {"type": "json_object"}
        )
    if s.frequency_penalty:
        out["frequency_penalty"] = s.frequency_penalty
    if s.presence_penalty:
        out["presence_penalty"] = s.presence_penalty
    if s.logit_bias:
        out["logit_bias"] = {str(token): bias for token, bias in s.logit_bias}
    if s.grammar is not None:
        out["grammar"] = s.grammar
    if s.template_kwargs:
        out["chat_template_kwargs"] = dict(s.template_kwargs)
    if s.logprobs is not None:
        out["logprobs"] = True
        if s.logprobs > 0:
            out["top_logprobs"] = s.logprobs
    return out


class _ToolCallDeltas:
    """OpenAI's streamed tool-call deltas (index, id, name, argument fragments) put back
    together into whole calls."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, str]] = {}

    def add(self, deltas: Any) -> None:
        for d in deltas if isinstance(deltas, list) else ():
            if not isinstance(d, dict):
                continue
            call = self.calls.setdefault(
                int(d.get("index") or 0), {"id": "", "name": "", "args": ""}
            )
            call["id"] = str(d.get("id") or call["id"])
            fn: dict[str, Any] = d["function"] if isinstance(d.get("function"), dict) else {}
            call["name"] = str(fn.get("name") or call["name"])
            call["args"] += str(fn.get("arguments") or "")

    def result(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=c["id"], name=c["name"], arguments=c["args"] or "{}", index=i)
            for i, (_, c) in enumerate(sorted(self.calls.items()))
            if c["name"]
        )


def _logprobs(choice: Mapping[str, Any]) -> tuple[TokenLogprob, ...]:
    content = (choice.get("logprobs") or {}).get("content") if isinstance(choice, dict) else None
    out = []
    for item in content if isinstance(content, list) else ():
        if isinstance(item, dict) and isinstance(item.get("token"), str):
            top = tuple(
                (str(t.get("token")), float(t.get("logprob", 0.0)))
                for t in item.get("top_logprobs") or ()
                if isinstance(t, dict)
            )
            out.append(TokenLogprob(item["token"], float(item.get("logprob", 0.0)), top))
    return tuple(out)


def _sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The ``data:`` payloads of a server-sent event stream (multi-line data joined)."""
    buf: list[str] = []
    for line in lines:
        if not line:
            if buf:
                yield "\n".join(buf)
                buf = []
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        field, _, value = line.partition(":")
        if field == "data":
            buf.append(value[1:] if value.startswith(" ") else value)
        elif field == "error":  # llama-server sends "error: {...}" for a failed stream
            buf.append(json.dumps({"error": _maybe_json(value.strip())}))
    if buf:
        yield "\n".join(buf)


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _choice_text(choice: Any) -> str:
    if not isinstance(choice, dict):
        return ""
    delta = choice.get("delta")
    if isinstance(delta, dict):
        content = delta.get("content")
        return content if isinstance(content, str) else ""
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _error_text(body: Any) -> str:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err)
    if err:
        return str(err)
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"])
    return str(body)


def _status_error(remote: Remote, status: int, text: str, headers: Any) -> EngineError:
    """The error for a non-200 answer, with what the user should do about it."""
    try:
        detail = _error_text(json.loads(text))
    except ValueError:
        detail = text.strip()[:200] or f"HTTP {status}"
    detail = redact_key(detail, remote.api_key)
    where = f"{remote.name} ({remote.base_url})"
    if status in (401, 403):
        what = "refused the API key" if remote.has_key else "needs an API key"
        return RemoteAuthError(
            f"{where} {what} (HTTP {status}: {detail}). Save the right key with "
            f"`spark-launcher remote add {remote.name} {remote.base_url} --api-key KEY` "
            "or in Settings."
        )
    if status in (429, 503):
        retry = _int(headers.get("Retry-After")) or 1
        return ModelBusyError(
            f"{where} is busy (HTTP {status}: {detail}); try again in {retry} s.", retry
        )
    if status == 404:
        return RemoteEngineError(
            f"{where} has no such model or endpoint (HTTP 404: {detail}). "
            f"`spark-launcher remote models {remote.name}` lists what it serves."
        )
    return RemoteEngineError(f"{where} refused the request (HTTP {status}): {detail}")


def _transport_error(
    remote: Remote, exc: Exception, doing: str, pieces: int | None = None
) -> RemoteEngineError:
    import httpx2

    where = f"{remote.name} ({remote.base_url})"
    reason = redact_key(str(exc) or type(exc).__name__, remote.api_key)
    if isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout):
        return RemoteEngineError(
            f"Cannot reach {where} ({reason}). Check that the server is running and that "
            "this computer can reach that address."
        )
    if isinstance(exc, httpx2.TimeoutException):
        return RemoteEngineError(
            f"{where} stopped answering while {doing} (no data for "
            f"{READ_TIMEOUT_S:.0f} s). Check the server, then try again."
        )
    got = f" after {pieces} pieces of the reply" if pieces else ""
    return RemoteEngineError(
        f"The connection to {where} broke while {doing}{got} ({reason}). The server may have "
        "stopped or restarted; check it, then send the message again."
    )


class LocalOrRemoteClient:
    """One model slot that runs a GGUF file in ``local`` (an ``EngineClient``) and a
    ``remote:NAME/MODEL`` in a ``RemoteEngineClient``: what the app's chat holds, so a remote
    model is picked and loaded like a file. Loading one kind unloads the other."""

    def __init__(self, local: Any, *, paths: AppPaths | None = None) -> None:
        self.local = local
        self.remote = RemoteEngineClient(paths=paths)
        self.current: Any = local

    @property
    def pid(self) -> int | None:
        return self.current.pid

    @property
    def loaded(self) -> Loaded | None:
        return self.current.loaded

    @property
    def is_loaded(self) -> bool:
        return bool(self.current.is_loaded)

    @property
    def last_crash(self) -> Any:
        return getattr(self.current, "last_crash", None)

    def memory(self) -> tuple[int, int | None]:
        return self.current.memory()

    def load(
        self,
        path: str | os.PathLike[str],
        params: EngineParams | MemoryPlan | Mapping[str, Any] | None = None,
        on_progress: Callable[[LoadProgress], None] | None = None,
        *,
        plan: MemoryPlan | None = None,
    ) -> Loaded:
        target = self.remote if is_remote_spec(path) else self.local
        other = self.local if target is self.remote else self.remote
        other.unload()
        self.current = target
        return target.load(path, params, on_progress, plan=plan)

    def chat(
        self, messages: Sequence[Message], sampling: Sampling | None = None
    ) -> Iterator[Event]:
        return self.current.chat(messages, sampling)

    def complete(self, prompt: str, sampling: Sampling | None = None) -> Iterator[Event]:
        return self.current.complete(prompt, sampling)

    def cancel(self) -> None:
        self.current.cancel()

    def unload(self) -> None:
        self.remote.unload()
        self.local.unload()

    close = unload

    def __enter__(self) -> LocalOrRemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unload()


if TYPE_CHECKING:

    def _conforms(
        local: EngineClient, remote: RemoteEngineClient, either: LocalOrRemoteClient
    ) -> tuple[Engine, Engine, Engine]:
        """mypy checks that each engine here implements the contract."""
        return local, remote, either
