"""The model families: openers, preserved tokens, reasoning tags, parser and grammar wrap
per family, and :func:`detect`, which names the family from the template text."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from launcher.engine.toolcalls.parsers import (
    ParsedCall,
    parse_deepseek,
    parse_gemma4,
    parse_glm,
    parse_granite,
    parse_harmony,
    parse_hermes,
    parse_llama3,
    parse_mistral,
    parse_xml_function,
)


@dataclass(frozen=True)
class Family:
    """How one model family shows tools and writes calls and reasoning."""

    name: str
    openers: tuple[str, ...] = ()  # text that starts the call section
    preserved: tuple[str, ...] = ()  # special tokens to render as text (markup we parse)
    parse: Callable[[str, Mapping[str, dict[str, Any]]], list[ParsedCall]] | None = None
    think: tuple[str, str] | None = None  # reasoning tags
    #: GBNF around one call's JSON (``call``) for forced calls: (prefix, separator, suffix);
    #: ``args_key`` names the arguments field in that JSON.
    wrap: tuple[str, str, str] | None = None
    args_key: str = "arguments"
    native: bool = True  # the template renders the tools itself
    #: Markup removed from the answer wherever it appears (harmony's channel headers).
    strip: tuple[str, ...] = ()

    @property
    def grammar_ready(self) -> bool:
        return self.wrap is not None


def _ignore_schemas(fn: Callable[[str], list[ParsedCall]]) -> Callable[..., list[ParsedCall]]:
    return lambda text, _schemas: fn(text)


HERMES = Family(
    "hermes",
    openers=("<tool_call>",),
    preserved=("<tool_call>", "</tool_call>"),
    parse=_ignore_schemas(parse_hermes),
    wrap=('"<tool_call>\\n" ', ' "\\n</tool_call>\\n<tool_call>\\n" ', ' "\\n</tool_call>"'),
)
XML_FUNCTION = Family(
    "qwen3-coder-xml",
    openers=("<tool_call>", "<function="),
    preserved=("<tool_call>", "</tool_call>"),
    parse=parse_xml_function,
)
LLAMA3 = Family(
    "llama3",
    openers=("<|python_tag|>", '{"name"', '{ "name"'),
    preserved=("<|python_tag|>",),
    parse=_ignore_schemas(parse_llama3),
    wrap=("", ' "; " ', ""),
    args_key="parameters",
)
MISTRAL = Family(
    "mistral",
    openers=("[TOOL_CALLS]",),
    preserved=("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "[THINK]", "[/THINK]"),
    parse=_ignore_schemas(parse_mistral),
    wrap=('"[TOOL_CALLS][" ', ' ", " ', ' "]"'),
)
MISTRAL_ARGS = Family(
    "mistral-args",
    openers=("[TOOL_CALLS]",),
    preserved=("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "[THINK]", "[/THINK]"),
    parse=_ignore_schemas(parse_mistral),
    think=("[THINK]", "[/THINK]"),
)
DEEPSEEK = Family(
    "deepseek",
    openers=("<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>"),
    preserved=(
        "<｜tool▁calls▁begin｜>",
        "<｜tool▁call▁begin｜>",
        "<｜tool▁sep｜>",
        "<｜tool▁call▁end｜>",
        "<｜tool▁calls▁end｜>",
    ),
    parse=_ignore_schemas(parse_deepseek),
    think=("<think>", "</think>"),
)
GRANITE = Family(
    "granite",
    openers=("<|tool_call|>",),
    preserved=("<|tool_call|>",),
    parse=_ignore_schemas(parse_granite),
    wrap=('"<|tool_call|>[" ', ' ", " ', ' "]"'),
)
GLM = Family(
    "glm",
    openers=("<tool_call>",),
    preserved=(
        "<tool_call>",
        "</tool_call>",
        "<arg_key>",
        "</arg_key>",
        "<arg_value>",
        "</arg_value>",
    ),
    parse=parse_glm,
    think=("<think>", "</think>"),
)
GEMMA4 = Family(
    "gemma4",
    openers=("<|tool_call>",),
    preserved=("<|tool_call>", "<tool_call|>", '<|"|>', "<|channel>", "<channel|>"),
    parse=_ignore_schemas(parse_gemma4),
    think=("<|channel>thought", "<channel|>"),
)
HARMONY = Family(
    "harmony",
    openers=("<|channel|>commentary to=", "<|start|>assistant to=", " to=functions."),
    think=("<|channel|>analysis<|message|>", "<|end|>"),
    strip=("<|start|>assistant", "<|channel|>final<|message|>", "<|end|>", "<|return|>"),
    preserved=(
        "<|channel|>",
        "<|message|>",
        "<|start|>",
        "<|end|>",
        "<|constrain|>",
        "<|call|>",
    ),
    parse=_ignore_schemas(parse_harmony),
)
#: Templates that do not render tools (or no template): tools go in a system message and the
#: reply is a grammar-constrained JSON envelope.
GENERIC = Family("generic", native=False)

NATIVE_FAMILIES = (
    HERMES,
    XML_FUNCTION,
    LLAMA3,
    MISTRAL,
    MISTRAL_ARGS,
    DEEPSEEK,
    GRANITE,
    GLM,
    GEMMA4,
    HARMONY,
)


def detect(template: str | None) -> Family:
    """The family whose syntax the template teaches its model (from the template text)."""
    if not template:
        return GENERIC
    t = template
    if "<|channel|>" in t and "<|message|>" in t:
        return HARMONY
    if "<|tool_call>" in t and "call:" in t:
        return GEMMA4
    if "tool▁call▁begin" in t:
        return DEEPSEEK
    if "[TOOL_CALLS]" in t:
        return MISTRAL_ARGS if "[ARGS]" in t else MISTRAL
    if "<|tool_call|>" in t:
        return GRANITE
    if "<arg_key>" in t:
        return GLM
    if "<function=" in t and "<parameter=" in t:
        return XML_FUNCTION
    if "<tool_call>" in t:
        return HERMES
    if "<|python_tag|>" in t or ("<|start_header_id|>" in t and "parameters" in t and "tools" in t):
        return LLAMA3
    return GENERIC


def with_reasoning(family: Family, template: str | None) -> Family:
    """The family plus ``<think>`` tags when the template uses them (Qwen3, DeepSeek R1...)."""
    if family.think is None and template and "<think>" in template and "</think>" in template:
        from dataclasses import replace

        return replace(family, think=("<think>", "</think>"))
    return family
