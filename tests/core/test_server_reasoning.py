"""Reasoning and a native tool-call format through the local API, on copies of the real Gemma 3
270M carrying other chat templates: a ``<think>`` template (a grammar, llama-server's field,
makes the tiny model reason then answer) and Qwen 2.5's Hermes ``<tool_call>`` template.
Reasoning reaches ``reasoning_content`` / ``thinking`` blocks / ``reasoning`` items and never
the answer; ``/v1/models`` reads the capabilities from the template."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from launcher.engine import EngineClient, EngineParams
from launcher.server.httpd import LocalApiServer
from launcher.server.pool import ModelRegistry
from tests.core.test_engine_tools import ADD, HERMES_TEMPLATE, THINK_TEMPLATE, _copy_with

GRAMMAR = 'root ::= "Two and three make five." "\\n</think>\\n\\n" "It is 5."'
ASK = [{"role": "user", "content": "What is 2 plus 3?"}]


@dataclass
class Served:
    name: str
    oai: openai.OpenAI
    claude: anthropic.Anthropic


@pytest.fixture(scope="module")
def thinking(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    path = _copy_with(THINK_TEMPLATE, gemma_path, tmp_path_factory.mktemp("think"))
    registry = ModelRegistry()
    model = registry.share(EngineClient())
    model.load(str(path), EngineParams(n_ctx=512, n_threads=1))
    server = LocalApiServer(registry, port=0)
    server.start()
    oai = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=120)
    claude = anthropic.Anthropic(
        base_url=f"http://127.0.0.1:{server.port}", api_key="none", max_retries=0, timeout=120
    )
    try:
        yield Served(model.name, oai, claude)
    finally:
        oai.close()
        claude.close()
        server.stop()
        model.unload()


def test_models_list_says_the_template_reasons(thinking: Served) -> None:
    (entry,) = thinking.oai.models.list().data
    assert entry.capabilities["reasoning"] is True  # type: ignore[attr-defined]
    assert entry.capabilities["tools"] is False  # type: ignore[attr-defined]


def test_chat_reasoning_content_whole_and_streamed(thinking: Served) -> None:
    ask: Any = {
        "model": thinking.name,
        "messages": ASK,
        "max_tokens": 40,
        "temperature": 0,
        "extra_body": {"grammar": GRAMMAR},
    }
    reply = thinking.oai.chat.completions.create(**ask)
    message = reply.choices[0].message
    assert message.content == "It is 5."
    assert message.reasoning_content == "Two and three make five.\n"  # type: ignore[attr-defined]
    details = reply.usage.completion_tokens_details  # type: ignore[union-attr]
    assert details is not None and (details.reasoning_tokens or 0) > 0
    reasoning, content = "", ""
    for chunk in thinking.oai.chat.completions.create(**ask, stream=True):
        delta = chunk.choices[0].delta
        reasoning += getattr(delta, "reasoning_content", None) or ""
        content += delta.content or ""
    assert (reasoning, content) == (message.reasoning_content, message.content)  # type: ignore[attr-defined]


def test_anthropic_thinking_blocks_whole_and_streamed(thinking: Served) -> None:
    # Anthropic has no grammar field: the tiny model reasons freely, and whatever it writes
    # before "</think>" is a thinking block, never text.
    ask: Any = {"model": thinking.name, "max_tokens": 24, "messages": ASK}
    greedy = {"extra_body": {"temperature": 0}}  # the SDK dropped it; older clients send it
    msg = thinking.claude.messages.create(**ask, **greedy)
    assert msg.content[0].type == "thinking" and msg.content[0].thinking  # type: ignore[union-attr]
    texts = [b.text for b in msg.content if b.type == "text"]
    assert not any("think>" in t for t in texts)
    with thinking.claude.messages.stream(**ask, **greedy) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].thinking  # type: ignore[union-attr]
    with pytest.raises(anthropic.BadRequestError, match="grammar"):
        thinking.claude.messages.create(**ask, extra_body={"grammar": GRAMMAR})


def test_responses_reasoning_item(thinking: Served) -> None:
    resp = thinking.oai.responses.create(
        model=thinking.name, input="What is 2 plus 3?", max_output_tokens=24, temperature=0
    )
    item = resp.output[0]
    assert item.type == "reasoning" and item.content and item.content[0].text
    assert "think>" not in resp.output_text


def test_native_hermes_tool_call_through_the_api(gemma_path: Path, tmp_path: Path) -> None:
    path = _copy_with(HERMES_TEMPLATE, gemma_path, tmp_path)
    registry = ModelRegistry()
    model = registry.share(EngineClient())
    model.load(str(path), EngineParams(n_ctx=1024, n_threads=1))
    server = LocalApiServer(registry, port=0)
    server.start()
    client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=120)
    try:
        (entry,) = client.models.list().data
        assert entry.capabilities["tools"] is True  # type: ignore[attr-defined]
        reply = client.chat.completions.create(
            model=model.name,
            messages=ASK,  # type: ignore[arg-type]
            tools=[{"type": "function", "function": ADD}],  # type: ignore[list-item]
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=64,
            temperature=0,
        )
        message = reply.choices[0].message
        assert reply.choices[0].finish_reason == "tool_calls"
        assert [c.function.name for c in message.tool_calls or []] == ["add"]  # type: ignore[union-attr]
        assert set(json.loads(message.tool_calls[0].function.arguments)) == {"a", "b"}  # type: ignore[union-attr,index]
        assert not message.content or "<tool_call>" not in message.content
    finally:
        client.close()
        server.stop()
        model.unload()
