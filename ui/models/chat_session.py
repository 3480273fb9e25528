"""``ChatSession``: the chat pane's manager (the data owner in the three-tier split).

It owns the current ``Conversation``, the ``ChatStore`` and the ``ModelHost`` of the loaded
model. The view calls its methods (``load_model``, ``send``, ``stop``, ``regenerate``, ...)
and renders its signals; it never touches the engine. Every state change that matters is
saved atomically: when the user sends, every few seconds while a reply streams, and when the
reply ends, is stopped, or the model host crashes (the partial reply is kept, marked
incomplete, followed by the error).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from launcher.chats import ChatMessage, ChatStore, ChatStoreError, Conversation, ConversationSummary
from launcher.engine.events import EngineParams, HostCrashed
from ui.workers import ModelHost

SAVE_INTERVAL_S = 2.0


def metrics_from(event: Any, loaded: Any = None, plan: Any = None) -> dict[str, Any]:
    """The numbers shown under a reply, from ``ReplyFinished`` (+ the load info and plan)."""
    src = getattr(event, "metrics", None) or event
    out: dict[str, Any] = {}
    for key, names in {
        "ttft_s": ("ttft_s", "time_to_first_token_s"),
        "decode_tokens_per_s": ("decode_tokens_per_s", "tokens_per_s"),
        "prefill_tokens_per_s": ("prefill_tokens_per_s",),
        "prompt_tokens": ("prompt_tokens",),
        "generated_tokens": ("generated_tokens", "completion_tokens"),
        "stop_reason": ("stop_reason", "finish_reason"),
        "remote": ("remote",),  # "NAME (URL)": a remote server's reply, measured here
        "reasoning_tokens": ("reasoning_tokens",),
    }.items():
        for name in names:
            value = src.get(name) if isinstance(src, dict) else getattr(src, name, None)
            if value is not None:
                out[key] = getattr(value, "value", value)
                break
    for source, names in ((loaded, ("rss_bytes", "memory_bytes", "total_bytes")),):
        for name in names:
            value = getattr(source, name, None) if source is not None else None
            if isinstance(value, int | float) and value:  # 0: a remote model, nothing here
                out["memory_bytes"] = int(value)
                break
    if plan is not None:
        total = getattr(plan, "total_bytes", None)
        if isinstance(total, int | float):
            out["estimate_bytes"] = int(total)
        verdict = getattr(plan, "verdict", None)
        if verdict is not None:
            out["estimate_verdict"] = str(getattr(verdict, "value", verdict))
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

    def __init__(
        self,
        store: ChatStore,
        host_factory: Callable[[], ModelHost],
        plan_for: Callable[[str], Any] | None = None,
        system_prompt: str = "You are a helpful assistant.",
        preset: str = "balanced",
    ) -> None:
        super().__init__()
        self.store = store
        self._host_factory = host_factory
        self._plan_for = plan_for
        self._default_system = system_prompt
        self._default_preset = preset
        self.host: ModelHost | None = None
        self.model_path: str | None = None
        self.loaded: Any = None
        self.plan: Any = None
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
        return self._reply is not None

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
        self.plan = (
            params if params is not None else (self._plan_for(path) if self._plan_for else None)
        )
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
        self.host = host
        self._memory_bytes = None
        self._set_state("loading")
        host.load(path, self.plan)

    def unload_model(self) -> None:
        """End the model host (its memory returns to the system)."""
        host, path = self.host, self.model_path
        if host is None:
            return
        if self._reply is not None:
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

    def _on_load_finished(self, loaded: object) -> None:
        if self._stale() or self.host is None:
            return  # unloaded while it was loading
        self.loaded = loaded
        # An engine that planned the load itself keeps the plan: show replies against it.
        self.plan = getattr(self.host.engine, "plan", None) or self.plan
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
        self._reply = self.conversation.add("assistant", "", model=self.model_name)
        self._reasoning_started, self._reasoning_s = 0.0, None
        self._save()
        self._set_state("busy")
        self.reply_started.emit(self.model_name)
        self.host.chat(messages, self.conversation.sampling())

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

    def _on_reply_finished(self, event: object) -> None:
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
        reply, self._reply = self._reply, None
        if reply is None:
            return
        reply.incomplete = incomplete
        self._save()
        self.reply_ended.emit(reply)
        if self.host is not None:
            self._set_state("ready")

    def _on_failed(self, message: str) -> None:
        if self._stale():
            return
        if self._reply is not None:
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
        if self._reply is not None:
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
        if self._reply is not None:
            self._end_reply(incomplete=True)
        host, self.host = self.host, None
        if host is not None:
            host.shutdown()
