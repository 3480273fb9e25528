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
import dataclasses
import itertools
import logging
import multiprocessing
import os
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Literal

from launcher.engine import protocol
from launcher.engine.api import Message
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
from launcher.planning.types import MemoryPlan

log = logging.getLogger(__name__)


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
    measured)`` (``launcher.planning.CalibrationStore``); each ``Loaded`` and
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
        # Set by cancel() (every reply) and unload(): polled by the host between decode steps
        # and, through llama.cpp's abort callback, inside a prompt's evaluation.
        self._cancel = self._mp.Event()
        self._control_lock = threading.Lock()  # one load, unload or embed at a time
        self._send_lock = threading.Lock()
        self._proc: Any = None
        self._conn: Connection | None = None
        self._mux: _Mux | None = None  # routes the current host's messages to their replies
        self._rids = itertools.count(1)
        # Replies handed out and not yet ended (weakly: a stream dropped unfinished is closed
        # by the garbage collector, which cancels its reply).
        self._streams: weakref.WeakValueDictionary[int, ReplyStream] = weakref.WeakValueDictionary()
        self._streams_lock = threading.Lock()
        self._crash_lock = threading.Lock()
        self._log_path: Path | None = None
        self._log_dir = Path(log_dir) if log_dir else None
        self._name = name
        self._unloading = False
        self._calibration = calibration
        self._machine_key = machine_key
        self._plan: MemoryPlan | None = (
            None  # the MemoryPlan of the current load, when one was given
        )
        # thread id -> the stream it iterates, while suspended in it
        self._suspended: weakref.WeakValueDictionary[int, ReplyStream] = (
            weakref.WeakValueDictionary()
        )
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
        params: EngineParams | MemoryPlan | Mapping[str, Any] | None = None,
        on_progress: Callable[[LoadProgress], None] | None = None,
        *,
        plan: MemoryPlan | None = None,
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
        with self._control_lock:
            self._unloading = True  # replies still streaming from the old host just end
            try:
                self._cancel.set()
                self._stop_host()
            finally:
                self._unloading = False
            t0 = time.perf_counter()  # the user waits for the host to start, too
            self._start_host()
            self._cancel.clear()
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
            self.loaded = dataclasses.replace(
                self.loaded,
                n_parallel=int(msg.get("n_parallel", 1)),
                n_ctx_slot=int(msg.get("n_ctx_slot", msg["n_ctx"])),
            )
            if plan is None and isinstance(params, MemoryPlan):
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
        clients. The chat's cached prompt prefix is dropped; the host runs it once the replies
        being generated are done. Raises ``EngineError`` for an empty or too long input,
        ``HostCrashedError`` if the host dies."""
        with self._control_lock:
            mux = self._mux
            if mux is None or self.loaded is None:
                raise EngineError("No model is loaded: load a model first.")
            self._send("embed", texts=[str(t) for t in texts])
            msg = mux.next(0)
            if msg is None:
                raise self._crash_of(mux).as_error()
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
        """Stop every reply being generated, from any thread. Returns at once.

        The host stops within one token; each stream then ends with a ``ReplyFinished`` whose
        stop reason is ``"cancelled"``. No ``Token`` is yielded after this returns. The model
        stays loaded. ``ReplyStream.cancel()`` stops one reply and leaves the others.
        """
        with self._streams_lock:
            streams = list(self._streams.values())
        self._cancel.set()  # also stops a prompt evaluation in the middle (abort callback)
        for stream in streams:
            stream.cancel()

    def _stream(self, request: dict[str, Any], sampling: Sampling | None) -> ReplyStream:
        # A stream this thread left suspended would wait forever behind the new request when
        # the host has one slot: close it (which cancels its reply) first.
        previous = self._suspended.get(threading.get_ident())
        if previous is not None:
            with contextlib.suppress(ValueError):  # another thread took it over meanwhile
                previous.close()
        stream = ReplyStream(self, request, sampling or Sampling())
        with self._streams_lock:
            self._streams[stream.rid] = stream
        return stream

    def _cancel_stream(self, stream: ReplyStream) -> None:
        stream.cancelled.set()
        if stream.sent and stream.mux is not None and stream.mux is self._mux:
            with contextlib.suppress(EngineError):
                self._send("cancel", rid=stream.rid)

    def _generate(
        self, stream: ReplyStream, request: dict[str, Any], sampling: Sampling
    ) -> Generator[Event, None, None]:
        mux = self._mux
        finished = False
        try:
            if mux is None or self.loaded is None:
                raise EngineError("No model is loaded: load a model first.")
            with self._streams_lock:
                alone = not any(s.sent for s in self._streams.values())
            if alone:
                self._cancel.clear()  # a cancel() of earlier replies is not one of this one
            mux.open(stream.rid)
            stream.mux = mux
            t0 = time.perf_counter()
            cpu_at_start = cpu_mark(self.pid)  # what else keeps the CPU busy meanwhile
            self._send("generate", rid=stream.rid, sampling=sampling.to_dict(), **request)
            stream.sent = True
            if stream.cancelled.is_set():
                self._send("cancel", rid=stream.rid)
            ttft: float | None = None
            shown: list[str] = []
            dropped = False
            while True:
                msg = mux.next(stream.rid)
                if msg is None:
                    finished = True
                    if self._unloading or mux is not self._mux:
                        return  # unloaded, or replaced by another model
                    yield self._crash_of(mux)
                    return
                kind = msg["type"]
                if kind in ("token", "reasoning", "tool_call"):
                    if stream.cancelled.is_set():
                        dropped = True
                        continue
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    if kind == "token":
                        shown.append(msg["text"])
                        yield Token(text=msg["text"], logprobs=_logprobs(msg["logprobs"]))
                    elif kind == "reasoning":
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
                        queued_s=float(m.get("queued_s", 0.0)),
                    )
                    done = ReplyFinished(
                        text="".join(shown),
                        metrics=metrics,
                        tool_calls=() if dropped else tuple(map(_tool_call, msg["tool_calls"])),
                        reasoning=msg["reasoning"],
                        logprobs=_logprobs(msg["logprobs"]),
                    )
                    self._record("reply", done, conditions_since(cpu_at_start))
                    loaded = self.loaded
                    if self._crashed_before and loaded is not None:  # it replied: streak over
                        self._crashed_before = False
                        self._crashes.clear(loaded.path)
                    yield done
                    return
                elif kind == "error":
                    finished = True
                    raise EngineError(msg["message"])
                else:
                    finished = True
                    raise EngineError(f"The model host sent {kind!r} during a reply.")
        finally:
            if stream.thread is not None and self._suspended.get(stream.thread) is stream:
                self._suspended.pop(stream.thread, None)
            if not finished and stream.sent and mux is self._mux:
                # The caller stopped iterating early: the host stops this reply (its slot is
                # free within one step); what it still sends for it is dropped.
                with contextlib.suppress(EngineError):
                    self._send("cancel", rid=stream.rid)
            if mux is not None:
                mux.close(stream.rid)
            with self._streams_lock:
                self._streams.pop(stream.rid, None)

    def _crash_of(self, mux: _Mux) -> HostCrashed:
        """The diagnosed crash of ``mux``'s host, collected once for all its replies."""
        with self._crash_lock:
            if mux.crash is None:
                mux.crash = self._collect_crash()
            return mux.crash

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
        self._mux = _Mux(parent, proc.sentinel)
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
        """The next message that answers no reply (load, embed), or ``None`` when the host has
        died (or was stopped)."""
        mux = self._mux
        return None if mux is None else mux.next(0)

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
        mux, self._mux = self._mux, None
        if mux is not None:
            mux.end()
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


def _read(conn: Connection, sentinel: int) -> dict[str, Any] | None:
    """The next message on ``conn``, or ``None`` when the host has died (or was stopped)."""
    while True:
        try:
            if conn.poll(0):
                return protocol.decode(conn.recv_bytes())
            ready = wait([conn, sentinel])
            if conn in ready:
                return protocol.decode(conn.recv_bytes())
            if conn.poll(0):
                continue  # data written just before the process ended
            return None
        except (EOFError, OSError, ValueError):
            return None


class _Mux:
    """Routes one host's messages to the reply they belong to (their ``rid``; 0 for load and
    embed). Whichever thread needs a message reads the pipe for everyone, one reader at a
    time; a message for another reply waits in that reply's queue and wakes its thread. No
    reader thread of its own: nothing to stop or to leak, and one reply alone reads its
    messages straight from the pipe as before."""

    def __init__(self, conn: Connection, sentinel: int) -> None:
        self.conn = conn
        self.sentinel = sentinel
        self.cond = threading.Condition()
        self.queues: dict[int, deque[dict[str, Any]]] = {0: deque()}
        self.reading = False
        self.dead = False
        self.crash: HostCrashed | None = None  # collected once, by the first to see the end

    def open(self, rid: int) -> None:
        with self.cond:
            self.queues[rid] = deque()

    def close(self, rid: int) -> None:
        """Forget ``rid``: what still comes for it is dropped."""
        with self.cond:
            self.queues.pop(rid, None)

    def end(self) -> None:
        """The host is gone: every reader gets ``None``."""
        with self.cond:
            self.dead = True
            self.cond.notify_all()

    def next(self, rid: int) -> dict[str, Any] | None:
        """The next message for ``rid``; ``None`` once the host has ended."""
        while True:
            with self.cond:
                while True:
                    queue = self.queues.get(rid)
                    if queue:
                        return queue.popleft()
                    if self.dead or queue is None:
                        return None
                    if not self.reading:
                        self.reading = True
                        break
                    self.cond.wait()
            msg: dict[str, Any] | None = None
            try:
                msg = _read(self.conn, self.sentinel)
            finally:
                with self.cond:
                    self.reading = False
                    if msg is None:
                        self.dead = True
                    else:
                        target = self.queues.get(int(msg.get("rid") or 0))
                        if target is not None:
                            target.append(msg)
                    self.cond.notify_all()


class ReplyStream:
    """One reply's events (``Token``... then ``ReplyFinished`` or ``HostCrashed``), iterated
    like a generator. Other replies of the same client may stream at the same time (a host
    with parallel slots); ``cancel()`` stops only this one, from any thread, and ``close()``
    leaves it early (the host stops generating it)."""

    def __init__(self, client: EngineClient, request: dict[str, Any], sampling: Sampling) -> None:
        self.rid = next(client._rids)
        self.cancelled = threading.Event()  # no token is yielded once set
        self.sent = False
        self.mux: _Mux | None = None
        self.thread: int | None = None  # the thread that iterates it (last)
        self._client = client
        self._gen = client._generate(self, request, sampling)

    def __iter__(self) -> ReplyStream:
        return self

    def __next__(self) -> Event:
        thread = threading.get_ident()
        if self.thread != thread:  # the EngineClient knows which thread left it suspended
            suspended = self._client._suspended
            if self.thread is not None and suspended.get(self.thread) is self:
                suspended.pop(self.thread, None)
            self.thread = thread
            suspended[thread] = self
        return next(self._gen)

    def cancel(self) -> None:
        """Stop this reply; it ends with ``ReplyFinished`` (stop reason ``cancelled``)."""
        self._client._cancel_stream(self)

    def close(self) -> None:
        self._gen.close()
        with self._client._streams_lock:  # never started: its generator's cleanup never ran
            self._client._streams.pop(self.rid, None)
