"""Remote engines against our own OpenAI-compatible server (``launcher.server``) on 127.0.0.1,
serving the real Gemma 3 270M (loaded once for the module): the ``remote`` command, chat that
matches the local engine word for word, cancel that leaves the server's model healthy, a wrong
key, and a comparison of the local model against the same model over the network.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from launcher.cli import main
from launcher.compare import CompareRequest, ComparisonJob, RunDone
from launcher.engine import EngineClient, EngineParams, Loaded, ReplyFinished, Sampling, Token
from launcher.engine.remote import RemoteEngineClient
from launcher.errors import RemoteAuthError
from launcher.machines import resolve_machine
from launcher.remotes import Remote, RemoteStore
from launcher.server.httpd import LocalApiServer
from launcher.server.pool import ModelRegistry, SharedModel

KEY = "serve-key-789"
PARAMS = EngineParams(n_ctx=1024, n_threads=1)
HELLO = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = Sampling(max_tokens=12, temperature=0.0)


@dataclass
class Served:
    server: LocalApiServer
    model: SharedModel
    remote: Remote


@pytest.fixture(scope="module")
def served(gemma_path: Path) -> Iterator[Served]:
    registry = ModelRegistry()
    model = registry.share(EngineClient(), max_waiting=4)
    model.load(str(gemma_path), PARAMS)
    server = LocalApiServer(registry, port=0, api_key=KEY)
    server.start()
    try:
        yield Served(server, model, Remote("spark", server.url, KEY))
    finally:
        server.stop()
        model.unload()


@pytest.fixture
def saved(app_home: Path, served: Served) -> Served:
    RemoteStore().save(served.remote)
    return served


def _chat(client: object, messages: list[dict[str, str]], sampling: Sampling) -> ReplyFinished:
    events = list(client.chat(messages, sampling))  # type: ignore[attr-defined]
    done = events[-1]
    assert isinstance(done, ReplyFinished), events[-3:]
    assert done.text == "".join(e.text for e in events if isinstance(e, Token))
    return done


def test_remote_add_lists_the_served_model(
    app_home: Path, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["remote", "add", "spark", served.server.url, "--api-key", KEY]) == 0
    out = capsys.readouterr().out
    assert f"remote:spark/{served.model.name}" in out and KEY not in out
    assert main(["remote", "models", "spark", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    assert models == [{"id": served.model.name, "spec": f"remote:spark/{served.model.name}"}]


def test_a_remote_reply_is_the_local_reply_word_for_word(saved: Served) -> None:
    local = _chat(saved.model, HELLO, GREEDY)
    with RemoteEngineClient(paths=None) as client:
        client.load(f"remote:spark/{saved.model.name}")
        remote = _chat(client, HELLO, GREEDY)
    assert remote.text == local.text and remote.text.strip()
    m = remote.metrics
    assert m.remote and "spark" in m.remote
    assert m.generated_tokens == local.metrics.generated_tokens
    assert m.prompt_tokens == local.metrics.prompt_tokens
    assert m.ttft_s > 0 and m.decode_tokens_per_s > 0


def test_cancel_stops_the_remote_reply_and_the_model_stays_healthy(saved: Served) -> None:
    counting = [{"role": "user", "content": "Count from 1 to 200: 1, 2, 3, 4,"}]
    with RemoteEngineClient(saved.remote) as client:
        client.load(saved.model.name)
        events = []
        for ev in client.chat(counting, Sampling(max_tokens=400, temperature=0.0)):
            events.append(ev)
            if len(events) == 3:
                client.cancel()
        done = events[-1]
        assert isinstance(done, ReplyFinished) and done.metrics.stop_reason == "cancelled"
        assert len(events) == 4  # no token after cancel() returned
        again = _chat(client, HELLO, GREEDY)  # the same server and model answer right away
    assert again.metrics.stop_reason in ("eos", "length")
    assert saved.model.is_loaded


def test_a_wrong_key_is_refused_with_a_clear_message(served: Served) -> None:
    wrong = Remote("spark", served.server.url, "not-the-key")
    with RemoteEngineClient(wrong) as client, pytest.raises(RemoteAuthError) as info:
        client.load(served.model.name)
        _chat(client, HELLO, GREEDY)
    assert "API key" in str(info.value) and "not-the-key" not in str(info.value)


def test_chat_command_talks_to_a_remote_model(
    saved: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("What is the capital of France?\n"))
    spec = f"remote:spark/{saved.model.name}"
    assert main(["chat", spec, "--json", "--max-tokens", "8", "--temperature", "0"]) == 0
    reply = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert reply["text"] and reply["metrics"]["remote"].startswith("spark (")


def test_compare_the_local_model_with_the_same_model_over_the_network(
    saved: Served, gemma_path: Path
) -> None:
    request = CompareRequest(
        models=(str(gemma_path), f"remote:spark/{saved.model.name}"),
        prompt="What is the capital of France?",
        ctx=1024,
        sampling=Sampling(max_tokens=12, temperature=0.0),
    )
    machine = resolve_machine("unified=16GiB")
    job = ComparisonJob(
        request,
        save=False,
        machine=machine,
        client_factory=_OneThreadEngine,
    )
    runs = [ev.result for ev in job.run() if isinstance(ev, RunDone)]
    assert len(runs) == 2 and all(r.error is None for r in runs), runs
    local, remote = runs
    assert remote.model.endswith("@spark")
    assert remote.reply == local.reply  # same model, same template, greedy: same words
    assert remote.decode_tps and local.decode_tps
    assert remote.peak_memory_bytes is None  # the remote model's memory is not on this machine


class _OneThreadEngine(EngineClient):
    """The local side of the comparison with one thread (the test machine's cores are shared)."""

    def load(self, path: Any, params: Any = None, *args: Any, **kwargs: Any) -> Loaded:
        return super().load(path, PARAMS)


def test_a_remote_model_gets_tools_and_response_formats_and_returns_calls(saved: Served) -> None:
    """Tools, tool_choice and response formats reach the remote server; its streamed
    tool-call deltas come back as whole ``ToolCall`` events, like a local model's."""
    import json as _json

    from launcher.engine import ToolCall

    add = {
        "name": "add",
        "description": "Add two integers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    }
    ask = [{"role": "user", "content": "What is 2 plus 3?"}]
    forced = Sampling(max_tokens=64, temperature=0, tools=(add,), tool_choice="required",
                      parallel_tool_calls=False)  # fmt: skip
    local = list(saved.model.chat(ask, forced))[-1]
    with RemoteEngineClient(paths=None) as client:
        client.load(f"remote:spark/{saved.model.name}")
        events = list(client.chat(ask, forced))
        done = events[-1]
        assert isinstance(done, ReplyFinished)
        assert done.metrics.stop_reason == "tool_calls"
        assert [c.name for c in done.tool_calls] == ["add"]
        assert _json.loads(done.tool_calls[0].arguments) == _json.loads(
            local.tool_calls[0].arguments
        )
        assert [e for e in events if isinstance(e, ToolCall)] == list(done.tool_calls)
        # The call and its result go back to the server as OpenAI messages.
        history = [
            *ask,
            {"role": "assistant", "content": None, "tool_calls": [done.tool_calls[0].to_openai()]},
            {"role": "tool", "tool_call_id": done.tool_calls[0].id, "content": "5"},
        ]
        answer = list(client.chat(history, Sampling(max_tokens=8, temperature=0, tools=(add,),
                                                    tool_choice="none")))[-1]  # fmt: skip
        assert isinstance(answer, ReplyFinished) and answer.text and not answer.tool_calls
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
        shaped = list(client.chat(ask, Sampling(max_tokens=32, temperature=0,
                                                json_schema=schema)))[-1]  # fmt: skip
        assert isinstance(_json.loads(shaped.text)["n"], int)
