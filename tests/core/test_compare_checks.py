"""Compare checks: text, exact, JSON and JSON Schema, tool calls, and code run in a subprocess."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from launcher.compare_checks import (
    Reply,
    ReplyToolCall,
    SuiteError,
    build_program,
    extract_code,
    extract_json_text,
    normalize_tool,
    parse_check,
    run_python,
)

WEATHER = normalize_tool(
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"enum": ["c", "f"]},
                },
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
)
TIME = normalize_tool({"name": "get_time", "parameters": {"type": "object", "properties": {}}})
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}


def call(name: str, args: Any) -> ReplyToolCall:
    return ReplyToolCall(name, args if isinstance(args, str) else json.dumps(args))


@pytest.mark.parametrize(
    ("spec", "reply", "passed", "detail"),
    [
        ({"type": "contains", "value": "Paris"}, Reply("It is paris."), True, ""),
        ({"type": "contains", "value": ["a1", "b2"]}, Reply("B2!"), True, ""),
        ({"type": "contains", "value": "Paris"}, Reply("Lyon"), False, "mentions 'Paris'"),
        ({"type": "regex", "value": r"^\d{3}$"}, Reply("123"), True, ""),
        ({"type": "number", "value": 26}, Reply("so 26"), True, ""),
        ({"type": "exact", "value": "Paris"}, Reply("  Paris\n"), True, ""),
        ({"type": "exact", "value": "Paris"}, Reply("paris"), False, "answer is 'paris'"),
        ({"type": "exact", "value": "Paris", "ignore_case": True}, Reply("paris"), True, ""),
        ({"type": "exact", "value": "Paris"}, Reply("Paris, France"), False, "Paris, France"),
        ({"type": "json"}, Reply('{"a": 1}'), True, ""),
        ({"type": "json"}, Reply('Here:\n```json\n[1, 2]\n```\nDone.'), True, ""),
        ({"type": "json"}, Reply("{'a': 1}"), False, "not JSON"),
        ({"type": "json", "schema": PERSON}, Reply('{"name": "Ada", "age": 36}'), True, ""),
        ({"type": "json", "schema": PERSON}, Reply('{"name": "Ada"}'), False, "'age' is a"),
        ({"type": "json", "schema": PERSON}, Reply('{"name": "Ada", "age": -1}'), False, "age:"),
        ({"type": "json", "schema": PERSON}, Reply("[]"), False, "is not of type 'object'"),
    ],
)  # fmt: skip
def test_text_and_json_checks(
    spec: dict[str, Any], reply: Reply, passed: bool, detail: str
) -> None:
    outcome = parse_check(spec).grade(reply)
    assert outcome.passed is passed, outcome
    assert detail in outcome.detail
    assert parse_check(spec).to_json()["type"] == spec["type"]


@pytest.mark.parametrize(
    ("spec", "calls", "passed", "detail"),
    [
        ({"type": "tool_call"}, [call("get_weather", {"city": "Oslo"})], True, ""),
        ({"type": "tool_call", "name": "get_weather"}, [call("get_time", {})], False, "instead"),
        ({"type": "tool_call"}, [call("get_wether", {"city": "Oslo"})], False, "not one of"),
        ({"type": "tool_call"}, [], False, "no tool call"),
        ({"type": "tool_call"}, [call("get_weather", "{city: Oslo")], False, "not JSON"),
        ({"type": "tool_call"}, [call("get_weather", [1])], False, "not a JSON object"),
        ({"type": "tool_call"}, [call("get_weather", {"unit": "c"})], False, "'city' is a"),
        ({"type": "tool_call"}, [call("get_weather", {"city": "O", "unit": "k"})], False, "unit"),
        ({"type": "tool_call"}, [call("get_weather", {"city": 3})], False, "city"),
        ({"type": "tool_call", "arguments": {"city": "Oslo"}},
         [call("get_weather", {"city": "Bergen"})], False, "expected 'Oslo'"),
        ({"type": "tool_call", "name": "get_weather", "arguments": {"city": "Oslo"}},
         [call("get_time", {}), call("get_weather", {"city": "Oslo"})], True, ""),
    ],
)  # fmt: skip
def test_tool_call_checks(
    spec: dict[str, Any], calls: list[ReplyToolCall], passed: bool, detail: str
) -> None:
    outcome = parse_check(spec, [WEATHER, TIME]).grade(Reply("", tuple(calls)))
    assert outcome.passed is passed, outcome
    assert detail in outcome.detail


def test_reply_of_reads_the_engines_tool_calls() -> None:
    from launcher.engine.events import ToolCall

    reply = Reply.of("x", (ToolCall("c1", "get_time", "{}"),))
    assert reply.tool_calls == (ReplyToolCall("get_time", "{}"),)


@pytest.mark.parametrize(
    ("spec", "tools", "message"),
    [
        ({"type": "bogus"}, [], "contains, number or regex"),
        ("exact", [], "must be a JSON object"),
        ({"type": "exact"}, [], "string 'value'"),
        ({"type": "regex", "value": "("}, [], "does not compile"),
        ({"type": "json", "schema": {"type": "nope"}}, [], "not a valid JSON Schema"),
        ({"type": "tool_call"}, [], "offer 'tools'"),
        ({"type": "tool_call", "name": "x"}, [WEATHER], "not one of the tools"),
        ({"type": "code"}, [], "needs 'tests'"),
        ({"type": "code", "tests": "assert ("}, [], "do not compile"),
        ({"type": "code", "tests": "pass", "timeout": 0}, [], "between 0 and 600"),
    ],
)
def test_bad_checks_are_refused_with_a_reason(spec: Any, tools: list[Any], message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        parse_check(spec, tools)


def test_a_tool_without_a_name_or_with_a_bad_schema_is_refused() -> None:
    with pytest.raises(SuiteError, match="needs a name"):
        normalize_tool({"type": "function", "function": {}})
    with pytest.raises(SuiteError, match="not a valid JSON Schema"):
        normalize_tool({"name": "t", "parameters": {"type": 5}})


def test_extracting_code_and_json_from_answers() -> None:
    text = "Sure:\n```python\ndef f():\n    return 1\n```\nand\n```\nx = f()\n```\n"
    assert extract_code(text) == "def f():\n    return 1\n\nx = f()\n"
    assert extract_code("    return 1\n") == "    return 1\n"
    assert extract_code("```bash\nls\n```") == "```bash\nls\n```"
    assert extract_json_text('```json\n{"a": 1}\n```') == '{"a": 1}'
    assert extract_json_text(' {"a": 1} ') == '{"a": 1}'


PROMPT_CODE = (
    "from typing import List\n\n\ndef helper(x):\n    return x\n\n\n"
    'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n'
)


def test_build_program_continues_a_body_or_takes_a_whole_function() -> None:
    tests = "def check(candidate):\n    assert candidate(1, 2) == 3\n"
    body = build_program("    return a + b\n", tests, PROMPT_CODE, "add")
    assert body.startswith(PROMPT_CODE + "    return a + b")
    assert body.rstrip().endswith("check(add)")
    whole = build_program(
        "```python\ndef add(a, b):\n    return a + b\n```", tests, PROMPT_CODE, "add"
    )
    assert "from typing import List" in whole and "def helper" in whole
    assert whole.count("def add(") == 1
    plain = build_program("def f():\n    return 2\n", "assert f() == 2\n")
    assert "check(" not in plain


@pytest.mark.parametrize(
    ("reply", "passed", "detail"),
    [
        ("```python\ndef double(x):\n    return 2 * x\n```", True, ""),
        ("```python\ndef double(x):\n    return x + 2\n```", False, "AssertionError"),
        ("def double(x) return", False, "SyntaxError"),
        ("def double(x):\n    while True:\n        pass\n", False, "timed out"),
    ],
)
def test_code_checks_run_the_tests(reply: str, passed: bool, detail: str) -> None:
    check = parse_check(
        {"type": "code", "tests": "assert double(3) == 6\nassert double(0) == 0", "timeout": 3}
    )
    outcome = check.grade(Reply(reply))
    assert outcome.passed is passed, outcome
    assert detail in outcome.detail


def test_run_python_isolates_the_program(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:1")
    monkeypatch.setenv("SECRET_TOKEN", "s3cret")
    source = (
        "import os, sys, socket, pathlib\n"
        "assert 'SECRET_TOKEN' not in os.environ and 'HTTPS_PROXY' not in os.environ\n"
        "assert os.getcwd() == os.environ['HOME'] and list(pathlib.Path('.').iterdir()) == "
        "[pathlib.Path('check.py')]\n"
        "assert sys.flags.isolated\n"
        "try:\n    socket.create_connection(('127.0.0.1', 9))\nexcept OSError as e:\n"
        "    assert 'network access is disabled' in str(e)\nelse:\n    raise SystemExit(3)\n"
        "pathlib.Path('out.txt').write_text('x')\n"
        "print('fine')\n"
    )
    run = run_python(source, timeout_s=20)
    assert run.passed, run.output
    assert "fine" in run.output and not run.timed_out


@pytest.mark.skipif(sys.platform != "linux", reason="resource limits are checked on Linux")
def test_run_python_limits_memory() -> None:
    run = run_python("x = bytearray(3 << 30)\n", timeout_s=20)
    assert not run.passed and "MemoryError" in run.output


def test_run_python_kills_the_whole_group_on_timeout() -> None:
    source = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "time.sleep(60)\n"
    )
    run = run_python(source, timeout_s=1.5)
    assert run.timed_out and run.exit_code is None and run.seconds < 10
    assert run.reason().startswith("timed out")


def test_the_packaged_app_runs_checks_with_a_python_from_the_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from launcher.compare_checks import checking_python

    assert checking_python() == sys.executable
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OSError, match="need Python 3 on the PATH"):
        checking_python()
    # In a comparison, a check that cannot run fails with the reason instead of crashing.
    from launcher.compare import _grade
    from launcher.compare_suites import SuitePrompt

    prompt = SuitePrompt("p", "t", parse_check({"type": "code", "tests": "pass"}))
    passed, outcomes = _grade(prompt, "x = 1", ())
    assert passed is False and "could not run" in outcomes[0].detail
