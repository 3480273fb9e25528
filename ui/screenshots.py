"""``python -m ui.screenshots OUT_DIR``: render every view at 1280x800 into PNG files.

Runs the real app (offscreen when ``QT_QPA_PLATFORM=offscreen``) in a throwaway home folder
with this machine's real probe, the offline catalog, a live memory gauge, and one sample
conversation, then grabs the window once per view: ``discover.png``, ``library.png``,
``chat.png``, ``doctor.png``, ``doctor-mcp.png`` (the MCP servers tab, the repository's test
MCP server started and its tools listed for real), plus ``discover-dark.png`` and
``chat-dark.png`` in the dark theme (the Compare view renders its own screenshots).
``python -m ui.screenshots --mcp OUT_DIR`` renders ``doctor-mcp.png`` alone.
``chat-tools.png`` (the Tools panel open on the test MCP server, a call folded and one
waiting for approval) and ``chat-tools-open.png`` (a call unfolded: arguments and result);
``--tools OUT_DIR`` renders those two alone.
Used by ``make screenshots``; the README shows the results.

``python -m ui.screenshots --fit OUT_DIR`` renders the fit check instead (``docs/fit/``):
every view at 1366x768 and 1280x720, some at 1920x1080, and some at 150 % and 200 % scaling
(``QT_SCALE_FACTOR``; each scale runs in its own process, as Qt reads it at start-up). Files
are named ``VIEW-WIDTHxHEIGHT[@SCALEx].png`` in screen pixels; the window fills the screen.
``chat-starter-1366x768.png`` shows the bundled Gemma 3 270M loaded for real, with the note
that it is a tiny test model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

SAMPLE_REPLY = """Here is a quick comparison:

| Model | Quant | Fits on a 24 GB GPU |
|---|---|---|
| Qwen3 32B | Q4_K_M | partial offload |
| Qwen3 14B | Q4_K_M | yes |

Use `--ctx 32768` for long documents. **Tip:** the gauge below shows what each model holds.
"""


def _app() -> QApplication:
    """The running QApplication, or a new one."""
    app = QApplication.instance()
    return app if isinstance(app, QApplication) else QApplication([sys.argv[0]])


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
    reply = conv.add(
        "assistant",
        SAMPLE_REPLY,
        model="Qwen3-14B-Q4_K_M.gguf",
        metrics={
            "ttft_s": 0.21,
            "decode_tokens_per_s": 48.3,
            "generated_tokens": 96,
            "reasoning_tokens": 41,
            "reasoning_s": 0.9,
            "memory_bytes": 11 * 2**30,
            "estimate_bytes": int(10.8 * 2**30),
            "estimate_verdict": "full_gpu",
        },
    )
    # A reasoning model's thinking: folded above the answer, with its tokens and time.
    reply.reasoning = (
        "24 GB of VRAM, 32k context. Qwen3-14B Q4_K_M is about 9 GB of weights; its KV cache "
        "at 32k is about 5 GB, so it fits with room for the compute buffers."
    )
    store.save(conv)
    old = Conversation()
    old.add("user", "Summarise this contract in five bullet points")
    old.updated -= 86400 * 2
    store.save(old)


ALL_VIEWS = ("discover", "library", "chat", "compare", "server", "doctor")
# (screen width, height in pixels, scale factor, views). At a scale the window is the screen
# in device-independent pixels: 1920x1080 at 150 % and 2560x1440 at 200 % are 1280x720 to
# the layouts; 1366x768 at 150 % is 910x512. 1366x768 at 200 % (683x384) is smaller than
# the window's minimum size, so it is not rendered.
FIT_SHOTS: tuple[tuple[int, int, float, tuple[str, ...]], ...] = (
    (1366, 768, 1.0, ALL_VIEWS),
    (1280, 720, 1.0, ALL_VIEWS),
    (1920, 1080, 1.0, ("discover", "chat", "compare")),
    (1920, 1080, 1.5, ("discover", "chat")),
    (2560, 1440, 2.0, ("chat", "compare")),
    (1366, 768, 1.5, ("discover", "chat")),
)


def _seed_comparison(ctx: Any) -> None:
    """A finished comparison in the Compare view, saved under the (long) data folder."""
    from launcher.compare_results import ComparisonResult, ModelEntry, RunResult

    a, b = "qwen3-14b:Q4_K_M", "gemma-3-12b:Q4_K_M"  # catalog ids: the preview plans them
    res = ComparisonResult(
        models=[ModelEntry(a, a, est_decode_tps=48.0), ModelEntry(b, b, est_decode_tps=52.0)],
        prompts=[{"id": "capital", "text": "What is the capital of Australia? One word."}],
        residency={"mode": "resident", "reason": "both fit: 9.0 + 7.3 GB of weights", "ctx": 8192},
        runs=[
            RunResult(
                a,
                "capital",
                "Canberra.",
                0.21,
                910.0,
                46.2,
                0.4,
                18,
                3,
                10 * 2**30,
                48.0,
                int(9.8 * 2**30),
                True,
            ),
            RunResult(
                b,
                "capital",
                "Canberra",
                0.18,
                980.0,
                51.0,
                0.3,
                18,
                2,
                8 * 2**30,
                52.0,
                int(8.1 * 2**30),
                True,
            ),
        ],
    )
    saved = res.save()
    ctx.window.view("compare").build().show_result(res, saved)


def fit_at(out: Path, scale: float, starter_shot: bool = True) -> list[Path]:
    """Render this process's share of ``FIT_SHOTS`` (those at ``scale``) into ``out``, and at
    scale 1 the Chat with the bundled starter loaded (``chat-starter-1366x768.png``)."""
    shots = [s for s in FIT_SHOTS if s[2] == scale]
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="spark-shots-") as home:
        os.environ["SPARK_LAUNCHER_HOME"] = home
        app = _app()
        from launcher.paths import AppPaths
        from ui.app import AppContext

        _seed_conversation(Path(home))
        ctx = AppContext(AppPaths.default())
        window = ctx.window
        window.resize(round(shots[0][0] / scale), round(shots[0][1] / scale))
        window.show()
        ctx.start()
        deadline = 200
        while (ctx.discover.model.rowCount() == 0 or ctx.gauge_snapshot() is None) and deadline:
            _wait(app, 50)
            deadline -= 1
        summaries = ctx.store.list()
        if summaries:
            ctx.session.open_conversation(summaries[0].id)
        _seed_comparison(ctx)
        for width, height, _scale, views in shots:
            window.resize(round(width / scale), round(height / scale))
            suffix = "" if scale == 1 else f"@{scale:g}x"
            for key in views:
                window.show_view(key)
                _wait(app, 150)
                path = out / f"{key}-{width}x{height}{suffix}.png"
                window.grab().save(str(path))
                written.append(path)
        if scale == 1 and starter_shot:
            written += _starter_shot(app, ctx, out)
        window.close()
    return written


def _starter_shot(app: QApplication, ctx: Any, out: Path) -> list[Path]:
    """The bundled starter loaded for real (no chat template): the note above the chat."""
    from ui.app import starter_available

    if not starter_available():
        return []
    ctx.window.resize(1366, 768)
    ctx.install_starter()
    deadline = 600
    while ctx.session.state != "ready" and deadline:
        _wait(app, 100)
        deadline -= 1
    if ctx.session.state != "ready":
        return []
    ctx.session.new_conversation()
    ctx.chat.input.setPlainText("Hello! Who are you?")
    _wait(app, 150)
    path = out / "chat-starter-1366x768.png"
    ctx.window.grab().save(str(path))
    ctx.session.unload_model()
    return [path]


def fit(out: Path) -> None:
    """All of ``FIT_SHOTS``: one process per scale factor."""
    out.mkdir(parents=True, exist_ok=True)
    for scale in sorted({s[2] for s in FIT_SHOTS}):
        env = dict(os.environ, QT_SCALE_FACTOR=f"{scale:g}")
        subprocess.run(
            [sys.executable, "-m", "ui.screenshots", "--fit-at", f"{scale:g}", str(out)],
            env=env,
            check=True,
        )


def _mcp_shot(app: QApplication, ctx: Any, out: Path) -> Path:
    """Doctor & settings on its MCP servers tab: two saved servers, the first one (the test
    suite's MCP server) started and its tools listed, as the Test button does."""
    from launcher.tools.config import McpStore, server_from_json

    root = Path(__file__).resolve().parent.parent
    store = McpStore(ctx.paths)
    calc = {"command": sys.executable, "args": ["-m", "tests.support.mcp_test_server"],
            "env": {"PYTHONPATH": str(root)}}  # fmt: skip
    search = {"url": "https://mcp.example.com/mcp",
              "headers": {"Authorization": "Bearer sk-example"}}  # fmt: skip
    store.save(server_from_json("calc", calc))
    store.save(server_from_json("search", search))
    box = ctx.doctor.mcp
    ctx.window.show_view("doctor")
    ctx.doctor.servers_tabs.setCurrentWidget(box)
    ctx.mcp_servers.test("calc")
    deadline = 600
    while "tool" not in box.status_label.text() and deadline:
        _wait(app, 50)
        deadline -= 1
    _wait(app, 300)
    box.table.selectRow(0)
    _wait(app, 150)
    path = out / "doctor-mcp.png"
    ctx.window.grab().save(str(path))
    ctx.doctor.servers_tabs.setCurrentIndex(0)
    return path


def _tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tools_conversation(ctx: Any, pending: bool) -> Any:
    """A chat whose model called ``add`` (allowed, result used); with ``pending``, a second
    question whose ``lookup`` call waits for approval."""
    from launcher.chats import ChatTools, Conversation

    title = "Calculator and dictionary tools" if pending else "What is 1234 plus 4321?"
    conv = Conversation(title=title)
    conv.tools = ChatTools(servers=["calc"], disabled=["calc/slow", "calc/fail"], max_rounds=3)
    conv.add("user", "What is 1234 plus 4321? Use the calculator.")
    conv.add("assistant", "", model="Qwen3-8B-Q4_K_M.gguf",
             tool_calls=[_tool_call("call_1", "add", '{"a": 1234, "b": 4321}')])  # fmt: skip
    conv.add("tool", "5555", tool_call_id="call_1", name="add", tool_status="ok",
             server="calc", metrics={"elapsed_s": 0.018})  # fmt: skip
    conv.add("assistant", "1234 plus 4321 is **5555**.", model="Qwen3-8B-Q4_K_M.gguf",
             metrics={"ttft_s": 0.34, "decode_tokens_per_s": 41.7, "generated_tokens": 58,
                      "rounds": 2, "tool_calls": 1, "tools_s": 0.018,
                      "memory_bytes": int(6.1 * 2**30)})  # fmt: skip
    if pending:
        conv.add("user", "And what does 'spark' mean?")
        conv.add("assistant", "", model="Qwen3-8B-Q4_K_M.gguf",
                 tool_calls=[_tool_call("call_2", "lookup", '{"key": "spark"}')])  # fmt: skip
    ctx.store.save(conv)
    ctx.chat.conversations.set_items(ctx.store.list())
    return conv


def _tools_shots(app: QApplication, ctx: Any, out: Path) -> list[Path]:
    """The chat with tools: the Tools panel listing the test MCP server's tools for real, a
    call folded and one waiting for approval (``chat-tools.png``); then a call unfolded
    (``chat-tools-open.png``)."""
    from launcher.tools.config import McpStore, server_from_json

    store = McpStore(ctx.paths)
    if not any(s.name == "calc" for s in store.all()):
        root = Path(__file__).resolve().parent.parent
        store.save(server_from_json("calc", {
            "command": sys.executable, "args": ["-m", "tests.support.mcp_test_server"],
            "env": {"PYTHONPATH": str(root)}}))  # fmt: skip
    chat = ctx.chat
    ctx.window.show_view("chat")
    conv = _tools_conversation(ctx, pending=True)
    ctx.session.open_conversation(conv.id)
    chat.tools_toggle.setChecked(True)
    deadline = 600
    while not any(e.listed for e in ctx.session.tool_catalog) and deadline:
        _wait(app, 50)
        deadline -= 1
    chat.transcript.set_call_state("call_2", "approval")
    chat.approval_bar.ask("lookup", '{"key": "spark"}', "calc")
    _wait(app, 200)
    folded = out / "chat-tools.png"
    ctx.window.grab().save(str(folded))
    chat.approval_bar.close_question()
    chat.tools_toggle.setChecked(False)
    conv = _tools_conversation(ctx, pending=False)
    ctx.session.open_conversation(conv.id)
    chat.transcript.toggle_call("call_1")
    _wait(app, 200)
    unfolded = out / "chat-tools-open.png"
    ctx.window.grab().save(str(unfolded))
    chat.transcript.toggle_call("call_1")
    return [folded, unfolded]


def _mcp_only(out: Path, tools: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="spark-shots-") as home:
        os.environ["SPARK_LAUNCHER_HOME"] = home
        app = _app()
        from launcher.paths import AppPaths
        from ui.app import AppContext

        ctx = AppContext(AppPaths.default())
        ctx.window.resize(1280, 800)
        ctx.window.show()
        ctx.start()
        if tools:
            for path in _tools_shots(app, ctx, out):
                print(path)
        else:
            print(_mcp_shot(app, ctx, out))
        ctx.window.close()


def compare_shots(out: Path) -> list[Path]:
    """``compare.png``: two models on an agent's recorded Local API requests (replayed, checks
    under each reply, differences marked, pass rates with 95% intervals, the recommendation, a
    judge next to the user's votes); ``compare-resume.png``: a HumanEval run stopped half-way,
    offered for resuming. Illustrative figures (the view is real; the results are seeded)."""
    from launcher.compare_results import ComparisonResult, JudgeVerdict, ModelEntry, RunResult
    from launcher.paths import AppPaths
    from ui.compare_view import CompareView

    out.mkdir(parents=True, exist_ok=True)
    app = _app()
    written = []
    with tempfile.TemporaryDirectory(prefix="spark-compare-shots-") as home:
        os.environ["SPARK_LAUNCHER_HOME"] = home
        paths = AppPaths.default()
        a, b = "qwen3-14b:Q4_K_M", "gemma-3-12b:Q4_K_M"
        weather = {"name": "get_weather", "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}}, "required": ["city"]}}  # fmt: skip
        prompts: list[dict[str, Any]] = []
        runs: list[RunResult] = []
        verdicts = []
        for i in range(1, 25):
            pid = f"api-{i}"
            kind = ("tool_call", "json", None)[i % 3]
            prompt: dict[str, Any] = {"id": pid, "text": f"Request {i} from the agent"}
            if kind == "tool_call":
                prompt.update(tools=[weather], checks=[{"type": "tool_call"}])
            elif kind == "json":
                prompt["checks"] = [{"type": "json"}]
            prompts.append(prompt)
            for label, tps, ok_every in ((a, 44.0, 9), (b, 61.0, 5)):
                passed = None if kind is None else (i % ok_every != 0)
                checks = [] if kind is None else [
                    {"kind": kind, "passed": passed,
                     "detail": None if passed else "no tool call" if kind == "tool_call"
                     else "not valid JSON: expected ',' at line 1"}]  # fmt: skip
                runs.append(RunResult(label, pid, "…", 0.2 + i / 100, 900.0 + 10 * i,
                                      tps + (i % 4), 2.5, 900, 120, int(9.6 * 2**30), tps,
                                      int(9.8 * 2**30), passed, "eos", checks=checks))  # fmt: skip
            winner = a if i == 1 else (a, b, None)[i % 3] if i % 4 else None
            verdicts.append(JudgeVerdict(pid, winner, "first", "second", winner is not None))
        prompts[0] = {
            "id": "api-1",
            "text": "Find me a table by the window at Mirabelle for four people, tonight at 8pm.",
            "tools": [{"name": "book_table", "parameters": {"type": "object"}}],
            "checks": [{"type": "tool_call", "name": "book_table"}],
        }
        runs[0] = RunResult(a, "api-1", "I'll book it now: Mirabelle, four people, 20:00 tonight, "
                            "a table by the window.", 0.24, 910.0, 46.2, 2.4, 930, 88,
                            int(9.7 * 2**30), 44.0, int(9.8 * 2**30), True, "tool_calls",
                            checks=[{"kind": "tool_call", "passed": True}],
                            tool_calls=[{"name": "book_table", "arguments":
                                         '{"restaurant": "Mirabelle", "people": 4, '
                                         '"time": "20:00", "seat": "window"}'}])  # fmt: skip
        runs[1] = RunResult(b, "api-1", "I can't book tables, but Mirabelle takes bookings by "
                            "phone. Call them for four people at 8pm and ask for the window.",
                            0.19, 980.0, 63.0, 1.6, 930, 71, int(8.2 * 2**30), 61.0,
                            int(8.1 * 2**30), False, "eos",
                            checks=[{"kind": "tool_call", "passed": False,
                                     "detail": "no tool call"}])  # fmt: skip
        res = ComparisonResult(
            models=[
                ModelEntry(a, a, est_decode_tps=44.0, loads=1, load_s=6.1),
                ModelEntry(b, b, est_decode_tps=61.0, loads=1, load_s=5.4),
            ],
            prompts=prompts,
            suite="api-log",
            residency={
                "mode": "resident",
                "ctx": 8192,
                "reason": "both fit: 8.4 + 7.3 GB of "
                "weights + 3.0 GB KV at 8k + 0.9 GB compute = 19.6 GB of 119 GB (10% "
                "kept free); they stay loaded together",
            },
            runs=runs,
            machine="DGX Spark",
            judge="qwen3-32b:Q4_K_M (judge)",
            judge_verdicts=verdicts,
            request={"models": [a, b], "suite": "api-log", "ctx": 8192},
        )
        for i in range(1, 13):
            res.vote(f"api-{i}", ("A", "B", "tie")[(i - 1 + (i % 5 == 0)) % 3])
        res.finished = "2026-12-04T18:00:00+00:00"
        saved = res.save(paths)
        # the agent's 24 recorded requests, and recording left on
        from launcher.server.recording import traffic_file
        from launcher.settings import load_settings, save_settings
        from ui.theme import apply_theme

        apply_theme(app, "light")
        line = json.dumps({"v": 1, "api": "/v1/chat/completions", "messages": [
            {"role": "user", "content": "Find me a table at Mirabelle."}]})  # fmt: skip
        paths.data_dir.mkdir(parents=True, exist_ok=True)
        traffic_file(paths).write_text((line + "\n") * 24)
        settings = load_settings(paths)
        settings.record_api_traffic = True
        save_settings(paths, settings)
        view = CompareView(paths=paths)
        view.resize(1280, 800)
        view.show()
        view.show_result(res, saved)
        view.max_tokens_spin.setValue(512)
        _wait(app, 300)
        path = out / "compare.png"
        view.grab().save(str(path))
        written.append(path)

        # A HumanEval run stopped at 46 of 80 answers (the app was closed), offered to resume.
        stopped = ComparisonResult(
            models=[ModelEntry(a, a), ModelEntry(b, b)],
            prompts=[
                {
                    "id": f"HumanEval/{i}",
                    "text": f"def task_{i}():",
                    "checks": [{"type": "code", "tests": "pass"}],
                }
                for i in range(40)
            ],
            suite="humaneval",
            residency=res.residency,
            runs=[
                r
                for i in range(23)
                for r in (
                    RunResult(
                        a,
                        f"HumanEval/{i}",
                        "    return sorted(set(numbers))",
                        0.3,
                        800.0,
                        45.0,
                        3.1,
                        140,
                        96,
                        checks=[{"kind": "code", "passed": i % 4 != 0}],
                        check_passed=i % 4 != 0,
                        stop_reason="eos",
                    ),
                    RunResult(
                        b,
                        f"HumanEval/{i}",
                        "    return sorted(numbers)",
                        0.2,
                        900.0,
                        62.0,
                        2.2,
                        140,
                        88,
                        checks=[
                            {
                                "kind": "code",
                                "passed": i % 3 != 0,
                                "detail": None if i % 3 else "exit code 1: AssertionError",
                            }
                        ],
                        check_passed=i % 3 != 0,
                        stop_reason="eos",
                    ),
                )
            ],
            request={"models": [a, b], "suite": "humaneval", "limit": 40, "ctx": 8192},
        )
        saved = stopped.save(paths)
        view.show_result(stopped, saved)
        view.prompt_picker.setCurrentIndex(3)
        _wait(app, 300)
        path = out / "compare-resume.png"
        view.grab().save(str(path))
        written.append(path)
        view.shutdown()
        view.close()
    return written


def main(argv: list[str]) -> int:
    if argv[:1] == ["--compare"]:
        for p in compare_shots(Path(argv[1] if len(argv) > 1 else "docs")):
            print(p)
        return 0
    if argv[:1] == ["--mcp"]:
        _mcp_only(Path(argv[1] if len(argv) > 1 else "docs"))
        return 0
    if argv[:1] == ["--tools"]:
        _mcp_only(Path(argv[1] if len(argv) > 1 else "docs"), tools=True)
        return 0
    if argv[:1] == ["--fit"]:
        fit(Path(argv[1] if len(argv) > 1 else "docs/fit"))
        return 0
    if argv[:1] == ["--fit-at"]:
        for p in fit_at(Path(argv[2]), float(argv[1])):
            print(p)
        return 0
    out = Path(argv[0] if argv else "docs")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="spark-shots-") as home:
        os.environ["SPARK_LAUNCHER_HOME"] = home
        app = _app()
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
            _wait(app, 50)
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
            _wait(app, 150)
            path = out / f"{key}.png"
            window.grab().save(str(path))
            written.append(path)
        written.append(_mcp_shot(app, ctx, out))
        written += _tools_shots(app, ctx, out)
        if summaries:  # the dark chat shows the sample conversation again
            ctx.session.open_conversation(summaries[0].id)
        # The same window in the dark theme, as a user with a dark desktop sees it.
        from ui.theme import apply_theme

        apply_theme(app, "dark")
        for key in ("discover", "chat"):
            window.show_view(key)
            _wait(app, 150)
            path = out / f"{key}-dark.png"
            window.grab().save(str(path))
            written.append(path)
        window.close()
        for p in written:
            print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
