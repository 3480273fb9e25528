"""``ChatSession``: the chat pane's manager (the data owner in the three-tier split).

It owns the current ``Conversation``, the ``ChatStore`` and the ``ModelHost`` of the loaded
model. The view calls its methods (``load_model``, ``send``, ``stop``, ``regenerate``, ...)
and renders its signals; it never touches the engine. Every state change that matters is
saved atomically: when the user sends, every few seconds while a reply streams, and when the
reply ends, is stopped, or the model host crashes (the partial reply is kept, marked
incomplete, followed by the error).

A conversation whose tools are on (``Conversation.tools``: MCP servers switched on, tools
switched off, the round limit) runs each turn through the core's tool loop on the model's
worker: every model reply of the turn is an assistant message (the ones that called tools
keep their ``tool_calls``), each call's result is a ``tool`` message, and each call waits for
:meth:`ChatSession.answer_call` (the transcript's Allow once / Always / Deny). The metrics of
the turn's last message count every round.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from launcher.chats import (
    ChatMessage,
    ChatStore,
    ChatStoreError,
    ChatTools,
    Conversation,
    ConversationSummary,
)
from launcher.engine.events import EngineParams, HostCrashed, Loaded, ReplyFinished
from launcher.planning import MemoryPlan
from ui.models.chat_tools import ServerTools, list_server_tools
from ui.workers import ModelHost, TaskRunner, ToolTurn

SAVE_INTERVAL_S = 2.0


def metrics_from(
    event: ReplyFinished | None, loaded: Loaded | None = None, plan: MemoryPlan | None = None
) -> dict[str, Any]:
    """The numbers shown (and saved) under a reply: the reply's ``ReplyMetrics``, the memory
    the model took when it loaded, and the plan it was checked against."""
    out: dict[str, Any] = {}
    if event is not None:
        m = event.metrics
        out.update(
            ttft_s=m.ttft_s,
            decode_tokens_per_s=m.decode_tokens_per_s,
            prefill_tokens_per_s=m.prefill_tokens_per_s,
            prompt_tokens=m.prompt_tokens,
            generated_tokens=m.generated_tokens,
            stop_reason=m.stop_reason,
            reasoning_tokens=m.reasoning_tokens,
        )
        if m.remote is not None:  # "NAME (URL)": a remote server's reply, measured here
            out["remote"] = m.remote
    if loaded is not None and loaded.rss_bytes:  # 0: a remote model, nothing held here
        out["memory_bytes"] = loaded.rss_bytes
    if plan is not None:
        out["estimate_bytes"] = plan.total_bytes
        out["estimate_verdict"] = plan.verdict
    return out


class ChatSession(QObject):
    """One chat pane's state: the conversation, its storage, and the loaded model."""

    conversation_changed = Signal(object)  # Conversation (re-render everything)
    message_added = Signal(object)  # ChatMessage (user or error note)
    reply_started = Signal(str)  # model name
    reply_text_received = Signal(str)  # coalesced token text
    reply_reasoning_received = Signal(str)  # reasoning text, shown folded above the reply
    reply_ended = Signal(object)  # the finished ChatMessage (metrics, incomplete)
    conversation_saved = Signal(object)  # ConversationSummary
    conversation_removed = Signal(str)  # id
    model_state_changed = Signal(str, str)  # state (unloaded/loading/ready/busy), model name
    load_progressed = Signal(float)  # 0.0 .. 1.0 while a model loads
    model_loaded = Signal(str, object)  # model path, Loaded info (for the gauge)
    model_unloaded = Signal(str)  # model path
    error_reported = Signal(str)  # a message for the status line (load errors, ...)
    # The model crashed twice in a row: what happened and the safe settings on offer
    # (empty when the offer is withdrawn: another model, or loaded with them).
    safe_settings_offered = Signal(str)
    # Tools (MCP): the chat's settings, the servers and their tools, a call waiting for the
    # user, a call's state for the transcript ("approval", "running", "" once answered), a
    # round that ended in calls (its message, to draw the calls).
    tools_changed = Signal(object)  # ChatTools of the conversation shown
    tool_catalog_changed = Signal(object)  # list[ServerTools]
    approval_requested = Signal(object, object)  # ToolCall, McpTool
    tool_call_state_changed = Signal(str, str)  # call id, state
    round_ended = Signal(object)  # ChatMessage with tool_calls

    def __init__(
        self,
        store: ChatStore,
        host_factory: Callable[[], ModelHost],
        plan_for: Callable[[str], Any] | None = None,
        system_prompt: str = "You are a helpful assistant.",
        preset: str = "balanced",
        *,
        mcp: Any = None,
        mcp_servers: Callable[[], list[Any]] | None = None,
        tasks: TaskRunner | None = None,
    ) -> None:
        """``mcp`` (a ``launcher.tools.McpManager``) runs the tools; ``mcp_servers`` reads
        the saved servers; ``tasks`` lists servers' tools off the GUI thread. Without them
        the chat has no tools."""
        super().__init__()
        self._mcp = mcp
        self._mcp_servers = mcp_servers
        self._tasks = tasks
        self.tool_catalog: list[ServerTools] = []
        self._turn_active = False  # a turn with tools runs (between rounds too)
        self._last_round: ChatMessage | None = None  # the turn's last message that called tools
        self._pending_call: Any = None  # the ToolCall waiting for the user's answer
        self._always: dict[str, set[str]] = {}  # conversation id -> tools allowed for good
        self.store = store
        self._host_factory = host_factory
        self._plan_for = plan_for
        self._default_system = system_prompt
        self._default_preset = preset
        self.host: ModelHost | None = None
        self.model_path: str | None = None
        self.loaded: Loaded | None = None
        self.plan: MemoryPlan | None = None
        self.state = "unloaded"
        self.conversation = self._new_conversation()
        self._reply: ChatMessage | None = None
        self._memory_bytes: int | None = None  # the host's footprint after the last reply
        self._last_save = 0.0
        self.safe_offer: HostCrashed | None = None  # the crash whose safe settings are offered
        self._reasoning_started = 0.0
        self._reasoning_s: float | None = None

    # ------------------------------------------------------------------ conversations
    def _new_conversation(self) -> Conversation:
        return Conversation(system_prompt=self._default_system, preset=self._default_preset)

    def list_conversations(self) -> list[ConversationSummary]:
        return self.store.list()

    def new_conversation(self) -> None:
        if self.busy:
            self.stop()
        self.conversation = self._new_conversation()
        self.conversation_changed.emit(self.conversation)
        self.tools_changed.emit(self.conversation.tools)

    def open_conversation(self, conversation_id: str) -> None:
        if conversation_id == self.conversation.id:
            return
        if self.busy:
            self.stop()
        try:
            self.conversation = self.store.load(conversation_id)
        except ChatStoreError as exc:
            self.error_reported.emit(str(exc))
            self.conversation_removed.emit(conversation_id)
            return
        self.conversation_changed.emit(self.conversation)
        self.tools_changed.emit(self.conversation.tools)

    def delete_conversation(self, conversation_id: str) -> None:
        self.store.delete(conversation_id)
        self.conversation_removed.emit(conversation_id)
        if conversation_id == self.conversation.id:
            self.new_conversation()

    def set_system_prompt(self, text: str) -> None:
        self.conversation.system_prompt = text
        if self.conversation.messages:
            self._save()

    def set_preset(self, preset: str) -> None:
        self.conversation.preset = preset
        if self.conversation.messages:
            self._save()

    # ------------------------------------------------------------------ tools (MCP)
    @property
    def tools_available(self) -> bool:
        """Whether this chat can use MCP tools at all (the app gave it a manager)."""
        return self._mcp is not None

    def set_tools(self, tools: ChatTools) -> None:
        """This conversation's tool settings (servers and tools on, limits); a server newly
        switched on is started to list its tools."""
        old = self.conversation.tools
        self.conversation.tools = tools
        if self.conversation.messages:
            self._save()
        self.tools_changed.emit(tools)
        listed = {s.name for s in self.tool_catalog if s.listed}
        if set(tools.servers) - set(old.servers) - listed:
            self.refresh_tools()

    def refresh_tools(self) -> None:
        """Read the saved servers again and list the tools of those on in this chat (they
        start if needed), on the task thread; ``tool_catalog_changed`` brings the result."""
        if self._mcp is None or self._tasks is None:
            return
        manager, saved = self._mcp, self._mcp_servers
        wanted = list(self.conversation.tools.servers)
        known = {s.name: s for s in self.tool_catalog if s.listed}
        self._tasks.submit(
            lambda: list_server_tools(manager, saved, wanted, known),
            self._on_tool_catalog,
            self.error_reported.emit,
        )

    def _on_tool_catalog(self, catalog: list[ServerTools]) -> None:
        self.tool_catalog = catalog
        self.tool_catalog_changed.emit(catalog)

    def answer_call(self, approval: Any) -> None:
        """The user's answer to the call waiting: a ``launcher.tools.loop.Approval`` or its
        value (``once``, ``always``, ``deny``, ``answer``)."""
        from launcher.tools.loop import Approval

        approval = Approval(approval)
        call, self._pending_call = self._pending_call, None
        if call is None or self.host is None:
            return
        if approval is Approval.ALWAYS:
            self._always.setdefault(self.conversation.id, set()).add(call.name)
        self.host.answer_call(approval)
        self.tool_call_state_changed.emit(call.id, "")

    @property
    def pending_call(self) -> Any:
        """The ToolCall waiting for the user's answer, if any."""
        return self._pending_call

    def _save(self) -> None:
        try:
            self.store.save(self.conversation)
        except ChatStoreError as exc:
            self.error_reported.emit(str(exc))
            return
        self._last_save = time.monotonic()
        c = self.conversation
        self.conversation_saved.emit(ConversationSummary(c.id, c.title, c.updated, len(c.messages)))

    # ------------------------------------------------------------------ model
    @property
    def busy(self) -> bool:
        return self._reply is not None or self._turn_active

    @property
    def model_name(self) -> str:
        return Path(self.model_path).name if self.model_path else ""

    def _set_state(self, state: str) -> None:
        self.state = state
        self.model_state_changed.emit(state, self.model_name)

    def load_model(self, path: str, params: EngineParams | None = None) -> None:
        """Start loading ``path`` (unloading the current model first), with its plan or with
        explicit ``params`` (the safe settings after repeated crashes)."""
        if self.host is not None:
            self.unload_model()
        if self.safe_offer is not None and (params is not None or path != self.model_path):
            self.safe_offer = None
            self.safe_settings_offered.emit("")
        self.model_path = path
        # Explicit params (the safe settings) load as they are, with no plan to check against.
        self.plan = None if params is not None or not self._plan_for else self._plan_for(path)
        load_with: EngineParams | MemoryPlan | None = params if params is not None else self.plan
        host = self._host_factory()
        # Bound methods of this QObject: Qt queues them to the GUI thread.
        host.worker.load_progress.connect(self._on_load_progress)
        host.worker.load_finished.connect(self._on_load_finished)
        host.worker.token_received.connect(self._on_tokens)
        host.worker.reasoning_received.connect(self._on_reasoning)
        host.worker.memory_measured.connect(self._on_memory_measured)
        host.worker.reply_finished.connect(self._on_reply_finished)
        host.worker.failed.connect(self._on_failed)
        host.worker.crashed.connect(self._on_crashed)
        host.worker.safe_settings_offered.connect(self._on_safe_settings_offered)
        host.worker.round_started.connect(self._on_round_started)
        host.worker.tool_calls_made.connect(self._on_tool_calls_made)
        host.worker.approval_requested.connect(self._on_approval_requested)
        host.worker.tool_started.connect(self._on_tool_started)
        host.worker.tool_finished.connect(self._on_tool_finished)
        host.worker.tools_unavailable.connect(self._on_tools_unavailable)
        host.worker.turn_finished.connect(self._on_turn_finished)
        self.host = host
        self._memory_bytes = None
        self._set_state("loading")
        host.load(path, load_with)

    def unload_model(self) -> None:
        """End the model host (its memory returns to the system)."""
        host, path = self.host, self.model_path
        if host is None:
            return
        if self.busy:
            self._end_reply(incomplete=True)
        self.host = None
        host.shutdown()
        self.loaded = None
        if path:
            self.model_unloaded.emit(path)
        self._set_state("unloaded")

    def _stale(self) -> bool:
        """Whether the signal being handled comes from a host that was already unloaded.

        (A sender already deleted reads as ``None``: its host is gone, so it is stale too.)
        """
        sender = self.sender()
        return self.host is None or sender is not self.host.worker

    def _on_load_progress(self, fraction: float) -> None:
        if not self._stale():
            self.load_progressed.emit(fraction)

    def _on_load_finished(self, loaded: Loaded) -> None:
        if self._stale() or self.host is None:
            return  # unloaded while it was loading
        self.loaded = loaded
        # An engine that planned the load itself keeps the plan: show replies against it.
        planned = getattr(self.host.engine, "plan", None)  # a PlannedEngine's own plan
        if isinstance(planned, MemoryPlan):
            self.plan = planned
        self.conversation.model_path = self.model_path
        self._set_state("ready")
        if self.model_path:
            self.model_loaded.emit(self.model_path, loaded)

    # ------------------------------------------------------------------ replies
    def send(self, text: str) -> bool:
        """Add the user's message and ask the model for a reply; False if it cannot now."""
        text = text.strip()
        if not text or self.busy or self.host is None or self.state != "ready":
            return False
        msg = self.conversation.add("user", text)
        self.message_added.emit(msg)
        self._start_reply()
        return True

    def regenerate(self) -> bool:
        """Drop the last reply and ask again."""
        if self.busy or self.host is None or self.state != "ready":
            return False
        if self.conversation.drop_last_reply() is None:
            return False
        self.conversation_changed.emit(self.conversation)
        self._start_reply()
        return True

    def stop(self) -> None:
        """Stop the current reply at once (a flag on the engine, not a queued message)."""
        if self.host is not None and self.busy:
            self.host.stop()

    def _start_reply(self) -> None:
        assert self.host is not None
        messages = self.conversation.prompt_messages()
        tools = self.conversation.tools
        if tools.active and self._mcp is not None:
            # The reply's message is added when the first round starts (the servers start
            # first, and one that fails is an error line above the reply).
            self._turn_active = True
            self._last_round = None
            self._save()
            self._set_state("busy")
            turn = ToolTurn(
                manager=self._mcp,
                servers=tuple(tools.servers),
                disabled=frozenset(tools.disabled),
                max_rounds=tools.max_rounds,
                tool_choice=tools.tool_choice,
                timeout_s=tools.timeout_s,
                always_allowed=frozenset(self._always.get(self.conversation.id, ())),
                saved_servers=self._mcp_servers,
            )
            self.host.chat_with_tools(messages, self.conversation.sampling(), turn)
            return
        self._begin_message()
        self._save()
        self._set_state("busy")
        self.host.chat(messages, self.conversation.sampling())

    def _begin_message(self) -> None:
        self._reply = self.conversation.add("assistant", "", model=self.model_name)
        self._reasoning_started, self._reasoning_s = 0.0, None
        self.reply_started.emit(self.model_name)

    # ------------------------------------------------------------------ turns with tools
    def _in_turn(self) -> bool:
        return self._turn_active and not self._stale()

    def _on_round_started(self, _round: int) -> None:
        if self._in_turn() and self._reply is None:
            self._begin_message()

    def _on_tool_calls_made(self, event: Any) -> None:
        reply = self._reply
        if reply is None or not self._in_turn():
            return
        reply.content = event.text or reply.content
        reply.tool_calls = [call.to_openai() for call in event.tool_calls]
        self._reply, self._last_round = None, reply
        self._save()
        self.round_ended.emit(reply)

    def _on_approval_requested(self, call: Any, tool: Any) -> None:
        if not self._in_turn():
            return
        self._pending_call = call
        self.tool_call_state_changed.emit(call.id, "approval")
        self.approval_requested.emit(call, tool)

    def _on_tool_started(self, call: Any) -> None:
        if self._in_turn():
            self.tool_call_state_changed.emit(call.id, "running")

    def _on_tool_finished(self, result: Any) -> None:
        if not self._in_turn():
            return
        if self._pending_call is not None and self._pending_call.id == result.call.id:
            self._pending_call = None  # stopped while asking
        msg = self.conversation.add(
            "tool",
            result.content,
            tool_call_id=result.call.id,
            name=result.call.name,
            tool_status=result.status,
            server=result.server or None,
            metrics={"elapsed_s": round(result.elapsed_s, 3)},
        )
        self._save()
        self.tool_call_state_changed.emit(result.call.id, "")
        self.message_added.emit(msg)

    def _on_tools_unavailable(self, message: str) -> None:
        if self._in_turn():
            self._add_error(message)

    def _on_turn_finished(self, event: Any) -> None:
        if not self._in_turn():
            return
        from launcher.tools.loop import turn_summary

        reply = self._reply or self._last_round
        if reply is None:  # stopped before the model said anything
            self._end_reply(incomplete=True)
            return
        if self._reply is not None and event.text:
            reply.content = event.text
        metrics = metrics_from(None, self.loaded, self.plan)
        metrics.update(turn_summary(event.metrics))
        if event.stop == "round_limit":
            metrics["round_limit"] = True
        if self._reply is not None and self._reply.reasoning:
            end = self._reasoning_s
            metrics["reasoning_s"] = (
                end if end is not None else time.monotonic() - self._reasoning_started
            )
        if self._memory_bytes is not None:
            metrics["memory_bytes"] = self._memory_bytes
        reply.metrics = metrics
        self._reply = reply
        self._end_reply(incomplete=event.stop in ("cancelled", "crashed"))

    def _on_reasoning(self, text: str) -> None:
        if self._reply is None or self._stale():
            return
        if not self._reply.reasoning:
            self._reasoning_started = time.monotonic()
        self._reply.reasoning += text
        self.reply_reasoning_received.emit(text)

    def _on_tokens(self, text: str) -> None:
        if self._reply is None or self._stale():
            return
        if self._reply.reasoning and self._reasoning_s is None:
            self._reasoning_s = time.monotonic() - self._reasoning_started
        self._reply.content += text
        self.reply_text_received.emit(text)
        if time.monotonic() - self._last_save > SAVE_INTERVAL_S:
            self._save()

    def _on_memory_measured(self, memory_bytes: int) -> None:
        if not self._stale():
            self._memory_bytes = int(memory_bytes)

    def _on_reply_finished(self, event: ReplyFinished) -> None:
        if self._reply is None or self._stale():
            return
        metrics = metrics_from(event, self.loaded, self.plan)
        if self._reply.reasoning:
            # Time spent reasoning: first reasoning text to the first answer text (or the end).
            end = self._reasoning_s
            metrics["reasoning_s"] = (
                end if end is not None else time.monotonic() - self._reasoning_started
            )
        if self._memory_bytes is not None:
            metrics["memory_bytes"] = self._memory_bytes
        stopped = metrics.get("stop_reason") in ("cancelled", "canceled", "cancel", "stopped")
        self._reply.metrics = metrics
        self._end_reply(incomplete=stopped)

    def _end_reply(self, incomplete: bool) -> None:
        reply, self._reply = self._reply or self._last_round, None
        was_turn, self._turn_active, self._last_round = self._turn_active, False, None
        pending, self._pending_call = self._pending_call, None
        if pending is not None:
            self.tool_call_state_changed.emit(pending.id, "")
        if reply is None:
            if was_turn:
                self._save()
                if self.host is not None:
                    self._set_state("ready")
            return
        reply.incomplete = incomplete
        self._save()
        self.reply_ended.emit(reply)
        if self.host is not None:
            self._set_state("ready")

    def _on_failed(self, message: str) -> None:
        if self._stale():
            return
        if self.busy:
            self._end_reply(incomplete=True)
            self._add_error(message)
            return
        if self.state == "loading":
            # The load failed: the host is of no use; end it so nothing is left behind.
            host, self.host = self.host, None
            if host is not None:
                host.shutdown()
            self._set_state("unloaded")
        self.error_reported.emit(message)

    def _on_crashed(self, message: str) -> None:
        if self._stale():
            return
        if self.busy:
            self._end_reply(incomplete=True)
        self._add_error(message)
        path = self.model_path
        host, self.host = self.host, None
        if host is not None:
            host.shutdown()
        self.loaded = None
        if path:
            self.model_unloaded.emit(path)
        self._set_state("unloaded")

    def _on_safe_settings_offered(self, crash: HostCrashed) -> None:
        if self.host is not None and self.sender() is not self.host.worker:
            return  # from a host that was replaced (a crashed host is already let go)
        self.safe_offer = crash
        stage = "loading" if crash.stage == "load" else "generating"
        self.safe_settings_offered.emit(
            f"{Path(crash.model_path).name or self.model_name} crashed {crash.repeats} times in "
            f"a row while {stage}. Safe settings: {'; '.join(crash.safe_changes)}."
        )

    def load_with_safe_settings(self) -> bool:
        """Load the crashed model again with the offered safe settings; False without one."""
        offer = self.safe_offer
        if offer is None or offer.safe_params is None:
            return False
        self.load_model(offer.model_path or self.model_path or "", offer.safe_params)
        return True

    def _add_error(self, message: str) -> None:
        msg = self.conversation.add("error", message)
        self._save()
        self.message_added.emit(msg)

    def shutdown(self) -> None:
        """Save what streams now and end the model host (window closing)."""
        if self.busy:
            self._end_reply(incomplete=True)
        host, self.host = self.host, None
        if host is not None:
            host.shutdown()
