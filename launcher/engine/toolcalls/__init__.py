"""Tool calls and reasoning the way each model family writes them.

A model sees tools in its own format only if its chat template renders them, and it answers
in its own syntax: Hermes/Qwen ``<tool_call>{json}</tool_call>``, Qwen3-Coder and Nemotron
``<function=NAME><parameter=K>v</parameter>``, Llama 3.x bare ``{"name", "parameters"}`` JSON,
Mistral ``[TOOL_CALLS]``, gpt-oss harmony channels, DeepSeek's ``<｜tool▁call▁begin｜>``,
Granite ``<|tool_call|>``, GLM ``<arg_key>``, Gemma 4 ``<|tool_call>call:NAME{...}``. The formats
are facts documented in llama.cpp's ``common/chat.cpp``, ``tests/test-chat.cpp`` and
``models/templates/*.jinja``; the code here is ours.

- :func:`detect` names the family from the template *text* (never the file name).
- Each :class:`Family` knows its openers (text that starts a call, held back while streaming
  so no markup leaks into ``content``), the special tokens to render as text, its reasoning
  tags, a parser of the call section, and, where the call syntax is JSON-shaped, a grammar
  for forced calls (``tool_choice`` ``required`` or a name).
- A template with no tool support, no template at all (Gemma 3 270M), or a forced call in a
  family without a grammar gets the *generic* mode that llama.cpp uses: the tools described
  in a system message and the reply constrained by a grammar to a JSON envelope,
  ``{"tool_calls": [...]}`` or ``{"response": "..."}``.
- :class:`ReplyParser` splits a streamed reply into reasoning, content and calls.

Modules: ``parsers`` (one per call syntax), ``families`` (and :func:`detect`), ``rendering``
(tools and tool history for templates), ``grammars``, ``streaming`` (:class:`ReplyParser`),
``plan`` (:func:`plan_prompt`).

Written by hand because no Python library parses these formats: llama.cpp's parsers are C++
(not exported by libllama), and ``openai-harmony`` needs a tokenizer vocabulary downloaded at
run time, which an offline machine cannot do.
"""

from launcher.engine.toolcalls.families import (
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
    detect,
    with_reasoning,
)
from launcher.engine.toolcalls.grammars import call_grammar, generic_grammar, schema_grammar
from launcher.engine.toolcalls.parsers import (
    ParsedCall,
    ToolCallParseError,
    new_call_id,
    parse_generic,
)
from launcher.engine.toolcalls.plan import PromptPlan, plan_prompt
from launcher.engine.toolcalls.rendering import generic_messages, openai_tools, template_messages
from launcher.engine.toolcalls.streaming import ReplyParser, partial_suffix

__all__ = [
    "DEEPSEEK", "GEMMA4", "GENERIC", "GLM", "GRANITE", "HARMONY", "HERMES", "LLAMA3", "MISTRAL",
    "MISTRAL_ARGS", "NATIVE_FAMILIES", "XML_FUNCTION", "Family", "ParsedCall", "PromptPlan",
    "ReplyParser", "ToolCallParseError", "call_grammar", "detect", "generic_grammar",
    "generic_messages", "new_call_id", "openai_tools", "parse_generic", "partial_suffix",
    "plan_prompt", "schema_grammar", "template_messages", "with_reasoning",
]  # fmt: skip
