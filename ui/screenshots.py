"""``python -m ui.screenshots OUT_DIR``: render every view at 1280x800 into PNG files.

Runs the real app (offscreen when ``QT_QPA_PLATFORM=offscreen``) in a throwaway home folder
with this machine's real probe, the offline catalog, a live memory gauge, and one sample
conversation, then grabs the window once per view: ``discover.png``, ``library.png``,
``chat.png``, ``doctor.png``, plus ``discover-dark.png`` and ``chat-dark.png`` in the dark
theme (the Compare view renders its own screenshots).
Used by ``make screenshots``; the README shows the results.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

SAMPLE_REPLY = """Here is a quick comparison:

| Model | Quant | Fits on a 24 GB GPU |
|---|---|---|
| Qwen3 32B | Q4_K_M | partial offload |
| Qwen3 14B | Q4_K_M | yes |

Use `--ctx 32768` for long documents. **Tip:** the gauge below shows what each model holds.
"""


def _wait(app: QApplication, ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def _seed_conversation(home: Path) -> None:
    from launcher.chats import ChatStore, Conversation
    from launcher.paths import AppPaths

    store = ChatStore(AppPaths.default().chats_dir)
    conv = Conversation()
    conv.add("user", "Which Qwen3 size fits my 24 GB GPU with a 32k context?")
    conv.add(
        "assistant",
        SAMPLE_REPLY,
        model="Qwen3-14B-Q4_K_M.gguf",
        metrics={
            "ttft_s": 0.21,
            "decode_tokens_per_s": 48.3,
            "generated_tokens": 96,
            "memory_bytes": 11 * 2**30,
            "estimate_bytes": int(10.8 * 2**30),
            "estimate_verdict": "full_gpu",
        },
    )
    store.save(conv)
    old = Conversation()
    old.add("user", "Summarise this contract in five bullet points")
    old.updated -= 86400 * 2
    store.save(old)


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="spark-shots-") as home:
        os.environ["SPARK_LAUNCHER_HOME"] = home
        app = QApplication.instance() or QApplication([sys.argv[0]])
        from launcher.paths import AppPaths
        from ui.app import AppContext

        _seed_conversation(Path(home))
        ctx = AppContext(AppPaths.default())
        window = ctx.window
        window.resize(1280, 800)
        window.show()
        ctx.start()
        deadline = 200
        while (ctx.discover.model.rowCount() == 0 or ctx.gauge_snapshot() is None) and deadline:
            _wait(app, 50)  # type: ignore[arg-type]
            deadline -= 1
        # Select a model that fits so the details and the gauge's ghost show.
        d = ctx.discover
        for r in range(d.proxy.rowCount()):
            if d.proxy.index(r, 3).data() != "Won't fit":
                d.table.setCurrentIndex(d.proxy.index(r, 0))
                break
        summaries = ctx.store.list()
        if summaries:
            ctx.session.open_conversation(summaries[0].id)
        written = []
        for key in window.view_keys():
            if key in ("compare", "server"):
                # docs/compare*.png and docs/server.png come from those views' own tooling
                # (server: `python -m ui.views.server_view`, with real requests in its log).
                continue
            window.show_view(key)
            _wait(app, 150)  # type: ignore[arg-type]
            path = out / f"{key}.png"
            window.grab().save(str(path))
            written.append(path)
        # The same window in the dark theme, as a user with a dark desktop sees it.
        from ui.theme import apply_theme

        apply_theme(app, "dark")  # type: ignore[arg-type]
        for key in ("discover", "chat"):
            window.show_view(key)
            _wait(app, 150)  # type: ignore[arg-type]
            path = out / f"{key}-dark.png"
            window.grab().save(str(path))
            written.append(path)
        window.close()
        for p in written:
            print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
