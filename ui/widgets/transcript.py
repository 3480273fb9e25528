"""``TranscriptView``: a conversation rendered as Markdown, with a reply streaming at the end.

Rendering a long conversation again for every token would freeze the window, so a streaming
reply is split in two: the *stable* part (complete paragraphs outside any open code fence),
rendered once and appended, and the *tail* (the paragraph being written), re-rendered on each
flush. Flushes are coalesced by a timer to at most ``MAX_FLUSH_HZ`` per second, so the cost
per frame stays small however fast tokens arrive or however long the conversation is.
"""

from __future__ import annotations

import html
from typing import Any

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
    if m.get("remote"):
        parts.append(f"remote {m['remote']}, measured here")
    if incomplete:
        parts.append("stopped")
    return " · ".join(parts)


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
        self.anchorClicked.connect(self._on_anchor)

    # ------------------------------------------------------------------ whole conversation
    def set_messages(self, messages: list[ChatMessage]) -> None:
        self._flush_timer.stop()
        self._tail_start = None
        self._messages = list(messages)
        self.setHtml("".join(self._message_html(m) for m in messages) or self._empty_html())

    def toggle_reasoning(self, created: float) -> None:
        """Fold or unfold one reply's reasoning (the header link does this)."""
        key = int(created * 1000)
        self._unfolded.symmetric_difference_update({key})
        if not self.streaming:
            bar = self.verticalScrollBar().value()
            self.set_messages(self._messages)
            self.verticalScrollBar().setValue(bar)

    def _on_anchor(self, url: Any) -> None:
        text = url.toString()
        if text.startswith("reasoning:"):
            self.toggle_reasoning(int(text.split(":", 1)[1]) / 1000)

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

    def _message_html(self, msg: ChatMessage) -> str:
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
            return (
                f"<p><b>{who}</b></p>{self._reasoning_html(msg)}"
                f"{self._renderer.render(msg.content)}{metrics}"
            )
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
        """Add one finished message (the user's, or an error note) at the end."""
        self._messages.append(msg)
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
        self._append_html(f"<p><b>{html.escape(model or 'Assistant')}</b></p>")
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

    def end_reply(self, msg: ChatMessage) -> None:
        """Finish the streamed reply and add its metrics line under it."""
        if self._tail_start is None:
            return
        self._messages.append(msg)
        self._reasoning = ""
        if msg.reasoning:  # the fold goes above the answer: render the conversation again
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
