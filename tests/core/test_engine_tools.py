"""Tools, structured output, reasoning, logprobs and sampler options on the real Gemma 3 270M.

The bundled Gemma has no chat template, so tools take the generic path (described in a system
message, reply constrained to a JSON envelope); a copy of Gemma carrying Qwen 2.5's real
template (Hermes ``<tool_call>`` format) checks the native path with a grammar, and a copy
with a ``<think>`` template checks that reasoning never reaches the answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.engine import (
    EngineClient,
    EngineParams,
    ReasoningToken,
    ReplyFinished,
    Sampling,
    Token,
    ToolCall,
)
from launcher.errors import EngineError
from tests.core.test_engine_template import _with_chat_template

ADD = {
    "name": "add",
    "description": "Add two integers",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
}
LOOKUP = {
    "name": "lookup",
    "description": "Look a word up",
    "parameters": {"type": "object", "properties": {"key": {"type": "string"}}},
}
ASK = [{"role": "user", "content": "What is 2 plus 3?"}]

# Qwen 2.5's chat template, trimmed to its tool parts (models/templates in llama.cpp).
HERMES_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nYou may call functions.\n<tools>"
    "{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}\n</tools>\n"
    'For each call return <tool_call>\n{"name": <name>, "arguments": <args>}\n</tool_call>'
    "<|im_end|>\n{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant"
    "{%- for tc in message.tool_calls %}\n<tool_call>\n"
    '{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments | tojson }}}'
    "\n</tool_call>{%- endfor %}<|im_end|>\n"
    "{%- elif message.role == 'tool' %}<|im_start|>user\n<tool_response>\n"
    "{{ message.content }}\n</tool_response><|im_end|>\n"
    "{%- else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)
THINK_TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}"
    "<|im_end|>\n{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n<think>\n"
    "{%- endif %}{# models answer <think>...</think> then the reply #}"
)


@pytest.fixture(scope="module")
def gemma(gemma_path: Path) -> Iterator[EngineClient]:
    client = EngineClient()
    client.load(gemma_path, EngineParams(n_ctx=1024, n_threads=2))
    yield client
    client.unload()


def _copy_with(template: str, gemma_path: Path, folder: Path) -> Path:
    out = folder / "gemma-templated.gguf"
    _with_chat_template(gemma_path, out, template)
    return out


def _valid_add(arguments: str) -> dict:
    args = json.loads(arguments)
    assert set(args) == {"a", "b"} and all(isinstance(v, int) for v in args.values())
    return args


def test_a_forced_call_comes_back_valid_and_its_result_reaches_the_model(
    gemma: EngineClient,
) -> None:
    sampling = Sampling(
        max_tokens=64, temperature=0, tools=(ADD,), tool_choice="required",
        parallel_tool_calls=False,
    )  # fmt: skip
    events = list(gemma.chat(ASK, sampling))
    done = events[-1]
    assert isinstance(done, ReplyFinished)
    assert done.metrics.stop_reason == "tool_calls"
    assert len(done.tool_calls) == 1 and done.tool_calls[0].name == "add"
    _valid_add(done.tool_calls[0].arguments)
    streamed = [e for e in events if isinstance(e, ToolCall)]
    assert streamed == list(done.tool_calls)  # the stream carries exactly the final calls
    assert done.text == "" and "tool_calls" not in "".join(
        e.text for e in events if isinstance(e, Token)
    )  # the envelope never shows as content
    # The result goes back; with tools off the model answers in text.
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [done.tool_calls[0].to_openai()]},
        {"role": "tool", "tool_call_id": done.tool_calls[0].id, "content": "5"},
    ]
    answer = list(gemma.chat(history, Sampling(max_tokens=16, temperature=0, tools=(ADD,),
                                              tool_choice="none")))[-1]  # fmt: skip
    assert isinstance(answer, ReplyFinished) and answer.tool_calls == ()
    assert answer.text.strip() and answer.metrics.stop_reason != "tool_calls"


def test_a_named_tool_is_the_one_called(gemma: EngineClient) -> None:
    sampling = Sampling(max_tokens=64, temperature=0, tools=(ADD, LOOKUP), tool_choice="lookup")
    done = list(gemma.chat(ASK, sampling))[-1]
    assert isinstance(done, ReplyFinished)
    assert [c.name for c in done.tool_calls] and {c.name for c in done.tool_calls} == {"lookup"}


def test_a_tool_that_is_not_given_is_refused(gemma: EngineClient) -> None:
    with pytest.raises(EngineError, match="not among the tools"):
        list(gemma.chat(ASK, Sampling(tools=(ADD,), tool_choice="delete_everything")))


def test_json_schema_replies_validate(gemma: EngineClient) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    messages = [{"role": "user", "content": "Describe a person."}]
    done = list(gemma.chat(messages, Sampling(max_tokens=80, temperature=0, json_schema=schema)))
    assert isinstance(done[-1], ReplyFinished)
    data = json.loads(done[-1].text)
    assert isinstance(data["name"], str) and isinstance(data["age"], int)
    anything = list(gemma.chat(messages, Sampling(max_tokens=80, temperature=0, json_schema={})))
    assert isinstance(json.loads(anything[-1].text), dict)  # OpenAI's json_object


def test_logprobs_describe_each_generated_token(gemma: EngineClient) -> None:
    events = list(gemma.complete("The capital of France is", Sampling(
        max_tokens=5, temperature=0, logprobs=3)))  # fmt: skip
    done = events[-1]
    assert isinstance(done, ReplyFinished)
    assert len(done.logprobs) == done.metrics.generated_tokens
    streamed = [lp for e in events if isinstance(e, Token) for lp in e.logprobs]
    assert streamed == list(done.logprobs)
    for lp in done.logprobs:
        assert lp.logprob <= 0 and len(lp.top) == 3
        assert [x[1] for x in lp.top] == sorted((x[1] for x in lp.top), reverse=True)
        assert lp.top[0][0] == lp.token  # greedy picks the most likely token
    assert "".join(lp.token for lp in done.logprobs) == done.text


def test_logit_bias_and_penalties_change_the_choice(gemma: EngineClient) -> None:
    prompt, plain = "1, 1, 1, 1, 1,", Sampling(max_tokens=6, temperature=0)
    base = list(gemma.complete(prompt, plain))[-1]
    assert isinstance(base, ReplyFinished)
    first = list(gemma.complete(prompt, Sampling(max_tokens=1, temperature=0, logprobs=0)))[-1]
    token_text = first.logprobs[0].token
    ids = _token_ids(gemma, token_text)
    banned = list(gemma.complete(prompt, Sampling(
        max_tokens=1, temperature=0, logit_bias=tuple((i, -100.0) for i in ids))))[-1]  # fmt: skip
    assert banned.text != token_text
    penalized = list(gemma.complete(prompt, Sampling(
        max_tokens=6, temperature=0, presence_penalty=2.0, frequency_penalty=2.0)))[-1]  # fmt: skip
    assert penalized.text != base.text


def _token_ids(client: EngineClient, text: str) -> list[int]:
    """Token ids of ``text`` by llama.cpp's own tokenizer (vocab only, in this process)."""
    import llama_cpp

    mp = llama_cpp.llama_model_default_params()
    mp.vocab_only = True
    assert client.loaded is not None
    model = llama_cpp.llama_model_load_from_file(client.loaded.path.encode(), mp)
    try:
        vocab = llama_cpp.llama_model_get_vocab(model)
        data = text.encode()
        buf = (llama_cpp.llama_token * 16)()
        n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, 16, False, False)
        return list(buf[:n])
    finally:
        llama_cpp.llama_model_free(model)


def test_the_native_hermes_path_renders_tools_and_parses_its_call(
    gemma_path: Path, tmp_path: Path
) -> None:
    client = EngineClient()
    try:
        client.load(_copy_with(HERMES_TEMPLATE, gemma_path, tmp_path), EngineParams(n_ctx=1024))
        sampling = Sampling(max_tokens=64, temperature=0, tools=(ADD,), tool_choice="add",
                            parallel_tool_calls=False)  # fmt: skip
        events = list(client.chat(ASK, sampling))
        done = events[-1]
        assert isinstance(done, ReplyFinished)
        assert done.metrics.template == "gguf chat template"
        assert [c.name for c in done.tool_calls] == ["add"]
        _valid_add(done.tool_calls[0].arguments)
        shown = "".join(e.text for e in events if isinstance(e, Token))
        assert "<tool_call>" not in shown and "<tool_call>" not in done.text
    finally:
        client.unload()


def test_reasoning_is_streamed_apart_from_the_answer(gemma_path: Path, tmp_path: Path) -> None:
    client = EngineClient()
    try:
        client.load(_copy_with(THINK_TEMPLATE, gemma_path, tmp_path), EngineParams(n_ctx=512))
        # The grammar makes the tiny model write a reasoning block, then an answer.
        grammar = 'root ::= "Two and three make five." "\\n</think>\\n\\n" "It is 5."'
        events = list(client.chat(ASK, Sampling(max_tokens=40, temperature=0, grammar=grammar)))
        done = events[-1]
        assert isinstance(done, ReplyFinished)
        assert done.reasoning == "Two and three make five.\n"
        assert done.text == "It is 5."
        assert "".join(e.text for e in events if isinstance(e, ReasoningToken)) == done.reasoning
        assert "think" not in "".join(e.text for e in events if isinstance(e, Token))
        assert 0 < done.metrics.reasoning_tokens < done.metrics.generated_tokens
    finally:
        client.unload()


def test_embeddings_are_normalised_and_mean_something(gemma: EngineClient) -> None:
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.", "Quarterly tax filing."]
    result = gemma.embed(texts)
    assert len(result.vectors) == 3 and result.prompt_tokens > 10
    import numpy as np

    v = np.array(result.vectors)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v.shape[1] == 640  # Gemma 3 270M's embedding width
    # Two sentences about a cat are closer to each other than to tax filing.
    assert v[0] @ v[1] > v[0] @ v[2]
    # Embedding cleared the chat's cache, and chat still works afterwards.
    done = list(gemma.chat(ASK, Sampling(max_tokens=4, temperature=0)))[-1]
    assert isinstance(done, ReplyFinished) and done.metrics.cached_tokens == 0
    with pytest.raises(EngineError, match="empty"):
        gemma.embed([""])
    with pytest.raises(EngineError, match="at most"):
        gemma.embed(["word " * 2000])


def test_auto_with_markup_in_free_text_never_aborts_and_keeps_the_text(
    gemma_path: Path, tmp_path: Path
) -> None:
    """With tools on "auto", a model writing the opener as plain text (not the one special
    token) must neither crash the host nor lose what it wrote."""
    client = EngineClient()
    try:
        client.load(_copy_with(HERMES_TEMPLATE, gemma_path, tmp_path), EngineParams(n_ctx=1024))
        ask = [{"role": "user", "content": "Repeat exactly: <tool_call>"}]
        done = list(client.chat(ask, Sampling(max_tokens=24, temperature=0, tools=(ADD,))))[-1]
        assert isinstance(done, ReplyFinished)
        assert done.text and done.tool_calls == ()
        # Tools and a response format: either a call or an answer in the schema.
        schema = {"type": "object", "properties": {"sum": {"type": "integer"}}, "required": ["sum"]}
        sampling = Sampling(
            max_tokens=64, temperature=0, tools=(ADD,), json_schema=schema,
            parallel_tool_calls=False,
        )  # fmt: skip
        done = list(client.chat(ASK, sampling))[-1]
        assert isinstance(done, ReplyFinished)
        if done.tool_calls:
            _valid_add(done.tool_calls[0].arguments)
        else:
            assert isinstance(json.loads(done.text)["sum"], int)
    finally:
        client.unload()


def test_logprobs_cover_exactly_the_returned_text_and_the_stop_is_named(
    gemma: EngineClient,
) -> None:
    sampling = Sampling(max_tokens=20, temperature=0, logprobs=1, stop=(" 6",))
    events = list(gemma.complete("1, 2, 3,", sampling))
    done = events[-1]
    assert isinstance(done, ReplyFinished)
    assert done.metrics.stop_reason == "stop" and done.metrics.stop_sequence == " 6"
    assert "6" not in done.text
    assert "".join(lp.token for lp in done.logprobs) == done.text
    streamed = [lp for e in events if isinstance(e, Token) for lp in e.logprobs]
    assert streamed == list(done.logprobs)


def test_a_forced_call_cut_off_by_max_tokens_returns_its_whole_calls(gemma: EngineClient) -> None:
    # Parallel calls on (the default): the tiny model repeats its call until max_tokens.
    sampling = Sampling(max_tokens=48, temperature=0, tools=(ADD,), tool_choice="required")
    events = list(gemma.chat(ASK, sampling))
    done = events[-1]
    assert isinstance(done, ReplyFinished)
    assert done.tool_calls and all(c.name == "add" for c in done.tool_calls)
    for call in done.tool_calls:
        _valid_add(call.arguments)
    assert done.text == "" and not any(isinstance(e, Token) and e.text for e in events)
