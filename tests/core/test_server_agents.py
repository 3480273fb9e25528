"""What agent clients need from the local API, with the real SDKs against the real server on
the real Gemma 3 270M (loaded once for the module): Anthropic Messages through the ``anthropic``
SDK (plain, streamed, count_tokens, errors), OpenAI Responses through the ``openai`` SDK and
the OpenAI Agents SDK with its default model setup, and the probes clients make: CORS
preflights, routes without ``/v1``, chunked bodies, unknown fields, a prompt too long."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from launcher.engine import EngineClient, EngineParams
from launcher.server.httpd import LocalApiServer
from launcher.server.pool import ModelRegistry, SharedModel

KEY = "agents-key-456"
ALLOWED = "http://localhost:3000"
PARAMS = EngineParams(n_ctx=1024, n_threads=1)
HELLO = [{"role": "user", "content": "What is the capital of France?"}]


@dataclass
class Served:
    server: LocalApiServer
    model: SharedModel

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        key: str | None = KEY,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=120)
        sent = {"Content-Type": "application/json", **(headers or {})}
        if key:
            sent["Authorization"] = f"Bearer {key}"
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=sent)
        resp = conn.getresponse()
        out = (resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        conn.close()
        return out


@pytest.fixture(scope="module")
def served(gemma_path: Path) -> Iterator[Served]:
    registry = ModelRegistry()
    model = registry.share(EngineClient(), max_waiting=4)
    model.load(str(gemma_path), PARAMS)
    server = LocalApiServer(registry, port=0, api_key=KEY, cors_origins=[ALLOWED])
    server.start()
    try:
        yield Served(server, model)
    finally:
        server.stop()
        model.unload()


@pytest.fixture
def claude(served: Served) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(base_url=served.root, api_key=KEY, max_retries=0, timeout=120)
    yield client
    client.close()


@pytest.fixture
def oai(served: Served) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=served.server.url, api_key=KEY, max_retries=0, timeout=120)
    yield client
    client.close()


# ---------------------------------------------------------------------- Anthropic
def test_anthropic_sdk_plain_reply(served: Served, claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(
        model=served.model.name,
        max_tokens=12,
        system="Answer in one word.",
        messages=HELLO,  # type: ignore[arg-type]
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text  # type: ignore[union-attr]
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert 0 < msg.usage.output_tokens <= 12
    assert msg.usage.input_tokens + (msg.usage.cache_read_input_tokens or 0) > 5


def test_anthropic_sdk_streamed_reply_matches_its_final_message(
    served: Served, claude: anthropic.Anthropic
) -> None:
    with claude.messages.stream(
        model=served.model.name,
        max_tokens=24,
        messages=[{"role": "user", "content": "Count from 1 to 20."}],
        extra_body={"temperature": 0},  # older Anthropic clients send it; the SDK no more
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) >= 2, "the reply arrives in pieces"
    assert "".join(pieces) == final.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0


def test_anthropic_count_tokens_is_the_prompt_the_reply_used(
    served: Served, claude: anthropic.Anthropic
) -> None:
    counted = claude.messages.count_tokens(model=served.model.name, messages=HELLO)  # type: ignore[arg-type]
    msg = claude.messages.create(
        model=served.model.name,
        max_tokens=2,
        messages=HELLO,  # type: ignore[arg-type]
    )
    used = msg.usage.input_tokens + (msg.usage.cache_read_input_tokens or 0)
    assert counted.input_tokens == used


def test_anthropic_errors_are_in_anthropic_shape(
    served: Served, claude: anthropic.Anthropic
) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        claude.messages.create(model="claude-x", max_tokens=5, messages=HELLO)  # type: ignore[arg-type]
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert served.model.name in str(info.value)
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(
            model=served.model.name,
            max_tokens=5,
            messages=HELLO,  # type: ignore[arg-type]
            extra_body={"service_tier": "auto"},
        )
    assert "'service_tier'" in str(bad.value)
    wrong = anthropic.Anthropic(base_url=served.root, api_key="wrong", max_retries=0)
    try:
        with pytest.raises(anthropic.AuthenticationError):
            wrong.messages.create(model=served.model.name, max_tokens=5, messages=HELLO)  # type: ignore[arg-type]
    finally:
        wrong.close()


# ---------------------------------------------------------------------- OpenAI Responses
def test_openai_responses_plain(served: Served, oai: openai.OpenAI) -> None:
    resp = oai.responses.create(
        model=served.model.name,
        instructions="Answer in one word.",
        input="What is the capital of France?",
        max_output_tokens=12,
        temperature=0,
        store=False,
    )
    assert resp.status in ("completed", "incomplete")
    assert resp.output_text
    assert resp.usage is not None and 0 < resp.usage.output_tokens <= 12


def test_openai_responses_streamed_deltas_make_the_final_text(
    served: Served, oai: openai.OpenAI
) -> None:
    stream = oai.responses.create(
        model=served.model.name,
        input=[{"role": "user", "content": "Count from 1 to 20."}],
        max_output_tokens=24,
        temperature=0,
        stream=True,
    )
    deltas: list[str] = []
    kinds: list[str] = []
    final = None
    for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type in ("response.completed", "response.incomplete"):
            final = event.response
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert final is not None and "".join(deltas) == final.output_text
    assert len(deltas) >= 2


def test_openai_agents_sdk_default_setup_runs_an_agent(served: Served) -> None:
    """The Agents SDK's default model provider speaks the Responses API."""
    import agents

    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=served.server.url, api_key=KEY, max_retries=0)
        agents.set_default_openai_client(client, use_for_tracing=False)
        agents.set_default_openai_api("responses")
        agents.set_tracing_disabled(True)
        agent = agents.Agent(
            name="Greeter",
            instructions="Answer in one short sentence.",
            model=served.model.name,
            model_settings=agents.ModelSettings(max_tokens=16, temperature=0),
        )
        try:
            return await agents.Runner.run(agent, "Say hello.")
        finally:
            await client.close()

    # asyncio.run, not Runner.run_sync: it also ends the loop's executor threads.
    result = asyncio.run(run())
    assert isinstance(result.final_output, str) and result.final_output


# ---------------------------------------------------------------------- probes
def test_a_prompt_longer_than_the_context_is_context_length_exceeded(
    served: Served, oai: openai.OpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model=served.model.name,
            messages=[{"role": "user", "content": "word " * 3000}],
            max_tokens=4,
        )
    assert info.value.code == "context_length_exceeded"
    assert "1024" in info.value.message and "maximum context length" in info.value.message


def test_an_unknown_field_is_a_400_naming_it(served: Served, oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model=served.model.name,
            messages=HELLO,  # type: ignore[arg-type]
            max_tokens=4,
            extra_body={"web_search_options": {}},
        )
    assert info.value.param == "web_search_options"


def test_cors_preflight_answers_allowed_origins_only(served: Served) -> None:
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    status, headers, _ = served.raw(
        "OPTIONS", "/v1/chat/completions", headers={"Origin": ALLOWED, **ask}, key=None
    )
    assert status == 200
    assert headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in headers["access-control-allow-methods"]
    status, headers, _ = served.raw(
        "OPTIONS", "/v1/chat/completions", headers={"Origin": "http://evil.test", **ask}, key=None
    )
    assert status == 400 and "access-control-allow-origin" not in headers
    status, headers, _ = served.raw("GET", "/v1/models", headers={"Origin": ALLOWED})
    assert status == 200 and headers["access-control-allow-origin"] == ALLOWED
    status, headers, _ = served.raw("GET", "/v1/models", headers={"Origin": "http://evil.test"})
    assert "access-control-allow-origin" not in headers


def test_routes_answer_without_the_v1_prefix_and_errors_are_json(served: Served) -> None:
    status, _, body = served.raw("GET", "/models")
    assert status == 200
    entry = json.loads(body)["data"][0]
    assert entry["id"] == served.model.name and entry["context_length"] == 1024
    assert entry["capabilities"]["tools"] is False  # Gemma 270M has no chat template
    status, _, body = served.raw(
        "POST", "/chat/completions", {"messages": HELLO, "max_tokens": 3, "temperature": 0}
    )
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] is not None
    status, _, body = served.raw("GET", "/props")
    assert status == 200 and json.loads(body)["default_generation_settings"]["n_ctx"] == 1024
    status, _, body = served.raw("GET", "/v1/nothing")
    assert status == 404 and "/v1/nothing" in json.loads(body)["error"]["message"]
    status, _, body = served.raw("GET", "/v1/chat/completions")
    assert status == 405 and "POST" in json.loads(body)["error"]["message"]


def test_a_chunked_request_body_is_read(served: Served) -> None:
    body = json.dumps({"prompt": "1, 2, 3,", "max_tokens": 3, "temperature": 0}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", served.server.port, timeout=60)
    conn.request(
        "POST",
        "/v1/completions",
        body=iter([body[:10], body[10:]]),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        encode_chunked=True,
    )
    resp = conn.getresponse()
    reply = json.loads(resp.read())
    conn.close()
    assert resp.status == 200, reply
    assert reply["usage"]["completion_tokens"] == 3


def test_embeddings_through_the_openai_sdk(served: Served, oai: openai.OpenAI) -> None:
    """The SDK asks for base64 by default and decodes it; float lists on request."""
    texts = ["Paris is the capital of France.", "The cat sat on the mat."]
    result = oai.embeddings.create(model=served.model.name, input=texts)
    assert [d.index for d in result.data] == [0, 1]
    first = result.data[0].embedding
    assert len(first) > 100 and abs(sum(x * x for x in first) - 1.0) < 1e-3  # L2-normalised
    assert result.usage.prompt_tokens > 5
    floats = oai.embeddings.create(model=served.model.name, input=texts[0], encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(first, abs=1e-6)
    status, _, body = served.raw("POST", "/embeddings", {"input": "x", "dimensions": 8})
    assert status == 400 and json.loads(body)["error"]["param"] == "dimensions"


def _wait_record(served: Served, after: int, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [r for r in served.server.log.records() if r.id > after and not r.running]
        if done:
            return done[-1]
        time.sleep(0.05)
    pytest.fail(f"no finished request in the log: {served.server.log.records()[-3:]}")


def test_a_client_leaving_a_whole_reply_stops_the_generation(served: Served) -> None:
    before = max((r.id for r in served.server.log.records()), default=0)
    sock = socket.create_connection(("127.0.0.1", served.server.port))
    body = json.dumps({"prompt": "1, 2, 3, 4,", "max_tokens": 1000, "temperature": 0})
    sock.sendall(
        (
            f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()
    )
    time.sleep(1.0)  # generating, no byte sent yet (not streamed)
    sock.close()
    record = _wait_record(served, before)
    assert (record.status, record.finish_reason) == (499, "cancelled")
    assert record.completion_tokens < 1000


def test_stopping_the_server_mid_stream_ends_the_stream_with_an_error(served: Served) -> None:
    """A second server on the same model stops while streaming; the model stays served."""
    second = LocalApiServer(served.server.registry, port=0)
    second.start()
    conn = http.client.HTTPConnection("127.0.0.1", second.port, timeout=60)
    body = {"prompt": "1, 2, 3, 4,", "max_tokens": 1000, "temperature": 0, "stream": True}
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.readline().startswith(b"data: ")
    stopper = threading.Thread(target=second.stop)
    t0 = time.monotonic()
    stopper.start()
    events = [e for e in resp.read().decode().split("\n\n") if e]
    stopper.join(30)
    conn.close()
    assert not stopper.is_alive() and time.monotonic() - t0 < 15
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][len("data: ") :])["error"]["code"] == "server_stopping"
    status, _, _ = served.raw("POST", "/v1/completions", {"prompt": "1,", "max_tokens": 2})
    assert status == 200
