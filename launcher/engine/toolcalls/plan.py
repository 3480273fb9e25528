"""``plan_prompt``: how one request is put to the model and how its reply is read back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from launcher.engine.toolcalls.families import GENERIC, Family, detect, with_reasoning
from launcher.engine.toolcalls.grammars import call_grammar, generic_grammar, schema_grammar
from launcher.engine.toolcalls.rendering import generic_messages, openai_tools, template_messages


@dataclass(frozen=True)
class PromptPlan:
    """How one request is put to the model and how its reply is read back.

    ``text`` is the rendered prompt (``None``: the model has no template; the caller writes a
    plain transcript of ``messages``, which are then the generic-mode messages when tools
    are on). ``grammar`` constrains the whole reply (GBNF) or is ``None``.
    """

    text: str | None
    messages: list[dict[str, Any]]
    family: Family
    generic: bool
    grammar: str | None
    in_reasoning: bool
    tools: tuple[dict[str, Any], ...]
    #: When set, ``grammar`` is lazy: it applies from the first of these openers the model
    #: writes as one token (the family's call opener), and the text before is free.
    grammar_triggers: tuple[str, ...] = ()


def plan_prompt(
    template: str | None,
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Mapping[str, Any]] = (),
    tool_choice: str = "auto",
    parallel_tool_calls: bool = True,
    json_schema: Mapping[str, Any] | None = None,
    grammar: str | None = None,
    template_kwargs: Mapping[str, Any] | None = None,
    bos_token: str = "",
    eos_token: str = "",
) -> PromptPlan:
    """Render ``messages`` (and ``tools``) for this template and pick the reply's grammar.

    Raises ``ValueError`` for requests that contradict themselves (a named tool that is not
    given; a response format together with a forced tool call) and ``TemplateError`` when the
    template refuses the conversation.
    """
    from launcher.engine.templates import render_chat

    kwargs = dict(template_kwargs or {})
    active = tuple(dict(t) for t in tools) if tool_choice != "none" else ()
    if tool_choice not in ("auto", "none", "required") and not any(
        t["name"] == tool_choice for t in tools
    ):
        raise ValueError(f"tool_choice names {tool_choice!r}, which is not among the tools")
    forced = bool(active) and tool_choice != "auto"
    if (json_schema is not None or grammar is not None) and forced:
        raise ValueError("a response format cannot be combined with a forced tool call")
    if grammar is not None and active:
        raise ValueError("a GBNF grammar cannot be combined with tools; use a JSON schema")
    family = with_reasoning(detect(template), template)
    text: str | None = None
    triggers: tuple[str, ...] = ()
    msgs = template_messages(messages)
    # Tools with a response format: the JSON envelope, whose answer follows the schema.
    generic = bool(active) and (
        not family.native or (forced and not family.grammar_ready) or json_schema is not None
    )
    out_grammar: str | None = None
    if active and not generic:
        try:
            text = render_chat(
                template or "", msgs, tools=openai_tools(active), bos_token=bos_token,
                eos_token=eos_token, **kwargs,
            )  # fmt: skip
        except Exception:
            generic = True  # the template cannot show these tools: say them in words
        else:
            if not all(t["name"] in text for t in active):
                generic, text = True, None  # it rendered without them (DeepSeek R1 Distill)
            elif forced or family.grammar_ready:
                out_grammar = call_grammar(family, active, tool_choice, parallel_tool_calls)
                if not forced:  # "auto": free text until the model opens a call
                    prefix = family.wrap[0] if family.wrap else ""
                    triggers = tuple(o for o in family.openers if o in prefix)
    uses_tools = any(m.get("role") == "tool" or m.get("tool_calls") for m in messages)
    if generic or (uses_tools and not family.native):
        # A template without tool support shows earlier calls and results as plain text.
        msgs = generic_messages(messages, active, tool_choice)
    if generic:
        out_grammar = generic_grammar(active, tool_choice, parallel_tool_calls)
    if text is None and template:
        text = render_chat(template, msgs, bos_token=bos_token, eos_token=eos_token, **kwargs)
    if generic:
        triggers = ()
    if out_grammar is None:
        if json_schema is not None:
            out_grammar = schema_grammar(json_schema)
        elif grammar is not None:
            out_grammar = grammar
    in_reasoning = False
    if family.think and text:
        open_at, close_at = text.rfind(family.think[0]), text.rfind(family.think[1])
        in_reasoning = open_at >= 0 and open_at > close_at and not generic
    return PromptPlan(
        text=text,
        messages=msgs,
        family=GENERIC if generic else family,
        generic=generic,
        grammar=out_grammar,
        in_reasoning=in_reasoning,
        tools=active,
        grammar_triggers=triggers,
    )
