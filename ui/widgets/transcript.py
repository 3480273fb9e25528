"""``TranscriptView``: a conversation rendered as Markdown, with a reply streaming at the end.

Rendering a long conversation again for every token would freeze the window, so a streaming
reply is split in two: the *stable* part (complete paragraphs outside any open code fence),
rendered once and appended, and the *tail* (the paragraph being written), re-rendered on each
flush. Flushes are coalesced by a timer to at most ``MAX_FLUSH_HZ`` per second, so the cost
per frame stays small however fast tokens arrive or however long the conversation is.

A reply that called tools shows each call as a folded block under it (the tool, its
arguments, how it went: waiting for approval, running, done, denied, failed); a click
unfolds the arguments in full and the result. Tool messages are drawn inside their call's
block, never on their own; a call that failed (time-out, crashed server) has a red line
that shows even folded. Tool events are rare (a few per turn), so they re-render the
conversation rather than patch it.
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import quote, unquote

from PySide6.QtCore import QTimer
from PySide6.QtGui import QTextBlockFormat, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextBrowser, QWidget

from launcher.chats import ChatMessage
from ui.theme import fmt_bytes, fmt_tokens_per_s, verdict_label

MAX_FLUSH_HZ = 30
_MD_EXTENSIONS = ["fenced_code", "tables", "sane_lists"]


def metrics_line(metrics: dict[str, Any] | None, incomplete: bool = False) -> str:
    """'TTFT 0.21 s · 48.3 tok/s · 128 tokens · memory 312 MiB (estimate 300 MiB, Full GPU)'."""
    parts: list[str] = []
    m = metrics or {}
    if m.get("ttft_s") is not None:
        parts.append(f"TTFT {float(m['ttft_s']):.2f} s")
    if m.get("decode_tokens_per_s") is not None:
        parts.append(fmt_tokens_per_s(float(m["decode_tokens_per_s"])))
    if m.get("generated_tokens") is not None:
        parts.append(f"{int(m['generated_tokens'])} tokens")
    if m.get("memory_bytes") is not None:
        mem = f"memory {fmt_bytes(m['memory_bytes'])}"
        if m.get("estimate_bytes") is not None:
            verdict = m.get("estimate_verdict")
            est = f"estimate {fmt_bytes(m['estimate_bytes'])}"
            if verdict:
                est += f", {verdict_label(str(verdict))}"
            mem += f" ({est})"
        parts.append(mem)
    elif m.get("estimate_bytes") is not None:
        parts.append(f"estimate {fmt_bytes(m['estimate_bytes'])}")
    if m.get("rounds") and (m.get("tool_calls") or int(m["rounds"]) > 1):
        rounds, calls = int(m["rounds"]), int(m.get("tool_calls") or 0)
        parts.append(f"{rounds} round{'s' if rounds != 1 else ''}")
        parts.append(f"{calls} tool call{'s' if calls != 1 else ''}")
        if m.get("tools_s") is not None:
            parts.append(f"tools {float(m['tools_s']):.2f} s")
    if m.get("round_limit"):
        parts.append("round limit reached")
    if m.get("remote"):
        parts.append(f"remote {m['remote']}, measured here")
    if incomplete:
        parts.append("stopped")
    return " · ".join(parts)


# How a call went, as its block's header says it (launcher.tools.loop.ResultStatus).
_STATUS_TEXT = {
    "ok": "done",
    "error": "the tool reported an error",
    "denied": "denied",
    "timeout": "timed out",
    "cancelled": "stopped",
    "server_error": "server failed",
    "unknown_tool": "no such tool",
    "bad_arguments": "bad arguments",
}
# Failures of the server or the limit, not of the model or the user: a red line, even folded.
_FAILED = ("timeout", "server_error")
_ARGS_SHOWN = 80


def call_arguments(arguments: str, indent: int | None = None) -> str:
    """A call's JSON arguments, compact (or indented); text that is not JSON as it is."""
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return arguments
    if indent is None:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return json.dumps(value, ensure_ascii=False, indent=indent)


class MarkdownRenderer:
    """A reusable ``markdown.Markdown`` (building one per call is the slow part).

    Built on first use: importing ``markdown`` and its extensions would delay the first paint.
    """

    def __init__(self) -> None:
        self._md: Any = None

    def render(self, text: str) -> str:
        if self._md is None:
            import markdown

            self._md = markdown.Markdown(extensions=_MD_EXTENSIONS)
        self._md.reset()
        out = self._md.convert(text)
        if "<table>" in out:  # Qt's rich text draws tables without borders unless asked
            out = out.replace("<table>", "<table border='1' cellspacing='0' cellpadding='4'>")
        return out


def stable_boundary(text: str, start: int) -> int:
    """End of the last complete paragraph after ``start`` that is outside a code fence."""
    pos = text.rfind("\n\n", start)
    while pos > start:
        if text.count("```", 0, pos) % 2 == 0:
            return pos + 2
        pos = text.rfind("\n\n", start, pos)
    return start


class TranscriptView(QTextBrowser):
    """Read-only, selectable transcript; links open nowhere (the model's text is untrusted)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self._renderer = MarkdownRenderer()
        self._text = ""
        self._stable_len = 0
        self._tail_start: int | None = None
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(1000 // MAX_FLUSH_HZ)
        self._flush_timer.timeout.connect(self.flush)
        self.flush_count = 0  # UI updates made while streaming (tests and the benchmark)
        self._messages: list[ChatMessage] = []  # what is shown, to re-render a toggled fold
        self._unfolded: set[int] = set()  # ``created`` of replies whose reasoning is open
        self._reasoning = ""  # the streaming reply's reasoning so far
        self._open_calls: set[str] = set()  # ids of tool calls shown unfolded
        self._call_states: dict[str, str] = {}  # call id -> "approval" | "running"
        self.anchorClicked.connect(self._on_anchor)

    # ------------------------------------------------------------------ whole conversation
    def set_messages(self, messages: list[ChatMessage]) -> None:
        self._flush_timer.stop()
        self._tail_start = None
        self._messages = list(messages)
        parts = [
            self._message_html(m, messages[i - 1] if i else None) for i, m in enumerate(messages)
        ]
        self.setHtml("".join(parts) or self._empty_html())

    def toggle_reasoning(self, created: float) -> None:
        """Fold or unfold one reply's reasoning (the header link does this)."""
        key = int(created * 1000)
        self._unfolded.symmetric_difference_update({key})
        if not self.streaming:
            bar = self.verticalScrollBar().value()
            self.set_messages(self._messages)
            self.verticalScrollBar().setValue(bar)

    def toggle_call(self, call_id: str) -> None:
        """Fold or unfold one tool call's block (its header link does this)."""
        self._open_calls.symmetric_difference_update({call_id})
        self._rerender()

    def set_call_state(self, call_id: str, state: str) -> None:
        """A call waits for approval (``approval``), runs (``running``) or neither (``""``)."""
        if state:
            self._call_states[call_id] = state
        else:
            self._call_states.pop(call_id, None)
        self._rerender()

    def _rerender(self) -> None:
        if self.streaming:
            return
        bar = self.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        value = bar.value()
        self.set_messages(self._messages)
        if at_end:
            self._scroll_to_end()
        else:
            bar.setValue(value)

    def _on_anchor(self, url: Any) -> None:
        text = url.toString()
        if text.startswith("reasoning:"):
            self.toggle_reasoning(int(text.split(":", 1)[1]) / 1000)
        elif text.startswith("tool:"):
            self.toggle_call(unquote(text.split(":", 1)[1]))

    def _result_of(self, call_id: str) -> ChatMessage | None:
        for m in reversed(self._messages):
            if m.role == "tool" and m.tool_call_id == call_id:
                return m
        return None

    def _call_html(self, call: dict[str, Any]) -> str:
        """One tool call's block: folded, a header line; unfolded, arguments and result."""
        call_id = str(call.get("id", ""))
        function = call.get("function") or {}
        name = str(function.get("name", "tool"))
        arguments = str(function.get("arguments") or "")
        result = self._result_of(call_id)
        state = self._call_states.get(call_id, "")
        if result is not None:
            status = result.tool_status or "ok"
            how = _STATUS_TEXT.get(status, status)
            elapsed = (result.metrics or {}).get("elapsed_s")
            if status == "ok" and elapsed is not None:
                how += f" in {float(elapsed):.2f} s"
        elif state == "approval":
            how = "waiting for your approval"
        elif state == "running":
            how = "running…"
        else:
            how = "no result"
        unfolded = call_id in self._open_calls
        shown = call_arguments(arguments)
        if len(shown) > _ARGS_SHOWN:
            shown = shown[: _ARGS_SHOWN - 1] + "…"
        head = f"{'▾' if unfolded else '▸'} Tool {name}"
        link = f"tool:{quote(call_id, safe='')}"
        out = (
            f"<p style='color:gray'><a href='{link}'>{html.escape(head)}</a> "
            f"<code>{html.escape(shown)}</code> · {html.escape(how)}</p>"
        )
        if result is not None and result.tool_status in _FAILED:
            first = result.content.strip().splitlines()[0] if result.content.strip() else how
            out += f"<p style='color:#cf222e'>⚠ {html.escape(first)}</p>"
        if unfolded:
            where = f" on {result.server}" if result is not None and result.server else ""
            body = (
                f"<p style='color:gray'><small>Arguments{html.escape(where)}</small></p>"
                f"<pre>{html.escape(call_arguments(arguments, indent=2))}</pre>"
            )
            if result is not None:
                body += (
                    "<p style='color:gray'><small>Result</small></p>"
                    f"<pre>{html.escape(result.content)}</pre>"
                )
            out += f"<blockquote>{body}</blockquote>"
        return out

    @staticmethod
    def _continues_turn(previous: ChatMessage | None) -> bool:
        """Whether a reply goes on a turn that called tools (then it gets no second name)."""
        return previous is not None and (
            previous.role == "tool" or (previous.role == "assistant" and bool(previous.tool_calls))
        )

    def _reasoning_html(self, msg: ChatMessage) -> str:
        if not msg.reasoning:
            return ""
        m = msg.metrics or {}
        facts = []
        if m.get("reasoning_tokens"):
            facts.append(f"{int(m['reasoning_tokens'])} tokens")
        if m.get("reasoning_s") is not None:
            facts.append(f"{float(m['reasoning_s']):.1f} s")
        key = int(msg.created * 1000)
        unfolded = key in self._unfolded
        head = (
            ("▾" if unfolded else "▸") + " Reasoning" + (f" · {' · '.join(facts)}" if facts else "")
        )
        out = f"<p style='color:gray'><a href='reasoning:{key}'>{html.escape(head)}</a></p>"
        if unfolded:
            body = html.escape(msg.reasoning.strip()).replace("\n", "<br>")
            out += f"<blockquote style='color:gray'>{body}</blockquote>"
        return out

    def _empty_html(self) -> str:
        return (
            "<p style='color:gray'>No messages yet. Pick a model above, load it, and say hello.</p>"
        )

    def _message_html(self, msg: ChatMessage, previous: ChatMessage | None = None) -> str:
        if msg.role == "tool":
            return ""  # drawn in its call's block
        if msg.role == "user":
            body = html.escape(msg.content).replace("\n", "<br>")
            return f"<p><b>You</b></p><p>{body}</p>"
        if msg.role == "error":
            return f"<p style='color:#cf222e'><b>⚠ Error</b><br>{html.escape(msg.content)}</p>"
        if msg.role == "assistant":
            who = html.escape(msg.model or "Assistant")
            line = metrics_line(msg.metrics, msg.incomplete)
            metrics = (
                f"<p style='color:gray'><small>{html.escape(line)}</small></p>" if line else ""
            )
            head = "" if self._continues_turn(previous) else f"<p><b>{who}</b></p>"
            calls = "".join(self._call_html(c) for c in msg.tool_calls or ())
            text = self._renderer.render(msg.content) if msg.content.strip() else ""
            return f"{head}{self._reasoning_html(msg)}{text}{calls}{metrics}"
        return ""

    def _new_block(self) -> QTextCursor:
        """A cursor in a new, plain block at the end of the document.

        ``insertBlock()`` alone copies the last block's format, list membership included: after
        a reply ending in a numbered list, the next paragraph (the metrics line, the next
        "You") would be drawn as one more item of that list. A fresh format starts a paragraph.
        """
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        return cursor

    def _append_html(self, fragment: str) -> None:
        self._new_block().insertHtml(fragment)
        self._scroll_to_end()

    def _scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def append_message(self, msg: ChatMessage) -> None:
        """Add one finished message (the user's, an error note, a tool's result) at the end."""
        if msg.role == "tool":  # shown in its call's block, drawn already
            self._messages.append(msg)
            self._rerender()
            return
        previous = self._messages[-1] if self._messages else None
        self._messages.append(msg)
        if self._continues_turn(previous) and msg.role == "assistant":
            self._rerender()
            return
        if self.document().characterCount() <= 1 or self._only_placeholder():
            self.clear()
            cursor = QTextCursor(self.document())
            cursor.insertHtml(self._message_html(msg))
            return
        self._append_html(self._message_html(msg))

    def _only_placeholder(self) -> bool:
        return self.toPlainText().startswith("No messages yet.")

    # ------------------------------------------------------------------ streaming
    def begin_reply(self, model: str) -> None:
        previous = self._messages[-1] if self._messages else None
        if not self._continues_turn(previous):
            self._append_html(f"<p><b>{html.escape(model or 'Assistant')}</b></p>")
        elif self._only_placeholder():
            self.clear()
        self._text = ""
        self._reasoning = ""
        self._stable_len = 0
        self._tail_start = self._new_block().position()

    def append_reasoning(self, text: str) -> None:
        """The model is thinking: one grey line says so (and for how long) until it answers;
        the reasoning itself is shown folded once the reply ends."""
        self._reasoning += text
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def append_text(self, text: str) -> None:
        """Queue streamed text; the view repaints at most ``MAX_FLUSH_HZ`` times a second."""
        self._text += text
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def _replace_tail(self, fragment: str) -> None:
        assert self._tail_start is not None
        cursor = QTextCursor(self.document())
        cursor.setPosition(self._tail_start)
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        # The emptied block may still be formatted as the list item or heading drawn last time.
        cursor.setBlockFormat(QTextBlockFormat())
        cursor.setBlockCharFormat(QTextCharFormat())
        if fragment:
            cursor.insertHtml(fragment)

    def flush(self) -> None:
        """Render what streamed since the last flush."""
        self._flush_timer.stop()
        if self._tail_start is None:
            return
        self.flush_count += 1
        at_end = self.verticalScrollBar().value() >= self.verticalScrollBar().maximum() - 4
        boundary = stable_boundary(self._text, self._stable_len)
        if boundary > self._stable_len:
            self._replace_tail(self._renderer.render(self._text[self._stable_len : boundary]))
            self._tail_start = self._new_block().position()
            self._stable_len = boundary
        tail = self._text[self._stable_len :]
        if not self._text and self._reasoning:
            words = len(self._reasoning.split())
            self._replace_tail(f"<p style='color:gray'><i>Thinking… ({words} words)</i></p>")
        else:
            self._replace_tail(self._renderer.render(tail) if tail.strip() else "")
        if at_end:
            self._scroll_to_end()

    def end_round(self, msg: ChatMessage) -> None:
        """The streamed reply ended in tool calls: draw them under it (the turn goes on)."""
        self._flush_timer.stop()
        self._tail_start = None
        self._reasoning = ""
        if not any(m is msg for m in self._messages):
            self._messages.append(msg)
        self._rerender()

    def end_reply(self, msg: ChatMessage) -> None:
        """Finish the streamed reply and add its metrics line under it."""
        if any(m is msg for m in self._messages):  # a turn that ended after its tool calls
            self._flush_timer.stop()
            self._tail_start = None
            self._reasoning = ""
            self._rerender()
            return
        if self._tail_start is None:
            return
        self._messages.append(msg)
        self._reasoning = ""
        if msg.reasoning or msg.tool_calls:  # folds go above the answer: render it again
            self.set_messages(self._messages)
            self._scroll_to_end()
            return
        self._text = msg.content
        self.flush()
        self._tail_start = None
        line = metrics_line(msg.metrics, msg.incomplete)
        if line:
            self._append_html(f"<p style='color:gray'><small>{html.escape(line)}</small></p>")

    @property
    def streaming(self) -> bool:
        return self._tail_start is not None
