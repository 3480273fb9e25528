"""The transcript: streamed Markdown is coalesced into few repaints and renders right."""

from __future__ import annotations

from launcher.chats import ChatMessage
from ui.widgets.transcript import TranscriptView, metrics_line, stable_boundary


def test_a_burst_of_tokens_repaints_once(qtbot) -> None:
    view = TranscriptView()
    qtbot.addWidget(view)
    view.show()
    view.begin_reply("model")
    for i in range(1000):
        view.append_text(f"w{i} ")
    assert view.flush_count == 0  # nothing painted per token
    qtbot.waitUntil(lambda: view.flush_count == 1, timeout=2000)
    assert "w0 w1" in view.toPlainText() and "w999" in view.toPlainText()


def test_code_fences_split_across_flushes_render_as_code(qtbot) -> None:
    view = TranscriptView()
    qtbot.addWidget(view)
    reply = "Intro paragraph.\n\n```python\ndef f():\n\n    return 1\n```\n\nAfter **bold**."
    view.set_messages([ChatMessage("user", "show code")])
    view.begin_reply("model")
    for i in range(0, len(reply), 7):
        view.append_text(reply[i : i + 7])
        view.flush()  # worst case: a repaint after every few characters
    view.end_reply(ChatMessage("assistant", reply, metrics={"generated_tokens": 20}))
    text = view.toPlainText()
    assert "```" not in text and "**" not in text
    assert "def f():" in text and "return 1" in text and "After bold." in text
    assert text.index("Intro paragraph.") < text.index("def f():") < text.index("After bold.")
    assert text.count("Intro paragraph.") == 1
    assert "20 tokens" in text


def test_stable_boundary_never_splits_inside_a_fence() -> None:
    text = "a\n\n```\ncode\n\nmore\n"
    assert stable_boundary(text, 0) == 3  # after "a\n\n", not inside the open fence
    assert stable_boundary("no break yet", 0) == 0


def test_metrics_line_reads_like_a_sentence() -> None:
    line = metrics_line(
        {
            "ttft_s": 0.123,
            "decode_tokens_per_s": 123.4,
            "generated_tokens": 50,
            "memory_bytes": 2**30,
            "estimate_bytes": 2**30 + 2**28,
            "estimate_verdict": "partial",
        },
        incomplete=True,
    )
    assert line == (
        "TTFT 0.12 s · 123 tok/s · 50 tokens · memory 1.0 GiB (estimate 1.2 GiB, Partial) · stopped"
    )
