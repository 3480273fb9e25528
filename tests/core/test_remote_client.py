"""Remote engines against a scripted OpenAI-compatible server on 127.0.0.1: the saved remotes,
the ``remote`` command, and ``RemoteEngineClient``'s streaming, cancel and failures.

Real models behind real servers are in ``test_remote_llama_server.py`` (llama.cpp's own
``llama-server``) and ``test_remote_serve.py`` (our ``spark-launcher serve``).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.cli import main
from launcher.engine import ReplyFinished, Sampling, Token
from launcher.engine.remote import RemoteEngineClient
from launcher.errors import (
    ModelBusyError,
    ModelLoadError,
    RemoteAuthError,
    RemoteConfigError,
    RemoteEngineError,
)
from launcher.paths import AppPaths
from launcher.remotes import RemoteStore, normalize_url, parse_spec
from tests.support.remote_fake_server import FakeOpenAIServer, Script, fake_openai_server

KEY = "sk-test-very-secret-123"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    yield from fake_openai_server(api_key=KEY)


@pytest.fixture
def store(app_home: Path, server: FakeOpenAIServer) -> RemoteStore:
    s = RemoteStore(AppPaths.default())
    s.add("box", server.url, KEY)
    return s


def _events(client: RemoteEngineClient, n: int = 8) -> list[object]:
    return list(client.chat([{"role": "user", "content": "hi"}], Sampling(max_tokens=n)))


@pytest.mark.parametrize(
    ("given", "saved"),
    [
        ("192.168.1.20:8080", "http://192.168.1.20:8080/v1"),
        ("http://spark.local:8080/", "http://spark.local:8080/v1"),
        ("https://host/v1/", "https://host/v1"),
        ("http://host:1234/api/v1", "http://host:1234/api/v1"),
    ],
)
def test_a_pasted_address_becomes_the_api_root(given: str, saved: str) -> None:
    assert normalize_url(given) == saved


@pytest.mark.parametrize("bad", ["", "ftp://host", "http://user:pw@host:80"])
def test_unusable_urls_are_refused_with_an_example(bad: str) -> None:
    with pytest.raises(RemoteConfigError, match=r"http|--api-key"):
        normalize_url(bad)


def test_model_names_may_contain_slashes() -> None:
    assert parse_spec("remote:spark/Qwen/Qwen3-32B") == ("spark", "Qwen/Qwen3-32B")
    with pytest.raises(RemoteConfigError, match="remote:NAME/MODEL"):
        parse_spec("remote:spark")


def test_remotes_are_saved_privately_and_the_key_never_shows(
    app_home: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["remote", "add", "box", server.url, "--api-key", KEY, "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["models"] == ["tiny-model"] and added["api_key"] is True
    assert KEY not in json.dumps(added)
    f = RemoteStore().file
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert main(["remote", "list", "--json"]) == 0
    listed = capsys.readouterr().out
    assert json.loads(listed) == [{"name": "box", "url": f"{server.url}/v1", "api_key": True}]
    assert KEY not in listed and KEY not in repr(RemoteStore().get("box"))
    assert main(["remote", "models", "box"]) == 0
    assert capsys.readouterr().out.split() == ["remote:box/tiny-model"]
    assert main(["remote", "remove", "box"]) == 0
    capsys.readouterr()
    assert RemoteStore().all() == []


def test_a_wrong_key_is_refused_when_adding_and_nothing_is_saved(
    app_home: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["remote", "add", "box", server.url, "--api-key", "wrong-key"]) == 1
    err = capsys.readouterr().err
    assert "refused the API key" in err and "--api-key" in err and "wrong-key" not in err
    assert RemoteStore().all() == []


def test_chat_streams_tokens_and_metrics_measured_here(store: RemoteStore) -> None:
    with RemoteEngineClient(paths=store.paths) as client:
        loaded = client.load("remote:box/tiny-model")
        assert loaded.path == "remote:box/tiny-model" and client.pid is None
        events = _events(client, n=6)
    tokens = [e.text for e in events if isinstance(e, Token)]
    assert tokens == [f"w{i} " for i in range(6)]
    done = events[-1]
    assert isinstance(done, ReplyFinished)
    m = done.metrics
    assert done.text == "".join(tokens)
    assert m.generated_tokens == 6 and m.prompt_tokens == 5 and m.stop_reason == "length"
    assert m.remote is not None and "box" in m.remote
    assert m.ttft_s > 0 and m.decode_tokens_per_s > 0


def test_the_request_carries_the_key_and_the_sampling(
    store: RemoteStore, server: FakeOpenAIServer
) -> None:
    with RemoteEngineClient(paths=store.paths) as client:
        client.load("remote:box/tiny-model")
        sampling = Sampling(max_tokens=3, temperature=0.0, seed=7, stop=("\n\n",))
        list(client.chat([{"role": "user", "content": "hi"}], sampling))
    sent = server.requests[-1]
    assert sent["model"] == "tiny-model" and sent["stream"] is True
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    assert (sent["max_tokens"], sent["temperature"], sent["seed"], sent["stop"]) == (
        3,
        0.0,
        7,
        ["\n\n"],
    )
    assert server.auth_headers[-1] == f"Bearer {KEY}"


def test_raw_completion_streams_too(store: RemoteStore) -> None:
    with RemoteEngineClient(paths=store.paths) as client:
        client.load("remote:box/tiny-model")
        events = list(client.complete("Once upon", Sampling(max_tokens=2)))
    assert [e.text for e in events if isinstance(e, Token)] == ["w0 ", "w1 "]
    assert isinstance(events[-1], ReplyFinished)


def test_a_server_without_usage_counts_are_taken_from_the_stream(
    store: RemoteStore, server: FakeOpenAIServer
) -> None:
    server.script = Script(words=4, usage=False)
    with RemoteEngineClient(paths=store.paths) as client:
        client.load("remote:box/tiny-model")
        done = _events(client)[-1]
    assert isinstance(done, ReplyFinished) and done.metrics.generated_tokens == 4


def test_tokens_the_server_held_back_count_until_its_finish_chunk(
    store: RemoteStore, server: FakeOpenAIServer
) -> None:
    # A stop string partly matched: 3 tokens generated but never sent before "finish".
    server.script = Script(words=4, held_back=3, held_back_s=0.05)
    with RemoteEngineClient(paths=store.paths) as client:
        client.load("remote:box/tiny-model")
        done = _events(client)[-1]
    assert isinstance(done, ReplyFinished) and done.text == "w0 w1 w2 w3 "
    assert done.metrics.generated_tokens == 7  # usage counts what was generated, not sent
    assert done.metrics.decode_s > 0  # up to the finish chunk (ARCHITECTURE, Remote engines)


def test_a_server_that_rejects_stream_options_is_asked_again_without(
    store: RemoteStore, server: FakeOpenAIServer
) -> None:
    server.script = Script(words=3, reject_stream_options=True)
    with RemoteEngineClient(paths=store.paths) as client:
        client.load("remote:box/tiny-model")
        done = _events(client)[-1]
    assert isinstance(done, ReplyFinished) and done.text == "w0 w1 w2 "
    assert done.metrics.generated_tokens == 3  # counted from the chunks
    assert [("stream_options" in r) for r in server.requests] == [True, False]


def test_an_unknown_model_says_what_the_server_has(store: RemoteStore) -> None:
    with (
        RemoteEngineClient(paths=store.paths) as client,
        pytest.raises(ModelLoadError, match="tiny-model"),
    ):
        client.load("remote:box/other-model")


def test_an_unknown_remote_says_how_to_add_it(store: RemoteStore) -> None:
    with (
        RemoteEngineClient(paths=store.paths) as client,
        pytest.raises(RemoteConfigError, match="remote add nowhere"),
    ):
        client.load("remote:nowhere/tiny-model")


def test_a_wrong_key_is_a_clear_error_that_never_shows_the_key(
    app_home: Path, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    remote = RemoteStore().add("box", server.url, "sk-wrong-key-456")
    with RemoteEngineClient(remote) as client, pytest.raises(RemoteAuthError) as info:
        client.load("tiny-model")
    assert "refused the API key" in str(info.value) and "HTTP 401" in str(info.value)
    assert "sk-wrong-key-456" not in str(info.value) and "sk-wrong-key-456" not in caplog.text


def test_a_busy_server_says_when_to_retry(store: RemoteStore, server: FakeOpenAIServer) -> None:
    with RemoteEngineClient(paths=store.paths) as client:
        client.load("remote:box/tiny-model")
        server.script = Script(busy=True)
        with pytest.raises(ModelBusyError, match="try again in 3 s") as info:
            _events(client)
    assert info.value.retry_after_s == 3


def test_an_unreachable_server_is_a_clear_error(app_home: Path) -> None:
    remote = RemoteStore().add("gone", "http://127.0.0.1:9")  # discard port: nothing listens
    with RemoteEngineClient(remote) as client, pytest.raises(RemoteEngineError, match="reach"):
        client.load("tiny-model")


def test_a_server_that_dies_mid_reply_ends_the_stream_with_an_error(
    store: RemoteStore, server: FakeOpenAIServer
) -> None:
    server.script = Script(words=50, drop_after=3)
    got: list[str] = []
    with RemoteEngineClient(paths=store.paths) as client:
        client.load("remote:box/tiny-model")
        with pytest.raises(RemoteEngineError, match="broke while streaming") as info:
            for ev in client.chat([{"role": "user", "content": "hi"}], Sampling(max_tokens=50)):
                if isinstance(ev, Token):
                    got.append(ev.text)
    assert got == ["w0 ", "w1 ", "w2 "]
    assert "send the message again" in str(info.value)


def test_cancel_from_another_thread_stops_a_stalled_reply_and_hangs_up(
    store: RemoteStore, server: FakeOpenAIServer
) -> None:
    server.script = Script(words=50, stall_after=2)
    with RemoteEngineClient(paths=store.paths) as client:
        client.load("remote:box/tiny-model")
        events: list[object] = []
        for ev in client.chat([{"role": "user", "content": "hi"}], Sampling(max_tokens=50)):
            events.append(ev)
            if len(events) == 2:  # the server now sends nothing more: only cancel can end it
                threading.Thread(target=client.cancel, name="canceller").start()
        assert server.client_left.wait(10)
        done = events[-1]
        assert isinstance(done, ReplyFinished) and done.metrics.stop_reason == "cancelled"
        assert [type(e) for e in events[:-1]] == [Token, Token]
        server.script = Script(words=3)  # the client is usable right after
        assert isinstance(_events(client)[-1], ReplyFinished)


def test_a_new_chat_from_the_same_thread_closes_the_suspended_one(store: RemoteStore) -> None:
    with RemoteEngineClient(paths=store.paths) as client:
        client.load("remote:box/tiny-model")
        first = client.chat([{"role": "user", "content": "hi"}], Sampling(max_tokens=8))
        assert isinstance(next(iter(first)), Token)
        events = _events(client, n=2)
    assert isinstance(events[-1], ReplyFinished) and events[-1].text == "w0 w1 "


def test_chatting_before_loading_is_refused(app_home: Path) -> None:
    from launcher.errors import EngineError

    with RemoteEngineClient() as client, pytest.raises(EngineError, match="load a model"):
        _events(client)


def test_chat_command_reports_a_server_that_dies_mid_reply(
    store: RemoteStore,
    server: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io

    server.script = Script(words=50, drop_after=2)
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n"))
    assert main(["chat", "remote:box/tiny-model", "--max-tokens", "50"]) == 1
    out = capsys.readouterr()
    assert out.out.startswith("w0 w1 ")
    assert "error: The connection to box" in out.err and KEY not in out.err


def test_the_key_can_come_from_the_environment(
    app_home: Path,
    server: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SPARK_REMOTE_API_KEY", KEY)  # keeps it out of the shell history
    assert main(["remote", "add", "box", server.url]) == 0
    assert "(with API key)" in capsys.readouterr().out
    assert RemoteStore().get("box").api_key == KEY
