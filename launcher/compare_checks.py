"""Checks that grade a comparison's replies without anyone voting, and the code runner they use.

Every check reads one :class:`Reply` (the answer text and the tool calls the model made) and
returns an :class:`Outcome` (passed, and why not in a few words):

- text: ``contains`` (any of some phrases, case-insensitive), ``regex``, ``exact`` (the whole
  answer, trimmed), ``number`` (the last number in the reply, with a tolerance);
- ``json``: the answer is JSON (a fenced ```` ```json ```` block is accepted), and with a
  ``schema`` also valid against that JSON Schema (``jsonschema``, the schema's own draft);
- ``tool_call``: the model called a tool that the prompt offered (optionally a named one), with
  arguments that are a JSON object valid against that tool's ``parameters`` schema (and, if
  given, containing the expected argument values);
- ``code``: the Python in the reply passes the prompt's tests, run by :func:`run_python` in a
  separate process with a timeout, in an empty temporary folder (see its docstring for what
  that does and does not prevent).

A check is built from its JSON form (one object of a suite file's ``checks`` list) by
:func:`parse_check`, which raises :class:`SuiteError` naming what is wrong.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from launcher.errors import LauncherError

TextKind = Literal["contains", "number", "regex"]

# A number as people write it in an answer: "1,234.5", "-3", "42". Thousands separators are
# removed before parsing.
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)

CHECK_KINDS = ("contains", "number", "regex", "exact", "json", "tool_call", "code")


class SuiteError(LauncherError):
    """A prompt suite (or one of its checks) is missing or malformed."""


@dataclass(frozen=True)
class ReplyToolCall:
    """A tool call as a check sees it: the tool's name and its arguments as JSON text."""

    name: str
    arguments: str


@dataclass(frozen=True)
class Reply:
    """What a model answered: its text and the tool calls it made (``ReplyFinished``)."""

    text: str
    tool_calls: tuple[ReplyToolCall, ...] = ()

    @classmethod
    def of(cls, text: str, tool_calls: Sequence[Any] = ()) -> Reply:
        """From the engine's ``ToolCall`` objects (anything with ``name`` and ``arguments``)."""
        return cls(text, tuple(ReplyToolCall(c.name, c.arguments) for c in tool_calls))


@dataclass(frozen=True)
class Outcome:
    """One check's verdict on one reply: passed, and in a few words what was wrong."""

    kind: str
    passed: bool
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "passed": self.passed, "detail": self.detail}


class ReplyCheck(Protocol):
    """What every check offers: grade a reply, describe itself, and its JSON form."""

    @property
    def kind(self) -> str: ...

    def grade(self, reply: Reply) -> Outcome: ...

    def describe(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


# ---------------------------------------------------------------------------- text checks


@dataclass(frozen=True)
class Check:
    """A text check (``contains``, ``number``, ``regex``): only reads the answer's text."""

    kind: TextKind
    value: str | float | tuple[str, ...]
    tolerance: float = 0.0

    def passes(self, reply: str) -> bool:
        """True when ``reply`` satisfies the check."""
        if self.kind == "contains":
            options = self.value if isinstance(self.value, tuple) else (str(self.value),)
            text = reply.casefold()
            return any(opt.casefold() in text for opt in options)
        if self.kind == "number":
            numbers = [n.replace(",", "") for n in _NUMBER.findall(reply)]
            numbers = [n for n in numbers if n not in ("", "-")]
            if not numbers:
                return False
            try:
                got = float(numbers[-1])
            except ValueError:
                return False
            assert not isinstance(self.value, tuple)
            return abs(got - float(self.value)) <= self.tolerance
        pattern = self.value if isinstance(self.value, str) else str(self.value)
        return re.search(pattern, reply, flags=re.IGNORECASE | re.DOTALL) is not None

    def grade(self, reply: Reply) -> Outcome:
        ok = self.passes(reply.text)
        return Outcome(self.kind, ok, "" if ok else f"expected: {self.describe()}")

    def describe(self) -> str:
        """A short human description ("final number is 42", "mentions 'Paris'")."""
        if self.kind == "contains":
            options = self.value if isinstance(self.value, tuple) else (str(self.value),)
            return "mentions " + " or ".join(repr(o) for o in options)
        if self.kind == "number":
            tol = f" ± {self.tolerance:g}" if self.tolerance else ""
            return f"final number is {float(self.value):g}{tol}"  # type: ignore[arg-type]
        return f"matches /{self.value}/"

    def to_json(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        out: dict[str, Any] = {"type": self.kind, "value": value}
        if self.tolerance:
            out["tolerance"] = self.tolerance
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Check:
        """A text check from its JSON form; other kinds are built by :func:`parse_check`."""
        kind = data.get("type")
        value = data.get("value")
        if kind == "contains":
            if isinstance(value, list):
                return cls("contains", tuple(str(v) for v in value))
            if value is None or value == "":
                raise SuiteError("contains check needs a 'value' (a phrase or a list of them)")
            return cls("contains", str(value))
        if kind == "number":
            try:
                return cls("number", float(value), float(data.get("tolerance", 0.0)))  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                raise SuiteError(f"number check needs a numeric value, got {value!r}") from exc
        if kind == "regex":
            try:
                re.compile(str(value))
            except re.error as exc:
                raise SuiteError(f"regex check {value!r} does not compile: {exc}") from exc
            return cls("regex", str(value))
        raise SuiteError(_unknown_kind(kind))


def _unknown_kind(kind: object) -> str:
    return (
        f"unknown check type {kind!r}: use exact, json, tool_call, code, contains, number or regex"
    )


@dataclass(frozen=True)
class ExactCheck:
    """The whole answer equals ``value`` once surrounding whitespace is trimmed."""

    value: str
    ignore_case: bool = False
    kind: str = "exact"

    def grade(self, reply: Reply) -> Outcome:
        got, want = reply.text.strip(), self.value.strip()
        if self.ignore_case:
            got, want = got.casefold(), want.casefold()
        ok = got == want
        return Outcome(self.kind, ok, "" if ok else f"answer is {_clip(reply.text.strip())!r}")

    def describe(self) -> str:
        return f"answer is exactly {self.value!r}" + (" (any case)" if self.ignore_case else "")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "exact", "value": self.value}
        if self.ignore_case:
            out["ignore_case"] = True
        return out


# ---------------------------------------------------------------------------- JSON


def _validator(schema: Mapping[str, Any], where: str) -> Any:
    """A ``jsonschema`` validator for ``schema`` (its own ``$schema`` draft, else 2020-12)."""
    import jsonschema

    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SuiteError(f"{where} is not a valid JSON Schema: {exc.message}") from exc
    return cls(schema)


def _schema_errors(schema: Mapping[str, Any], instance: Any) -> str:
    """The first reason ``instance`` is not valid for ``schema`` ('' when it is)."""
    validator = _validator(schema, "the schema")
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if not errors:
        return ""
    err = errors[0]
    where = "/".join(str(p) for p in err.absolute_path)
    return f"{where or 'the value'}: {err.message}"


def extract_json_text(text: str) -> str:
    """The JSON part of an answer: a fenced block's body if there is one, else the answer."""
    for lang, body in _FENCE.findall(text):
        if lang.lower() in ("", "json", "jsonc"):
            return body.strip()
    return text.strip()


@dataclass(frozen=True)
class JsonCheck:
    """The answer is JSON, and valid against ``schema`` when one is given."""

    schema: Mapping[str, Any] | None = None
    kind: str = "json"

    def grade(self, reply: Reply) -> Outcome:
        try:
            value = json.loads(extract_json_text(reply.text))
        except ValueError as exc:
            return Outcome(self.kind, False, f"not JSON: {exc}")
        if self.schema is None:
            return Outcome(self.kind, True)
        why = _schema_errors(self.schema, value)
        return Outcome(self.kind, not why, why)

    def describe(self) -> str:
        return "valid JSON" + (" for the schema" if self.schema is not None else "")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "json"}
        if self.schema is not None:
            out["schema"] = dict(self.schema)
        return out


# ---------------------------------------------------------------------------- tool calls


def normalize_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A tool as ``Sampling.tools`` wants it (``{"name", "description", "parameters"}``) from
    that shape or OpenAI's ``{"type": "function", "function": {...}}``."""
    fn = tool.get("function") if tool.get("type") == "function" else tool
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise SuiteError(f"a tool needs a name: {json.dumps(tool)[:120]}")
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = str(fn["description"])
    params = fn.get("parameters")
    if params is not None:
        if not isinstance(params, Mapping):
            raise SuiteError(f"tool {fn['name']!r}: 'parameters' must be a JSON Schema object")
        _validator(params, f"tool {fn['name']!r} parameters")
        out["parameters"] = dict(params)
    return out


@dataclass(frozen=True)
class ToolCallCheck:
    """The model called one of ``tools`` (``name`` if given) with valid arguments.

    Valid means: a JSON object that the tool's ``parameters`` schema accepts and that holds
    every ``arguments`` value expected (compared as JSON values). The first call that passes
    wins; otherwise the outcome says why the closest call failed.
    """

    tools: tuple[Mapping[str, Any], ...]
    name: str | None = None
    arguments: Mapping[str, Any] | None = None
    kind: str = "tool_call"

    def grade(self, reply: Reply) -> Outcome:
        if not reply.tool_calls:
            return Outcome(self.kind, False, "no tool call")
        by_name = {str(t["name"]): t for t in self.tools}
        reasons = []
        for call in reply.tool_calls:
            why = self._why_not(call, by_name)
            if not why:
                return Outcome(self.kind, True)
            reasons.append(why)
        return Outcome(self.kind, False, reasons[0])

    def _why_not(self, call: ReplyToolCall, by_name: Mapping[str, Mapping[str, Any]]) -> str:
        tool = by_name.get(call.name)
        if tool is None:
            return f"called {call.name!r}, which is not one of the tools offered"
        if self.name is not None and call.name != self.name:
            return f"called {call.name!r} instead of {self.name!r}"
        try:
            args = json.loads(call.arguments or "{}")
        except ValueError as exc:
            return f"{call.name}: arguments are not JSON ({exc})"
        if not isinstance(args, dict):
            return f"{call.name}: arguments are not a JSON object"
        if tool.get("parameters") is not None:
            why = _schema_errors(tool["parameters"], args)
            if why:
                return f"{call.name}: {why}"
        for key, want in (self.arguments or {}).items():
            if args.get(key) != want:
                return f"{call.name}: argument {key!r} is {args.get(key)!r}, expected {want!r}"
        return ""

    def describe(self) -> str:
        target = repr(self.name) if self.name else "a tool offered"
        return f"calls {target} with valid arguments"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "tool_call"}
        if self.name:
            out["name"] = self.name
        if self.arguments:
            out["arguments"] = dict(self.arguments)
        return out


# ---------------------------------------------------------------------------- code


@dataclass(frozen=True)
class RunOutcome:
    """How a program run by :func:`run_python` ended."""

    passed: bool  # exit code 0 within the time limit
    exit_code: int | None  # None when it was killed for the time limit
    timed_out: bool
    seconds: float
    output: str  # the end of its stdout and stderr

    def reason(self) -> str:
        if self.passed:
            return ""
        if self.timed_out:
            return f"timed out after {self.seconds:.0f} s"
        last = [line for line in self.output.strip().splitlines() if line.strip()]
        tail = last[-1] if last else ""
        return f"exit code {self.exit_code}" + (f": {_clip(tail, 160)}" if tail else "")


MEMORY_LIMIT = 1 << 30  # address space for the program (bytes)
FILE_LIMIT = 16 << 20  # largest file it may write (bytes)

# Put in front of every program. The limits are set by the program itself rather than by a
# ``preexec_fn`` (unsafe when the parent has threads, as a comparison run from the app does).
# Replacing the socket functions stops *accidental* network use (a client library, a URL
# fetched by a test); code that means to can still reach ``_socket``: see run_python.
_PREAMBLE = """\
try:
    import resource as _r
    for _k, _v in ((_r.RLIMIT_CPU, {cpu}), (_r.RLIMIT_AS, {memory}), (_r.RLIMIT_FSIZE, {files}),
                   (_r.RLIMIT_CORE, 0)):
        try:
            _r.setrlimit(_k, (_v, _v))
        except (ValueError, OSError):
            pass
    del _r, _k, _v
except ImportError:
    pass
import socket as _s
def _no_network(*a, **k):
    raise OSError("network access is disabled while checking code")
_s.socket = _no_network
_s.create_connection = _no_network
_s.getaddrinfo = _no_network
del _s
"""


def run_python(source: str, timeout_s: float = 10.0, python: str | None = None) -> RunOutcome:
    """Run ``source`` as a Python program the way a code check does, and say how it ended.

    What it does: writes the program to a new temporary folder, which is also its working
    directory and ``HOME``/``TMPDIR``, and runs it with ``python -I -B`` (isolated: no
    ``PYTHON*`` variables, no user site-packages, no current folder on ``sys.path``) in a new
    session, with an environment of only ``PATH`` and a locale (no proxies, no keys, no tokens
    of the parent). Sockets are replaced by a function that raises, so a test that tries the
    network fails instead of hanging. On Linux and macOS the child gets resource limits: CPU
    seconds, 1 GiB of address space, 16 MiB per written file, no core dumps. After
    ``timeout_s`` the whole process group is killed; the folder is then deleted.

    What it does not do: it is not a sandbox. The program runs as this user and can read and
    write whatever this user can (outside the temporary folder too), start other programs,
    and reach the network through ``_socket`` or a child process if it sets out to. Run
    checks only on code from models you are willing to run on this machine.
    """
    python = python or checking_python()
    with tempfile.TemporaryDirectory(prefix="spark-check-") as folder:
        script = Path(folder) / "check.py"
        cpu = max(1, int(timeout_s) + 1)
        preamble = _PREAMBLE.format(cpu=cpu, memory=MEMORY_LIMIT, files=FILE_LIMIT)
        script.write_text(preamble + "\n" + source, encoding="utf-8")
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": folder,
            "TMPDIR": folder,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONHASHSEED": "0",
        }
        if sys.platform == "win32":  # pragma: no cover - Windows needs these to start Python
            env.update({k: os.environ[k] for k in ("SYSTEMROOT", "COMSPEC") if k in os.environ})
        posix = os.name == "posix"
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [python, "-I", "-B", str(script)],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=posix,
        )
        try:
            out, _ = proc.communicate(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, _ = proc.communicate()
            timed_out = True
        seconds = time.perf_counter() - t0
    text = out.decode("utf-8", "replace")[-4000:]
    code = None if timed_out else proc.returncode
    return RunOutcome(code == 0, code, timed_out, seconds, text)


def checking_python() -> str:
    """The Python that runs code checks: this one, or in the packaged app (where
    ``sys.executable`` is the app itself) a ``python3`` on the PATH. Raises ``OSError``
    when there is none."""
    if not getattr(sys, "frozen", False):
        return sys.executable
    found = shutil.which("python3") or shutil.which("python")
    if not found:
        raise OSError("code checks need Python 3 on the PATH (the packaged app has none)")
    return found


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if os.name == "posix":
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def extract_code(text: str) -> str:
    """The Python in an answer: its fenced ``python`` blocks (or unlabelled ones) joined, else
    the whole answer (a model that continued the code directly)."""
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "python", "py")]
    if blocks:
        return "\n\n".join(b.rstrip() for b in blocks) + "\n"
    return text


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M) is not None


def build_program(
    reply_text: str, tests: str, prompt_code: str = "", entry_point: str | None = None
) -> str:
    """The program a code check runs: the model's code, then the tests.

    With ``prompt_code`` (HumanEval's function signature and docstring) the reply is either a
    whole function (it defines ``entry_point``: the prompt's imports and helpers go first) or
    the body that continues the prompt. ``check(entry_point)`` is called when the tests define
    ``check`` and an ``entry_point`` is given, as HumanEval's harness does.
    """
    code = extract_code(reply_text)
    if prompt_code:
        if entry_point and _defines(code, entry_point):
            head = re.split(rf"^def\s+{re.escape(entry_point)}\s*\(", prompt_code, flags=re.M)[0]
            code = head.rstrip() + "\n\n\n" + code
        else:
            code = prompt_code + code
    program = code.rstrip() + "\n\n\n" + tests.rstrip() + "\n"
    if entry_point and re.search(r"^def\s+check\s*\(", tests, re.M):
        program += f"\n\ncheck({entry_point})\n"
    return program


@dataclass(frozen=True)
class CodeCheck:
    """The Python in the answer passes ``tests`` (asserts; a ``check`` function with
    ``entry_point``), run by :func:`run_python` within ``timeout_s``."""

    tests: str
    entry_point: str | None = None
    prompt_code: str = ""  # code the answer continues (HumanEval's prompt)
    timeout_s: float = 10.0
    kind: str = "code"
    python: str | None = field(default=None, compare=False)

    def program(self, reply: Reply) -> str:
        return build_program(reply.text, self.tests, self.prompt_code, self.entry_point)

    def grade(self, reply: Reply) -> Outcome:
        run = run_python(self.program(reply), self.timeout_s, self.python)
        return Outcome(self.kind, run.passed, run.reason())

    def describe(self) -> str:
        return "code passes its tests"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "code", "tests": self.tests, "timeout": self.timeout_s}
        if self.entry_point:
            out["entry_point"] = self.entry_point
        if self.prompt_code:
            out["prompt_code"] = self.prompt_code
        return out


# ---------------------------------------------------------------------------- parsing

AnyCheck = Check | ExactCheck | JsonCheck | ToolCallCheck | CodeCheck


def parse_check(data: Any, tools: Sequence[Mapping[str, Any]] = ()) -> AnyCheck:
    """A check from its JSON form. ``tools`` are the prompt's (normalised) tools, which a
    ``tool_call`` check grades against. Raises :class:`SuiteError` saying what is wrong."""
    if not isinstance(data, Mapping):
        raise SuiteError(f"a check must be a JSON object, got {json.dumps(data)[:80]}")
    kind = data.get("type")
    if kind in ("contains", "number", "regex"):
        return Check.from_json(data)
    if kind == "exact":
        if not isinstance(data.get("value"), str):
            raise SuiteError("exact check needs a string 'value'")
        return ExactCheck(data["value"], bool(data.get("ignore_case", False)))
    if kind == "json":
        schema = data.get("schema")
        if schema is not None:
            if not isinstance(schema, Mapping):
                raise SuiteError("json check: 'schema' must be a JSON Schema object")
            _validator(schema, "json check 'schema'")
        return JsonCheck(schema)
    if kind == "tool_call":
        if not tools:
            raise SuiteError("tool_call check needs the prompt to offer 'tools'")
        name = data.get("name")
        names = [str(t["name"]) for t in tools]
        if name is not None and name not in names:
            raise SuiteError(f"tool_call check names {name!r}, not one of the tools: {names}")
        args = data.get("arguments")
        if args is not None and not isinstance(args, Mapping):
            raise SuiteError("tool_call check: 'arguments' must be a JSON object")
        return ToolCallCheck(tuple(tools), name, args)
    if kind == "code":
        tests = data.get("tests")
        if not isinstance(tests, str) or not tests.strip():
            raise SuiteError("code check needs 'tests' (Python: asserts, or a check function)")
        try:
            compile(tests, "<tests>", "exec")
        except SyntaxError as exc:
            raise SuiteError(f"code check: the tests do not compile: {exc}") from exc
        try:
            timeout = float(data.get("timeout", 10.0))
        except (TypeError, ValueError) as exc:
            raise SuiteError("code check: 'timeout' must be a number of seconds") from exc
        if not 0 < timeout <= 600:
            raise SuiteError("code check: 'timeout' must be between 0 and 600 seconds")
        entry = data.get("entry_point")
        return CodeCheck(
            tests,
            str(entry) if entry else None,
            str(data.get("prompt_code") or ""),
            timeout,
        )
    raise SuiteError(_unknown_kind(kind))


def grade_all(checks: Sequence[ReplyCheck], reply: Reply) -> tuple[Outcome, ...]:
    """Every check's outcome on ``reply``, in order."""
    return tuple(c.grade(reply) for c in checks)


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
