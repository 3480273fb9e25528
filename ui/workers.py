"""Worker objects on their own ``QThread``s: everything slow runs here, never on the GUI thread.

Two kinds, following the GPT4All chat pattern (see ``style.md``):

- ``ModelHostWorker`` / ``ModelHost``: one long-lived worker per loaded model. Commands go in
  through queued signals (load, chat, unload); results come out through past-tense signals
  (``load_finished``, ``token_received``, ``reply_finished``, ``failed``, ``crashed``,
  ``unloaded``). **Stop is a flag set directly on the core** (``EngineClient.cancel()`` is
  thread-safe), never a queued signal, because the worker is busy streaming and would only see
  a queued "stop" after the reply ended. Tokens are coalesced here to at most ~30 emissions a
  second, so a fast model cannot flood the GUI's event queue.
- A turn with tools (``ModelHostWorker.on_chat_with_tools``) runs the core's ``ToolLoop`` on
  the same worker: the MCP servers' tools are listed, each model reply streams as usual, and
  each call waits for the user's answer (``approval_requested`` out; ``ModelHost.answer_call``
  in, set directly like stop, since the worker is blocked waiting for it). Stop sets the
  turn's cancel flag, which ends the wait, a running call and the reply being generated.
- ``TaskRunner``: runs one-shot callables (probe, recommend, Hub search, doctor, library scan)
  on a background thread and delivers the result or the error message to a GUI-thread callback.

Shutdown always follows the same order: stop flag, ``quit()``, ``wait()``, then end the host.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from launcher.engine.api import Engine
from launcher.engine.events import (
    EngineParams,
    HostCrashed,
    LoadProgress,
    ReasoningToken,
    ReplyFinished,
    Sampling,
    Token,
    ToolCall,
)
from launcher.errors import HostCrashedError, LauncherError, ModelLoadError, ToolCancelledError
from launcher.planning import MemoryPlan

if TYPE_CHECKING:  # imported when a turn uses tools: the window paints first
    from launcher.tools.loop import Approval
    from launcher.tools.manager import McpManager, McpTool

# At most this many token batches per second cross to the GUI thread.
TOKEN_BATCH_INTERVAL_S = 1 / 30


#: What a model host drives: any engine (``launcher.engine.api.Engine``); test fakes too.
EngineLike = Engine


def user_message(exc: BaseException) -> str:
    """The text a user sees for an error: the core's own message, or a generic line."""
    if isinstance(exc, LauncherError):
        return str(exc)
    return f"Unexpected error ({type(exc).__name__}: {exc}). Please report it with the log."


@dataclass(frozen=True)
class ToolTurn:
    """What one chat turn with tools needs: the MCP manager, the servers switched on and the
    tools switched off (``"SERVER/TOOL"``), the limits, the first reply's tool choice, the
    tools the user already allowed for good, and the saved servers (read on the worker)."""

    manager: McpManager
    servers: tuple[str, ...]
    disabled: frozenset[str] = frozenset()
    max_rounds: int = 5
    tool_choice: str = "auto"
    timeout_s: float = 60.0
    always_allowed: frozenset[str] = frozenset()
    saved_servers: Callable[[], Iterable[Any]] | None = field(default=None, compare=False)


class _TokenBatcher:
    """Coalesces streamed text to at most one emission per ``TOKEN_BATCH_INTERVAL_S``."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.pending: list[str] = []
        self.last = 0.0

    def add(self, text: str) -> None:
        self.pending.append(text)
        now = time.monotonic()
        if now - self.last >= TOKEN_BATCH_INTERVAL_S:
            self.flush()
            self.last = now

    def flush(self) -> None:
        if self.pending:
            self.emit("".join(self.pending))
            self.pending.clear()


class ModelHostWorker(QObject):
    """Drives one ``EngineClient`` on its own thread and relays its events as signals."""

    load_progress = Signal(float)  # 0.0 .. 1.0 (llama.cpp's own progress)
    load_finished = Signal(object)  # the engine's Loaded info
    token_received = Signal(str)  # one or more tokens' text, coalesced
    reasoning_received = Signal(str)  # the model's reasoning text (shown folded), as it streams
    reply_finished = Signal(object)  # ReplyFinished (metrics), also after a stop
    memory_measured = Signal(object)  # bytes the model host holds (RSS + GPU), after a reply
    failed = Signal(str)  # a load or chat error, as the message to show
    crashed = Signal(str)  # the model host process died; the message says why
    # The same model died twice in a row at one stage: the HostCrashed event, whose
    # safe_params the user can load with in one click (launcher/engine/crashes.py).
    safe_settings_offered = Signal(object)
    unloaded = Signal()
    # A turn with tools (on_chat_with_tools): every model reply of it is a "round".
    round_started = Signal(int)  # 1, 2, ...: a model reply of this turn begins
    tool_calls_made = Signal(object)  # ReplyFinished of a round that ended in tool calls
    approval_requested = Signal(object, object)  # ToolCall, McpTool: waits for answer_call
    tool_started = Signal(object)  # ToolCall: approved, running on its server
    tool_finished = Signal(object)  # ToolResult: what went back to the model
    tools_unavailable = Signal(str)  # servers that could not start or list their tools
    turn_finished = Signal(object)  # TurnFinished (metrics of every round)

    def __init__(self, engine: EngineLike) -> None:
        super().__init__()
        self.engine = engine
        self.loading = False  # read by ModelHost.shutdown on the GUI thread
        # Set from the GUI thread (stop, answer_call): plain thread-safe objects, no signals.
        self._turn_cancel = threading.Event()
        self._answered = threading.Event()
        self._answer: Approval | None = None

    @Slot(str, object)
    def on_load(self, path: str, plan: object) -> None:
        self.loading = True
        params = plan if isinstance(plan, EngineParams | MemoryPlan) else None
        try:
            loaded = self.engine.load(path, params, on_progress=self._on_progress)
        except Exception as exc:
            self._report(exc)
            return
        finally:
            self.loading = False
        self.load_finished.emit(loaded)

    def _on_progress(self, progress: LoadProgress) -> None:
        self.load_progress.emit(progress.fraction)

    @Slot(list, object)
    def on_chat(self, messages: list[dict[str, Any]], sampling: object) -> None:
        tokens = _TokenBatcher(self.token_received.emit)
        try:
            for event in self.engine.chat(messages, _sampling(sampling)):
                match event:
                    case Token(text=text):
                        tokens.add(text)
                        continue
                    case ReasoningToken(text=text):
                        tokens.flush()
                        self.reasoning_received.emit(text)
                    case ReplyFinished():
                        tokens.flush()
                        self._measure_memory()
                        self.reply_finished.emit(event)
                    case HostCrashed():
                        tokens.flush()
                        self.crashed.emit(_crash_message(event))
                        self._offer_safe_settings(event)
                        return
        except Exception as exc:
            tokens.flush()
            self._report(exc)

    # ------------------------------------------------------------------ turns with tools
    def stop_turn(self) -> None:
        """Any thread: end the running turn with tools (the wait for an answer, a running
        call, the reply being generated)."""
        self._turn_cancel.set()
        self._answered.set()

    def answer_call(self, approval: Approval) -> None:
        """Any thread: the user's answer to the call the worker is waiting on."""
        self._answer = approval
        self._answered.set()

    def _approve(self, call: ToolCall, tool: McpTool | None) -> Approval:
        from launcher.tools.loop import Approval

        self._answered.clear()
        self._answer = None
        self.approval_requested.emit(call, tool)
        while not self._answered.wait(0.05):
            if self._turn_cancel.is_set():
                break
        answer = self._answer
        return Approval.DENY if self._turn_cancel.is_set() or answer is None else answer

    def _turn_tools(self, turn: ToolTurn) -> list[McpTool]:
        """The tools switched on for this turn; servers that fail are reported, not fatal."""
        if turn.saved_servers is not None:
            turn.manager.set_servers(turn.saved_servers())
        known = set(turn.manager.names)
        missing = [s for s in turn.servers if s not in known]
        tools, failed = turn.manager.tools(
            [s for s in turn.servers if s in known], cancel=self._turn_cancel
        )
        problems = [f"MCP server {name!r} is no longer saved." for name in missing]
        problems += [str(exc) for exc in failed.values()]
        if problems:
            self.tools_unavailable.emit(
                " ".join(problems) + " The model gets the other tools this turn."
            )
        return [t for t in tools if f"{t.server}/{t.name}" not in turn.disabled]

    @Slot(list, object, object)
    def on_chat_with_tools(
        self, messages: list[dict[str, Any]], sampling: object, turn: ToolTurn
    ) -> None:
        """One user turn through the core's ToolLoop (rounds, approvals, results)."""
        from launcher.tools.loop import (
            RoundStarted,
            ToolLoop,
            ToolResult,
            ToolStarted,
            TurnFinished,
        )

        cancel = self._turn_cancel
        cancel.clear()  # a stop of an earlier reply
        tokens = _TokenBatcher(self.token_received.emit)
        events = None
        try:
            sampling = _sampling(sampling)
            try:
                tools = self._turn_tools(turn)
            except ToolCancelledError:
                tools = []
            names = {t.public_name for t in tools}
            choice = turn.tool_choice if tools else "none"
            sampling = dataclasses.replace(sampling, tool_choice=choice, parallel_tool_calls=False)
            loop = ToolLoop(
                self.engine,
                turn.manager,
                tools,
                self._approve,
                max_rounds=turn.max_rounds,
                tool_timeout_s=turn.timeout_s,
            )
            loop.always_allowed.update(turn.always_allowed & names)
            events = loop.run(messages, sampling, cancel)
            for event in events:
                if isinstance(event, Token):
                    tokens.add(event.text)
                    continue
                tokens.flush()
                match event:
                    case RoundStarted(round=n):
                        self.round_started.emit(n)
                    case ReasoningToken(text=text):
                        self.reasoning_received.emit(text)
                    case ReplyFinished(tool_calls=calls) if (
                        calls and event.metrics.stop_reason == "tool_calls"
                    ):
                        self.tool_calls_made.emit(event)
                    case ToolStarted(call=call):
                        self.tool_started.emit(call)
                    case ToolResult():
                        self.tool_finished.emit(event)
                    case HostCrashed():
                        self.crashed.emit(_crash_message(event))
                        self._offer_safe_settings(event)
                        return
                    case TurnFinished():
                        self._measure_memory()
                        self.turn_finished.emit(event)
        except Exception as exc:
            tokens.flush()
            self._report(exc)
        finally:
            if events is not None:
                events.close()

    def _measure_memory(self) -> None:
        try:
            rss, gpu = self.engine.memory()
        except Exception:
            return  # a number we cannot read is left out, never a failed reply
        if rss:
            self.memory_measured.emit(int(rss) + int(gpu or 0))

    @Slot()
    def on_unload(self) -> None:
        try:
            self.engine.unload()
        except Exception as exc:
            self._report(exc)
        self.unloaded.emit()

    def _report(self, exc: BaseException) -> None:
        if isinstance(exc, HostCrashedError):
            self.crashed.emit(_crash_message(exc))
        else:
            if not isinstance(exc, LauncherError):
                traceback.print_exception(exc)
            self.failed.emit(user_message(exc))
        if isinstance(exc, ModelLoadError):  # the host died while loading
            self._offer_safe_settings(exc.crash)

    def _offer_safe_settings(self, crash: object) -> None:
        if isinstance(crash, HostCrashed) and crash.safe_params is not None:
            self.safe_settings_offered.emit(crash)


def _sampling(sampling: object) -> Sampling:
    """The views hand over a preset's settings as a ``Sampling`` or a plain dict."""
    if isinstance(sampling, Sampling):
        return sampling
    return Sampling.from_dict(dict(sampling) if isinstance(sampling, dict) else {})


def _crash_message(crash: HostCrashed | HostCrashedError) -> str:
    """One paragraph for a dead model host: the likely cause first, then the exit code."""
    parts = ["The model stopped unexpectedly (its process ended)."]
    if isinstance(crash, HostCrashed):
        if crash.likely_cause:
            parts.append(crash.likely_cause)
        if crash.exit_code is not None:
            parts.append(f"Exit code {crash.exit_code}.")
    else:
        parts.append(str(crash))
    parts.append("Your conversation is kept; load the model again to continue.")
    return " ".join(parts)


class ModelHost(QObject):
    """GUI-side owner of one model host: its engine, its worker and the worker's thread.

    Call ``load``/``chat``/``unload`` from the GUI thread; they queue work on the worker.
    ``stop()`` cancels a reply at once; ``shutdown()`` ends everything in the fixed order.
    """

    _load_requested = Signal(str, object)
    _chat_requested = Signal(list, object)
    _chat_with_tools_requested = Signal(list, object, object)
    _unload_requested = Signal()

    def __init__(self, engine: EngineLike, name: str = "model host") -> None:
        super().__init__()
        self.engine = engine
        self._thread = QThread()
        self._thread.setObjectName(f"{name} worker")
        self.worker = ModelHostWorker(engine)
        self.worker.moveToThread(self._thread)
        self._load_requested.connect(self.worker.on_load)
        self._chat_requested.connect(self.worker.on_chat)
        self._chat_with_tools_requested.connect(self.worker.on_chat_with_tools)
        self._unload_requested.connect(self.worker.on_unload)
        self._thread.start()
        self._shut_down = False

    def load(self, path: str, plan: object = None) -> None:
        self._load_requested.emit(path, plan)

    def chat(self, messages: list[dict[str, str]], sampling: object = None) -> None:
        self._chat_requested.emit(messages, sampling)

    def chat_with_tools(
        self, messages: list[dict[str, Any]], sampling: object, turn: ToolTurn
    ) -> None:
        """One turn through the tool loop (see ``ModelHostWorker.on_chat_with_tools``)."""
        self._chat_with_tools_requested.emit(messages, sampling, turn)

    def answer_call(self, approval: Approval) -> None:
        """The user's answer to the call waiting for approval (set directly: the worker
        is blocked on it)."""
        self.worker.answer_call(approval)

    def stop(self) -> None:
        """Stop the current reply now: a flag on the core, read by the generation loop (and
        the turn's flag, which also ends a wait for approval or a running tool call)."""
        self.worker.stop_turn()
        self.engine.cancel()

    def unload(self) -> None:
        self._unload_requested.emit()

    def shutdown(self) -> None:
        """Stop flag, quit, wait, end the host process. Safe to call twice."""
        if self._shut_down:
            return
        self._shut_down = True
        try:
            self.worker.stop_turn()
            self.engine.cancel()
            if self.worker.loading:
                # A load does not poll the stop flag and can take minutes for a big model:
                # end the host process now, so the load returns at once and wait() is short.
                self.engine.unload()
        except Exception:
            traceback.print_exc()
        self._thread.quit()
        self._thread.wait()
        try:
            self.engine.unload()
        except Exception:
            traceback.print_exc()


class _TaskWorker(QObject):
    finished = Signal(int, object)
    failed = Signal(int, str)

    @Slot(int, object)
    def on_run(self, task_id: int, fn: Callable[[], object]) -> None:
        try:
            result = fn()
        except Exception as exc:
            if not isinstance(exc, LauncherError):
                traceback.print_exception(exc)
            self.failed.emit(task_id, user_message(exc))
            return
        self.finished.emit(task_id, result)


class TaskRunner(QObject):
    """Runs callables one after another on a background thread; results come back as calls.

    ``submit(fn, on_done, on_error)`` returns at once; ``on_done(result)`` or
    ``on_error(message)`` runs later on the GUI thread. A runner per kind of work (local,
    network) keeps a slow Hub request from delaying the probe.
    """

    _run_requested = Signal(int, object)
    finished = Signal(int, object)
    failed = Signal(int, str)

    def __init__(self, name: str = "tasks") -> None:
        super().__init__()
        self._thread = QThread()
        self._thread.setObjectName(name)
        self._worker = _TaskWorker()
        self._worker.moveToThread(self._thread)
        self._run_requested.connect(self._worker.on_run)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._callbacks: dict[int, tuple[Callable[[Any], None], Callable[[str], None] | None]] = {}
        self._ids = itertools.count(1)
        self._thread.start()

    def submit(
        self,
        fn: Callable[[], object],
        on_done: Callable[[Any], None],
        on_error: Callable[[str], None] | None = None,
    ) -> int:
        task_id = next(self._ids)
        self._callbacks[task_id] = (on_done, on_error)
        self._run_requested.emit(task_id, fn)
        return task_id

    def busy(self) -> bool:
        return bool(self._callbacks)

    @Slot(int, object)
    def _on_finished(self, task_id: int, result: object) -> None:
        callbacks = self._callbacks.pop(task_id, None)
        if callbacks:
            callbacks[0](result)
        self.finished.emit(task_id, result)

    @Slot(int, str)
    def _on_failed(self, task_id: int, message: str) -> None:
        callbacks = self._callbacks.pop(task_id, None)
        if callbacks and callbacks[1]:
            callbacks[1](message)
        self.failed.emit(task_id, message)

    def shutdown(self) -> None:
        """Let the running task end, then stop the thread (queued tasks are dropped)."""
        self._callbacks.clear()
        self._thread.quit()
        self._thread.wait()
