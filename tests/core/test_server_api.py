"""The local API server with the real ``openai`` client, real HTTP on 127.0.0.1 and the real
Gemma 3 270M (loaded once for the module): model list, chat and completions (streaming and
not), raw SSE, errors (401, 400, 404), a client that leaves mid-stream, 20 clients at once,
and the rule that only loopback may be served without a key."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from launcher.cli import main as cli_main
from launcher.engine import EngineClient, EngineParams, Sampling
from launcher.errors import ServerError
from launcher.server.httpd import LocalApiServer
from launcher.server.pool import ModelRegistry, SharedModel

KEY = "test-key-123"
MAX_WAITING = 4
# One thread: the test machine's few cores are shared (see test_engine_client.py).
PARAMS = EngineParams(n_ctx=1024, n_threads=1)
HELLO = [{"role": "user", "content": "What is the capital of France?"}]
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"  # Gemma 270M continues this until max_tokens


@dataclass
class Served:
    server: LocalApiServer
    model: SharedModel
    client: openai.OpenAI

    def raw(self, method: str, path: str, body: Any = None, key: str | None = KEY) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers)
        return conn, conn.getresponse()

    def wait_record(self, predicate: Any, timeout: float = 60.0) -> Any:
        """The newest log record matching ``predicate`` (polled like the app's view)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for rec in reversed(self.server.log.records()):
                if predicate(rec):
                    return rec
            time.sleep(0.05)
        pytest.fail(f"no matching request in the log: {self.server.log.records()[-3:]}")


@pytest.fixture(scope="module")
def served(gemma_path: Path) -> Iterator[Served]:
    registry = ModelRegistry()
    model = registry.share(EngineClient(), max_waiting=MAX_WAITING)
    model.load(str(gemma_path), PARAMS)
    server = LocalApiServer(registry, port=0, api_key=KEY)
    server.start()
    client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=120)
    try:
        yield Served(server, model, client)
    finally:
        client.close()
        server.stop()
        model.unload()


def test_model_list_names_the_loaded_model(served: Served) -> None:
    ids = [m.id for m in served.client.models.list()]
    assert ids == ["gemma-3-270m-q4_k_m"]
    conn, resp = served.raw("GET", "/v1/models/gemma-3-270m-q4_k_m")
    entry = json.loads(resp.read())
    conn.close()
    assert entry["meta"]["n_ctx"] == 1024  # clients can size their prompts
    assert entry["meta"]["n_params"] > 200_000_000


def test_chat_answers_with_usage_counts(served: Served) -> None:
    reply = served.client.chat.completions.create(
        model=served.model.name, messages=HELLO, max_tokens=12, temperature=0
    )
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 5
    assert 0 < reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streamed_chat_arrives_in_pieces_and_ends_with_usage(served: Served) -> None:
    stream = served.client.chat.completions.create(
        model=served.model.name,
        messages=[{"role": "user", "content": "Count from 1 to 20."}],
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    finish = None
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    # Streamed: the first text at once, the rest as it is generated (batched by the engine
    # to at most 20 pieces a second), not one blob at the end.
    assert len(pieces) >= 2, "the reply arrives in pieces"
    assert finish in ("stop", "length")
    assert usage is not None and usage.completion_tokens >= len(pieces) - 1


def test_completions_endpoint_continues_a_prompt(served: Served) -> None:
    reply = served.client.completions.create(
        model=served.model.name, prompt=COUNTING, max_tokens=8, temperature=0
    )
    assert reply.choices[0].text.strip().startswith("9")
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 8


def test_raw_sse_is_data_lines_ending_with_done(served: Served) -> None:
    conn, resp = served.raw(
        "POST",
        "/v1/completions",
        {"prompt": COUNTING, "max_tokens": 5, "stream": True, "temperature": 0},
    )
    try:
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "text/event-stream"
        events = [e for e in resp.read().decode().split("\n\n") if e]
    finally:
        conn.close()
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[len("data: ") :]) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks).strip().startswith("9")
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_wrong_api_key_is_refused_with_401(served: Served) -> None:
    bad = openai.OpenAI(base_url=served.server.url, api_key="wrong", max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError) as info:
            bad.models.list()
    finally:
        bad.close()
    assert info.value.status_code == 401
    conn, resp = served.raw("POST", "/v1/chat/completions", {"messages": HELLO}, key=None)
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 401 and body["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not valid JSON"),
        ({"model": "gemma-3-270m-q4_k_m"}, 400, "'messages'"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "role"),
        ({"messages": HELLO, "max_tokens": "many"}, 400, "'max_tokens'"),
        ({"messages": HELLO, "model": "gpt-9"}, 404, "gemma-3-270m-q4_k_m"),
    ],
)
def test_bad_requests_get_a_json_error_saying_what_is_wrong(
    served: Served, body: Any, status: int, says: str
) -> None:
    conn, resp = served.raw("POST", "/v1/chat/completions", body)
    payload = json.loads(resp.read())
    conn.close()
    assert resp.status == status
    assert says in payload["error"]["message"]
    assert payload["error"]["type"]


def test_client_leaving_mid_stream_stops_generation_and_host_stays(served: Served) -> None:
    pid = served.model.pid
    before = max((r.id for r in served.server.log.records()), default=0)
    conn, resp = served.raw(
        "POST",
        "/v1/completions",
        {"prompt": COUNTING, "max_tokens": 1500, "stream": True, "temperature": 0},
    )
    assert resp.status == 200
    for _ in range(4):  # a few chunks arrive, then the client goes away
        assert resp.readline().startswith(b"data: ")
        resp.readline()
    resp.close()
    conn.close()

    record = served.wait_record(lambda r: r.id > before and not r.running)
    assert record.finish_reason == "cancelled"
    assert record.completion_tokens < 1500
    assert record.status == 499

    # The same host answers the next request at once.
    reply = served.client.chat.completions.create(
        model=served.model.name, messages=HELLO, max_tokens=4
    )
    assert reply.choices[0].message.content is not None
    assert served.model.pid == pid


def test_twenty_clients_at_once_get_answers_or_clean_503s(served: Served) -> None:
    results: list[Any] = [None] * 20
    start = threading.Barrier(20)

    def ask(i: int) -> None:
        start.wait()
        try:
            r = served.client.chat.completions.create(
                model=served.model.name,
                messages=[{"role": "user", "content": f"Say the number {i}."}],
                max_tokens=3,
                temperature=0,
            )
            results[i] = r
        except openai.APIStatusError as exc:
            results[i] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    answered = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, openai.APIStatusError)]
    assert len(answered) + len(refused) == 20, results
    # One generating and MAX_WAITING queued are always served; more may be as turns free up.
    assert len(answered) >= 1 + MAX_WAITING
    assert all(r.choices[0].message.content is not None for r in answered)
    for exc in refused:
        assert exc.status_code == 503
        assert int(exc.response.headers["Retry-After"]) >= 1
        assert exc.body is not None and exc.body["code"] == "model_busy"
    # And the host is fine afterwards.
    again = served.client.chat.completions.create(
        model=served.model.name, messages=HELLO, max_tokens=3
    )
    assert again.choices[0].message.content is not None


def test_app_chat_and_api_share_one_host(served: Served) -> None:
    """The app's chat (source "app") takes its turn on the same host while the API streams."""
    stream = served.client.completions.create(
        model=served.model.name, prompt=COUNTING, max_tokens=40, temperature=0, stream=True
    )
    first = next(iter(stream))  # the API holds the turn now
    app_reply = list(
        served.model.chat(HELLO, Sampling(max_tokens=8, temperature=0))
    )  # waits for its turn, then answers
    api_text = first.choices[0].text + "".join(c.choices[0].text for c in stream)
    assert api_text.strip().startswith("9")
    assert type(app_reply[-1]).__name__ == "ReplyFinished"
    assert served.model.pid == served.model.client.pid


def test_non_loopback_address_needs_an_api_key(
    served: Served, gemma_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ServerError, match="API key"):
        LocalApiServer(ModelRegistry(), host="0.0.0.0", port=0)
    LocalApiServer(ModelRegistry(), host="0.0.0.0", port=0, api_key="k")  # allowed, not started
    # The CLI refuses before loading anything.
    assert cli_main(["serve", str(gemma_path), "--host", "0.0.0.0", "--port", "0"]) == 1
    assert "--api-key" in capsys.readouterr().err


@pytest.mark.allow_leftovers  # the reloaded host is the module fixture's to unload
def test_a_killed_host_is_an_error_event_and_the_model_leaves_the_list(
    served: Served, gemma_path: Path
) -> None:
    """Last in the module: SIGKILL the host mid-stream, then load the model again."""
    conn, resp = served.raw(
        "POST",
        "/v1/completions",
        {"prompt": COUNTING, "max_tokens": 1500, "stream": True, "temperature": 0},
    )
    assert resp.readline().startswith(b"data: ")
    os.kill(served.model.pid or 0, signal.SIGKILL)
    events = [e for e in resp.read().decode().split("\n\n") if e]
    conn.close()
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2][len("data: ") :])["error"]
    assert error["code"] == "model_crashed"
    assert "stopped unexpectedly" in error["message"]
    assert [m.id for m in served.client.models.list()] == []
    with pytest.raises(openai.APIStatusError) as info:
        served.client.chat.completions.create(model="gemma-3-270m-q4_k_m", messages=HELLO)
    assert info.value.status_code == 503

    served.model.load(str(gemma_path), PARAMS)
    assert [m.id for m in served.client.models.list()] == ["gemma-3-270m-q4_k_m"]


@pytest.mark.allow_leftovers  # the reloaded host is the module fixture's to unload
def test_unloading_the_model_mid_reply_answers_503(served: Served, gemma_path: Path) -> None:
    """The user unloads the model in the app while an API request waits for its answer."""
    result: list[Any] = []

    def ask() -> None:
        result.append(
            served.raw("POST", "/v1/completions", {"prompt": COUNTING, "max_tokens": 1500})
        )

    asker = threading.Thread(target=ask)
    asker.start()
    served.wait_record(lambda r: r.running and r.model, timeout=30)
    queue = served.model.queue
    deadline = time.monotonic() + 30
    while queue.holder is None and time.monotonic() < deadline:
        time.sleep(0.02)
    served.model.unload()
    asker.join()
    conn, resp = result[0]
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 503
    assert "unloaded" in body["error"]["message"]

    served.model.load(str(gemma_path), PARAMS)
    assert [m.id for m in served.client.models.list()] == ["gemma-3-270m-q4_k_m"]
