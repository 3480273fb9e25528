"""Chat templates from GGUF files, rendered in a sandbox the way the model's authors meant.

A GGUF's ``tokenizer.chat_template`` is Jinja written for Hugging Face transformers: it
expects ``messages``, ``tools``, ``add_generation_prompt``, ``bos_token``/``eos_token``,
``raise_exception``, ``strftime_now``, a ``tojson`` that takes ``indent``/``ensure_ascii``/
``separators``, and loop controls (``{% break %}``). llama-cpp-python's formatter covers
part of that; templates of 2025-2026 models (Qwen 3.5, gpt-oss, GLM, Gemma 4) need the rest,
so the environment is built here: jinja2's immutable sandbox (a template cannot touch Python
objects or files), with those helpers. Compiled templates are cached per text.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any


def _plain(value: Any) -> Any:
    """Generators and other iterables a template built, as lists json can write."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "__next__"):
        return [_plain(v) for v in value]
    return value


def _tojson(
    value: Any,
    indent: int | None = None,
    ensure_ascii: bool = False,
    sort_keys: bool = False,
    separators: Sequence[str] | None = None,
) -> Any:
    from markupsafe import Markup

    text = json.dumps(
        _plain(value),
        indent=indent,
        ensure_ascii=ensure_ascii,
        sort_keys=sort_keys,
        separators=tuple(separators) if separators else None,  # type: ignore[arg-type]
    )
    return Markup(text)


def _raise(message: str) -> None:
    raise TemplateError(message)


class TemplateError(ValueError):
    """The template refused the conversation (its own ``raise_exception``) or failed."""


def _generation_extension() -> Any:
    from jinja2.ext import Extension

    class GenerationTag(Extension):
        """transformers' ``{% generation %}...{% endgeneration %}`` marks the assistant's
        text for training masks; rendering ignores it."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    return GenerationTag


@functools.lru_cache(maxsize=8)
def _compiled(template: str) -> Any:
    # The sandbox forbids Python internals, file and attribute tricks; templates may still
    # build their own lists (Kimi K2's ``.append``), which only touches their own data.
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.loopcontrols", _generation_extension()],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: dt.datetime.now().strftime(fmt)
    return env.from_string(template)


def render(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    tools: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    **kwargs: Any,
) -> str:
    """The prompt text for ``messages`` (and ``tools``, in the template's own format)."""
    from jinja2 import TemplateError as JinjaError

    try:
        return str(
            _compiled(template).render(
                messages=[dict(m) for m in messages],
                tools=list(tools) if tools is not None else None,
                bos_token=bos_token,
                eos_token=eos_token,
                add_generation_prompt=add_generation_prompt,
                **kwargs,
            )
        )
    except TemplateError:
        raise
    except (JinjaError, TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}") from exc


def _merge_system(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The system message folded into the first user message (for templates that refuse a
    system role, like Gemma 2's)."""
    msgs = [dict(m) for m in messages]
    if not msgs or msgs[0].get("role") != "system":
        return msgs
    system = str(msgs.pop(0).get("content") or "")
    for m in msgs:
        if m.get("role") == "user":
            m["content"] = f"{system}\n\n{m.get('content') or ''}"
            return msgs
    return [{"role": "user", "content": system}, *msgs]


def _string_arguments(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tool-call arguments as JSON text, for templates that concatenate them (Functionary)."""
    out = []
    for m in messages:
        msg = dict(m)
        if msg.get("tool_calls"):
            msg["tool_calls"] = [
                {
                    **c,
                    "function": {
                        **c["function"],
                        "arguments": c["function"]["arguments"]
                        if isinstance(c["function"].get("arguments"), str)
                        else json.dumps(c["function"].get("arguments") or {}),
                    },
                }
                for c in msg["tool_calls"]
            ]
        out.append(msg)
    return out


def render_chat(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    **kwargs: Any,
) -> str:
    """:func:`render`, retried the ways templates differ (as llama.cpp's chat code adapts to
    each): arguments as objects, then as JSON text; a system message as is, then folded into
    the first user turn. Raises the first error when no variant renders."""
    kwargs.setdefault("functions", json.dumps([t.get("function", t) for t in tools or ()]))
    kwargs.setdefault("datetime", dt.datetime.now().strftime("%b %d %Y %H:%M:%S"))
    # Older templates (Command R+) take the bare function objects as tools.
    # Some iterate ``tools`` without checking it: give them an empty list.
    tool_variants: list[Sequence[Mapping[str, Any]] | None] = (
        [tools, [t.get("function", t) for t in tools]] if tools else [None, []]
    )
    first: TemplateError | None = None
    for tool_variant in tool_variants:
        for variant in (
            list(messages),
            _string_arguments(messages),
            _merge_system(messages),
            _merge_system(_string_arguments(messages)),
        ):
            try:
                return render(template, variant, tools=tool_variant, **kwargs)
            except TemplateError as exc:
                first = first or exc
    assert first is not None
    raise first
