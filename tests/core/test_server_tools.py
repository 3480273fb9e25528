"""Tool round trips through the local API with the real SDKs on the real Gemma 3 270M (no chat
template, so the engine's generic JSON fallback with a grammar): a forced call comes back with
arguments valid for the tool's schema, streamed deltas reassemble into exactly the call of the
whole reply, the tool's result goes back and the model answers - through OpenAI chat
completions, Anthropic Messages, OpenAI Responses and the OpenAI Agents SDK. Plus a
``json_schema`` reply that validates."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import jsonschema
import openai
import pytest

from launcher.engine import EngineClient, EngineParams
from launcher.server.httpd import LocalApiServer
from launcher.server.pool import ModelRegistry, SharedModel

PARAMS = EngineParams(n_ctx=2048, n_threads=1)
QUESTION = "What is the weather in Paris?"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
CHAT_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": SCHEMA,
    },
}
RESULT = "Sunny, 22 degrees."


@dataclass
class Served:
    server: LocalApiServer
    model: SharedModel
    oai: openai.OpenAI
    claude: anthropic.Anthropic


@pytest.fixture(scope="module")
def served(gemma_path: Path) -> Iterator[Served]:
    registry = ModelRegistry()
    model = registry.share(EngineClient())
    model.load(str(gemma_path), PARAMS)
    server = LocalApiServer(registry, port=0)
    server.start()
    oai = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=120)
    claude = anthropic.Anthropic(
        base_url=f"http://127.0.0.1:{server.port}", api_key="none", max_retries=0, timeout=120
    )
    try:
        yield Served(server, model, oai, claude)
    finally:
        oai.close()
        claude.close()
        server.stop()
        model.unload()


def test_chat_completions_forced_call_stream_and_round_trip(served: Served) -> None:
    ask: Any = {
        "model": served.model.name,
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": [CHAT_TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_tokens": 64,
        "temperature": 0,
    }
    reply = served.oai.chat.completions.create(**ask)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.function.arguments), SCHEMA)  # type: ignore[union-attr]

    # Streamed: the deltas reassemble into exactly the same call, and no markup in content.
    name, arguments, content, finish = "", "", "", None
    for chunk in served.oai.chat.completions.create(**ask, stream=True):
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for tc in delta.tool_calls or []:
            assert tc.index == 0
            name += tc.function.name or "" if tc.function else ""
            arguments += tc.function.arguments or "" if tc.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert (name, arguments) == (call.function.name, call.function.arguments)  # type: ignore[union-attr]
    assert content == "" and finish == "tool_calls"

    # The result goes back; the model answers in text.
    history = [
        *ask["messages"],
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": RESULT},
    ]
    answer = served.oai.chat.completions.create(
        **{**ask, "messages": history, "tool_choice": "none", "max_tokens": 24}
    )
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.choices[0].message.content
    assert not answer.choices[0].message.tool_calls


def test_anthropic_forced_tool_use_stream_and_round_trip(served: Served) -> None:
    ask: Any = {
        "model": served.model.name,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": [{"name": "get_weather", "description": "The weather.", "input_schema": SCHEMA}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }
    msg = served.claude.messages.create(**ask)
    assert msg.stop_reason == "tool_use"
    (use,) = [b for b in msg.content if b.type == "tool_use"]
    assert use.name == "get_weather"
    jsonschema.validate(use.input, SCHEMA)
    assert not [b for b in msg.content if b.type == "text" and b.text]

    with served.claude.messages.stream(**ask) as stream:
        streamed = stream.get_final_message()
    (again,) = [b for b in streamed.content if b.type == "tool_use"]
    assert (again.name, again.input) == (use.name, use.input)
    assert streamed.stop_reason == "tool_use"

    history = [
        *ask["messages"],
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": RESULT}],
        },
    ]
    answer = served.claude.messages.create(
        **{**ask, "messages": history, "tool_choice": {"type": "none"}, "max_tokens": 24}
    )
    assert answer.stop_reason in ("end_turn", "max_tokens")
    assert answer.content[0].type == "text" and answer.content[0].text


def test_responses_forced_function_call_stream_and_round_trip(served: Served) -> None:
    ask: Any = {
        "model": served.model.name,
        "input": QUESTION,
        "tools": [{"type": "function", **CHAT_TOOL["function"]}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_output_tokens": 64,
        "temperature": 0,
    }
    resp = served.oai.responses.create(**ask)
    (call,) = [i for i in resp.output if i.type == "function_call"]
    assert call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), SCHEMA)

    deltas, done = "", None
    for event in served.oai.responses.create(**ask, stream=True):
        if event.type == "response.function_call_arguments.delta":
            deltas += event.delta
        elif event.type == "response.completed":
            done = event.response
    assert deltas == call.arguments
    assert done is not None
    assert [(i.name, i.arguments) for i in done.output if i.type == "function_call"] == [
        (call.name, call.arguments)
    ]

    history = [
        {"role": "user", "content": QUESTION},
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": RESULT},
    ]
    answer = served.oai.responses.create(
        **{**ask, "input": history, "tool_choice": "none", "max_output_tokens": 24}
    )
    assert answer.output_text


def test_openai_agents_sdk_agent_calls_a_tool(served: Served) -> None:
    import agents

    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        calls.append(city)
        return RESULT

    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=served.server.url, api_key="none", max_retries=0)
        agents.set_default_openai_client(client, use_for_tracing=False)
        agents.set_default_openai_api("responses")
        agents.set_tracing_disabled(True)
        agent = agents.Agent(
            name="Weather",
            instructions="Use the tool to answer.",
            model=served.model.name,
            tools=[get_weather],
            tool_use_behavior="stop_on_first_tool",
            model_settings=agents.ModelSettings(
                tool_choice="required", parallel_tool_calls=False, temperature=0, max_tokens=64
            ),
        )
        try:
            return await agents.Runner.run(agent, QUESTION)
        finally:
            await client.close()

    result = asyncio.run(run())
    assert len(calls) == 1 and calls[0]
    assert result.final_output == RESULT


def test_json_schema_reply_validates(served: Served) -> None:
    schema = {
        "type": "object",
        "properties": {"capital": {"type": "string"}, "country": {"type": "string"}},
        "required": ["capital", "country"],
        "additionalProperties": False,
    }
    reply = served.oai.chat.completions.create(
        model=served.model.name,
        messages=[{"role": "user", "content": "The capital of France, as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "capital", "schema": schema, "strict": True},
        },
        max_tokens=64,
        temperature=0,
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), schema)


def test_logprobs_cover_the_reply_whole_and_streamed(served: Served) -> None:
    ask: Any = {
        "model": served.model.name,
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 8,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
    }
    reply = served.oai.chat.completions.create(**ask)
    content = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content
    # One entry per token of the returned text: those of a stop string the engine cut from
    # the text (here Gemma's own "\nAssistant:" turn end) have none.
    assert "".join(t.token for t in content) == (reply.choices[0].message.content or "")
    assert len(content) <= reply.usage.completion_tokens  # type: ignore[union-attr]
    assert all(t.logprob <= 0 and 1 <= len(t.top_logprobs) <= 2 for t in content)
    streamed = [
        t.token
        for chunk in served.oai.chat.completions.create(**ask, stream=True)
        if chunk.choices and chunk.choices[0].logprobs
        for t in chunk.choices[0].logprobs.content or []
    ]
    assert streamed == [t.token for t in content]
