"""``ComparePane``: one model's side of a comparison: its name (or blind letter), reply, figures.

The pane only renders what the Compare view gives it; formatting of the figures happens here
(the core reports raw numbers). Each figure is shown next to the estimate it was checked
against, so a slow or memory-hungry model stands out.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QFrame, QLabel, QPlainTextEdit, QTextEdit, QVBoxLayout, QWidget

from launcher.compare_results import RunResult
from ui.theme import fmt_bytes, fmt_tokens_per_s, is_dark
from ui.widgets.compare_diff import different_spans

PASS_COLOURS = ("#1a7f37", "#3fb950")  # light, dark palettes
FAIL_COLOURS = ("#cf222e", "#f85149")


def checks_html(run: RunResult, dark: bool = False) -> str:
    """Each check's outcome ("✔ json · ✘ tool_call: no tool call") and any tool call made."""
    ok, bad = PASS_COLOURS[dark], FAIL_COLOURS[dark]
    parts = []
    for c in run.checks:
        kind = html.escape(str(c.get("kind", "check")))
        if c.get("passed"):
            parts.append(f'<span style="color:{ok}">✔ {kind}</span>')
        else:
            why = c.get("detail") or "failed"
            parts.append(f'<span style="color:{bad}">✘ {kind}: {html.escape(str(why))}</span>')
    for call in run.tool_calls:
        args = str(call.get("arguments", ""))
        args = args if len(args) <= 120 else args[:119] + "…"
        parts.append(f"called <b>{html.escape(str(call.get('name')))}</b>({html.escape(args)})")
    return " · ".join(parts)


def run_metrics_line(run: RunResult) -> str:
    """ "TTFT 0.12 s · prefill 900 tok/s · decode 45.0 tok/s (est. 40.0) · peak 1.2 GiB"."""
    if run.error:
        return f"Error: {run.error}"
    parts = [f"TTFT {run.ttft_s:.2f} s" if run.ttft_s is not None else "TTFT —"]
    est_pp = f" (est. {run.est_prefill_tps:.0f})" if run.est_prefill_tps else ""
    parts.append(f"prefill {fmt_tokens_per_s(run.prefill_tps)}{est_pp}")
    est = f" (est. {run.est_decode_tps:.1f})" if run.est_decode_tps else ""
    parts.append(f"decode {fmt_tokens_per_s(run.decode_tps)}{est}")
    if run.total_s is not None:
        parts.append(f"{run.completion_tokens or 0} tokens in {run.total_s:.1f} s")
    if run.peak_memory_bytes:
        est_mem = f" (est. {fmt_bytes(run.est_memory_bytes)})" if run.est_memory_bytes else ""
        parts.append(f"peak {fmt_bytes(run.peak_memory_bytes)}{est_mem}")
    if run.check_passed is not None:
        parts.append("check ✔" if run.check_passed else "check ✘")
    return " · ".join(parts)


class ComparePane(QFrame):
    """Header, streaming reply text and a metrics line for one model."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.header = QLabel("—")
        font = QFont(self.header.font())
        font.setPointSizeF(font.pointSizeF() * 1.15)
        font.setBold(True)
        self.header.setFont(font)
        self.status = QLabel("")
        self.status.setProperty("role", "hint")
        self.checks = QLabel("")
        self.checks.setWordWrap(True)
        self.checks.setTextFormat(Qt.TextFormat.RichText)
        self.checks.setVisible(False)
        self.reply = QPlainTextEdit()
        self.reply.setReadOnly(True)
        self.reply.setPlaceholderText("The reply streams here.")
        self.differences = 0  # spans marked by mark_differences
        self.metrics = QLabel("")
        self.metrics.setWordWrap(True)
        self.metrics.setProperty("role", "hint")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.addWidget(self.header)
        layout.addWidget(self.status)
        layout.addWidget(self.checks)
        layout.addWidget(self.reply, 1)
        layout.addWidget(self.metrics)

    def set_header(self, text: str) -> None:
        self.header.setText(text)

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def set_text(self, text: str) -> None:
        self.reply.setPlainText(text)
        self.reply.moveCursor(QTextCursor.MoveOperation.End)

    def append_text(self, text: str) -> None:
        cursor = self.reply.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        self.reply.setTextCursor(cursor)
        self.reply.ensureCursorVisible()

    def text(self) -> str:
        return self.reply.toPlainText()

    def set_run(self, run: RunResult | None) -> None:
        self.metrics.setText("" if run is None else run_metrics_line(run))

    def set_checks(self, run: RunResult | None) -> None:
        """Show each check's outcome for this reply (hidden when it has none)."""
        text = "" if run is None else checks_html(run, is_dark(self.palette()))
        self.checks.setText(text)
        self.checks.setVisible(bool(text))

    def mark_differences(self, other: str | None) -> None:
        """Underline the words of this reply that ``other`` does not have (None: clear)."""
        spans = different_spans(self.text(), other) if other is not None else []
        selections = []
        colour = QColor(FAIL_COLOURS[is_dark(self.palette())])
        for start, end in spans:
            sel = QTextEdit.ExtraSelection()
            fmt = QTextCharFormat()
            fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SingleUnderline)
            fmt.setUnderlineColor(colour)
            colour_bg = QColor(colour)
            colour_bg.setAlpha(40)
            fmt.setBackground(colour_bg)
            sel.format = fmt
            cursor = QTextCursor(self.reply.document())
            cursor.setPosition(start)
            cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            sel.cursor = cursor
            selections.append(sel)
        self.reply.setExtraSelections(selections)
        self.differences = len(spans)
