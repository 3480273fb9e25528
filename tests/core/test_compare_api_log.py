"""Recorded API traffic as a comparison workload: the real ``openai`` (and ``anthropic``) client
talks to our local API on the real Gemma 3 270M with recording off (nothing kept), then on
(every chat request kept as sent: messages, tools and tool results, tool_choice, response
format); ``compare --suite api-log`` then replays exactly those requests into two models and
grades what can be graded. Plus the recorder's size cap and torn-line handling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from launcher.cli import main
from launcher.engine import EngineClient, EngineParams
from launcher.engine.events import Sampling
from launcher.paths import AppPaths
from launcher.server.httpd import LocalApiServer
from launcher.server.pool import ModelRegistry
from launcher.server.recording import TrafficRecorder, read_traffic, traffic_file
from launcher.server.reply import GenRequest
from launcher.settings import load_settings, save_settings
from tests.support.gguf_builders import TINY_LLAMA, build_model

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOL: Any = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather in a city.", "parameters": SCHEMA},
}


def _record(on: bool) -> None:
    paths = AppPaths.default()
    settings = load_settings(paths)
    settings.record_api_traffic = on
    save_settings(paths, settings)


@pytest.mark.slow
def test_traffic_from_the_openai_client_is_recorded_and_replayed_in_a_comparison(
    gemma_path: Path, app_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = ModelRegistry()
    model = registry.share(EngineClient())
    model.load(str(gemma_path), EngineParams(n_ctx=2048, n_threads=1))
    server = LocalApiServer(registry, port=0)
    server.start()
    oai = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=120)
    claude = anthropic.Anthropic(
        base_url=server.url.removesuffix("/v1"), api_key="none", max_retries=0, timeout=120
    )
    name = "gemma-3-270m-q4_k_m"
    try:
        oai.chat.completions.create(  # recording is off by default: not kept
            model=name, messages=[{"role": "user", "content": "Not recorded."}], max_tokens=4
        )
        assert not traffic_file().exists()

        _record(True)  # the switch takes effect on the next request, server running
        oai.chat.completions.create(
            model=name,
            messages=[
                {"role": "system", "content": "Answer in one word."},
                {"role": "user", "content": "Capital of France?"},
            ],
            max_tokens=8,
        )
        forced = oai.chat.completions.create(
            model=name,
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[TOOL],
            tool_choice="required",
            max_tokens=64,
        )
        call = forced.choices[0].message.tool_calls[0]  # type: ignore[index]
        oai.chat.completions.create(  # the agent sends the tool's result back
            model=name,
            messages=[
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "tool_calls": [call.model_dump()]},  # type: ignore[list-item]
                {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 22 degrees."},
            ],
            tools=[TOOL],
            max_tokens=16,
        )
        stream = oai.chat.completions.create(
            model=name,
            messages=[{"role": "user", "content": "A city as JSON."}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "city", "schema": SCHEMA},
            },
            max_tokens=32,
            stream=True,
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        claude.messages.create(
            model=name, max_tokens=8, messages=[{"role": "user", "content": "Say hi."}]
        )
        oai.completions.create(model=name, prompt="1, 2, 3,", max_tokens=4)  # not a chat
    finally:
        oai.close()
        claude.close()
        server.stop()
        model.unload()

    traffic = read_traffic()
    assert traffic.skipped == 0
    assert [e["api"] for e in traffic.entries] == ["/v1/chat/completions"] * 4 + ["/v1/messages"]
    plain, tool, result, js, hi = traffic.entries
    assert plain["messages"][0] == {"role": "system", "content": "Answer in one word."}
    assert tool["tool_choice"] == "required" and tool["tools"][0]["name"] == "get_weather"
    assert [m["role"] for m in result["messages"]] == ["user", "assistant", "tool"]
    assert result["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert js["response_format"]["json_schema"]["schema"] == SCHEMA
    assert hi["messages"][-1]["content"] == "Say hi."

    # Replay the recorded workload into a comparison.
    tiny = build_model(tmp_path / "tiny-llama.gguf", **TINY_LLAMA)
    code = main(["compare", str(gemma_path), str(tiny), "--suite", "api-log", "--ctx", "2048",
                 "--max-tokens", "48", "--json"])  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["suite"] == "api-log"
    prompts = {p["id"]: p for p in data["prompts"]}
    assert list(prompts) == ["api-1", "api-2", "api-3", "api-4", "api-5"]
    assert prompts["api-3"]["conversation"] == result["messages"]
    assert prompts["api-3"]["text"] == "(tool result) Sunny, 22 degrees."
    runs = {(r["model"], r["prompt_id"]): r for r in data["runs"]}
    assert all(r["error"] is None for r in runs.values())
    kinds = {pid: [c["kind"] for c in runs[name, pid]["checks"]] for pid in prompts}
    assert kinds == {"api-1": [], "api-2": ["tool_call"], "api-3": [], "api-4": ["json"],
                     "api-5": []}  # fmt: skip
    # Gemma was forced to call the tool again (a grammar), so its call is real and valid
    assert runs[name, "api-2"]["check_passed"] is True
    assert runs[name, "api-2"]["tool_calls"][0]["name"] == "get_weather"
    if runs[name, "api-4"]["stop_reason"] != "length":
        assert runs[name, "api-4"]["check_passed"] is True  # constrained to the schema
    assert {s["checked"] for s in data["summary"]} == {2}


def _gen(text: str) -> GenRequest:
    return GenRequest(
        "chat", "m", Sampling(max_tokens=8), False, ({"role": "user", "content": text},)
    )


def test_the_recording_stops_at_its_size_cap_and_survives_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "traffic.jsonl"
    recorder = TrafficRecorder(path, max_bytes=600)
    assert recorder.record("/v1/chat/completions", _gen("first"), "m")
    path.write_bytes(path.read_bytes() + b'{"v": 1, "messages": [')  # a crash mid-write
    assert recorder.record("/v1/chat/completions", _gen("second"), "m")
    traffic = read_traffic(path)
    assert [e["messages"][0]["content"] for e in traffic.entries] == ["first", "second"]
    assert traffic.skipped == 1
    while recorder.record("/v1/chat/completions", _gen("more"), "m"):
        pass
    assert recorder.dropped == 1 and path.stat().st_size <= 600
    off = TrafficRecorder(tmp_path / "off.jsonl", enabled=lambda: False)
    assert not off.record("/v1/chat/completions", _gen("x"), "m")
    assert not (tmp_path / "off.jsonl").exists()
    completion = GenRequest("completion", "m", Sampling(), False, prompt="1, 2,")
    assert not recorder.record("/v1/completions", completion, "m")


def test_replaying_with_nothing_recorded_says_how_to_record(
    app_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", "a.gguf", "b.gguf", "--suite", "api-log"]) != 0
    assert "no API traffic has been recorded" in capsys.readouterr().err
