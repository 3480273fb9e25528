"""The Local API view: the switch starts and stops a real server on 127.0.0.1, an unsafe
address without a key is refused, requests show in the log; and in the whole app, the chat
and the API are answered by the same real model host."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import openai
import pytest
from PySide6.QtCore import Qt

from launcher.engine.events import ReplyFinished, ReplyMetrics, Token
from launcher.hardware import probe
from launcher.paths import AppPaths
from launcher.server.config import ApiConfig, config_file, load_api_config
from launcher.server.pool import ModelRegistry
from ui.app import AppContext
from ui.views.server_view import ServerView


class ScriptedClient:
    """A loaded engine that always answers "Hello world" with the engine's real events."""

    is_loaded = True
    pid = None

    def __init__(self) -> None:
        self.loaded = SimpleNamespace(path="/models/tiny-chat-Q4_K_M.gguf")

    def chat(self, messages: Any, sampling: Any = None) -> Iterator[Any]:
        yield Token("Hello")
        yield Token(" world")
        yield ReplyFinished(
            text="Hello world",
            metrics=ReplyMetrics(
                ttft_s=0.01,
                prompt_tokens=7,
                prefill_s=0.01,
                prefill_tokens_per_s=700.0,
                generated_tokens=2,
                decode_s=0.01,
                decode_tokens_per_s=100.0,
                stop_reason="eos",
                template="gguf chat template",
            ),
        )

    def complete(self, prompt: str, sampling: Any = None) -> Iterator[Any]:
        return self.chat([])

    def cancel(self) -> None:
        pass

    def unload(self) -> None:
        self.is_loaded = False

    def memory(self) -> tuple[int, None]:
        return 0, None


@pytest.fixture
def view(qtbot) -> Iterator[ServerView]:
    registry = ModelRegistry()
    registry.share(ScriptedClient())
    v = ServerView(registry)
    qtbot.addWidget(v)
    v.port_field.setValue(0)  # any free port
    v.show()
    yield v
    v.shutdown()


def _post(port: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body))
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_switch_serves_and_the_log_shows_requests(qtbot, qtmodeltester, view: ServerView) -> None:
    assert not view.switch.isChecked() and not view.controller.running  # off by default
    assert "tiny-chat-Q4_K_M" in view.models_label.text()

    qtbot.mouseClick(view.switch, Qt.MouseButton.LeftButton)
    assert view.controller.running
    port = view.controller.server.port
    assert f"http://127.0.0.1:{port}/v1" in view.status_label.text()
    assert not view.port_field.isEnabled()  # the address is fixed while serving

    status, body = _post(port, {"messages": [{"role": "user", "content": "Hi there"}]})
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "Hello world"
    status, _ = _post(port, {"messages": "nope"})
    assert status == 400

    model = view.log_model
    qtbot.waitUntil(lambda: model.rowCount() == 2 and not model.record(0).running, timeout=5000)
    qtmodeltester.check(model)
    # Newest first: the refused request, then the answered one.
    assert model.index(0, 6).data().startswith("400")
    assert model.index(1, 2).data() == "tiny-chat-Q4_K_M"
    assert model.index(1, 3).data() == "Hi there"
    assert model.index(1, 4).data() == "Hello world"
    assert model.index(1, 5).data() == "7 → 2"
    assert model.index(1, 6).data().startswith("200 · eos")

    qtbot.mouseClick(view.switch, Qt.MouseButton.LeftButton)
    assert not view.controller.running
    assert "off" in view.status_label.text()
    with pytest.raises(OSError):
        _post(port, {"messages": [{"role": "user", "content": "Hi"}]})
    qtbot.mouseClick(view.clear_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: model.rowCount() == 0, timeout=2000)


def test_other_addresses_need_an_api_key(qtbot, view: ServerView) -> None:
    view.host_field.setText("0.0.0.0")
    qtbot.mouseClick(view.switch, Qt.MouseButton.LeftButton)
    assert not view.switch.isChecked() and not view.controller.running
    assert "API key" in view.status_label.text()

    view.key_field.setText("s3cret")
    qtbot.mouseClick(view.switch, Qt.MouseButton.LeftButton)
    assert view.controller.running
    port = view.controller.server.port
    status, body = _post(port, {"messages": [{"role": "user", "content": "Hi"}]})
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    qtbot.mouseClick(view.switch, Qt.MouseButton.LeftButton)
    assert not view.controller.running


@pytest.mark.slow
def test_app_chat_and_api_use_the_same_model_host(qtbot, app_home, gemma_path) -> None:
    ctx = AppContext(AppPaths.default(), profile=probe(), live_gauge=False)
    qtbot.addWidget(ctx.window)
    ctx.window.show()
    try:
        with qtbot.waitSignal(ctx.session.model_loaded, timeout=120000) as loaded:
            ctx.open_chat(str(gemma_path))
        pid = loaded.args[1].pid
        ctx.window.show_view("server")
        view = ctx.server_view
        qtbot.waitUntil(lambda: "gemma-3-270m-q4_k_m" in view.models_label.text(), timeout=5000)
        view.port_field.setValue(0)
        qtbot.mouseClick(view.switch, Qt.MouseButton.LeftButton)
        assert view.controller.running

        client = openai.OpenAI(base_url=view.controller.url, api_key="none", max_retries=0)
        try:
            reply = client.chat.completions.create(
                model="gemma-3-270m-q4_k_m",
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                max_tokens=8,
            )
        finally:
            client.close()
        assert reply.choices[0].message.content is not None
        assert ctx.session.host is not None and ctx.session.host.engine.pid == pid

        # The app's own chat still works on that host after the API's turn.
        ctx.window.show_view("chat")
        qtbot.keyClicks(ctx.chat.input, "Hello!")
        with qtbot.waitSignal(ctx.session.reply_ended, timeout=120000):
            qtbot.keyClick(ctx.chat.input, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: view.log_model.rowCount() >= 1, timeout=5000)
        assert view.log_model.index(0, 2).data() == "gemma-3-270m-q4_k_m"
    finally:
        ctx.window.close()
    assert not ctx.server_view.controller.running


def _get_models(port: int, key: str | None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {key}"} if key else {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_the_app_remembers_the_api_and_serves_again_at_launch(qtbot, app_home) -> None:
    paths = AppPaths.default()
    with socket.socket() as s:  # a port that is free now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def launch() -> AppContext:
        ctx = AppContext(paths, profile=probe(), live_gauge=False)
        qtbot.addWidget(ctx.window)
        ctx.window.show()
        ctx.start()
        ctx.window.show_view("server")
        return ctx

    first = launch()
    view = first.server_view
    assert (view.port_field.value(), view.key_field.text()) == (8080, "")  # first run: defaults
    assert not view.controller.running
    view.port_field.setValue(port)
    view.key_field.setText("s3cret")
    qtbot.mouseClick(view.switch, Qt.MouseButton.LeftButton)
    assert view.controller.running
    first.window.close()  # quit while serving
    assert not view.controller.running
    # The key is in that file: only this user may read it.
    assert config_file(paths).stat().st_mode & 0o077 == 0

    second = launch()  # the next launch serves again, same address, port and key
    again = second.server_view
    assert (again.port_field.value(), again.key_field.text()) == (port, "s3cret")
    qtbot.waitUntil(lambda: again.controller.running, timeout=5000)
    assert again.switch.isChecked() and not again.port_field.isEnabled()
    assert _get_models(port, "s3cret") == 200 and _get_models(port, None) == 401
    qtbot.mouseClick(again.switch, Qt.MouseButton.LeftButton)  # the user turns it off
    second.window.close()

    third = launch()  # off is remembered too; the fields stay filled in
    assert (third.server_view.port_field.value(), third.server_view.key_field.text()) == (
        port,
        "s3cret",
    )
    assert not third.server_view.switch.isChecked() and not third.server_view.controller.running
    third.window.close()


def test_a_corrupt_api_config_gives_the_defaults(app_home) -> None:
    paths = AppPaths.default().ensure()
    config_file(paths).write_text('{"host": 7, "port": "80", "api_key": "", "serve_on_launch": 1')
    assert load_api_config(paths) == ApiConfig()
    config_file(paths).write_text('{"host": "0.0.0.0", "port": 99999, "serve_on_launch": "yes"}')
    assert load_api_config(paths) == ApiConfig(host="0.0.0.0")
