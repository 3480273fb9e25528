"""``ComparePane``: one model's side of a comparison: its name (or blind letter), reply, figures.

The pane only renders what the Compare view gives it; formatting of the figures happens here
(the core reports raw numbers). Each figure is shown next to the estimate it was checked
against, so a slow or memory-hungry model stands out.
"""

from __future__ import annotations

from PySide6.QtGui import QFont, QTextCursor
from PySide6.QtWidgets import QFrame, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from launcher.compare_results import RunResult
from ui.theme import fmt_bytes, fmt_tokens_per_s


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
        self.reply = QPlainTextEdit()
        self.reply.setReadOnly(True)
        self.reply.setPlaceholderText("The reply streams here.")
        self.metrics = QLabel("")
        self.metrics.setWordWrap(True)
        self.metrics.setProperty("role", "hint")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.addWidget(self.header)
        layout.addWidget(self.status)
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
