"""Tool-call formats per model family, the streaming reply parser, and every chat template
llama.cpp ships (read from the llama-cpp-python sdist that set-up keeps).

Replies are written in each family's documented format (llama.cpp's tests/test-chat.cpp and
the templates themselves are the source of these strings).
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from launcher.engine.toolcalls import (
    DEEPSEEK,
    GEMMA4,
    GENERIC,
    GLM,
    GRANITE,
    HARMONY,
    HERMES,
    LLAMA3,
    MISTRAL,
    MISTRAL_ARGS,
    NATIVE_FAMILIES,
    XML_FUNCTION,
    Family,
    ReplyParser,
    ToolCallParseError,
    call_grammar,
    detect,
    generic_grammar,
    parse_generic,
    plan_prompt,
    schema_grammar,
)

TOOLS = (
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
    {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}},
)
SCHEMAS = {t["name"]: t["parameters"] for t in TOOLS}


def calls_of(family: Family, text: str) -> list[tuple[str, dict]]:
    assert family.parse is not None
    return [(c.name, json.loads(c.arguments)) for c in family.parse(text, SCHEMAS)]


PARIS = ("get_weather", {"city": "Paris"})
TRICKY = ("get_weather", {"city": "</tool_call> [TOOL_CALLS] <|call|>"})  # markup in a string

FORMATS = {
    "hermes": (
        HERMES,
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>',
        '<tool_call>{"name": "get_weather", "arguments": {"city": '
        '"</tool_call> [TOOL_CALLS] <|call|>"}}</tool_call>',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"\n</tool_call>',
    ),
    "qwen3-coder-xml": (
        XML_FUNCTION,
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
        "</function>\n</tool_call>",
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
        "</function>\n</tool_call>\n<tool_call>\n<function=add>\n<parameter=a>\n1\n"
        "</parameter>\n</function>\n</tool_call>",
        "<tool_call>\n<function=get_weather>\n<parameter=city>\n</tool_call> [TOOL_CALLS] "
        "<|call|>\n</parameter>\n</function>\n</tool_call>",
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n",
    ),
    "llama3": (
        LLAMA3,
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        '{"name": "get_weather", "parameters": {"city": "Paris"}}; '
        '{"name": "add", "parameters": {"a": 1}}',
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": '
        '"</tool_call> [TOOL_CALLS] <|call|>"}}',
        '{"name": "get_weather", "parameters": {"city": }',
    ),
    "mistral": (
        MISTRAL,
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123def"}]',
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, '
        '{"name": "add", "arguments": {"a": 1}}]',
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": '
        '"</tool_call> [TOOL_CALLS] <|call|>"}}]',
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"',
    ),
    "mistral-args": (
        MISTRAL_ARGS,
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}',
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]add[ARGS]{"a": 1}',
        '[TOOL_CALLS]get_weather[ARGS]{"city": "</tool_call> [TOOL_CALLS] <|call|>"}',
        "[TOOL_CALLS]get_weather[ARGS]{city: Paris}",
    ),
    "deepseek": (
        DEEPSEEK,
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
        '{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
        '{"city": "Paris"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>add<｜tool▁sep｜>{"a": 1}'
        "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
        '{"city": "</tool_call> [TOOL_CALLS] <|call|>"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{city",
    ),
    "granite": (
        GRANITE,
        '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
        '{"name": "add", "arguments": {"a": 1}}]',
        '<|tool_call|>[{"name": "get_weather", "arguments": {"city": '
        '"</tool_call> [TOOL_CALLS] <|call|>"}}]',
        '<|tool_call|>[{"name": "get_weather", "arguments": ',
    ),
    "glm": (
        GLM,
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
        "</tool_call>",
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
        "</tool_call><tool_call>add\n<arg_key>a</arg_key>\n<arg_value>1</arg_value>\n"
        "</tool_call>",
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value></tool_call> [TOOL_CALLS] "
        "<|call|></arg_value>\n</tool_call>",
        "no call here at all",
    ),
    "gemma4": (
        GEMMA4,
        '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|>',
        '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|>'
        "<|tool_call>call:add{a:1}<tool_call|>",
        '<|tool_call>call:get_weather{city:<|"|></tool_call> [TOOL_CALLS] <|call|><|"|>}'
        "<tool_call|>",
        '<|tool_call>call:get_weather{city:<|"|>Paris}',
    ),
    "harmony": (
        HARMONY,
        "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
        '{"city": "Paris"}',
        "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
        '{"city": "Paris"}<|call|><|start|>assistant<|channel|>commentary to=functions.add '
        '<|constrain|>json<|message|>{"a": 1}',
        "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
        '{"city": "</tool_call> [TOOL_CALLS] <|call|>"}',
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": ',
    ),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_each_family_parses_its_documented_calls(name: str) -> None:
    family, one, two, tricky, broken = FORMATS[name]
    assert calls_of(family, one) == [PARIS]
    assert calls_of(family, two) == [PARIS, ("add", {"a": 1})]
    assert calls_of(family, tricky) == [TRICKY]
    if name == "qwen3-coder-xml":  # an unclosed parameter
        with pytest.raises(ToolCallParseError, match="not closed"):
            family.parse(broken, SCHEMAS)  # type: ignore[misc]
    else:
        with pytest.raises(ToolCallParseError):
            family.parse(broken, SCHEMAS)  # type: ignore[misc]


def test_xml_parameters_take_their_schema_types() -> None:
    text = (
        "<function=get_weather>\n<parameter=city>\n42\n</parameter>\n<parameter=days>\n3\n"
        "</parameter>\n</function>"
    )
    assert calls_of(XML_FUNCTION, text) == [("get_weather", {"city": "42", "days": 3})]


def test_generic_envelope_parses_calls_or_a_response() -> None:
    content, calls = parse_generic('{"tool_calls": [{"name": "add", "arguments": {"a": 2}}]}')
    assert content == "" and [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("add", {"a": 2})
    ]
    assert parse_generic('{"response": "Hi there"}') == ("Hi there", [])
    with pytest.raises(ToolCallParseError):
        parse_generic('{"answer": 1}')


def _stream(parser: ReplyParser, text: str, step: int) -> tuple[str, str, list, str | None]:
    content, reasoning = [], []
    for i in range(0, len(text), step):
        for kind, piece in parser.feed(text[i : i + step]):
            (reasoning if kind == "reasoning" else content).append(piece)
    held, calls, error = parser.finish()
    for kind, piece in held:
        (reasoning if kind == "reasoning" else content).append(piece)
    return "".join(content), "".join(reasoning), calls, error


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_streaming_never_leaks_call_markup_into_content(step: int) -> None:
    text = (
        "<think>Look it up.</think>\nLet me check.<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    )
    family = HERMES.__class__(**{**HERMES.__dict__, "think": ("<think>", "</think>")})
    content, reasoning, calls, error = _stream(ReplyParser(family, TOOLS), text, step)
    assert reasoning == "Look it up."
    assert content == "Let me check."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [PARIS]
    assert all(c.id.startswith("call_") for c in calls) and error is None


def test_a_reply_that_only_looks_like_a_call_start_is_shown_whole() -> None:
    content, _, calls, error = _stream(ReplyParser(HERMES, TOOLS), "a < b and <tool", 1)
    assert content == "a < b and <tool" and calls == [] and error is None


def test_a_call_that_does_not_parse_is_kept_as_text_with_the_reason() -> None:
    text = '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>'
    content, _, calls, error = _stream(ReplyParser(HERMES, TOOLS), text, 4)
    assert calls == [] and content == text
    assert error and "does not parse" in error


def test_a_call_to_an_unknown_tool_is_refused() -> None:
    text = '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>'
    content, _, calls, error = _stream(ReplyParser(HERMES, TOOLS), text, 5)
    assert calls == [] and error and "rm_rf" in error and content == text


def test_without_tools_markup_is_plain_text() -> None:
    text = '<tool_call>{"name": "add"}</tool_call>'
    content, _, calls, _ = _stream(ReplyParser(HERMES, ()), text, 3)
    assert content == text and calls == []


def test_harmony_channels_split_reasoning_answer_and_calls() -> None:
    answer = (
        "<|channel|>analysis<|message|>User wants weather.<|end|><|start|>assistant"
        "<|channel|>final<|message|>It is sunny."
    )
    content, reasoning, calls, _ = _stream(ReplyParser(HARMONY, TOOLS), answer, 3)
    assert (content, reasoning, calls) == ("It is sunny.", "User wants weather.", [])
    call = (
        "<|channel|>analysis<|message|>Need the tool.<|end|><|start|>assistant<|channel|>"
        'commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}'
    )
    content, reasoning, calls, _ = _stream(ReplyParser(HARMONY, TOOLS), call, 5)
    assert reasoning == "Need the tool." and content == ""
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [PARIS]


def test_grammars_compile_in_llama_cpp(gemma_path: Path) -> None:
    """Every grammar we build is accepted by llama.cpp's own grammar parser."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    mp = llama_cpp.llama_model_default_params()
    mp.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(gemma_path).encode(), mp)
    assert model
    vocab = llama_cpp.llama_model_get_vocab(model)
    grammars = [
        schema_grammar({}),
        schema_grammar({"type": "object", "properties": {"n": {"type": "integer"}}}),
        generic_grammar(TOOLS, "auto", True),
        generic_grammar(TOOLS, "required", False),
        generic_grammar(TOOLS, "add", True),
        *(call_grammar(f, TOOLS, "required", True) for f in NATIVE_FAMILIES if f.grammar_ready),
    ]
    try:
        for g in grammars:
            smpl = llama_cpp.llama_sampler_init_grammar(vocab, g.encode(), b"root")
            assert smpl, g
            llama_cpp.llama_sampler_free(smpl)
        bad = llama_cpp.llama_sampler_init_grammar(vocab, b"root ::= (", b"root")
        assert not bad  # the check above can fail
    finally:
        llama_cpp.llama_model_free(model)


def _vendored_templates() -> dict[str, str]:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    sdists = sorted((cache / "spark-launcher" / "sdist").glob("llama_cpp_python-*.tar.gz"))
    if not sdists:
        pytest.skip("the llama-cpp-python sdist is not in the user cache (make setup keeps it)")
    out = {}
    with tarfile.open(sdists[-1]) as tar:
        for member in tar.getmembers():
            if "/models/templates/" in member.name and member.name.endswith(".jinja"):
                fh = tar.extractfile(member)
                assert fh is not None
                out[member.name.rsplit("/", 1)[1]] = fh.read().decode("utf-8")
    return out


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call00001",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call00001", "name": "get_weather", "content": "18C"},
    {"role": "assistant", "content": "It is 18C."},
    {"role": "user", "content": "And tomorrow?"},
]


def test_every_vendored_template_renders_with_tools_and_names_a_parser() -> None:
    templates = _vendored_templates()
    assert len(templates) > 40
    native = {}
    for name, text in templates.items():
        for choice in ("auto", "required", "get_weather", "none"):
            plan = plan_prompt(text, CONVERSATION, tools=TOOLS, tool_choice=choice)
            assert plan.text, name
            if choice == "required":
                assert plan.grammar, name  # a forced call is always enforced
            if choice == "none":
                assert plan.grammar is None and plan.tools == ()
        family = detect(text)
        plan = plan_prompt(text, CONVERSATION, tools=TOOLS)
        if family is not GENERIC and not plan.generic:
            native[name] = family.name
            assert "get_weather" in (plan.text or ""), name  # shown in the model's own format
            assert family.parse is not None
    families = set(native.values())
    # The families the issue names render and parse natively.
    assert {"hermes", "qwen3-coder-xml", "llama3", "mistral", "mistral-args", "harmony"} <= families
    assert {"deepseek", "granite", "glm", "gemma4"} <= families
    assert native["Qwen-Qwen3-0.6B.jinja"] == "hermes"
    assert native["openai-gpt-oss-120b.jinja"] == "harmony"
    assert native["Qwen3.5-4B.jinja"] == "qwen3-coder-xml"
    assert native["google-gemma-4-31B-it.jinja"] == "gemma4"


def test_detection_reads_the_template_not_the_name() -> None:
    assert detect(None) is GENERIC
    assert detect("{{ messages }}") is GENERIC
    assert detect("... <tool_call> ...") is HERMES
    assert detect("[TOOL_CALLS] x [ARGS]") is MISTRAL_ARGS
    assert detect("[TOOL_CALLS]") is MISTRAL
    assert detect("<|start_header_id|> tools parameters") is LLAMA3


def test_requests_that_contradict_themselves_are_refused() -> None:
    with pytest.raises(ValueError, match="not among the tools"):
        plan_prompt(None, CONVERSATION, tools=TOOLS, tool_choice="delete_all")
    with pytest.raises(ValueError, match="cannot be combined"):
        plan_prompt(None, CONVERSATION, tools=TOOLS, tool_choice="required", json_schema={})


def test_auto_uses_a_lazy_call_grammar_only_where_the_opener_starts_it() -> None:
    templates = _vendored_templates()
    qwen = plan_prompt(templates["Qwen-Qwen2.5-7B-Instruct.jinja"], CONVERSATION, tools=TOOLS)
    assert qwen.grammar and qwen.grammar_triggers == ("<tool_call>",)
    assert "<tool_call>" in qwen.grammar.splitlines()[0]  # the grammar starts at the opener
    llama = plan_prompt(templates["meta-llama-Llama-3.3-70B-Instruct.jinja"], CONVERSATION,
                        tools=TOOLS)  # fmt: skip
    assert llama.grammar_triggers == ()  # its calls have no opener token: parsed as written
    forced = plan_prompt(templates["Qwen-Qwen2.5-7B-Instruct.jinja"], CONVERSATION, tools=TOOLS,
                         tool_choice="required")  # fmt: skip
    assert forced.grammar and forced.grammar_triggers == ()  # enforced from the first token


def test_tools_with_a_response_format_answer_in_the_schema() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    plan = plan_prompt(None, CONVERSATION, tools=TOOLS, json_schema=schema)
    assert plan.generic and plan.grammar
    content, calls = parse_generic('{"response": {"city": "Paris"}}')
    assert json.loads(content) == {"city": "Paris"} and calls == []
    with pytest.raises(ValueError, match="GBNF"):
        plan_prompt(None, CONVERSATION, tools=TOOLS, grammar='root ::= "x"')


def test_a_cut_off_envelope_keeps_whole_calls_and_never_shows_its_json() -> None:
    cut = '{"tool_calls": [{"name": "add", "arguments": {"a": 2}}, {"name": "add", "argu'
    content, calls = parse_generic(cut)
    assert content == "" and [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("add", {"a": 2})
    ]
    assert parse_generic('{"response": "Hello wor') == ("Hello wor", [])
    parser = ReplyParser(GENERIC, TOOLS, generic=True)
    parser.feed('{"tool_calls": [{"name": "add", "argu')
    held, calls, error = parser.finish()
    assert held == [] and calls == [] and error and "cut off" in error
