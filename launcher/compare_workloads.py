"""The user's own work as a comparison workload: saved chats, recorded API traffic, a folder.

``--suite`` (and the Compare view's workload picker) takes, besides the bundled suites,
``humaneval`` and ``.jsonl`` files:

- ``chats`` (every saved conversation) or ``chats:WHICH,WHICH`` (chosen ones: an id, the start
  of one, or words of a title, as ``chats:oslo,recipes``): each user turn of a
  conversation becomes a prompt, sent with the conversation's system prompt and every earlier
  turn (error notes left out, as the chat does), so the models answer exactly what the user
  asked in context. Read through ``launcher.chats.ChatStore``'s public API only.
- ``api-log``: the local API's recorded requests (``launcher.server.recording``, opt-in), each
  replayed as it was sent: messages (tool calls and tool results included), tools,
  ``tool_choice``, response format and ``max_tokens``. A request that asked for JSON gets a
  ``json`` check (valid against its schema); one that required a tool call gets a
  ``tool_call`` check (a real tool, valid arguments). Others are open-ended: use a judge.
- ``folder:PATH``: every UTF-8 text file under PATH (hidden files, binaries and files over
  2 MB skipped; at most 500, sorted by path) becomes one prompt from a template with
  ``{name}`` (the file's path in the folder) and ``{text}`` (its contents, cut at 12,000
  characters, about 3,000 tokens, so it fits a 4k context with room for the reply). The
  default template asks for a summary; ``--template`` gives another ("List every date in
  {name}:\\n{text}"). No automatic checks: use a judge, or your votes.

Every loader returns an ordinary :class:`~launcher.compare_suites.PromptSuite`, so checks,
judging, resume and export work the same for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from launcher.compare_checks import SuiteError
from launcher.compare_suites import PromptSuite, SuitePrompt
from launcher.paths import AppPaths

WORKLOADS = ("chats", "api-log", "folder:PATH")
"""What ``--suite`` accepts besides suite names and files (for help texts)."""

DEFAULT_TEMPLATE = (
    "Summarise the document below in three to five bullet points, then give its main point "
    "in one sentence.\n\n--- {name} ---\n{text}"
)
MAX_DOC_CHARS = 12_000
MAX_DOC_BYTES = 2 * 2**20
MAX_DOCS = 500


def is_workload(spec: str) -> bool:
    """Whether ``spec`` names one of these workloads (rather than a suite or a file)."""
    return spec in ("chats", "api-log") or spec.startswith(("chats:", "folder:"))


def load_workload(
    spec: str, paths: AppPaths | None = None, template: str | None = None
) -> PromptSuite:
    """The suite for ``chats[:IDS]``, ``api-log`` or ``folder:PATH``."""
    paths = paths or AppPaths.default()
    if spec == "chats" or spec.startswith("chats:"):
        ids = [i.strip() for i in spec.partition(":")[2].split(",") if i.strip()]
        return chats_suite(paths, ids or None)
    if spec == "api-log":
        return api_log_suite(paths)
    if spec.startswith("folder:"):
        return folder_suite(Path(spec.partition(":")[2]).expanduser(), template)
    raise SuiteError(f"{spec!r} is not a workload: use {', '.join(WORKLOADS)}")


# ---------------------------------------------------------------------------- saved chats


def chats_suite(paths: AppPaths, ids: Sequence[str] | None = None) -> PromptSuite:
    """Each user turn of the chosen saved conversations (all when ``ids`` is None), in context."""
    from launcher.chats import ChatStore, ChatStoreError

    store = ChatStore(paths.chats_dir)
    saved = store.list()
    if not saved:
        raise SuiteError(
            "there are no saved chats yet: chat with a model first, or pick another workload"
        )
    chosen = (
        [c for which in ids for c in _find_chats(saved, which)] if ids else [s.id for s in saved]
    )
    chosen = list(dict.fromkeys(chosen))  # each chat once, in the order asked
    prompts: list[SuitePrompt] = []
    for conv_id in chosen:
        try:
            conv = store.load(conv_id)
        except ChatStoreError as exc:
            raise SuiteError(f"saved chat {conv_id}: {exc}") from exc
        history: list[dict[str, str]] = []
        turn = 0
        for msg in conv.messages:
            if msg.role == "assistant" and msg.content:
                history.append({"role": "assistant", "content": msg.content})
            elif msg.role == "user" and msg.content.strip():
                turn += 1
                prompts.append(
                    SuitePrompt(
                        id=f"chat-{conv.id[:8]}-{turn}",
                        text=msg.content,
                        system=conv.system_prompt.strip() or None,
                        history=tuple(history),
                    )
                )
                history.append({"role": "user", "content": msg.content})
    if not prompts:
        raise SuiteError("the chosen chats have no messages from you to replay")
    n = len(chosen)
    return PromptSuite(
        "chats",
        "Saved chats",
        f"{len(prompts)} turns from {n} saved chat{'s' if n != 1 else ''}",
        tuple(prompts),
    )


def _find_chats(saved: Sequence[Any], which: str) -> list[str]:
    """Ids of the saved chats ``which`` names: an id, an id's start (4+ characters), or
    words found in titles (case-insensitive); a ``SuiteError`` listing titles otherwise."""
    exact = [s.id for s in saved if s.id == which]
    if exact:
        return exact
    if len(which) >= 4:
        by_id = [s.id for s in saved if s.id.startswith(which.lower())]
        if by_id:
            return by_id
    by_title = [s.id for s in saved if which.lower() in s.title.lower()]
    if by_title:
        return by_title
    titles = ", ".join(repr(s.title) for s in saved[:8])
    raise SuiteError(f"no saved chat matches {which!r}; saved chats: {titles}")


# ---------------------------------------------------------------------------- API traffic


def api_log_suite(paths: AppPaths, path: Path | None = None) -> PromptSuite:
    """The recorded local API requests, replayed as they were sent."""
    from launcher.server.recording import read_traffic, traffic_file

    source = path or traffic_file(paths)
    traffic = read_traffic(source)
    if not traffic.entries:
        raise SuiteError(
            "no API traffic has been recorded: turn on 'Record Local API requests' (Compare "
            "view) or set record_api_traffic in the settings, send requests, then compare"
        )
    prompts = []
    for number, entry in enumerate(traffic.entries, start=1):
        try:
            prompts.append(_replayed(entry, number))
        except SuiteError as exc:
            raise SuiteError(f"{source.name} request {number}: {exc}") from exc
    skipped = f"; {traffic.skipped} unreadable lines skipped" if traffic.skipped else ""
    return PromptSuite(
        "api-log",
        "Recorded API traffic",
        f"{len(prompts)} recorded requests{skipped}",
        tuple(prompts),
    )


def _replayed(entry: dict[str, Any], number: int) -> SuitePrompt:
    messages = entry.get("messages") or []
    if not messages:
        raise SuiteError("it has no messages")
    system = next(
        (str(m.get("content") or "") for m in messages if m.get("role") in ("system", "developer")),
        None,
    )
    last = messages[-1]
    text = _text_of(last.get("content"))
    if last.get("role") == "tool":
        text = f"(tool result) {text}"
    data: dict[str, Any] = {
        "id": f"api-{number}",
        "text": text or "(no text)",
        "conversation": messages,
        "tools": entry.get("tools") or [],
    }
    if system:
        data["system"] = system
    if isinstance(entry.get("max_tokens"), int) and entry["max_tokens"] > 0:
        data["max_tokens"] = entry["max_tokens"]
    if entry.get("tools") and entry.get("tool_choice"):
        data["tool_choice"] = entry["tool_choice"]
    checks: list[dict[str, Any]] = []
    fmt = entry.get("response_format")
    if fmt:
        data["response_format"] = fmt
        spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        checks.append({"type": "json", **({"schema": schema} if schema else {})})
    choice = data.get("tool_choice")
    if data["tools"] and choice not in (None, "auto", "none"):
        checks.append({"type": "tool_call", **({"name": choice} if choice != "required" else {})})
    data["checks"] = checks
    return SuitePrompt.from_json(data)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


# ---------------------------------------------------------------------------- folder


def folder_suite(folder: Path, template: str | None = None) -> PromptSuite:
    """One prompt per text file under ``folder``, from ``template`` (``{name}``, ``{text}``)."""
    template = template or DEFAULT_TEMPLATE
    if "{text}" not in template:
        raise SuiteError("the prompt template must contain {text} (the document goes there)")
    try:
        template.format(name="x", text="y")
    except (KeyError, IndexError, ValueError) as exc:
        raise SuiteError(
            f"the prompt template can use {{name}} and {{text}} only ({exc}); "
            "write {{ and }} for literal braces"
        ) from exc
    if not folder.is_dir():
        raise SuiteError(f"there is no folder at {folder}")
    prompts = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        text = _document_text(path)
        if text is None:
            continue
        if len(text) > MAX_DOC_CHARS:
            text = text[:MAX_DOC_CHARS] + "\n[… the rest of the document was cut]"
        name = rel.as_posix()
        prompts.append(SuitePrompt(id=name, text=template.format(name=name, text=text)))
        if len(prompts) >= MAX_DOCS:
            break
    if not prompts:
        raise SuiteError(f"{folder} has no text documents (UTF-8 files up to 2 MB)")
    return PromptSuite(
        f"folder:{folder.name}",
        f"Documents in {folder.name}",
        f"{len(prompts)} documents from {folder}",
        tuple(prompts),
    )


def _document_text(path: Path) -> str | None:
    """The file's text, or None for a binary, unreadable, empty or too large file."""
    try:
        if path.stat().st_size > MAX_DOC_BYTES:
            return None
        raw = path.read_bytes()
    except OSError:
        return None
    if b"\0" in raw[:4096]:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.strip() else None
