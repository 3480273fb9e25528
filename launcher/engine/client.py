"""``EngineClient``: the app-side handle of one model host process.

One client owns at most one host (one loaded model) at a time. Two models side by side are two
clients, each with its own process. The API is plain and blocking, meant to be driven from one
worker thread (the UI wraps it in a ``QThread``); only :meth:`cancel` and :meth:`unload` may be
called from another thread while a reply is being iterated.

    client = EngineClient()
    loaded = client.load(path, EngineParams(n_ctx=4096))
    for event in client.chat([{"role": "user", "content": "Hi"}], Sampling(max_tokens=64)):
        ...  # Token, then ReplyFinished (or HostCrashed)
    client.unload()

A host that dies turns into a ``HostCrashed`` event (during a reply) or a ``ModelLoadError``
(during a load); the client is then empty and can load again.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Literal

from launcher.engine import protocol
from launcher.engine.calibrate import conditions_since, cpu_mark
from launcher.engine.crashes import CrashHistory, classify, safe_settings
from launcher.engine.events import (
    BufferSize,
    Embeddings,
    EngineParams,
    Event,
    HostCrashed,
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
from launcher.engine.logparse import load_failure_message
from launcher.engine.memory import gpu_bytes, rss_bytes
from launcher.errors import EngineError, ModelLoadError
from launcher.hardware.cpufeatures import read_cpu_flags

log = logging.getLogger(__name__)

Message = Mapping[str, Any]


def plain_message(m: Mapping[str, Any]) -> dict[str, Any]:
    """A chat message as plain JSON for the host: role and text content, plus the OpenAI
    fields of tool use (an assistant's ``tool_calls``, a tool result's ``tool_call_id``)."""
    content = m.get("content")
    out: dict[str, Any] = {
        "role": str(m["role"]),
        "content": None if content is None else str(content),
    }
    for key in ("tool_calls", "tool_call_id", "name", "reasoning_content"):
        if m.get(key) is not None:
            out[key] = m[key]
    return out


def _tool_call(msg: Mapping[str, Any]) -> ToolCall:
    return ToolCall(
        id=msg["id"], name=msg["name"], arguments=msg["arguments"], index=int(msg["index"])
    )


def _logprobs(items: Sequence[Any]) -> tuple[TokenLogprob, ...]:
    return tuple(
        TokenLogprob(token=str(t), logprob=float(lp), top=tuple((str(a), float(b)) for a, b in top))
        for t, lp, top in items
    )


class EngineClient:
    """Starts, talks to and stops one model host process.

    ``calibration``: an optional store with ``record(machine_key, model_key, settings,
    measured)`` (``launcher.calibration.CalibrationStore``); each ``Loaded`` and
    ``ReplyFinished`` is recorded there. ``machine_key`` names this machine in it.

    ``crash_history``: where crashes are counted per model (``crashes.json`` in the app); the
    second crash of a model at the same stage carries safe settings to load with. Without
    one, this client counts in memory.
    """

    def __init__(
        self,
        *,
        calibration: Any = None,
        machine_key: str | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        name: str = "model-host",
        crash_history: CrashHistory | None = None,
    ) -> None:
        self._mp = multiprocessing.get_context("spawn")
        self._cancel = self._mp.Event()  # polled by the host between tokens
        self._cancel_requested = threading.Event()  # client side: drop tokens after cancel()
        self._request_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._proc: Any = None
        self._conn: Connection | None = None
        self._log_path: Path | None = None
        self._log_dir = Path(log_dir) if log_dir else None
        self._name = name
        self._unloading = False
        self._calibration = calibration
        self._machine_key = machine_key
        self._plan: Any = None  # the MemoryPlan of the current load, when one was given
        self._active: Generator[Event, None, None] | None = None  # the latest stream handed out
        self._active_thread: int | None = None  # thread iterating a stream, if suspended
        self.loaded: Loaded | None = None
        self.last_crash: HostCrashed | None = None
        self.last_load_log: tuple[str, ...] = ()  # llama.cpp's log of the last failed load
        self._crashes = crash_history if crash_history is not None else CrashHistory(None)
        self._crashed_before = False  # the loaded model has crashes on record
        self._system: dict[str, Any] = {}  # the host's "system" message of the current load

    # ------------------------------------------------------------------ state
    @property
    def pid(self) -> int | None:
        """PID of the host process, or ``None`` when no host runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def system_info(self) -> str:
        """llama.cpp's ``llama_print_system_info()`` as the host of the last load reported it."""
        return str(self._system.get("system_info", ""))

    @property
    def is_loaded(self) -> bool:
        return self.loaded is not None

    def memory(self) -> tuple[int, int | None]:
        """(RSS bytes, NVML GPU bytes or None) of the host right now; (0, None) without one."""
        pid = self.pid
        if pid is None:
            return 0, None
        return rss_bytes(pid), gpu_bytes(pid)

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unload()

    # ------------------------------------------------------------------ load / unload
    def load(
        self,
        path: str | os.PathLike[str],
        params: Any = None,
        on_progress: Callable[[LoadProgress], None] | None = None,
        *,
        plan: Any = None,
    ) -> Loaded:
        """Start a host and load ``path`` with ``params`` (``EngineParams``, a ``MemoryPlan``
        or a dict of ``Llama`` keyword arguments). Replaces a model already loaded.

        ``plan``: the ``MemoryPlan`` that explicit ``params`` were derived from, so that
        calibration records are filed under its settings and estimates (a plan passed as
        ``params`` is used for both).

        Raises ``ModelLoadError`` with a message saying what to do when the file is missing,
        corrupt, truncated, not GGUF, unsupported, or does not fit in memory.
        """
        engine_params = EngineParams() if params is None else EngineParams.from_plan(params)
        engine_params = engine_params.resolved()
        try:
            engine_params.validate()
        except ValueError as exc:
            raise ModelLoadError(f"Invalid load settings: {exc}") from exc
        path_str = os.fspath(path)
        if not os.path.isfile(path_str):
            raise ModelLoadError(f"There is no model file at {path_str}. Check the path.")
        with self._request_lock:
            self._stop_host()
            t0 = time.perf_counter()  # the user waits for the host to start, too
            self._start_host()
            self._cancel.clear()
            self._cancel_requested.clear()
            self.last_load_log = ()
            self._system = {}
            try:
                msg = self._await_loaded(path_str, engine_params, on_progress)
            except BaseException:
                self._stop_host()  # never leave a half-loaded host behind
                raise
            wall_s = time.perf_counter() - t0
            assert self._proc is not None
            pid = self._proc.pid
            self.loaded = Loaded(
                path=path_str,
                pid=pid,
                load_s=wall_s,
                buffers=tuple(
                    BufferSize(device=b["device"], kind=b["kind"], bytes=b["bytes"])
                    for b in msg["buffers"]
                ),
                rss_bytes=rss_bytes(pid),
                gpu_bytes=gpu_bytes(pid),
                n_ctx=msg["n_ctx"],
                n_ctx_train=msg["n_ctx_train"],
                n_params=msg["n_params"],
                model_size_bytes=msg["model_size_bytes"],
                description=msg["description"],
                chat_template=msg["chat_template"],
                params=engine_params,
                system_info=msg["system_info"],
                extra_buffers=msg["extra_buffers"],
                extra_buffers_reason=msg["extra_buffers_reason"],
            )
            self._crashed_before = self._crashes.get(path_str) is not None
            if plan is None and hasattr(params, "calibration_settings"):
                plan = params
            self._plan = plan
            self._record("loaded", self.loaded)
            return self.loaded

    def _await_loaded(
        self,
        path: str,
        params: EngineParams,
        on_progress: Callable[[LoadProgress], None] | None,
    ) -> dict[str, Any]:
        """Send the load request; relay progress; the ``loaded`` message or an error."""
        self._send("load", path=path, params=params.to_dict())
        while True:
            msg = self._recv()
            if msg is None:
                crash = self._collect_crash("load", path, params)
                self.last_load_log = crash.last_log_lines
                raise ModelLoadError(
                    f"{load_failure_message(path, crash.last_log_lines)} "
                    f"(the model host stopped while loading: {crash.likely_cause})",
                    crash=crash,
                )
            kind = msg["type"]
            if kind == "system":
                self._system = msg
            elif kind == "progress":
                if on_progress is not None:
                    on_progress(LoadProgress(fraction=min(1.0, float(msg["fraction"]))))
            elif kind == "load_failed":
                self.last_load_log = tuple(msg["log"])
                raise ModelLoadError(msg["message"])
            elif kind == "loaded":
                return msg
            else:
                raise EngineError(f"The model host answered {kind!r} to a load request.")

    def unload(self) -> None:
        """End the host process (its memory goes back to the system). Safe to call any time."""
        self._unloading = True
        try:
            self._cancel.set()
            self._stop_host()
        finally:
            self._unloading = False

    close = unload

    # ------------------------------------------------------------------ generation
    def chat(
        self, messages: Sequence[Message], sampling: Sampling | None = None
    ) -> Iterator[Event]:
        """Stream a reply to ``messages`` (``[{"role": ..., "content": ...}]``).

        Uses the GGUF's chat template; a model without one gets a plain transcript completion,
        which ``ReplyMetrics.template`` says. Yields ``Token`` events, then one
        ``ReplyFinished`` or ``HostCrashed``. Raises ``EngineError`` when the request is
        refused (no model, prompt longer than the context).
        """
        plain = [plain_message(m) for m in messages]
        return self._stream({"mode": "chat", "messages": plain, "prompt": None}, sampling)

    def embed(self, texts: Sequence[str]) -> Embeddings:
        """Embed ``texts`` with the loaded model (its own pooling, else mean pooling), for RAG
        clients. The chat's cached prompt prefix is dropped. Raises ``EngineError`` for an
        empty or too long input, ``HostCrashedError`` if the host dies."""
        with self._request_lock:
            if self._conn is None or self.loaded is None:
                raise EngineError("No model is loaded: load a model first.")
            self._send("embed", texts=[str(t) for t in texts])
            msg = self._recv()
            if msg is None:
                raise self._collect_crash().as_error()
            if msg["type"] == "error":
                raise EngineError(msg["message"])
            if msg["type"] != "embeddings":
                raise EngineError(f"The model host sent {msg['type']!r} to an embed request.")
            return Embeddings(
                vectors=tuple(tuple(float(x) for x in v) for v in msg["vectors"]),
                prompt_tokens=int(msg["prompt_tokens"]),
            )

    def complete(self, prompt: str, sampling: Sampling | None = None) -> Iterator[Event]:
        """Stream a plain completion of ``prompt`` (no template); events as in :meth:`chat`."""
        return self._stream({"mode": "complete", "messages": None, "prompt": prompt}, sampling)

    def cancel(self) -> None:
        """Stop the reply being generated, from any thread. Returns at once.

        The host stops within one token; the stream then ends with a ``ReplyFinished`` whose
        stop reason is ``"cancelled"``. No ``Token`` is yielded after this returns. The model
        stays loaded.
        """
        self._cancel_requested.set()
        self._cancel.set()

    def _stream(self, request: dict[str, Any], sampling: Sampling | None) -> Iterator[Event]:
        # A stream this thread left suspended holds the request lock: close it (which cancels
        # and drains its reply) instead of waiting for it forever.
        previous = self._active
        if previous is not None and self._active_thread == threading.get_ident():
            previous.close()
        stream = self._generate(request, sampling or Sampling())
        self._active = stream
        return stream

    def _generate(
        self, request: dict[str, Any], sampling: Sampling
    ) -> Generator[Event, None, None]:
        with self._request_lock:
            self._active_thread = threading.get_ident()
            if self._conn is None or self.loaded is None:
                raise EngineError("No model is loaded: load a model first.")
            self._cancel_requested.clear()
            self._cancel.clear()
            t0 = time.perf_counter()
            cpu_at_start = cpu_mark(self.pid)  # what else keeps the CPU busy meanwhile
            self._send("generate", sampling=sampling.to_dict(), **request)
            ttft: float | None = None
            shown: list[str] = []
            dropped = False
            finished = False
            try:
                while True:
                    msg = self._recv()
                    if msg is None:
                        finished = True
                        if self._unloading:
                            return
                        yield self._collect_crash()
                        return
                    kind = msg["type"]
                    if kind == "token":
                        if self._cancel_requested.is_set():
                            dropped = True
                            continue
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        shown.append(msg["text"])
                        yield Token(text=msg["text"], logprobs=_logprobs(msg["logprobs"]))
                    elif kind in ("reasoning", "tool_call"):
                        if self._cancel_requested.is_set():
                            dropped = True
                            continue
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        if kind == "reasoning":
                            yield ReasoningToken(text=msg["text"])
                        else:
                            yield _tool_call(msg)
                    elif kind == "finished":
                        finished = True
                        m = msg["metrics"]
                        total = time.perf_counter() - t0
                        stop: StopReason = "cancelled" if dropped else m["stop_reason"]
                        metrics = ReplyMetrics(
                            ttft_s=ttft if ttft is not None else total,
                            prompt_tokens=m["prompt_tokens"],
                            prefill_s=float(m["prefill_s"]),
                            prefill_tokens_per_s=float(m["prefill_tokens_per_s"]),
                            generated_tokens=m["generated_tokens"],
                            decode_s=float(m["decode_s"]),
                            decode_tokens_per_s=float(m["decode_tokens_per_s"]),
                            decode_llama_s=float(m["decode_llama_s"]),
                            stop_reason=stop,
                            template=m["template"],
                            total_s=total,
                            cached_tokens=m["cached_tokens"],
                            reasoning_tokens=m["reasoning_tokens"],
                            stop_sequence=m["stop_sequence"],
                        )
                        done = ReplyFinished(
                            text="".join(shown),
                            metrics=metrics,
                            tool_calls=() if dropped else tuple(map(_tool_call, msg["tool_calls"])),
                            reasoning=msg["reasoning"],
                            logprobs=_logprobs(msg["logprobs"]),
                        )
                        self._record("reply", done, conditions_since(cpu_at_start))
                        if self._crashed_before:  # it loaded and replied: the streak is over
                            self._crashed_before = False
                            self._crashes.clear(self.loaded.path)
                        yield done
                        return
                    elif kind == "error":
                        finished = True
                        raise EngineError(msg["message"])
                    else:
                        finished = True
                        raise EngineError(f"The model host sent {kind!r} during a reply.")
            finally:
                self._active_thread = None
                if not finished:
                    # The caller stopped iterating early: stop the host and drain the reply so
                    # the pipe is clean for the next request.
                    self._cancel.set()
                    self._drain()

    def _drain(self) -> None:
        while True:
            msg = self._recv()
            if msg is None:
                if not self._unloading:
                    self._collect_crash()
                return
            if msg["type"] in ("finished", "error"):
                return

    # ------------------------------------------------------------------ process plumbing
    def _start_host(self) -> None:
        from launcher.engine.host import host_main

        fd, log_path = tempfile.mkstemp(
            prefix="spark-host-", suffix=".log", dir=self._log_dir if self._log_dir else None
        )
        os.close(fd)
        parent, child = self._mp.Pipe(duplex=True)
        proc = self._mp.Process(
            target=host_main, args=(child, self._cancel, log_path), name=self._name, daemon=True
        )
        proc.start()
        child.close()
        self._proc, self._conn, self._log_path = proc, parent, Path(log_path)
        self.last_crash = None

    def _send(self, msg_type: str, **fields: Any) -> None:
        data = protocol.encode(msg_type, **fields)
        with self._send_lock:
            if self._conn is None:
                raise EngineError("No model is loaded: load a model first.")
            try:
                self._conn.send_bytes(data)
            except (OSError, EOFError):
                pass  # the host is dead; the next read reports it

    def _recv(self) -> dict[str, Any] | None:
        """The next message, or ``None`` when the host has died (or was stopped)."""
        conn, proc = self._conn, self._proc
        if conn is None or proc is None:
            return None
        while True:
            try:
                if conn.poll(0):
                    return protocol.decode(conn.recv_bytes())
                ready = wait([conn, proc.sentinel])
                if conn in ready:
                    return protocol.decode(conn.recv_bytes())
                if conn.poll(0):
                    continue  # data written just before the process ended
                return None
            except (EOFError, OSError):
                return None

    def _log_tail(self, n: int = 30) -> tuple[str, ...]:
        if self._log_path is None:
            return ()
        try:
            with open(self._log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 64 * 1024))
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ()
        lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
        return tuple(lines[-n:])

    def _collect_crash(
        self, stage: Literal["load", "reply"] = "reply", path: str = "", params: Any = None
    ) -> HostCrashed:
        """Turn a dead host into a diagnosed ``HostCrashed`` and count it for its model."""
        proc = self._proc
        exit_code: int | None = None
        if proc is not None:
            proc.join(timeout=5)
            exit_code = proc.exitcode
        # The whole tail for the classifier (the load's buffer lines name an AMX buffer), the
        # last 30 lines for the user: one read of the log.
        tail = self._log_tail(400)
        lines = tail[-30:]
        if self.loaded is not None:
            path, params = path or self.loaded.path, params or self.loaded.params
        diagnosis = classify(
            exit_code,
            tail,
            stage=stage,
            system_info=str(self._system.get("system_info", "")),
            cpu_flags=read_cpu_flags(),
            params=params,
        )
        repeats, safe = 1, None
        changes: tuple[str, ...] = ()
        if path:
            repeats = self._crashes.record(path, stage, diagnosis).count
        if repeats >= CrashHistory.REPEAT and isinstance(params, EngineParams):
            safe, changes = safe_settings(params, diagnosis.kind)
        crash = HostCrashed(
            exit_code=exit_code,
            last_log_lines=lines,
            likely_cause=diagnosis.sentence,
            kind=diagnosis.kind,
            stage=stage,
            repeats=repeats,
            model_path=path,
            safe_params=safe if changes else None,
            safe_changes=changes,
        )
        self.last_crash = crash
        self._cleanup()
        return crash

    def _stop_host(self) -> None:
        proc = self._proc
        if proc is None:
            self._cleanup()
            return
        if proc.is_alive():
            with contextlib.suppress(EngineError):
                self._send("shutdown")
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        if self._proc is not None:
            with contextlib.suppress(ValueError):
                self._proc.join(timeout=5)
                self._proc.close()
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
        self._proc = self._conn = self._log_path = None
        self.loaded = None

    # ------------------------------------------------------------------ calibration
    def _record(
        self, what: str, result: Loaded | ReplyFinished, conditions: dict[str, float] | None = None
    ) -> None:
        if self._calibration is None or self.loaded is None:
            return
        try:
            from launcher.engine.calibrate import record

            record(
                self._calibration,
                self._machine_key,
                self.loaded,
                what,
                result,
                self._plan,
                conditions=conditions,
            )
        except Exception:  # calibration must never break a chat
            log.warning("could not record a measurement for calibration", exc_info=True)
