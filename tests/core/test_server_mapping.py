"""The local API's pure mapping, with no model and no HTTP: request bodies of the three APIs
(OpenAI chat/completions, Anthropic Messages, OpenAI Responses) into the engine's messages and
``Sampling``, unknown fields refused by name, and the engine's real event objects (tool calls,
reasoning, logprobs) rendered into each API's reply and stream shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from launcher.engine.events import (
    ReasoningToken,
    ReplyFinished,
    ReplyMetrics,
    Token,
    TokenLogprob,
    ToolCall,
)
from launcher.server import anthropic_api as an
from launcher.server import openai_api as oa
from launcher.server import responses_api as ra
from launcher.server.errors import ApiError, context_error

HELLO = [{"role": "user", "content": "Hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALL = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}', index=0)
LOGPROBS = (
    TokenLogprob("Hel", -0.1, (("Hel", -0.1), ("Hi", -2.5))),
    TokenLogprob("lo", -0.2, (("lo", -0.2),)),
)


def metrics(
    stop: str = "eos", reasoning_tokens: int = 0, stop_sequence: str | None = None
) -> ReplyMetrics:
    return ReplyMetrics(
        ttft_s=0.01,
        prompt_tokens=20,
        prefill_s=0.01,
        prefill_tokens_per_s=2000.0,
        generated_tokens=7,
        decode_s=0.1,
        decode_tokens_per_s=60.0,
        stop_reason=stop,  # type: ignore[arg-type]
        template="gguf chat template",
        cached_tokens=5,
        reasoning_tokens=reasoning_tokens,
        stop_sequence=stop_sequence,
    )


TOOL_REPLY = ReplyFinished(
    text="", metrics=metrics("tool_calls", 3), tool_calls=(CALL,), reasoning="Need weather."
)
TOOL_EVENTS: list[Any] = [ReasoningToken("Need "), ReasoningToken("weather."), CALL, TOOL_REPLY]
TEXT_REPLY = ReplyFinished(text="Hello", metrics=metrics("eos"), logprobs=LOGPROBS)
TEXT_EVENTS: list[Any] = [Token("Hel", LOGPROBS[:1]), Token("lo", LOGPROBS[1:]), TEXT_REPLY]


def refused(fn: Any, body: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        fn(body)
    assert info.value.status == 400
    return info.value


def sse_events(data: bytes) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) of each server-sent event."""
    out: list[tuple[str | None, Any]] = []
    for raw in data.decode().split("\n\n"):
        if not raw:
            continue
        name = None
        payload = ""
        for line in raw.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                payload = line[6:]
        out.append((name, payload if payload == "[DONE]" else json.loads(payload)))
    return out


def stream(renderer: Any, events: list[Any]) -> list[tuple[str | None, Any]]:
    data = renderer.stream_start()
    for event in events[:-1]:
        data += renderer.stream_event(event)
    return sse_events(data + renderer.stream_end(events[-1]))


# ---------------------------------------------------------------------- OpenAI requests
def test_every_implemented_chat_field_reaches_the_engine() -> None:
    gen, options = oa.parse_chat(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                *HELLO,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_0",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_0", "content": "Sunny"},
            ],
            "max_completion_tokens": 99,
            "temperature": 0.5,
            "frequency_penalty": 0.5,
            "presence_penalty": -0.5,
            "logit_bias": {"42": -100, "7": 5.5},
            "logprobs": True,
            "top_logprobs": 3,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
            },
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": False,
            "chat_template_kwargs": {"enable_thinking": False},
            "reasoning_effort": "low",
            "seed": -1,
            "stop": "END",
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    s = gen.sampling
    assert (s.max_tokens, s.temperature, s.frequency_penalty, s.presence_penalty) == (
        99,
        0.5,
        0.5,
        -0.5,
    )
    assert s.logit_bias == ((42, -100.0), (7, 5.5))
    assert s.logprobs == 3
    assert s.json_schema == {"type": "object"}
    assert s.tools == (
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": WEATHER["function"]["parameters"],  # type: ignore[index]
        },
    )
    assert s.tool_choice == "get_weather" and s.parallel_tool_calls is False
    assert s.template_kwargs == {"enable_thinking": False, "reasoning_effort": "low"}
    assert s.seed == 0xFFFFFFFF and s.stop == ("END",)
    assert gen.messages[0] == {"role": "system", "content": "Be brief."}
    assert gen.messages[2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert gen.messages[3] == {"role": "tool", "content": "Sunny", "tool_call_id": "call_0"}
    assert gen.stream and options.include_usage and options.logprobs


@pytest.mark.parametrize(
    ("fmt", "schema"),
    [({"type": "json_object"}, {}), ({"type": "text"}, None)],
)
def test_response_format_json_object_means_any_object(fmt: Any, schema: Any) -> None:
    gen, _ = oa.parse_chat({"messages": HELLO, "response_format": fmt})
    assert gen.sampling.json_schema == schema


def test_llama_server_grammar_passes_through() -> None:
    gen, _ = oa.parse_chat({"messages": HELLO, "grammar": 'root ::= "yes" | "no"'})
    assert gen.sampling.grammar == 'root ::= "yes" | "no"'
    err = refused(
        oa.parse_chat,
        {"messages": HELLO, "grammar": "root ::= x", "response_format": {"type": "json_object"}},
    )
    assert err.param == "response_format"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"functions": []}, "functions"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"tools": [{**WEATHER, "cache": True}]}, "tools[0].cache"),
        ({"response_format": {"type": "json_object", "extra": 1}}, "response_format.extra"),
        ({"messages": [{"role": "user", "content": "x", "audio": {}}]}, "messages[0].audio"),
    ],
)
def test_a_field_that_is_not_implemented_is_refused_by_name(extra: Any, param: str) -> None:
    err = refused(oa.parse_chat, {"messages": HELLO, **extra})
    assert err.param == param
    assert f"'{param}'" in err.message and err.code == "unsupported_parameter"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": HELLO, "max_tokens": "12"}, "max_tokens"),
        ({"messages": HELLO, "temperature": 3}, "temperature"),
        ({"messages": HELLO, "logit_bias": {"hello": 1}}, "logit_bias"),
        ({"messages": HELLO, "logit_bias": {"1": 500}}, "logit_bias"),
        ({"messages": HELLO, "top_logprobs": 2}, "top_logprobs"),
        ({"messages": HELLO, "tool_choice": "required"}, "tools"),
        (
            {
                "messages": HELLO,
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
            },
            "tool_choice",
        ),
        ({"messages": HELLO, "n": 2}, "n"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0].type",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
        ({"messages": HELLO, "response_format": {"type": "json_schema"}}, None),
    ],
)
def test_bad_values_are_400s_naming_the_field(body: Any, param: str | None) -> None:
    err = refused(oa.parse_chat, body)
    if param is not None:
        assert err.param == param


def test_completion_fields() -> None:
    gen, options = oa.parse_completion({"prompt": ["1, 2,"], "logprobs": 2, "max_tokens": 3})
    assert gen.prompt == "1, 2," and gen.sampling.logprobs == 2 and options.logprobs
    assert refused(oa.parse_completion, {"prompt": "x", "echo": True}).param == "echo"
    assert refused(oa.parse_completion, {"prompt": "x", "suffix": "y"}).param == "suffix"
    assert refused(oa.parse_completion, {"prompt": "x", "tools": []}).param == "tools"


def test_a_prompt_too_long_is_context_length_exceeded_with_both_sizes() -> None:
    err = context_error(
        "The conversation (1500 tokens) does not fit in the context (1024 tokens). Start a "
        "new chat, or load the model with a larger context."
    )
    assert (err.status, err.code) == (400, "context_length_exceeded")
    assert "1500" in err.message and "1024" in err.message
    assert "maximum context length" in err.message
    assert context_error("The prompt is empty.").code == "request_refused"


# ---------------------------------------------------------------------- OpenAI replies
def test_chat_reply_with_tool_calls_and_reasoning() -> None:
    _, options = oa.parse_chat({"messages": HELLO})
    body = oa.OpenAIRenderer(options, "m").whole(TOOL_REPLY)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [CALL.to_openai()]
    assert choice["message"]["reasoning_content"] == "Need weather."
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 3}
    assert body["usage"]["prompt_tokens"] == 25  # evaluated + cached


def test_streamed_chat_tool_call_deltas_reassemble_into_the_call() -> None:
    _, options = oa.parse_chat({"messages": HELLO, "stream": True})
    events = stream(oa.OpenAIRenderer(options, "m"), TOOL_EVENTS)
    assert events[-1] == (None, "[DONE]")
    deltas = [e[1]["choices"][0]["delta"] for e in events[:-1]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Need weather."
    assert not any(d.get("content") for d in deltas)  # no markup leaks into content
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert "".join(c["function"]["arguments"] for c in calls) == CALL.arguments
    assert events[-2][1]["choices"][0]["finish_reason"] == "tool_calls"


def test_logprobs_in_openai_shapes() -> None:
    _, options = oa.parse_chat({"messages": HELLO, "logprobs": True, "top_logprobs": 2})
    renderer = oa.OpenAIRenderer(options, "m")
    content = renderer.whole(TEXT_REPLY)["choices"][0]["logprobs"]["content"]
    assert content[0] == {
        "token": "Hel",
        "logprob": -0.1,
        "bytes": list(b"Hel"),
        "top_logprobs": [
            {"token": "Hel", "logprob": -0.1, "bytes": list(b"Hel")},
            {"token": "Hi", "logprob": -2.5, "bytes": list(b"Hi")},
        ],
    }
    streamed = stream(renderer, TEXT_EVENTS)
    tokens = [
        t["token"]
        for _, chunk in streamed[1:-2]
        for t in chunk["choices"][0]["logprobs"]["content"]
    ]
    assert tokens == ["Hel", "lo"]
    _, options = oa.parse_completion({"prompt": "x", "logprobs": 1})
    legacy = oa.OpenAIRenderer(options, "m").whole(TEXT_REPLY)["choices"][0]["logprobs"]
    assert legacy["tokens"] == ["Hel", "lo"] and legacy["text_offset"] == [0, 3]
    _, options = oa.parse_chat({"messages": HELLO})
    assert oa.OpenAIRenderer(options, "m").whole(TEXT_REPLY)["choices"][0]["logprobs"] is None


@pytest.mark.parametrize(
    ("template", "tools", "reasoning"),
    [
        (None, False, False),
        ("{% for m in messages %}{{ m.content }}{% endfor %}", False, False),
        ("{% if tools %}{{ tools | tojson }}{% endif %}<think>", True, True),
        ("{% if enable_thinking %}/think{% endif %}", False, True),
    ],
)
def test_model_capabilities_come_from_the_template(
    template: str | None, tools: bool, reasoning: bool
) -> None:
    class Loaded:
        n_ctx = 4096
        chat_template = template

    entry = oa.model_entry("m", 0, Loaded())
    assert entry["capabilities"] == {
        "tools": tools,
        "reasoning": reasoning,
        "vision": False,
        "embeddings": True,
    }
    assert entry["context_length"] == 4096 and entry["meta"]["n_ctx"] == 4096


# ---------------------------------------------------------------------- Anthropic
def test_anthropic_conversation_with_tool_use_maps_to_openai_messages() -> None:
    gen, _ = an.parse_messages(
        {
            "model": "m",
            "max_tokens": 64,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "x"}}],
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "Use the tool.", "signature": ""},
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"},
                        {"type": "text", "text": "Thanks!"},
                    ],
                },
            ],
            "tools": [
                {"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "stop_sequences": ["END"],
            "thinking": {"type": "disabled"},
            "metadata": {"user_id": "u"},
        }
    )
    assert [m["role"] for m in gen.messages] == ["system", "user", "assistant", "tool", "user"]
    assistant = gen.messages[2]
    assert assistant["content"] == "Checking."
    assert assistant["reasoning_content"] == "Use the tool."
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert gen.messages[3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"}
    s = gen.sampling
    assert s.tool_choice == "required" and s.parallel_tool_calls is False
    assert s.stop == ("END",) and s.max_tokens == 64
    assert s.template_kwargs == {"enable_thinking": False}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"service_tier": "auto"}, "service_tier"),
        ({"mcp_servers": []}, "mcp_servers"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    ],
)
def test_anthropic_fields_not_implemented_are_refused(extra: Any, param: str) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": HELLO, **extra}
    assert refused(an.parse_messages, body).param.startswith(param)  # type: ignore[union-attr]


def test_anthropic_image_block_is_refused() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}],
    }
    assert "image" in refused(an.parse_messages, body).message


def test_anthropic_whole_reply_and_error_shape() -> None:
    renderer = an.AnthropicRenderer(an.MessagesOptions(), "m")
    msg = renderer.whole(TOOL_REPLY)
    assert [b["type"] for b in msg["content"]] == ["thinking", "tool_use"]
    assert msg["content"][1]["input"] == {"city": "Paris"}
    assert msg["stop_reason"] == "tool_use"
    assert msg["usage"]["input_tokens"] == 20 and msg["usage"]["cache_read_input_tokens"] == 5
    stopped = ReplyFinished(text="a", metrics=metrics("stop", stop_sequence="END"))
    options = an.MessagesOptions(("STOP", "END"))
    by_client = an.AnthropicRenderer(options, "m").whole(stopped)
    assert (by_client["stop_reason"], by_client["stop_sequence"]) == ("stop_sequence", "END")
    # The model's own turn-end stop is an end of turn, not a client's stop sequence.
    turn_end = ReplyFinished(text="a", metrics=metrics("stop", stop_sequence="\nUser:"))
    ended = an.AnthropicRenderer(options, "m").whole(turn_end)
    assert (ended["stop_reason"], ended["stop_sequence"]) == ("end_turn", None)
    length = renderer.whole(ReplyFinished(text="a", metrics=metrics("length")))
    assert length["stop_reason"] == "max_tokens"
    body = ApiError(503, "busy").anthropic_body()
    assert body == {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}


def test_anthropic_stream_is_the_documented_event_sequence() -> None:
    renderer = an.AnthropicRenderer(an.MessagesOptions(), "m")
    events = stream(renderer, [*TOOL_EVENTS[:2], Token("Calling."), CALL, TOOL_REPLY])
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",  # thinking
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",  # signature_delta
        "content_block_stop",
        "content_block_start",  # text
        "content_block_delta",
        "content_block_stop",
        "content_block_start",  # tool_use
        "content_block_delta",  # input_json_delta
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert [d["type"] for d in deltas] == [
        "thinking_delta",
        "thinking_delta",
        "signature_delta",
        "text_delta",
        "input_json_delta",
    ]
    assert json.loads(deltas[-1]["partial_json"]) == {"city": "Paris"}
    assert [d["index"] for n, d in events if n == "content_block_start"] == [0, 1, 2]
    final = events[-2][1]
    assert final["delta"]["stop_reason"] == "tool_use"
    assert final["usage"]["output_tokens"] == 7


# ---------------------------------------------------------------------- Responses
def test_responses_input_items_map_to_messages() -> None:
    gen, options = ra.parse_responses(
        {
            "model": "m",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [],
                    "content": [{"type": "reasoning_text", "text": "Use the tool."}],
                },
                {
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "get_weather",
                    "arguments": '{"city":"Paris"}',
                },
                {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
            ],
            "tools": [{"type": "function", "name": "get_weather", "parameters": {}}],
            "tool_choice": "required",
            "max_output_tokens": 50,
            "text": {"format": {"type": "json_object"}},
            "reasoning": {"effort": "high"},
            "store": False,
            "include": ["reasoning.encrypted_content"],
            "previous_response_id": None,
        }
    )
    assert [m["role"] for m in gen.messages] == ["system", "user", "assistant", "tool"]
    assert gen.messages[2]["reasoning_content"] == "Use the tool."
    assert gen.messages[2]["tool_calls"][0]["id"] == "call_1"
    s = gen.sampling
    assert (s.tool_choice, s.max_tokens, s.json_schema) == ("required", 50, {})
    assert s.template_kwargs == {"reasoning_effort": "high"}
    assert options.echo["tool_choice"] == "required"


def test_responses_refuses_stored_state_and_other_tools() -> None:
    err = refused(ra.parse_responses, {"input": "x", "previous_response_id": "resp_1"})
    assert err.param == "previous_response_id"
    err = refused(ra.parse_responses, {"input": "x", "tools": [{"type": "web_search"}]})
    assert err.param is not None and err.param.startswith("tools[0]")
    err = refused(ra.parse_responses, {"input": [{"type": "item_reference", "id": "x"}]})
    assert err.param == "input[0].type"


def test_responses_whole_reply_items() -> None:
    _, options = ra.parse_responses({"input": "x"})
    body = ra.ResponsesRenderer(options, "m").whole(TOOL_REPLY)
    assert body["status"] == "completed"
    assert [i["type"] for i in body["output"]] == ["reasoning", "function_call"]
    call = body["output"][1]
    assert (call["call_id"], call["name"], call["arguments"]) == (
        "call_1",
        "get_weather",
        CALL.arguments,
    )
    assert body["usage"]["output_tokens_details"] == {"reasoning_tokens": 3}
    cut = ra.ResponsesRenderer(options, "m").whole(ReplyFinished("a", metrics("length")))
    assert cut["status"] == "incomplete"
    assert cut["incomplete_details"] == {"reason": "max_output_tokens"}
    assert cut["output"][0]["content"][0]["text"] == "a"


def test_responses_stream_events() -> None:
    _, options = ra.parse_responses({"input": "x", "stream": True})
    events = stream(ra.ResponsesRenderer(options, "m"), [Token("Hi"), CALL, TOOL_REPLY])
    names = [n for n, _ in events]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    final = events[-1][1]["response"]
    assert [i["type"] for i in final["output"]] == ["message", "function_call"]
    assert final["output"][0]["content"][0]["text"] == "Hi"


def test_the_listening_socket_is_tcp_so_asyncio_sets_nodelay() -> None:
    """asyncio sets TCP_NODELAY only on sockets whose proto is TCP; without it the first SSE
    chunk after the headers waits for the client's delayed ACK (40 ms)."""
    import socket

    from launcher.server.httpd import LocalApiServer
    from launcher.server.pool import ModelRegistry

    sock = LocalApiServer(ModelRegistry(), port=0)._bind()
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_cors_origins_must_be_web_origins() -> None:
    from launcher.errors import ServerError
    from launcher.server.httpd import check_origins

    assert check_origins(["http://localhost:3000/", "*"]) == ("http://localhost:3000", "*")
    with pytest.raises(ServerError, match="web origin"):
        check_origins(["localhost:3000"])


def test_responses_logprobs_whole_and_streamed() -> None:
    _, options = ra.parse_responses({"input": "x", "top_logprobs": 2, "stream": True})
    body = ra.ResponsesRenderer(options, "m").whole(TEXT_REPLY)
    part = body["output"][0]["content"][0]
    assert [t["token"] for t in part["logprobs"]] == ["Hel", "lo"]
    assert part["logprobs"][0]["top_logprobs"][1] == {
        "token": "Hi",
        "logprob": -2.5,
        "bytes": list(b"Hi"),
    }
    events = stream(ra.ResponsesRenderer(options, "m"), TEXT_EVENTS)
    deltas = [d for n, d in events if n == "response.output_text.delta"]
    assert [t["token"] for d in deltas for t in d["logprobs"]] == ["Hel", "lo"]
