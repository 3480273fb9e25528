"""Suite files (JSONL): the README's example with every check kind, errors that name the line,
and a comparison that offers a prompt's tools and response format and grades every check."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launcher.compare import ComparisonSession, RunDone, plan_residency
from launcher.compare_checks import CHECK_KINDS
from launcher.compare_suites import SuiteError, load_jsonl_suite, load_suite
from launcher.engine.events import (
    EngineParams,
    Loaded,
    ReplyFinished,
    ReplyMetrics,
    Sampling,
    Token,
    ToolCall,
)
from launcher.machines import resolve_machine

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_suite(tmp_path: Path) -> Path:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```jsonl\n(.*?)```", text, re.S)
    assert block, "README has a ```jsonl example"
    path = tmp_path / "example.jsonl"
    path.write_text(block.group(1), encoding="utf-8")
    return path


def test_the_readme_example_parses_with_every_check_kind(tmp_path: Path) -> None:
    suite = load_suite(readme_suite(tmp_path))
    kinds = {c.kind for p in suite.prompts for c in p.all_checks}
    assert kinds == set(CHECK_KINDS)
    assert suite.checked == len(suite.prompts) == 8
    person = next(p for p in suite.prompts if p.id == "person")
    assert person.json_schema() == {}
    weather = next(p for p in suite.prompts if p.id == "weather")
    assert weather.tools[0]["name"] == "get_weather" and weather.system == "Use the tools."
    again = [p.to_json() for p in suite.prompts]
    assert json.loads(json.dumps(again))[0]["checks"][0]["type"] == "exact"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "a"}', "{not json"], r"bad\.jsonl line 2: not valid JSON"),
        (['["a"]'], r"line 1: each line must be a JSON object"),
        (['{"id": "x"}'], r"line 1: prompt 'x' has no text"),
        (['{"prompt": "a", "check": {"type": "exact", "value": 1}}'], r"line 1: exact check"),
        (['{"prompt": "a", "chekcs": []}'], r"line 1: unknown field 'chekcs'"),
        (['{"prompt": "a", "checks": [{"type": "tool_call"}]}'], r"line 1: .*offer 'tools'"),
        (['{"prompt": "a", "response_format": {"type": "xml"}}'], r"line 1: response_format"),
        (['{"prompt": "a", "max_tokens": 0}'], r"line 1: 'max_tokens'"),
        (['{"id": "a", "prompt": "a"}', "", '{"id": "a", "prompt": "b"}'],
         r"line 3: id 'a' was already used on line 1"),
        (["# only a comment", ""], r"has no prompts"),
    ],
)  # fmt: skip
def test_malformed_lines_are_refused_naming_the_line(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SuiteError, match=message):
        load_jsonl_suite(path)


def test_ids_default_to_line_numbers_and_comments_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('# my prompts\n{"prompt": "a"}\n\n{"text": "b", "max_tokens": 9}\n')
    suite = load_suite(str(path))
    assert [p.id for p in suite.prompts] == ["line-2", "line-4"]
    assert suite.name == "mine" and suite.prompts[1].max_tokens == 9


# --------------------------------------------------------------------------- a session


def _metrics() -> ReplyMetrics:
    return ReplyMetrics(0.1, 5, 0.1, 50.0, 3, 0.2, 10.0, "eos", "test", total_s=0.3)


class ScriptedEngine:
    """An engine whose replies are scripted per prompt text; records the sampling it got."""

    seen: list[tuple[str, Sampling]] = []

    def __init__(self, replies: dict[str, tuple[str, tuple[ToolCall, ...]]]) -> None:
        self.replies = replies
        self.conversations: list[list[dict[str, str]]] = []

    def load(self, path: str | Path, params: Any) -> Loaded:
        return Loaded(str(path), 0, 0.01, (), 0, None, 512, 512, 1, 1, "fake", None, params)

    def chat(self, messages: list[dict[str, str]], sampling: Sampling) -> Iterator[Any]:
        self.conversations.append(messages)
        text = messages[-1]["content"]
        self.seen.append((text, sampling))
        reply, calls = self.replies[text]
        yield Token(reply)
        yield ReplyFinished(reply, _metrics(), tool_calls=calls)

    def cancel(self) -> None:
        pass

    def unload(self) -> None:
        pass


def test_a_session_offers_tools_and_formats_and_grades_every_check(
    tmp_path: Path, app_home: Path
) -> None:
    suite = load_suite(readme_suite(tmp_path))
    good = {
        "Capital of France? One word.": ("paris", ()),
        "Name a fruit that is yellow.": ("A banana.", ()),
        "A US ZIP code, nothing else.": ("12345", ()),
        "What is 17 + 25?": ("It is 42", ()),
        "Ada Lovelace as JSON with name and birth year.": ('{"name": "Ada", "year": 1815}', ()),
        "Weather in Oslo?": ("", (ToolCall("1", "get_weather", '{"city": "Oslo"}'),)),
        "Write a Python function double(x) that returns 2 * x.": (
            "```python\ndef double(x):\n    return 2 * x\n```",
            (),
        ),
        "What is my name?": ("Your name is Ada.", ()),
    }
    bad = {k: ("I do not know.", ()) for k in good}
    engines = iter([ScriptedEngine(good), ScriptedEngine(bad)])
    from launcher.compare import CompareModel, Footprint

    models = [
        CompareModel(name, Path(f"/{name}.gguf"), EngineParams(), Footprint(name, 1, 1, 1, 3))
        for name in ("good", "bad")
    ]
    residency = plan_residency(
        [m.footprint for m in models if m.footprint], resolve_machine("unified=16GiB")
    )
    session = ComparisonSession(
        models, suite, residency, client_factory=lambda: next(engines), save=False
    )
    runs = [ev.result for ev in session.run() if isinstance(ev, RunDone)]
    by = {(r.model, r.prompt_id): r for r in runs}
    for prompt in suite.prompts:
        assert by["good", prompt.id].check_passed is True, by["good", prompt.id].checks
        assert by["bad", prompt.id].check_passed is False
    assert by["good", "weather"].tool_calls == [
        {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    ]
    assert by["bad", "code"].checks[0]["detail"].startswith("exit code 1")
    summary = {s.label: s for s in session.result.summary()}
    assert summary["good"].accuracy == 1.0 and summary["bad"].accuracy == 0.0
    sampled = dict(ScriptedEngine.seen)
    assert sampled["Weather in Oslo?"].tools[0]["name"] == "get_weather"
    assert sampled["Ada Lovelace as JSON with name and birth year."].json_schema == {}
    assert sampled["What is 17 + 25?"].json_schema is None and not sampled["What is 17 + 25?"].tools


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", "x", "--limit", "2"], "--limit needs a prompt suite"),
        (["c.gguf", "--suite", "coding", "--judge", "j.gguf"], "--judge compares exactly two"),
        (["--suite", "nope.jsonl"], "cannot read the suite file"),
    ],
)
def test_cli_refuses_bad_suite_options_before_loading(
    args: list[str], message: str, app_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from launcher.cli import main

    assert main(["compare", "a.gguf", "b.gguf", *args]) != 0
    assert message in capsys.readouterr().err


def test_a_remote_model_is_sent_the_prompts_tools_and_formats(
    tmp_path: Path, app_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import launcher.compare as compare
    from launcher.compare import CompareModel, Footprint

    monkeypatch.setattr(compare, "remote_client", lambda model, paths: None)
    suite = load_suite(readme_suite(tmp_path)).head(6)  # capital ... weather
    engine = ScriptedEngine({p.text: ("paris", ()) for p in suite.prompts})
    models = [
        CompareModel(name, Path(path), EngineParams(), Footprint(name, 1, 1, 1, 3))
        for name, path in (("local", "/local.gguf"), ("srv", "remote:srv/model"))
    ]
    residency = plan_residency(
        [m.footprint for m in models if m.footprint], resolve_machine("unified=16GiB")
    )
    session = ComparisonSession(models, suite, residency, client_factory=lambda: engine, save=False)
    runs = {(r.model, r.prompt_id): r for r in (ev.result for ev in session.run()
            if isinstance(ev, RunDone))}  # fmt: skip
    assert runs["srv", "capital"].error is None and runs["srv", "capital"].check_passed
    # The remote client sends tools and response formats (tests/core/test_remote_serve.py
    # checks them on a real server), so these prompts run there too.
    assert runs["srv", "person"].error is None and runs["srv", "weather"].error is None
    assert runs["local", "weather"].error is None


def test_a_line_may_be_a_conversation(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    path.write_text(
        json.dumps({"id": "name", "messages": conversation,
                    "checks": [{"type": "contains", "value": "Ada"}]}) + "\n"
    )  # fmt: skip
    (prompt,) = load_suite(path).prompts
    assert prompt.system == "Be brief." and prompt.text == "What is my name?"
    assert [m["role"] for m in prompt.history] == ["user", "assistant"]
    again = type(prompt).from_json(prompt.to_json())
    assert again == prompt


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([{"role": "assistant", "content": "x"}], "last message must be the user's"),
        ([], "non-empty list"),
        ([{"role": "tool", "content": "x"}, {"role": "user", "content": "y"}],
         "role 'tool' is not supported"),
        ([{"role": "user", "content": ["part"]}, {"role": "user", "content": "y"}],
         "'content' must be text"),
    ],
)  # fmt: skip
def test_bad_conversations_are_refused(tmp_path: Path, messages: Any, message: str) -> None:
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": messages}) + "\n")
    with pytest.raises(SuiteError, match=f"chat.jsonl line 1: .*{re.escape(message)}"):
        load_suite(path)


def test_a_session_sends_the_conversation(tmp_path: Path, app_home: Path) -> None:
    from launcher.compare import CompareModel, Footprint

    path = tmp_path / "chat.jsonl"
    turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    path.write_text(json.dumps({"messages": turns}) + "\n")
    engines = [ScriptedEngine({"What is my name?": ("Ada", ())}) for _ in range(2)]
    factory = iter(engines)
    models = [
        CompareModel(n, Path(f"/{n}.gguf"), EngineParams(), Footprint(n, 1, 1, 1, 3))
        for n in ("a", "b")
    ]
    residency = plan_residency(
        [m.footprint for m in models if m.footprint], resolve_machine("unified=16GiB")
    )
    session = ComparisonSession(
        models, load_suite(path), residency, client_factory=lambda: next(factory), save=False
    )
    list(session.run())
    assert engines[0].conversations == [turns] and engines[1].conversations == [turns]
