"""The local API's HTTP layer with a scripted engine (no model): a bug in the middle of a reply
costs that request only (a 500 JSON error, or an error event in a stream) and the server keeps
answering; the worker thread of every reply ends."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from launcher.engine.events import ReplyFinished, ReplyMetrics, Token
from launcher.server.httpd import LocalApiServer
from launcher.server.pool import ModelRegistry, SharedModel

METRICS = ReplyMetrics(0.0, 3, 0.0, 0.0, 2, 0.0, 0.0, "eos", "raw prompt")


class ScriptedClient:
    """An ``EngineClient`` stand-in: each reply is "Hi there", or fails after "Hi"."""

    is_loaded = True
    pid = None

    class loaded:
        path = "scripted.gguf"
        n_ctx = 512
        chat_template = None

    def __init__(self) -> None:
        self.fail = False

    def complete(self, prompt: str, sampling: Any) -> Iterator[Any]:
        yield Token("Hi")
        if self.fail:
            raise RuntimeError("boom")
        yield Token(" there")
        yield ReplyFinished("Hi there", METRICS)

    def chat(self, messages: Any, sampling: Any) -> Iterator[Any]:
        return self.complete("", sampling)

    def cancel(self) -> None:
        pass


@pytest.fixture
def served() -> Iterator[tuple[LocalApiServer, ScriptedClient]]:
    registry = ModelRegistry()
    client = ScriptedClient()
    SharedModel(client, registry)
    server = LocalApiServer(registry, port=0)
    server.start()
    try:
        yield server, client
    finally:
        server.stop()


def _post(server: LocalApiServer, body: dict[str, Any]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    out = (resp.status, resp.read())
    conn.close()
    return out


def test_a_failing_reply_is_a_500_and_the_server_answers_on(
    served: tuple[LocalApiServer, ScriptedClient],
) -> None:
    server, client = served
    client.fail = True
    status, body = _post(server, {"prompt": "x"})
    assert status == 500
    assert "boom" in json.loads(body)["error"]["message"]
    status, body = _post(server, {"prompt": "x", "stream": True})
    assert status == 200  # the stream had started: the error is its last event
    events = [e for e in body.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert "boom" in json.loads(events[-2][len("data: ") :])["error"]["message"]
    client.fail = False
    status, body = _post(server, {"prompt": "x"})
    assert status == 200 and json.loads(body)["choices"][0]["text"] == "Hi there"
    assert server.log.records()[0].status == 500
